//! Decoders reserve no more than their input justifies: a counting allocator records the
//! largest single allocation while each hostile input is decoded.
//!
//! One test function only: the allocator is process-wide and tests run in parallel.

// A counting `GlobalAlloc` needs `unsafe`; it only forwards to `System`.
#![allow(unsafe_code, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tinker_types::{ForwardBackwardOutput, ForwardBackwardRequest, SampleResponse};

struct Largest;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Largest {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as is.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded as is.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Largest = Largest;

/// The largest single allocation made while running `f`.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (usize, T) {
    LARGEST.store(0, Ordering::Relaxed);
    let out = f();
    (LARGEST.load(Ordering::Relaxed), out)
}

/// A 19-byte zstd frame whose header claims 1 TiB of content (1 KiB window), holding one
/// raw block of 5 bytes.
fn lying_zstd_frame() -> Vec<u8> {
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD];
    frame.push(0xC0); // 8-byte content size, not single-segment, no checksum
    frame.push(0x00); // window 1 KiB
    frame.extend_from_slice(&(1u64 << 40).to_le_bytes());
    frame.extend_from_slice(&[(5 << 3) | 1, 0, 0]); // last block, raw, 5 bytes
    frame.extend_from_slice(b"hello");
    frame
}

const MIB: usize = 1 << 20;

#[test]
fn hostile_inputs_allocate_what_their_size_justifies() {
    let frame = lying_zstd_frame();
    assert_eq!(frame.len(), 22);
    let limit = 64 * MIB;

    // zstd: the declared 1 TiB used to reserve the whole 64 MiB limit up front.
    let (largest, result) =
        largest_allocation(|| tinker_types::proto::zstd_decompress(&frame, limit));
    assert!(result.is_err(), "the content size does not match");
    assert!(
        largest < 4 * MIB,
        "zstd_decompress allocated {largest} bytes"
    );
    let (largest, result) =
        largest_allocation(|| ForwardBackwardRequest::decode_proto_zstd(&frame, limit));
    assert!(result.is_err());
    assert!(
        largest < 4 * MIB,
        "decode_proto_zstd allocated {largest} bytes"
    );

    // Protobuf: a fieldless record claiming 2^24 datums (a few bytes) used to build 2^24
    // empty maps (384 MiB); bytes fields and repeated lengths are bounded by the input.
    // ForwardBackwardOutput { loss_fn_outputs: [ArrayRecord { num_datums: 1 << 24 }] }
    let record = [0x18, 0x80, 0x80, 0x80, 0x08]; // field 3 varint 2^24
    let mut msg = vec![0x12, record.len() as u8];
    msg.extend_from_slice(&record);
    let (largest, result) = largest_allocation(|| ForwardBackwardOutput::decode_proto(&msg));
    assert!(result.is_err(), "{result:?}");
    assert!(
        largest < 4 * MIB,
        "fieldless record allocated {largest} bytes"
    );
    for bytes in [&msg[..], &frame[..], &[0x0a, 0xff, 0xff, 0xff, 0x7f][..]] {
        let (largest, _) = largest_allocation(|| SampleResponse::decode_proto(bytes));
        assert!(largest < MIB, "SampleResponse allocated {largest} bytes");
        let (largest, _) = largest_allocation(|| ForwardBackwardRequest::decode_proto(bytes));
        assert!(
            largest < MIB,
            "ForwardBackwardRequest allocated {largest} bytes"
        );
    }

    // JSON top-k: each 5-byte `null` row pads to k cells. 200k null rows and one row of
    // k = 1000 pairs is 1 MiB of JSON that used to allocate 1.6 GB.
    let mut json = String::from("{\"sequences\":[],\"topk_prompt_logprobs\":[");
    json.push('[');
    for i in 0..1000 {
        if i > 0 {
            json.push(',');
        }
        json.push_str("[1,-0.5]");
    }
    json.push(']');
    for _ in 0..200_000 {
        json.push_str(",null");
    }
    json.push_str("]}");
    let (largest, result) =
        largest_allocation(|| tinker_types::json::from_slice::<SampleResponse>(json.as_bytes()));
    let err = result.unwrap_err();
    assert!(err.to_string().contains("cells"), "{err}");
    assert!(largest < 16 * MIB, "top-k JSON allocated {largest} bytes");
}
