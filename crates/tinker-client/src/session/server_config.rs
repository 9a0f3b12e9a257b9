//! What the server's configuration asks of a session: the client config's effect on the
//! transport, and fetching the dynamic config.

use std::time::Duration;

use tinker_transport::{RequestSpec, Transport};
use tinker_types::{ClientConfig, ClientConfigRequest, DynamicConfig};

use super::SDK_VERSION;
use super::requests::parse_json;
use crate::error::{Error, Result};

/// What the client config asks of the transport: JWT auth when flagged, and the billing
/// pause window. Shared by new and shadow sessions.
pub(super) fn apply_client_config(transport: &Transport, config: &ClientConfig) -> Result<()> {
    if config.pjwt_auth_enabled {
        let command =
            config.credential_default_source == tinker_types::CredentialSource::CredentialCmd;
        transport.enable_jwt_auth(command)?;
    }
    transport.billing_pause().set_max_pause(Duration::from_secs(
        config.billing_exception_max_pause_duration_sec,
    ));
    Ok(())
}

pub(super) async fn fetch_dynamic_config(
    transport: &Transport,
    retrying: bool,
) -> Result<DynamicConfig> {
    let req = ClientConfigRequest {
        sdk_version: SDK_VERSION.to_owned(),
    };
    let once = || async {
        let spec = RequestSpec::post("/api/v1/client/dynamic_config")
            .with_json(&req)?
            .with_max_retries(0)
            .with_timeout(Duration::from_secs(10));
        match transport.send(spec).await {
            Ok(resp) => parse_json::<DynamicConfig>(&resp),
            Err(e) if e.status().map(|s| s.as_u16()) == Some(404) => Ok(DynamicConfig::default()),
            Err(e) => Err(Error::from(e)),
        }
    };
    if retrying {
        transport
            .operation_retry()
            .run("client/dynamic_config", once)
            .await
    } else {
        once().await
    }
}
