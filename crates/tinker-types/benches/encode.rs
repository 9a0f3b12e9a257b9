//! Encoding speed of a large `ForwardBackwardRequest`: 1024 cross-entropy datums of 2048
//! tokens each (≈33.6 MB of protobuf), the batch the issue sets as the memory-speed bar.
//!
//! Two encoders side by side, each reported in bytes of output per second:
//! * `direct`: `ForwardBackwardRequest::encode_proto`, one pre-sized buffer, packed arrays
//!   bulk-copied from their slices;
//! * `prost_structs`: the naive path, building the prost messages (copying every array
//!   into its own `Vec<u8>`) and then letting prost encode them.
//!
//! A `memcpy` of the same number of bytes is the ceiling both are measured against.
//! Run with `cargo bench -p tinker-types --bench encode`.
#![allow(missing_docs, clippy::unwrap_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message;
use tinker_types::proto::wire;
use tinker_types::{Datum, ForwardBackwardRequest, LossFn, ModelInput, TensorData};

const DATUMS: usize = 1024;
const TOKENS: usize = 2048;

fn cross_entropy_batch() -> ForwardBackwardRequest {
    let data = (0..DATUMS)
        .map(|d| {
            // Token ids spread over a 150k vocabulary; the values do not affect the speed.
            let tokens: Vec<u32> = (0..TOKENS)
                .map(|t| ((d * 7919 + t * 104_729) % 151_936) as u32)
                .collect();
            let targets: Vec<i64> = tokens[1..]
                .iter()
                .chain(&tokens[..1])
                .map(|&t| i64::from(t))
                .collect();
            let weights: Vec<f32> = (0..TOKENS)
                .map(|t| if t < 64 { 0.0 } else { 1.0 })
                .collect();
            let inputs = BTreeMap::from([
                ("target_tokens".to_owned(), TensorData::vector_i64(targets)),
                ("weights".to_owned(), TensorData::vector_f32(weights)),
            ]);
            Datum::new(ModelInput::from_tokens(&tokens), inputs)
        })
        .collect();
    ForwardBackwardRequest::new("bench:train:0", 1, data, LossFn::CrossEntropy)
}

fn encode(c: &mut Criterion) {
    let request = cross_entropy_batch();
    let len = request.encoded_proto_len().unwrap();
    assert_eq!(
        request.encode_proto().unwrap(),
        wire::ForwardBackwardRequest::try_from(&request)
            .unwrap()
            .encode_to_vec(),
        "both encoders write the same bytes"
    );
    eprintln!(
        "encode: {DATUMS} datums x {TOKENS} tokens = {len} bytes ({:.1} MB)",
        len as f64 / 1e6
    );

    let mut group = c.benchmark_group("forward_backward_request_1024x2048");
    group.throughput(Throughput::Bytes(len as u64));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    group.bench_function("direct", |b| {
        b.iter(|| black_box(black_box(&request).encode_proto().unwrap()))
    });
    group.bench_function("prost_structs", |b| {
        b.iter(|| {
            let msg = wire::ForwardBackwardRequest::try_from(black_box(&request)).unwrap();
            black_box(msg.encode_to_vec())
        })
    });
    let source = vec![1u8; len];
    group.bench_function("memcpy_ceiling", |b| {
        b.iter(|| black_box(black_box(&source).clone()))
    });
    group.finish();
}

criterion_group!(benches, encode);
criterion_main!(benches);
