//! The HTTP-layer retry (protocol §6.1) as a `tower::retry::Policy`.

use tower::retry::Policy;

use super::backoff::http_retry_delay;
use super::{ResponseVerdict, classify_response};
use crate::clock::{Runtime, Sleep};
use crate::error::TransportError;
use crate::response::Response;
use crate::stack::Call;

/// Retries transport failures and retryable statuses up to the call's `max_retries`,
/// sleeping the server's hint or the jittered schedule; bumps the call's retry count
/// (sent as `x-stainless-retry-count`) and keeps its idempotency key.
#[derive(Clone, Debug)]
pub(crate) struct HttpRetryPolicy {
    pub(crate) runtime: Runtime,
}

impl Policy<Call, Response, TransportError> for HttpRetryPolicy {
    type Future = Sleep;

    fn retry(
        &mut self,
        call: &mut Call,
        result: &mut Result<Response, TransportError>,
    ) -> Option<Self::Future> {
        if call.retries >= call.max_retries {
            return None;
        }
        let headers = match result {
            Ok(resp) => match classify_response(resp.status, &resp.headers) {
                ResponseVerdict::Retry => Some(&resp.headers),
                _ => return None,
            },
            Err(e) if e.is_http_retryable() => None,
            Err(_) => return None,
        };
        let delay = http_retry_delay(
            call.retries,
            headers,
            self.runtime.clock.unix_now(),
            self.runtime.jitter.unit(),
        );
        match result {
            Ok(resp) => tracing::debug!(
                status = resp.status.as_u16(),
                retry = call.retries + 1,
                ?delay,
                "retrying request"
            ),
            Err(e) => {
                tracing::debug!(error = %e, retry = call.retries + 1, ?delay, "retrying request")
            }
        }
        call.retries += 1;
        Some(self.runtime.clock.sleep(delay))
    }

    fn clone_request(&mut self, call: &Call) -> Option<Call> {
        Some(call.clone())
    }
}
