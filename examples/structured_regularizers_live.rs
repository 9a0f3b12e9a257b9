//! One regularizer pipeline trained client-side and checked server-side on the same batch
//! (port of tinkex's `structured_regularizers_live.exs`).
//!
//! The base loss is the mean NLL of a prompt; the reference is the uniform `log(1/N)` over
//! the `N` target positions and the pair is the logprobs rotated right by one (tinkex's
//! choices). Each step the pipeline's graph runs twice on the same weights: uploaded and
//! evaluated by the server (`forward_custom_loss`, no gradient), and evaluated here on the
//! logprobs of a `forward` with reverse-mode autodiff (`forward_backward_custom_expr`),
//! whose gradient is then applied. The two reports must agree.
//!
//! ```sh
//! cargo run --release --example structured_regularizers_live
//! ```
//!
//! Settings: `TINKER_PROMPT`, `TINKER_STEPS` (3), `TINKER_LR` (5e-3 locally, 1e-4
//! remotely), `TINKER_BASE_MODEL`. Offline without `TINKER_API_KEY` (the remote service
//! must accept server-side custom losses).

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod common;

use std::time::Instant;

use common::{BoxError, Connection};
use tinker::prelude::*;
use tinker::regularizers::{
    Center, EntropyMode, GradientOf, KlDirection, OrthogonalityMode, Penalty, Pipeline,
    PipelineReport, Reduction, Regularizer, Target,
};

fn pipeline() -> Pipeline {
    let kl = |direction| Penalty::kl("reference_logprobs", direction);
    let regs = [
        Regularizer::new(
            "l1",
            0.01,
            Penalty::L1 {
                target: Target::Logprobs,
                reduction: Reduction::Mean,
            },
        ),
        Regularizer::new(
            "l2",
            0.005,
            Penalty::L2 {
                target: Target::Logprobs,
                reduction: Reduction::Mean,
                clip: None,
                center: Center::Mean,
            },
        ),
        Regularizer::new("elastic_net", 0.002, Penalty::elastic_net(0.6)),
        Regularizer::new(
            "entropy",
            0.001,
            Penalty::Entropy {
                mode: EntropyMode::Minimize,
                temperature: 0.5,
                normalize: false,
            },
        ),
        Regularizer::new("kl_forward", 0.01, kl(KlDirection::Forward)),
        Regularizer::new("kl_reverse", 0.01, kl(KlDirection::Reverse)),
        Regularizer::new("kl_symmetric", 0.005, kl(KlDirection::Symmetric)),
        Regularizer::new("consistency", 0.02, Penalty::consistency("pair_logprobs")),
        Regularizer::new(
            "orthogonality",
            0.003,
            Penalty::orthogonality(OrthogonalityMode::Soft),
        ),
        Regularizer::new(
            "gradient_penalty",
            0.001,
            Penalty::gradient_penalty(GradientOf::Sum, 1.0),
        ),
    ];
    regs.into_iter()
        .fold(Pipeline::new("structured_live"), Pipeline::regularizer)
}

/// The datum with tinkex's reference (uniform over the positions) and pair (logprobs
/// rotated right by one) fields, from the current logprobs.
fn with_fields(datum: &Datum, logprobs: &[f32]) -> Datum {
    let n = logprobs.len();
    let mut pair = logprobs.to_vec();
    pair.rotate_right(1);
    let mut d = datum.clone();
    d.loss_fn_inputs.insert(
        "reference_logprobs".to_owned(),
        TensorData::vector_f32(vec![(1.0 / n as f32).ln(); n]),
    );
    d.loss_fn_inputs
        .insert("pair_logprobs".to_owned(), TensorData::vector_f32(pair));
    d
}

/// The largest difference between two reports, relative to each value's size.
fn difference(a: &PipelineReport, b: &PipelineReport) -> f64 {
    let rel = |x: f64, y: f64| (x - y).abs() / (1.0 + x.abs().max(y.abs()));
    let mut worst = rel(a.loss_total, b.loss_total)
        .max(rel(a.base.value, b.base.value))
        .max(rel(
            a.total_grad_norm.unwrap_or(0.0),
            b.total_grad_norm.unwrap_or(0.0),
        ));
    for (x, y) in a.regularizers.iter().zip(&b.regularizers) {
        worst = worst
            .max(rel(x.value, y.value))
            .max(rel(x.grad_norm.unwrap_or(0.0), y.grad_norm.unwrap_or(0.0)));
    }
    worst
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let conn = Connection::from_process_env().await?;
    let model = conn.base_model("meta-llama/Llama-3.1-8B");
    let prompt: String = conn.setting(
        "TINKER_PROMPT",
        "The quick brown fox jumps over the lazy dog.".to_owned(),
    );
    let steps: u32 = conn.setting("TINKER_STEPS", 3);
    let lr: f64 = conn.setting("TINKER_LR", if conn.remote { 1e-4 } else { 5e-3 });

    let training = conn.service.create_lora_training_client(&model, 16).await?;
    let tokenizer = training.get_tokenizer().await?;
    let datum = common::datum(&tokenizer, &prompt, "")?;

    let loss = pipeline().build()?;
    println!(
        "Pipeline {:?}: base mean NLL + {} regularizers, one graph of {} nodes",
        loss.custom_loss().name(),
        loss.regularizer_names().len(),
        loss.custom_loss().graph().nodes.len()
    );
    let started = Instant::now();
    let handle = conn.service.create_custom_loss(loss.custom_loss()).await?;
    println!("Uploaded as loss_id {}\n", handle.loss_id());

    let mut totals = Vec::new();
    for step in 1..=steps {
        // The fields depend on the current logprobs (pair = rotated logprobs).
        let fwd = training
            .forward(vec![datum.clone()], LossFn::CrossEntropy)
            .await?;
        let lp = fwd.loss_fn_outputs[0]["logprobs"]
            .to_dense_f32(0.0)
            .ok_or("forward returned no float logprobs")?;
        let batch = vec![with_fields(&datum, &lp)];

        let server = training.forward_custom_loss(batch.clone(), &handle).await?;
        let server_report = loss.report(&server.metrics)?;
        let client = training
            .forward_backward_custom_expr(batch, loss.custom_loss())
            .await?;
        let client_report = loss.report(&client.metrics)?;
        training
            .optim_step(AdamParams::with_learning_rate(lr))
            .await?;

        let diff = difference(&server_report, &client_report);
        if step == 1 {
            println!("=== Step 1, evaluated by the server ===\n{server_report}\n");
            println!(
                "=== Step 1, evaluated by the client (gradient applied) ===\n{client_report}\n"
            );
        }
        println!(
            "step {step}/{steps}: loss_total {:.6} (server) vs {:.6} (client), base NLL {:.6}, \
             perplexity {:.2}, largest relative difference {diff:.1e}",
            server_report.loss_total,
            client_report.loss_total,
            client_report.base.value,
            client_report.base.value.exp()
        );
        if diff > 1e-4 {
            return Err(format!("client and server disagree at step {step} ({diff:e})").into());
        }
        totals.push(client_report.loss_total);
    }
    println!("Completed in {} ms", started.elapsed().as_millis());
    if let (Some(first), Some(last)) = (totals.first(), totals.last())
        && steps > 1
        && last >= first
    {
        return Err(format!("the regularized loss did not fall: {totals:?}").into());
    }
    conn.close().await
}
