//! Client spans exported through OpenTelemetry (`tracing-opentelemetry` into the SDK's
//! in-memory exporter): names, fields and nesting of a forward_backward, an optim_step and
//! a sample against a real tinker-local.

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tinker_client::SamplingSource;
use tinker_testkit::local as common;
use tinker_types::{AdamParams, LossFn, ModelInput, SamplingParams};
use tracing::Instrument;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;

use common::{MODEL, datum, start};

fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn named<'a>(spans: &'a [SpanData], name: &str) -> Vec<&'a SpanData> {
    spans.iter().filter(|s| s.name == name).collect()
}

/// Every span below `id`, at any depth.
fn descendants(spans: &[SpanData], id: opentelemetry::trace::SpanId) -> Vec<&SpanData> {
    let mut out = Vec::new();
    let mut frontier = vec![id];
    while let Some(parent) = frontier.pop() {
        for s in spans.iter().filter(|s| s.parent_span_id == parent) {
            frontier.push(s.span_context.span_id());
            out.push(s);
        }
    }
    out
}

/// The exporter behind the binary's global subscriber, installed once. Global because a
/// thread's default subscriber races with callsite registration by the tests running
/// beside it; spans of other tests are told apart by their trace.
fn exporter() -> &'static (InMemorySpanExporter, SdkTracerProvider) {
    static EXPORTER: OnceLock<(InMemorySpanExporter, SdkTracerProvider)> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        // At INFO, as exporters usually run: the transport's `debug` spans (attempts, the
        // retry loop) are off, so their fields must not land on the spans around them.
        let subscriber = tracing_subscriber::registry().with(
            tracing_opentelemetry::layer()
                .with_tracer(provider.tracer("spans-test"))
                .with_filter(LevelFilter::INFO),
        );
        tracing::subscriber::set_global_default(subscriber).unwrap();
        (exporter, provider)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_export_named_nested_spans_with_ids() {
    let (exporter, provider) = exporter();
    let env = start(None).await;
    let (model_id, sampling_session_id) = async {
        let tc = env
            .service
            .create_lora_training_client(MODEL, 4)
            .await
            .unwrap();
        let fb = tc.forward_backward(vec![datum(&[3, 4, 5, 6])], LossFn::CrossEntropy);
        let opt = tc.optim_step(AdamParams::with_learning_rate(1e-2));
        fb.await.unwrap();
        opt.await.unwrap();
        let sampler = env
            .service
            .create_sampling_client(SamplingSource::BaseModel(MODEL.into()))
            .await
            .unwrap();
        sampler
            .sample(
                ModelInput::from_tokens(&[1, 2]),
                1,
                SamplingParams::with_max_tokens(2),
            )
            .await
            .unwrap();
        (
            tc.model_id().to_owned(),
            sampler.sampling_session_id().to_owned(),
        )
    }
    .instrument(tracing::info_span!("test_root"))
    .await;
    let session_id = env.service.session_id().to_owned();
    provider.force_flush().unwrap();
    let all = exporter.get_finished_spans().unwrap();
    let root = named(&all, "test_root");
    assert_eq!(root.len(), 1);
    let root_id = root[0].span_context.span_id();
    let trace = root[0].span_context.trace_id();
    let spans: Vec<SpanData> = all
        .iter()
        .filter(|s| s.span_context.trace_id() == trace)
        .cloned()
        .collect();

    let fb = named(&spans, "forward_backward");
    assert_eq!(
        fb.len(),
        1,
        "{:?}",
        spans.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let fb = fb[0];
    assert_eq!(
        fb.parent_span_id, root_id,
        "forward_backward is a child of the caller's span"
    );
    assert_eq!(attr(fb, "session_id").as_deref(), Some(session_id.as_str()));
    assert_eq!(attr(fb, "model_id").as_deref(), Some(model_id.as_str()));
    assert_eq!(attr(fb, "seq_id").as_deref(), Some("1"));
    assert_eq!(attr(fb, "operation").as_deref(), Some("forward_backward"));
    assert_eq!(attr(fb, "status").as_deref(), Some("ok"));
    assert!(attr(fb, "request_id").is_some_and(|r| !r.is_empty()));

    let opt = named(&spans, "optim_step");
    assert_eq!(opt.len(), 1);
    assert_eq!(attr(opt[0], "seq_id").as_deref(), Some("2"));
    assert_eq!(attr(opt[0], "model_id").as_deref(), Some(model_id.as_str()));
    assert_eq!(opt[0].parent_span_id, root_id);

    let sample = named(&spans, "sample");
    assert_eq!(sample.len(), 1);
    assert_eq!(
        attr(sample[0], "model_id").as_deref(),
        Some(sampling_session_id.as_str())
    );
    assert!(attr(sample[0], "seq_id").is_some());
    assert_eq!(
        attr(sample[0], "session_id").as_deref(),
        Some(session_id.as_str())
    );

    // The transport's request spans nest inside the operation that made them (the
    // submission under the retry loop's `tinker.operation`, the polls directly).
    let fb_requests: Vec<_> = descendants(&spans, fb.span_context.span_id())
        .into_iter()
        .filter(|s| s.name == "tinker.request")
        .collect();
    let paths: Vec<_> = fb_requests.iter().filter_map(|s| attr(s, "path")).collect();
    assert!(
        paths.iter().any(|p| p == "/api/v1/forward_backward"),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p == "/api/v1/retrieve_future"),
        "{paths:?}"
    );
    assert!(
        !paths.iter().any(|p| p == "/api/v1/optim_step"),
        "only forward_backward's own requests: {paths:?}"
    );

    // Each request span has its status once (an attempt's own goes on the attempt's span,
    // which this exporter does not see, never on the request span around it).
    let requests: Vec<_> = named(&spans, "tinker.request");
    assert!(!requests.is_empty());
    for r in requests {
        let statuses: Vec<_> = r
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == "status")
            .collect();
        assert_eq!(
            statuses.len(),
            1,
            "{:?}: {:?}",
            attr(r, "path"),
            r.attributes
        );
    }

    // Creating the model is an operation too; its get_info is a step inside it.
    let create = named(&spans, "create_model");
    assert_eq!(create.len(), 1);
    assert!(named(&spans, "get_info").is_empty());
    env.server.shutdown().await;
}
