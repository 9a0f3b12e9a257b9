//! The `tracing` spans of client operations: one span per public call, named after its
//! [`Operation`] (`forward_backward`, `sample`, …; REST calls are `rest`, with the SDK
//! method in `otel.name` so OpenTelemetry shows it as the span name). Fields: `operation`,
//! `session_id`, and, recorded once known, `model_id`, `seq_id`, `request_id`, `status`
//! (`ok`/`error`) and `error`. The transport's `tinker.request` spans nest inside.

use tracing::field::Empty;

use super::Operation;

/// An operation and its span: what the task-local of the current operation holds.
#[derive(Debug, Clone)]
pub(crate) struct OpSpan {
    pub(crate) operation: Operation,
    pub(crate) span: tracing::Span,
}

/// One `info_span!` per operation (span names are static per call site).
macro_rules! op_span {
    ($op:expr, $session:expr, $($variant:ident => $name:literal),* $(,)?) => {
        match $op {
            $(Operation::$variant => tracing::info_span!(
                $name,
                operation = $name,
                session_id = $session,
                model_id = Empty,
                seq_id = Empty,
                request_id = Empty,
                status = Empty,
                error = Empty,
            ),)*
        }
    };
}

/// The span of one call of `op` (a child of the caller's current span).
pub(crate) fn operation_span(op: Operation, session_id: Option<&str>) -> tracing::Span {
    let session = session_id.unwrap_or("");
    op_span!(op, session,
        CreateModel => "create_model",
        ForwardBackward => "forward_backward",
        Forward => "forward",
        OptimStep => "optim_step",
        SaveState => "save_state",
        LoadState => "load_state",
        SaveWeightsForSampler => "save_weights_for_sampler",
        SaveWeightsExternal => "save_weights_external",
        Sample => "sample",
        CreateCustomLoss => "create_custom_loss",
        CreateSamplingSession => "create_sampling_session",
        GetInfo => "get_info",
        Rest => "rest",
        RetrieveFuture => "retrieve_future",
        Heartbeat => "heartbeat",
        Telemetry => "telemetry",
        Session => "session",
        Other => "other",
    )
}

/// The span of a call made through the session's JSON helpers: a REST call's span is
/// `rest` with the SDK method as `sdk_method` and `otel.name`; other operations get their
/// own span.
pub(crate) fn rest_span(
    op: Operation,
    sdk_method: &str,
    session_id: Option<&str>,
) -> tracing::Span {
    if op != Operation::Rest {
        return operation_span(op, session_id);
    }
    tracing::info_span!(
        "rest",
        operation = "rest",
        otel.name = sdk_method,
        sdk_method = sdk_method,
        session_id = session_id.unwrap_or(""),
        model_id = Empty,
        seq_id = Empty,
        request_id = Empty,
        status = Empty,
        error = Empty,
    )
}

/// Records the model (training model id or sampling session id) on the current
/// operation's span.
pub(crate) fn record_model_id(model_id: &str) {
    super::registry::with_current_span(|s| {
        s.record("model_id", model_id);
    });
}

/// Records the wire `seq_id` of the current operation's request.
pub(crate) fn record_seq_id(seq_id: u64) {
    super::registry::with_current_span(|s| {
        s.record("seq_id", seq_id);
    });
}

/// Records the server's request id (the future) of the current operation.
pub(crate) fn record_request_id(request_id: &str) {
    super::registry::with_current_span(|s| {
        s.record("request_id", request_id);
    });
}
