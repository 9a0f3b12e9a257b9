//! The custom-loss path (`forward_backward_custom`): a forward pass, the caller's loss
//! function on its logprobs, then a backward pass weighted by the gradients.

use std::collections::BTreeMap;
use std::sync::Arc;

use tinker_types::{Datum, ForwardBackwardOutput, LossFn, TensorData};

use crate::error::{Error, ErrorKind, Result};
use crate::future::ApiFuture;
use crate::payload::RequestType;
use crate::turn::Turn;

use super::forward_backward::{chunk_slices, encode_chunks, run_fwd};
use super::*;

/// What a custom loss function returns (see [`TrainingClient::forward_backward_custom`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct CustomLossOutput {
    /// The loss value (reported as `loss:sum`).
    pub loss: f64,
    /// `dLoss/dlogprobs` for every datum, same length as that datum's logprobs.
    pub gradients: Vec<Vec<f32>>,
    /// Extra metrics (`<name>:<reduction>` keys).
    pub metrics: BTreeMap<String, f64>,
}

impl CustomLossOutput {
    /// A loss with its per-datum gradients.
    pub fn new(loss: f64, gradients: Vec<Vec<f32>>) -> Self {
        Self {
            loss,
            gradients,
            metrics: BTreeMap::new(),
        }
    }

    /// Adds a metric.
    pub fn metric(mut self, key: impl Into<String>, value: f64) -> Self {
        self.metrics.insert(key.into(), value);
        self
    }
}

impl TrainingClient {
    /// Trains on a loss computed by your code (protocol §6.8, client-side form).
    ///
    /// A forward pass gives `loss_fn` every datum's `logprobs` (one value per
    /// `target_tokens` row); it returns the loss, `dLoss/dlogprobs` per datum and metrics.
    /// A `cross_entropy` forward/backward with `weights = −gradient` then applies exactly
    /// that gradient. The result's metrics hold the server's `loss:sum` as
    /// `surrogate_loss:sum`, your metrics, and `loss:sum` = your loss.
    ///
    /// If a step fails before the backward request was sent (the forward pass, or
    /// `loss_fn`), that request's reserved `seq_id` is lost: later training calls fail at
    /// once with [`ErrorKind::SequenceBroken`] instead of waiting forever (see
    /// [`TrainingClient`]).
    ///
    /// `data` is a `Vec<Datum>`, an `Arc<[Datum]>` (a reused batch, not copied) or a
    /// `&[Datum]`.
    pub fn forward_backward_custom<F>(
        &self,
        data: impl Into<Arc<[Datum]>>,
        loss_fn: F,
    ) -> ApiFuture<ForwardBackwardOutput>
    where
        F: FnOnce(&[Datum], &[Vec<f32>]) -> Result<CustomLossOutput> + Send + 'static,
    {
        let data: Arc<[Datum]> = data.into();
        // Forward data: target_tokens plus weights (given, else zeros).
        let forward_data: Result<Vec<Datum>> = data
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let targets = d.loss_fn_inputs.get("target_tokens").ok_or_else(|| {
                    Error::invalid(format!(
                        "datum {i}: forward_backward_custom needs target_tokens"
                    ))
                })?;
                let weights = match d.loss_fn_inputs.get("weights") {
                    Some(w) => w.clone(),
                    None => TensorData::from_f32(vec![0.0; targets.dense_len()], targets.dims())?,
                };
                let mut inputs = tinker_types::LossFnInputs::new();
                inputs.insert("target_tokens".to_owned(), targets.clone());
                inputs.insert("weights".to_owned(), weights);
                let mut fd = d.clone();
                fd.loss_fn_inputs = inputs;
                Ok(fd)
            })
            .collect();
        let reserved = forward_data
            .and_then(|fd| Ok((self.prepare_fwd(&fd, &LossFn::CrossEntropy)?, fd)))
            .and_then(|(plan, fd)| {
                let sizes: Vec<(usize, u64)> = plan.iter().map(|(r, b)| (r.len(), *b)).collect();
                let n = plan.len() as u64;
                let (fwd_turn, bodies) = self.inner.turns.reserve_with(n, |first_seq| {
                    encode_chunks(
                        &self.inner.model_id,
                        first_seq,
                        chunk_slices(&fd, &plan),
                        &LossFn::CrossEntropy,
                        None,
                        true,
                    )
                })?;
                let bwd_turn = self.inner.turns.reserve(n)?;
                Ok((fwd_turn, bwd_turn, bodies, sizes))
            });
        let (fwd_turn, bwd_turn, bodies, sizes) = match reserved {
            Ok(r) => r,
            Err(e) => return ApiFuture::failed(e),
        };
        let inner = self.inner.clone();
        let request_type = RequestType::ForwardBackward;
        ApiFuture::spawn_traced(&self.inner.holder, request_type, async move {
            let custom = CustomRun {
                fwd_turn,
                fwd_bodies: bodies,
                sizes,
                original: data,
            };
            run_custom(&inner, custom, bwd_turn, loss_fn).await
        })
    }
}

/// The forward half of a custom-loss call, reserved and encoded when the call was made.
struct CustomRun {
    fwd_turn: Turn,
    fwd_bodies: Vec<(bytes::Bytes, u64)>,
    /// Datums and estimated bytes of each chunk (the backward pass reuses the split).
    sizes: Vec<(usize, u64)>,
    original: Arc<[Datum]>,
}

const CUSTOM_METHOD: &str = "TrainingClient.forward_backward_custom";

async fn run_custom<F>(
    inner: &Arc<Inner>,
    run: CustomRun,
    bwd_turn: Turn,
    loss_fn: F,
) -> Result<ForwardBackwardOutput>
where
    F: FnOnce(&[Datum], &[Vec<f32>]) -> Result<CustomLossOutput> + Send + 'static,
{
    crate::observe::spans::record_model_id(&inner.model_id);
    crate::observe::spans::record_seq_id(run.fwd_turn.first() + 1);
    // Until the backward request is sent, any failure loses its reserved ids.
    let backward = custom_backward_data(inner, run, loss_fn)
        .await
        .and_then(|(chunks, user)| {
            let bodies = encode_chunks(
                &inner.model_id,
                bwd_turn.first() + 1,
                chunks.iter().map(|(d, b)| (d.as_slice(), *b)).collect(),
                &LossFn::CrossEntropy,
                None,
                false,
            )?;
            Ok((bodies, user))
        });
    let (bodies, user) = match backward {
        Ok(b) => b,
        Err(e) => {
            bwd_turn.lost(0, CUSTOM_METHOD, &e);
            return Err(e);
        }
    };
    let mut out = run_fwd(
        inner,
        bwd_turn,
        bodies,
        RequestType::ForwardBackward,
        CUSTOM_METHOD,
    )
    .await?;
    if let Some(server_loss) = out.metrics.remove("loss:sum") {
        out.metrics
            .insert("surrogate_loss:sum".to_owned(), server_loss);
    }
    out.metrics.extend(user.metrics);
    out.metrics.insert("loss:sum".to_owned(), user.loss);
    Ok(out)
}

/// The forward pass and the user's loss: the backward chunks (weights = −gradient) and
/// the user's output.
async fn custom_backward_data<F>(
    inner: &Arc<Inner>,
    run: CustomRun,
    loss_fn: F,
) -> Result<(Vec<(Vec<Datum>, u64)>, CustomLossOutput)>
where
    F: FnOnce(&[Datum], &[Vec<f32>]) -> Result<CustomLossOutput> + Send + 'static,
{
    let CustomRun {
        fwd_turn,
        fwd_bodies,
        sizes,
        original,
    } = run;
    let fwd = run_fwd(
        inner,
        fwd_turn,
        fwd_bodies,
        RequestType::Forward,
        CUSTOM_METHOD,
    )
    .await?;
    let logprobs: Vec<Vec<f32>> = fwd
        .loss_fn_outputs
        .iter()
        .enumerate()
        .map(|(i, out)| {
            out.get("logprobs")
                .and_then(|t| t.to_dense_f32(0.0))
                .ok_or_else(|| {
                    Error::protocol(format!("forward output {i} has no float32 logprobs"))
                })
        })
        .collect::<Result<_>>()?;
    if logprobs.len() != original.len() {
        return Err(Error::protocol(
            "forward returned a different number of outputs than datums",
        ));
    }
    let data_for_user = original.clone();
    let lp = logprobs.clone();
    let user = tokio::task::spawn_blocking(move || loss_fn(&data_for_user, &lp))
        .await
        .map_err(|e| Error::new(ErrorKind::Cancelled, format!("custom loss panicked: {e}")))??;
    if user.gradients.len() != original.len() {
        return Err(Error::invalid(format!(
            "custom loss returned {} gradients for {} datums",
            user.gradients.len(),
            original.len()
        )));
    }
    for key in user.metrics.keys() {
        crate::metrics::split_metric_key(key)?;
    }
    let mut backward: Vec<Datum> = Vec::with_capacity(original.len());
    for (i, (d, g)) in original.iter().zip(&user.gradients).enumerate() {
        if g.len() != logprobs[i].len() {
            return Err(Error::invalid(format!(
                "datum {i}: gradient has {} values, logprobs {}",
                g.len(),
                logprobs[i].len()
            )));
        }
        let targets = d
            .loss_fn_inputs
            .get("target_tokens")
            .cloned()
            .ok_or_else(|| Error::invalid("missing target_tokens"))?;
        let weights = TensorData::from_f32(g.iter().map(|x| -x).collect(), targets.dims())?;
        let mut inputs = tinker_types::LossFnInputs::new();
        inputs.insert("target_tokens".to_owned(), targets);
        inputs.insert("weights".to_owned(), weights);
        let mut bd = d.clone();
        bd.loss_fn_inputs = inputs;
        backward.push(bd);
    }
    // Reuse the forward chunk boundaries.
    let mut it = backward.into_iter();
    let chunks: Vec<(Vec<Datum>, u64)> = sizes
        .iter()
        .map(|(n, b)| (it.by_ref().take(*n).collect(), *b))
        .collect();
    Ok((chunks, user))
}
