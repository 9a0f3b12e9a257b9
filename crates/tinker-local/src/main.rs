//! `tinker-local`: run the local Tinker-compatible server.
// The server binary has no injected clock; it runs on real time.
#![allow(clippy::disallowed_methods)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tinker_local::engine::WeightsDtype;
use tinker_local::{FaultConfig, LocalServer, LocalServerConfig};

/// A Tinker-compatible server that trains and samples a tiny transformer on the CPU.
#[derive(Debug, Parser)]
#[command(name = "tinker-local", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options of `serve`.
#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8790")]
    addr: SocketAddr,
    /// Directory for runs, checkpoints and metadata (created if missing).
    #[arg(long, env = "TINKER_LOCAL_DATA_DIR")]
    data_dir: PathBuf,
    /// Require exactly this API key (default: accept any key starting with `tml-`).
    #[arg(long, env = "TINKER_LOCAL_API_KEY")]
    api_key: Option<String>,
    /// Enable JWT mode: clients exchange their key for server-minted JWTs.
    #[arg(long)]
    jwt: bool,
    /// Fault injection plan, e.g. `seed=7,p5xx=0.1,p429=0.05,latency_ms=5-20` or
    /// `script=asample#1:429;retrieve_future#2:corrupt` or
    /// `pause=sampling:paused_rate_limit:3:too busy` (see `FaultConfig`).
    #[arg(long)]
    faults: Option<String>,
    /// Seconds `retrieve_future` holds a poll open before answering `try_again`.
    #[arg(long, default_value_t = 10.0)]
    long_poll_secs: f64,
    /// Refuse `create_custom_loss` and advertise `custom_loss_server_side: false` (the
    /// Python SDK then runs its custom losses client-side).
    #[arg(long)]
    no_server_side_custom_loss: bool,
    /// Refuse (400) a training request whose `seq_id` is more than this far ahead of the
    /// one its model expects next (the SDK's parallel chunks arrive out of order, so keep
    /// it above the largest number of chunks of one call).
    #[arg(long, default_value_t = 1024)]
    seq_gap_window: u64,
    /// Seconds a training request may wait behind a missing `seq_id` before it fails and
    /// the missing ids are given up.
    #[arg(long, default_value_t = 60.0)]
    seq_gap_wait_secs: f64,
    /// Also serve a Hugging Face model as NAME: `NAME=DIR` with DIR a model folder
    /// (config.json, safetensors, tokenizer.json) or a repo id in the local hub cache.
    /// Repeatable. Llama, Qwen2/2.5, Qwen3 and Mistral are supported.
    #[arg(long = "model", value_name = "NAME=DIR")]
    models: Vec<String>,
    /// How `--model` models hold their base matrices: `f32` (widened when they load;
    /// fastest) or `stored` (the safetensors dtype, e.g. bf16: about half the memory,
    /// widened at each use, slower; sampling slows the most).
    #[arg(long, default_value = "f32", value_parser = ["f32", "stored"])]
    weights_dtype: String,
    /// Compute nothing: answer every training and sampling request at once with results of
    /// the right shapes (for benchmarking clients).
    #[arg(long)]
    zero_compute: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Tinker API until interrupted (Ctrl-C or SIGTERM).
    Serve(ServeArgs),
    /// Write a Hugging Face model folder with random weights (for offline tests and demos).
    TinyModel {
        /// Architecture: llama, qwen2, qwen3 or mistral.
        #[arg(long, default_value = "qwen3")]
        arch: String,
        /// Folder to write (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Use Qwen3-0.6B's real dimensions instead of test-sized ones (about 1.2 GB, bf16).
        #[arg(long)]
        qwen3_0_6b: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TINKER_LOCAL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Cli { command } = Cli::parse();
    let args = match command {
        Command::Serve(args) => args,
        Command::TinyModel {
            arch,
            out,
            qwen3_0_6b,
        } => return tiny_model(&arch, &out, qwen3_0_6b),
    };
    let ServeArgs {
        addr,
        data_dir,
        api_key,
        jwt,
        faults,
        long_poll_secs,
        no_server_side_custom_loss,
        seq_gap_window,
        seq_gap_wait_secs,
        models,
        zero_compute,
        weights_dtype,
    } = args;
    let mut config = LocalServerConfig::new(data_dir);
    config.addr = addr;
    config.api_key = api_key;
    config.jwt = jwt;
    config.custom_loss_server_side = !no_server_side_custom_loss;
    if !(long_poll_secs.is_finite() && (0.0..=40.0).contains(&long_poll_secs)) {
        return fail("--long-poll-secs must be between 0 and 40");
    }
    config.long_poll = std::time::Duration::from_secs_f64(long_poll_secs);
    // A zero wait would fail the SDK's parallel chunks, which arrive out of order on purpose.
    if !(seq_gap_wait_secs.is_finite() && seq_gap_wait_secs > 0.0 && seq_gap_wait_secs <= 86_400.0)
    {
        return fail("--seq-gap-wait-secs must be more than 0 and at most 86400");
    }
    config.seq_gap_wait = std::time::Duration::from_secs_f64(seq_gap_wait_secs);
    config.zero_compute = zero_compute;
    config.weights_dtype = if weights_dtype == "stored" {
        WeightsDtype::Stored
    } else {
        WeightsDtype::F32
    };
    config.seq_gap_window = seq_gap_window;
    for model in models {
        let Some((name, source)) = model.split_once('=') else {
            return fail(&format!("--model {model:?}: expected NAME=DIR"));
        };
        config = config.with_model(name, source);
    }
    if let Some(spec) = faults {
        match FaultConfig::parse(&spec) {
            Ok(f) => config.faults = f,
            Err(e) => return fail(&format!("--faults: {e}")),
        }
    }
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "listening on a non-loopback address");
    }
    let server = match LocalServer::start(config).await {
        Ok(s) => s,
        Err(e) => return fail(&e.to_string()),
    };
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        #[allow(clippy::print_stdout)]
        let written = writeln!(out, "listening on {}", server.url()).and_then(|()| out.flush());
        if written.is_err() {
            tracing::warn!("could not write the listening line to stdout");
        }
    }
    wait_for_signal().await;
    tracing::info!("shutting down");
    server.shutdown().await;
    ExitCode::SUCCESS
}

fn tiny_model(arch: &str, out: &std::path::Path, qwen3_0_6b: bool) -> ExitCode {
    use tinker_local::engine::{HfArch, TinyHfModel};
    let model = if qwen3_0_6b {
        TinyHfModel::qwen3_0_6b()
    } else {
        match HfArch::from_model_type(arch) {
            Some(a) => TinyHfModel::tiny(a),
            None => {
                return fail(&format!(
                    "--arch {arch:?}: use llama, qwen2, qwen3 or mistral"
                ));
            }
        }
    };
    match model.write(out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e.to_string()),
    }
}

fn fail(message: &str) -> ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("tinker-local: {message}");
    }
    ExitCode::from(2)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
