//! A finished future whose result does not decode is polled again (the server keeps the
//! result) a bounded number of times before it becomes an error that says what was wrong
//! (issue 9, case 7). tinker-local damages result answers on script: `corrupt` (bytes that
//! do not decode) and `badjson` (well-formed JSON of the wrong shape).

use tinker_testkit::local as common;

use common::{MODEL, datum, start};
use tinker_client::ErrorKind;
use tinker_types::LossFn;

/// `retrieve_future#n:FAULT` for n in `from..from + count`.
fn script(fault: &str, from: u32, count: u32) -> String {
    let items: Vec<String> = (from..from + count)
        .map(|n| format!("retrieve_future#{n}:{fault}"))
        .collect();
    format!("script={}", items.join(";"))
}

/// One corrupt answer, then the intact result: the caller never sees the fault. The
/// model's creation is poll 1 (a JSON result), the forward's result poll 2 (protobuf).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_corrupt_result_is_polled_again_transparently() {
    for fault in ["corrupt", "badjson"] {
        let env = start(Some(&format!(
            "script=retrieve_future#1:{fault};retrieve_future#3:{fault}"
        )))
        .await;
        let tc = env
            .service
            .create_lora_training_client(MODEL, 4)
            .await
            .unwrap_or_else(|e| panic!("{fault}: create: {e}"));
        let out = tc
            .forward(vec![datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
            .await
            .unwrap_or_else(|e| panic!("{fault}: forward: {e}"));
        assert_eq!(out.loss_fn_outputs.len(), 1);
        assert!(out.metrics["loss:sum"].is_finite());
        env.server.shutdown().await;
    }
}

/// A JSON result that never decodes: after the bounded re-polls, a Protocol error that
/// names the request and what was wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_result_that_never_decodes_is_an_error() {
    let env = start(Some(&script("corrupt", 1, 8))).await;
    let err = env
        .service
        .create_lora_training_client(MODEL, 4)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.message().contains("could not be decoded"), "{err}");
    assert!(err.message().contains("3 re-polls"), "{err}");
    assert!(err.message().contains("invalid JSON"), "{err}");
    assert!(!err.is_user_error());
    env.server.shutdown().await;
}

/// A protobuf result that never decodes (corrupt bytes, or JSON of the wrong shape in
/// its place): the error says which, and what the shape was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protobuf_result_that_never_decodes_is_an_error() {
    for (fault, expect) in [
        ("corrupt", "ForwardBackwardOutput"),
        ("badjson", "\"loss_fn_outputs\": string"),
    ] {
        // Poll 1 is the creation's; the forward's polls come after.
        let env = start(Some(&script(fault, 2, 8))).await;
        let tc = env
            .service
            .create_lora_training_client(MODEL, 4)
            .await
            .unwrap();
        let err = tc
            .forward(vec![datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{fault}: {err}");
        assert!(err.message().contains("could not be decoded"), "{err}");
        assert!(err.message().contains(expect), "{fault}: {err}");
        assert!(!err.message().contains("predates"), "{err}");
        env.server.shutdown().await;
    }
}
