//! [`Operation`]: the kinds of client work that metrics and spans are kept for, and how an
//! HTTP call outside any operation is classified by its route.

/// A kind of client operation. Metrics are kept per operation; each public client call
/// opens a span named after its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Operation {
    /// `create_lora_training_client` (`create_model`).
    CreateModel,
    /// `forward_backward`, also with a custom loss.
    ForwardBackward,
    /// `forward`.
    Forward,
    /// `optim_step`.
    OptimStep,
    /// `save_state` (`save_weights`).
    SaveState,
    /// `load_state` and its variants (`load_weights`).
    LoadState,
    /// `save_weights_for_sampler` and `save_weights_and_get_sampling_client`.
    SaveWeightsForSampler,
    /// `save_weights_external`.
    SaveWeightsExternal,
    /// `sample` and `compute_logprobs`.
    Sample,
    /// `create_custom_loss`.
    CreateCustomLoss,
    /// Creating or joining a sampling session.
    CreateSamplingSession,
    /// `get_info`.
    GetInfo,
    /// REST and admin calls (`RestClient`, `AdminClient`, server capabilities).
    Rest,
    /// `retrieve_future` polls made outside any other operation.
    RetrieveFuture,
    /// The session heartbeat.
    Heartbeat,
    /// Telemetry uploads.
    Telemetry,
    /// Session lifecycle: client config, dynamic config, create and finish session.
    Session,
    /// Anything else.
    Other,
}

impl Operation {
    /// Every operation, in a fixed order (the index of the registry's slots).
    pub const ALL: [Operation; 18] = [
        Self::CreateModel,
        Self::ForwardBackward,
        Self::Forward,
        Self::OptimStep,
        Self::SaveState,
        Self::LoadState,
        Self::SaveWeightsForSampler,
        Self::SaveWeightsExternal,
        Self::Sample,
        Self::CreateCustomLoss,
        Self::CreateSamplingSession,
        Self::GetInfo,
        Self::Rest,
        Self::RetrieveFuture,
        Self::Heartbeat,
        Self::Telemetry,
        Self::Session,
        Self::Other,
    ];

    /// The snake-case name: the span name and the `operation` label of the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateModel => "create_model",
            Self::ForwardBackward => "forward_backward",
            Self::Forward => "forward",
            Self::OptimStep => "optim_step",
            Self::SaveState => "save_state",
            Self::LoadState => "load_state",
            Self::SaveWeightsForSampler => "save_weights_for_sampler",
            Self::SaveWeightsExternal => "save_weights_external",
            Self::Sample => "sample",
            Self::CreateCustomLoss => "create_custom_loss",
            Self::CreateSamplingSession => "create_sampling_session",
            Self::GetInfo => "get_info",
            Self::Rest => "rest",
            Self::RetrieveFuture => "retrieve_future",
            Self::Heartbeat => "heartbeat",
            Self::Telemetry => "telemetry",
            Self::Session => "session",
            Self::Other => "other",
        }
    }

    /// The operation waiting for futures of `request_type`.
    pub(crate) fn of_request(request_type: crate::payload::RequestType) -> Self {
        use crate::payload::RequestType as R;
        match request_type {
            R::CreateModel => Self::CreateModel,
            R::ForwardBackward => Self::ForwardBackward,
            R::Forward => Self::Forward,
            R::OptimStep => Self::OptimStep,
            R::SaveWeights => Self::SaveState,
            R::LoadWeights => Self::LoadState,
            R::SaveWeightsForSampler => Self::SaveWeightsForSampler,
            R::SaveWeightsExternal => Self::SaveWeightsExternal,
            R::Sample => Self::Sample,
            R::CreateCustomLoss => Self::CreateCustomLoss,
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The operation of a call made outside any operation, from its route and
    /// `x-sdk-method` (paths may hold ids, so only fixed parts are matched).
    pub(crate) fn classify(path: &str, sdk_method: Option<&str>) -> Self {
        if let Some(m) = sdk_method
            && (m.starts_with("RestClient.")
                || m.starts_with("AdminClient.")
                || m == "ServiceClient.get_server_capabilities"
                || m == "SamplingClient.get_sampler")
        {
            return Self::Rest;
        }
        let route = path.strip_prefix("/api/v1/").unwrap_or(path);
        match route {
            "retrieve_future" | "retrieve_futures" => Self::RetrieveFuture,
            "session_heartbeat" => Self::Heartbeat,
            "telemetry" => Self::Telemetry,
            "client/config" | "client/dynamic_config" | "create_session" | "auth/token" => {
                Self::Session
            }
            "create_model" => Self::CreateModel,
            "create_sampling_session" | "join_sampling_session" => Self::CreateSamplingSession,
            "get_info" => Self::GetInfo,
            "forward_backward" => Self::ForwardBackward,
            "forward" => Self::Forward,
            "optim_step" => Self::OptimStep,
            "save_weights" => Self::SaveState,
            "load_weights" => Self::LoadState,
            "save_weights_for_sampler" => Self::SaveWeightsForSampler,
            "save_weights_external" => Self::SaveWeightsExternal,
            "create_custom_loss" => Self::CreateCustomLoss,
            "asample" => Self::Sample,
            r if r.starts_with("sessions/") && r.ends_with("/finish") => Self::Session,
            r if r.contains("heartbeat") => Self::Heartbeat,
            _ if sdk_method.is_some() => Self::Rest,
            _ => Self::Other,
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_classify() {
        for (path, method, op) in [
            ("/api/v1/client/dynamic_config", None, Operation::Session),
            ("/api/v1/client/config", None, Operation::Session),
            (
                "/api/v1/sessions/s-1/finish",
                Some("ServiceClient.close"),
                Operation::Session,
            ),
            ("/api/v1/session_heartbeat", None, Operation::Heartbeat),
            (
                "/api/v1/training_runs/r",
                Some("RestClient.get_training_run"),
                Operation::Rest,
            ),
            ("/api/v1/retrieve_future", None, Operation::RetrieveFuture),
            (
                "/api/v1/asample",
                Some("SamplingClient.sample"),
                Operation::Sample,
            ),
            ("/unknown", None, Operation::Other),
        ] {
            assert_eq!(Operation::classify(path, method), op, "{path}");
        }
    }

    #[test]
    fn indexes_follow_all() {
        for (i, op) in Operation::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op}");
        }
    }
}
