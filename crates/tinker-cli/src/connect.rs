//! Clients built from the environment, as the SDK's CLI builds them (`TINKER_API_KEY`,
//! `TINKER_BASE_URL`, the credentials file).

use tinker_client::{AdminClient, RestClient};
use tinker_transport::Transport;

use crate::error::CliError;

/// A transport with the resolved credential (fails early, before any request, without one).
pub(crate) fn transport() -> Result<Transport, CliError> {
    Ok(Transport::builder().build()?)
}

/// A session-less REST client.
pub(crate) async fn rest() -> Result<RestClient, CliError> {
    Ok(RestClient::connect(transport()?).await?)
}

/// A billing / audit client.
pub(crate) async fn admin() -> Result<AdminClient, CliError> {
    Ok(AdminClient::connect(transport()?).await?)
}
