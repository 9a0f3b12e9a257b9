//! Decoding speed of the result of a large `forward_backward`: 1024 datums × 2048 tokens of
//! `logprobs` (float32, 8 MiB), as 7 `ForwardBackwardOutput` bodies of at most 147 datums
//! each, the chunks the client splits that batch into (issue 14, P1).
//!
//! `decode_proto` (from a slice) and `decode_proto_bytes` (from the response's `Bytes`,
//! as the client receives it) are measured against a `memcpy` of the same bytes, the
//! least a decoder that hands out owned per-datum vectors must do.
//! Run with `cargo bench -p tinker-types --bench decode`.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tinker_types::{ForwardBackwardOutput, TensorData};

const DATUMS: usize = 1024;
const TOKENS: usize = 2048;
const CHUNK: usize = 147;

fn chunk_bodies() -> Vec<Bytes> {
    (0..DATUMS)
        .step_by(CHUNK)
        .map(|start| {
            let outputs = (start..(start + CHUNK).min(DATUMS))
                .map(|d| {
                    let logprobs = (0..TOKENS).map(|t| -((d + t) as f32) / 1e4).collect();
                    BTreeMap::from([("logprobs".to_owned(), TensorData::vector_f32(logprobs))])
                })
                .collect();
            let output = ForwardBackwardOutput {
                loss_fn_output_type: "ArrayRecord".to_owned(),
                loss_fn_outputs: outputs,
                metrics: BTreeMap::from([("loss:sum".to_owned(), 1.0)]),
            };
            Bytes::from(output.encode_proto().unwrap())
        })
        .collect()
}

fn decode(c: &mut Criterion) {
    let bodies = chunk_bodies();
    let len: usize = bodies.iter().map(Bytes::len).sum();
    eprintln!(
        "decode: {DATUMS} datums x {TOKENS} logprobs in {} bodies = {len} bytes",
        bodies.len()
    );
    let mut group = c.benchmark_group("forward_backward_output_1024x2048");
    group.throughput(Throughput::Bytes(len as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("decode_proto", |b| {
        b.iter(|| {
            for body in black_box(&bodies) {
                black_box(ForwardBackwardOutput::decode_proto(body).unwrap());
            }
        })
    });
    group.bench_function("decode_proto_bytes", |b| {
        b.iter(|| {
            for body in black_box(&bodies) {
                black_box(ForwardBackwardOutput::decode_proto_bytes(body.clone()).unwrap());
            }
        })
    });
    group.bench_function("memcpy_ceiling", |b| {
        b.iter(|| {
            for body in black_box(&bodies) {
                black_box(body.to_vec());
            }
        })
    });
    group.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
