//! Links into the Tinker console, as SDK 0.38's `lib/console_urls.py` builds them. The
//! builders live in `tinker-types` so that result types there
//! ([`SaveWeightsResponse::get_console_url`](tinker_types::SaveWeightsResponse::get_console_url),
//! [`SaveWeightsForSamplerResponse::get_console_url`](tinker_types::SaveWeightsForSamplerResponse::get_console_url))
//! can use them; the clients add
//! [`ServiceClient::get_console_url`](crate::ServiceClient::get_console_url) and
//! [`TrainingClient::get_console_url`](crate::TrainingClient::get_console_url).

pub use tinker_types::console::{
    CONSOLE_BASE_URL, api_key_console_url, checkpoint_console_url, checkpoint_console_url_for_path,
    checkpoint_playground_url, new_api_key_console_url, session_console_url, sessions_console_url,
    training_run_console_url,
};
