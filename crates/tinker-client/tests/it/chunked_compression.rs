//! `forward_backward` over several large chunks (encoded on threads of their own and
//! zstd-compressed on the blocking pool, each sent when ready) gives the same results as
//! uncompressed bodies and as the chunks sent one call at a time; retried chunk submissions
//! are applied once.

use tinker_testkit::local as common;

use common::{MODEL, datum, start_with};
use tinker_client::{TrainingClient, TrainingClientOptions};
use tinker_types::{AdamParams, Datum, LossFn};

/// 1030 datums of 18 tokens: two chunks (the server's limit is 1024 datums); the first
/// encodes to about 310 KB (an input id, an int64 target and an f32 weight per token),
/// over the client's 256 KiB threshold for encoding and compressing off the executor.
fn big_batch() -> Vec<Datum> {
    (0..1030u32)
        .map(|i| {
            let tokens: Vec<u32> = (0..18u32).map(|j| 1 + (i * 7 + j * 3) % 97).collect();
            datum(&tokens)
        })
        .collect()
}

async fn seeded(env: &common::Env) -> TrainingClient {
    let mut opts = TrainingClientOptions::rank(4);
    opts.lora.seed = Some(7);
    env.service
        .create_lora_training_client_with(MODEL, opts)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_parallel_chunks_match_plain_and_apply_once() {
    // Compressed bodies, and the second chunk's submission (sent first) fails twice: a 503
    // and a dropped connection.
    let zstd = start_with(
        Some("script=forward_backward#1:503;forward_backward#2:0"),
        |c| c.proto_compress_fwdbwd = true,
    )
    .await;
    let plain = start_with(None, |c| c.proto_compress_fwdbwd = false).await;
    let data = big_batch();

    let mut outs = Vec::new();
    let mut after = Vec::new();
    let mut last_zstd = None;
    for env in [&zstd, &plain] {
        let tc = seeded(env).await;
        let fb = tc.forward_backward(data.clone(), LossFn::CrossEntropy);
        let step = tc.optim_step(AdamParams::with_learning_rate(1e-2));
        let out = fb.await.unwrap();
        step.await.unwrap();
        assert_eq!(out.loss_fn_outputs.len(), data.len());
        after.push(
            tc.forward(data.clone(), LossFn::CrossEntropy)
                .await
                .unwrap(),
        );
        outs.push(out);
        last_zstd.get_or_insert(tc);
    }
    // Same chunks computed by the same model: identical outputs and metrics.
    assert_eq!(outs[0].loss_fn_outputs, outs[1].loss_fn_outputs);
    assert_eq!(outs[0].metrics, outs[1].metrics);
    // One optimizer step each on the same gradients: the retried chunk was applied once
    // (a chunk applied twice, or dropped, changes the gradient and so the loss after).
    assert_eq!(after[0].loss_fn_outputs, after[1].loss_fn_outputs);
    assert_eq!(after[0].metrics, after[1].metrics);

    // The chunks as calls of their own (one chunk each: the single-body path) give the
    // whole call's outputs, in order (`forward` leaves the weights as they are).
    let tc = last_zstd.unwrap();
    let head = tc
        .forward(data[..1024].to_vec(), LossFn::CrossEntropy)
        .await
        .unwrap();
    let tail = tc
        .forward(data[1024..].to_vec(), LossFn::CrossEntropy)
        .await
        .unwrap();
    let mut parts = head.loss_fn_outputs;
    parts.extend(tail.loss_fn_outputs);
    assert_eq!(after[0].loss_fn_outputs, parts);
    zstd.server.shutdown().await;
    plain.server.shutdown().await;
}
