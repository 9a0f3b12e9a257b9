//! Request plumbing of a session: the operation retry loop (§6.2) around the transport,
//! with its telemetry, JSON helpers, and how client errors are classified for that loop.

use serde::Serialize;
use serde::de::DeserializeOwned;
use tinker_transport::retry::{RetryClass, Retryable};
use tinker_transport::{RequestSpec, Response};

use super::Session;
use crate::error::{Error, ErrorKind, Result};

impl Retryable for Error {
    fn retry_class(&self) -> RetryClass {
        match (self.kind(), self.status()) {
            (ErrorKind::Api, Some(402)) => RetryClass::Billing,
            (ErrorKind::Connection, _) => RetryClass::Retry,
            (ErrorKind::Timeout, _) if self.is_retryable() => RetryClass::Retry,
            (ErrorKind::Api, Some(s)) if tinker_transport::retry::is_retryable_status(s) => {
                RetryClass::Retry
            }
            _ => RetryClass::Fatal,
        }
    }

    fn describe(&self) -> String {
        self.to_string()
    }
}

impl Session {
    /// Sends `make()` through the holder retry loop (§6.2); each attempt rebuilds the spec.
    /// A final failure is reported to telemetry as fatal.
    pub(crate) async fn send_retrying(
        &self,
        name: &str,
        make: impl Fn() -> Result<RequestSpec>,
    ) -> Result<Response> {
        let result = self.send_retrying_quiet(name, make).await;
        if let Err(e) = &result {
            crate::telemetry::log_fatal(self, e).await;
        }
        result
    }

    /// [`Session::send_retrying`] reporting only the retry-loop events, never a fatal
    /// error: for background work (the cancel drain) and for steps of operations that
    /// report their own final error (sampling).
    pub(crate) async fn send_retrying_quiet(
        &self,
        name: &str,
        make: impl Fn() -> Result<RequestSpec>,
    ) -> Result<Response> {
        if self.is_closed() {
            return Err(Error::new(ErrorKind::Cancelled, "the client was closed"));
        }
        let trace = crate::telemetry::RetryTrace::new(self, name);
        let attempts = std::sync::atomic::AtomicU32::new(0);
        self.transport
            .operation_retry()
            .run(name, || {
                if attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed) > 0 {
                    self.metrics
                        .retried(crate::observe::Operation::classify(name, None));
                }
                let spec = make();
                let trace = &trace;
                async move {
                    let sent: Result<Response> =
                        async { Ok(self.transport.send(spec?).await?) }.await;
                    if let Err(e) = &sent {
                        trace.attempt_failed(self, e);
                    }
                    sent
                }
            })
            .await
    }

    /// POSTs JSON through the holder retry loop and parses the JSON answer.
    pub(crate) async fn post_json<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        path: &str,
        body: &Req,
        sdk_method: &str,
    ) -> Result<Resp> {
        let bytes = tinker_types::json::to_vec(body)?;
        let send = async {
            let resp = self
                .send_retrying(path, || {
                    Ok(RequestSpec::post(path)
                        .with_body(bytes.clone(), tinker_transport::APPLICATION_JSON)
                        .with_sdk_method(sdk_method))
                })
                .await?;
            parse_json(&resp)
        };
        self.observed(path, sdk_method, send).await
    }

    /// GETs through the holder retry loop and parses the JSON answer.
    pub(crate) async fn get_json<Resp: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        sdk_method: &str,
    ) -> Result<Resp> {
        let send = async {
            let resp = self
                .send_retrying(path, || {
                    let mut spec = RequestSpec::get(path).with_sdk_method(sdk_method);
                    for (k, v) in query {
                        spec = spec.with_query(*k, v.clone());
                    }
                    Ok(spec)
                })
                .await?;
            parse_json(&resp)
        };
        self.observed(path, sdk_method, send).await
    }

    /// Runs a JSON call as its own operation (span and metrics), unless it is a step of
    /// an operation already running in this task.
    async fn observed<T>(
        &self,
        path: &str,
        sdk_method: &str,
        call: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        if crate::observe::current().is_some() {
            return call.await;
        }
        let op = crate::observe::Operation::classify(path, Some(sdk_method));
        self.metrics
            .instrument_rest(op, sdk_method, self.session_id.as_deref(), call)
            .await
    }
}

pub(crate) fn parse_json<T: DeserializeOwned>(resp: &Response) -> Result<T> {
    tinker_types::json::from_slice(resp.body())
        .map_err(|e| Error::protocol(format!("unexpected response: {e}")))
}
