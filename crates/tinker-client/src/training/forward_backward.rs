//! Forward and forward/backward passes: checks, chunking, encoding, submission in the
//! model's turn, and the combination of the chunks' outputs (§6.4).

use std::sync::Arc;

use futures_util::future::try_join_all;
use tinker_transport::{Compression, RequestSpec};
use tinker_types::{
    Datum, ForwardBackwardOutput, ForwardBackwardRequestRef, LossFn, LossFnConfig, ModelInputChunk,
};

use crate::chunk::{ChunkLimits, plan_chunks};
use crate::error::{Error, ErrorKind, Result};
use crate::future::{ApiFuture, submit};
use crate::metrics::{ChunkMetrics, combine_metrics};
use crate::payload::{FromPayload, Payload, RequestType};
use crate::turn::Turn;

use super::*;

/// Bytes per text token in the protobuf request (int32).
const BYTES_PER_TOKEN: u64 = 4;
/// Bytes per CSR index (int64).
const SPARSE_INDEX_BYTES: u64 = 8;
/// Bodies at least this large are encoded on threads of their own (several chunks) and
/// compressed on the blocking pool; smaller ones cost less than the hand-off.
const OFF_EXECUTOR_BYTES: usize = 256 * 1024;

/// The chunks of `data` a plan of [`TrainingClient::prepare_fwd`] names, with their sizes.
pub(super) fn chunk_slices<'a>(
    data: &'a [Datum],
    plan: &[(std::ops::Range<usize>, u64)],
) -> Vec<(&'a [Datum], u64)> {
    plan.iter()
        .map(|(range, bytes)| (&data[range.clone()], *bytes))
        .collect()
}

impl TrainingClient {
    /// A forward pass only: per-datum outputs (e.g. `logprobs`) without gradients.
    ///
    /// `data` is a `Vec<Datum>`, or an `Arc<[Datum]>` for a batch used more than once
    /// (pass a clone of the `Arc`: the batch itself is not copied), or a `&[Datum]` (cloned
    /// once, into the `Arc`).
    pub fn forward(
        &self,
        data: impl Into<Arc<[Datum]>>,
        loss_fn: LossFn,
    ) -> ApiFuture<ForwardBackwardOutput> {
        self.fwd(data.into(), loss_fn, None, true, "TrainingClient.forward")
    }

    /// [`forward`](Self::forward) with a loss configuration.
    pub fn forward_with_config(
        &self,
        data: impl Into<Arc<[Datum]>>,
        loss_fn: LossFn,
        loss_fn_config: LossFnConfig,
    ) -> ApiFuture<ForwardBackwardOutput> {
        self.fwd(
            data.into(),
            loss_fn,
            Some(loss_fn_config),
            true,
            "TrainingClient.forward",
        )
    }

    /// Forward and backward pass: accumulates gradients for the next
    /// [`optim_step`](Self::optim_step). Large batches are split into several requests
    /// (by the server's chunk limits) and the results combined.
    ///
    /// `data` is a `Vec<Datum>`, or an `Arc<[Datum]>` for a batch reused across steps
    /// (pass a clone of the `Arc`: the batch itself is not copied), or a `&[Datum]` (cloned
    /// once, into the `Arc`).
    pub fn forward_backward(
        &self,
        data: impl Into<Arc<[Datum]>>,
        loss_fn: LossFn,
    ) -> ApiFuture<ForwardBackwardOutput> {
        self.fwd(
            data.into(),
            loss_fn,
            None,
            false,
            "TrainingClient.forward_backward",
        )
    }

    /// [`forward_backward`](Self::forward_backward) with a loss configuration (e.g. PPO
    /// clip thresholds).
    pub fn forward_backward_with_config(
        &self,
        data: impl Into<Arc<[Datum]>>,
        loss_fn: LossFn,
        loss_fn_config: LossFnConfig,
    ) -> ApiFuture<ForwardBackwardOutput> {
        self.fwd(
            data.into(),
            loss_fn,
            Some(loss_fn_config),
            false,
            "TrainingClient.forward_backward",
        )
    }

    /// Refuses calls on a closed client, and on one whose request order broke (see
    /// [`crate::turn`]).
    pub(super) fn check_usable(&self) -> Result<()> {
        if self.inner.holder.is_closed() {
            return Err(Error::new(
                ErrorKind::Cancelled,
                "the service client was closed",
            ));
        }
        self.inner.turns.check()
    }

    pub(super) fn fwd(
        &self,
        data: Arc<[Datum]>,
        loss_fn: LossFn,
        config: Option<LossFnConfig>,
        forward_only: bool,
        method: &'static str,
    ) -> ApiFuture<ForwardBackwardOutput> {
        let reserved = self.prepare_fwd(&data, &loss_fn).and_then(|plan| {
            // Encoded before the ids are taken: a request the wire cannot carry holds none.
            self.inner
                .turns
                .reserve_with(plan.len() as u64, |first_seq| {
                    encode_chunks(
                        &self.inner.model_id,
                        first_seq,
                        chunk_slices(&data, &plan),
                        &loss_fn,
                        config.as_ref(),
                        forward_only,
                    )
                })
        });
        let (turn, bodies) = match reserved {
            Ok(r) => r,
            Err(e) => return ApiFuture::failed(e),
        };
        let inner = self.inner.clone();
        let request_type = fwd_request_type(forward_only);
        ApiFuture::spawn_traced(&self.inner.holder, request_type, async move {
            run_fwd(&inner, turn, bodies, request_type, method).await
        })
    }

    /// Validates `data` and plans its chunks: each one's range of `data` and estimated
    /// bytes (nothing is sent, nothing reserved).
    pub(super) fn prepare_fwd(
        &self,
        data: &[Datum],
        loss_fn: &LossFn,
    ) -> Result<Vec<(std::ops::Range<usize>, u64)>> {
        self.check_usable()?;
        if data.is_empty() {
            return Err(Error::invalid(
                "forward/forward_backward needs at least one datum",
            ));
        }
        for (i, d) in data.iter().enumerate() {
            d.check_for(loss_fn)
                .map_err(|e| Error::invalid(format!("datum {i}: {e}")))?;
        }
        let costs: Vec<u64> = data.iter().map(estimate_datum_bytes).collect();
        let cfg = &self.inner.holder.config;
        let limits = ChunkLimits {
            max_len: usize::try_from(cfg.fwdbwd_max_chunk_len).unwrap_or(usize::MAX),
            max_bytes: cfg.fwdbwd_max_chunk_bytes_count,
        };
        Ok(plan_chunks(&costs, limits)
            .into_iter()
            .map(|c| (c.range, c.bytes))
            .collect())
    }
}

pub(super) fn fwd_request_type(forward_only: bool) -> RequestType {
    if forward_only {
        RequestType::Forward
    } else {
        RequestType::ForwardBackward
    }
}

/// Encodes one protobuf body per chunk, with consecutive `seq_id`s from `first_seq`.
///
/// # Errors
/// [`ErrorKind::InvalidInput`] when a chunk cannot be encoded (e.g. a token id beyond the
/// wire's int32).
pub(super) fn encode_chunks(
    model_id: &str,
    first_seq: u64,
    chunks: Vec<(&[Datum], u64)>,
    loss_fn: &LossFn,
    config: Option<&LossFnConfig>,
    forward_only: bool,
) -> Result<Vec<(bytes::Bytes, u64)>> {
    // Encoded from the caller's datums in place: a reused batch is never copied.
    let encode = |i: usize, data: &[Datum], bytes: u64| {
        let req = ForwardBackwardRequestRef {
            model_id,
            seq_id: Some(first_seq + i as u64),
            data,
            loss_fn,
            loss_fn_config: config,
            forward_only,
        };
        Ok((
            bytes::Bytes::from(crate::proto::encode_forward_backward(&req)?),
            bytes,
        ))
    };
    let large = chunks
        .iter()
        .map(|(_, b)| usize::try_from(*b).unwrap_or(usize::MAX))
        .sum::<usize>()
        >= OFF_EXECUTOR_BYTES;
    if chunks.len() < 2 || !large {
        return chunks
            .into_iter()
            .enumerate()
            .map(|(i, (data, bytes))| encode(i, data, bytes))
            .collect();
    }
    // Several large chunks: one scoped thread each, so the cores share the encoding.
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .enumerate()
            .map(|(i, (data, bytes))| scope.spawn(move || encode(i, data, bytes)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::InvalidInput,
                        "encoding a forward_backward chunk panicked",
                    ))
                })
            })
            .collect()
    })
}

/// A chunk's body as sent: zstd-compressed when `compress` (a large one on the blocking
/// pool, started at once so that every chunk compresses in parallel), else as is.
enum ChunkBody {
    Ready(Result<bytes::Bytes>),
    Compressing(tokio::task::JoinHandle<Result<bytes::Bytes>>),
}

impl ChunkBody {
    fn start(body: bytes::Bytes, compress: bool) -> Self {
        if !compress {
            return Self::Ready(Ok(body));
        }
        let large = body.len() >= OFF_EXECUTOR_BYTES;
        let zstd = move || {
            tinker_types::proto::zstd_compress(&body)
                .map(bytes::Bytes::from)
                .map_err(|e| Error::invalid(format!("compressing a forward_backward chunk: {e}")))
        };
        if large {
            Self::Compressing(tokio::task::spawn_blocking(zstd))
        } else {
            Self::Ready(zstd())
        }
    }

    async fn get(self) -> Result<bytes::Bytes> {
        match self {
            Self::Ready(r) => r,
            Self::Compressing(h) => h.await.map_err(|e| {
                Error::new(
                    ErrorKind::Cancelled,
                    format!("compressing a forward_backward chunk stopped: {e}"),
                )
            })?,
        }
    }
}

/// Sends encoded chunks in their turn and polls their results. A chunk the server did not
/// accept loses its `seq_id` (see [`crate::turn`]).
pub(super) async fn run_fwd(
    inner: &Arc<Inner>,
    turn: Turn,
    bodies: Vec<(bytes::Bytes, u64)>,
    request_type: RequestType,
    method: &'static str,
) -> Result<ForwardBackwardOutput> {
    // The first chunk's seq_id (the others follow it).
    crate::observe::spans::record_model_id(&inner.model_id);
    crate::observe::spans::record_seq_id(turn.first() + 1);
    let compress = inner.holder.config.proto_compress_fwdbwd;
    // Compression starts before our turn comes; each chunk is sent once it is ready.
    let bodies: Vec<(ChunkBody, u64)> = bodies
        .into_iter()
        .map(|(b, n)| (ChunkBody::start(b, compress), n))
        .collect();
    turn.wait().await?;
    let submit_one = |body: ChunkBody, bytes: u64| {
        let holder = inner.holder.clone();
        async move {
            let body = body.get().await?;
            let _permit = holder.fwdbwd_budget.acquire(bytes).await;
            submit(&holder, "forward_backward", || {
                let mut spec = RequestSpec::post("/api/v1/forward_backward")
                    .with_protobuf(body.clone())
                    .with_sdk_method(method);
                if compress {
                    spec = spec.with_compression(Compression::ZstdEncoded);
                }
                Ok(spec)
            })
            .await
        }
    };
    // On failure: the offset of the first chunk the server may lack, and the error.
    let submitted: std::result::Result<Vec<_>, (u64, Error)> =
        if inner.holder.config.parallel_fwdbwd_chunks && bodies.len() > 1 {
            // All chunks but the first concurrently, then the first (the SDK's order).
            let mut bodies = bodies.into_iter();
            let (first, first_bytes) = bodies.next().ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, "forward_backward without chunks")
            })?;
            let rest: Result<Vec<_>> = try_join_all(bodies.map(|(b, n)| submit_one(b, n))).await;
            // The first chunk is not sent when another failed: the order breaks at it.
            match rest {
                Ok(rest) => match submit_one(first, first_bytes).await {
                    Ok(first) => {
                        let mut all = vec![first];
                        all.extend(rest);
                        Ok(all)
                    }
                    Err(e) => Err((0, e)),
                },
                Err(e) => Err((0, e)),
            }
        } else {
            let mut all = Vec::new();
            let mut err = None;
            for (i, (b, n)) in bodies.into_iter().enumerate() {
                match submit_one(b, n).await {
                    Ok(f) => all.push(f),
                    Err(e) => {
                        err = Some((i as u64, e));
                        break;
                    }
                }
            }
            err.map_or(Ok(all), Err)
        };
    let submitted = match submitted {
        Ok(s) => {
            turn.sent();
            s
        }
        Err((offset, e)) => {
            turn.lost(offset, method, &e);
            return Err(e);
        }
    };
    let results: Vec<ForwardBackwardOutput> =
        try_join_all(submitted.into_iter().map(|(fut, rt)| {
            inner.poll::<ForwardBackwardOutput>(fut.request_id, request_type, method, rt)
        }))
        .await?;
    combine_outputs(results)
}

/// Concatenates chunk outputs and combines their metrics (§6.4).
pub(crate) fn combine_outputs(
    results: Vec<ForwardBackwardOutput>,
) -> Result<ForwardBackwardOutput> {
    let metrics = {
        let parts: Vec<ChunkMetrics<'_>> = results
            .iter()
            .map(|r| ChunkMetrics {
                metrics: &r.metrics,
                weight: r.loss_fn_outputs.len(),
            })
            .collect();
        combine_metrics(&parts)?
    };
    let loss_fn_output_type = results
        .first()
        .map(|r| r.loss_fn_output_type.clone())
        .unwrap_or_default();
    let loss_fn_outputs = results
        .into_iter()
        .flat_map(|r| r.loss_fn_outputs)
        .collect();
    Ok(ForwardBackwardOutput {
        loss_fn_output_type,
        loss_fn_outputs,
        metrics,
    })
}

impl FromPayload for ForwardBackwardOutput {
    fn from_payload(payload: Payload) -> Result<Self> {
        match payload {
            Payload::Proto(b) => crate::proto::decode_forward_backward_output(b),
            Payload::Json(v) => Err(crate::payload::json_instead_of_proto(
                "ForwardBackwardOutput",
                &v,
            )),
        }
    }
}

/// Estimated protobuf bytes of one datum (§6.4).
pub(crate) fn estimate_datum_bytes(d: &Datum) -> u64 {
    let input: u64 = d
        .model_input
        .chunks
        .iter()
        .map(|c| match c {
            ModelInputChunk::EncodedText(t) => t.tokens.len() as u64 * BYTES_PER_TOKEN,
            ModelInputChunk::Image(i) => i.data.len() as u64,
            ModelInputChunk::ImageAssetPointer(p) => p.location.len() as u64,
            ModelInputChunk::Dmel(m) => m.dmel.len() as u64,
            _ => 0,
        })
        .sum();
    let tensors: u64 = d
        .loss_fn_inputs
        .values()
        .map(|t| {
            let values = t.values().len() as u64 * t.dtype().item_size() as u64;
            let csr = t.csr_indices().map_or(0, |c| {
                (c.crow_indices.len() + c.col_indices.len()) as u64 * SPARSE_INDEX_BYTES
            });
            values + csr
        })
        .sum();
    input + tensors
}
