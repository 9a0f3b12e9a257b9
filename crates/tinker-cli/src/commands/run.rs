//! `tinker run list|info`.

use tinker_client::ListOptions;
use tinker_client::rest::{AccessScope, TrainingRun};

use crate::connect;
use crate::error::CliError;
use crate::output::{self, Format, Properties, Render};

/// `tinker run …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Cmd {
    /// List training runs.
    List {
        /// Most runs to fetch (0 = all).
        #[arg(long, default_value_t = 20)]
        limit: u64,
        /// Columns to show, comma-separated: id, model, owner, lora, updated, status,
        /// checkpoint, checkpoint_time.
        #[arg(short = 'c', long)]
        columns: Option<String>,
    },
    /// Show details of a training run.
    Info {
        /// The run id.
        run_id: String,
    },
}

/// Runs fetched per request.
const BATCH: u64 = 100;

/// `(name, header)` of every column, in the SDK's order.
const COLUMNS: [(&str, &str); 8] = [
    ("id", "Run ID"),
    ("model", "Base Model"),
    ("owner", "Owner"),
    ("lora", "LoRA"),
    ("updated", "Last Update"),
    ("status", "Status"),
    ("checkpoint", "Last Checkpoint"),
    ("checkpoint_time", "Checkpoint Time"),
];
const DEFAULT_COLUMNS: [&str; 5] = ["id", "model", "lora", "updated", "status"];

fn cell(run: &TrainingRun, column: &str) -> String {
    match column {
        "id" => run.training_run_id.clone(),
        "model" => run.base_model.clone(),
        "owner" => run.model_owner.clone(),
        "lora" => match (run.is_lora, run.lora_rank) {
            (true, Some(r)) if r > 0 => format!("Rank {r}"),
            (lora, _) => output::yes_no(lora),
        },
        "updated" => output::when(&run.last_request_time),
        "status" => status(run),
        "checkpoint" => run
            .last_checkpoint
            .as_ref()
            .map_or_else(|| "None".to_owned(), |c| c.checkpoint_id.clone()),
        "checkpoint_time" => run
            .last_checkpoint
            .as_ref()
            .map_or_else(|| "N/A".to_owned(), |c| output::when(&c.time)),
        _ => String::new(),
    }
}

fn status(run: &TrainingRun) -> String {
    if run.corrupted { "Failed" } else { "OK" }.to_owned()
}

/// Parses `--columns`, refusing unknown names before anything is sent.
fn parse_columns(spec: Option<&str>) -> Result<Vec<String>, CliError> {
    let Some(spec) = spec else {
        return Ok(DEFAULT_COLUMNS.iter().map(|c| (*c).to_owned()).collect());
    };
    let cols: Vec<String> = spec.split(',').map(|c| c.trim().to_owned()).collect();
    let unknown: Vec<&str> = cols
        .iter()
        .filter(|c| !COLUMNS.iter().any(|(n, _)| n == c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        let all: Vec<&str> = COLUMNS.iter().map(|(n, _)| *n).collect();
        return Err(CliError::with(
            format!(
                "Invalid value for '--columns': Unknown column(s): {}",
                unknown.join(", ")
            ),
            format!("Available: {}", all.join(", ")),
        ));
    }
    Ok(cols)
}

struct RunList {
    runs: Vec<TrainingRun>,
    columns: Vec<String>,
    total: u64,
}

impl Render for RunList {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "runs": output::value(&self.runs) })
    }
    fn title(&self) -> Option<String> {
        if self.runs.is_empty() {
            return Some("No training runs found".into());
        }
        Some(output::count_title(
            self.runs.len(),
            "training run",
            "training runs",
            Some(self.total),
        ))
    }
    fn columns(&self) -> Vec<String> {
        self.columns
            .iter()
            .filter_map(|c| {
                COLUMNS
                    .iter()
                    .find(|(n, _)| n == c)
                    .map(|(_, h)| (*h).to_owned())
            })
            .collect()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.runs
            .iter()
            .map(|r| self.columns.iter().map(|c| cell(r, c)).collect())
            .collect()
    }
}

/// Property rows of a run, shared with nothing else but kept apart for readability.
fn run_properties(run: &TrainingRun) -> Vec<(String, String)> {
    let mut rows = vec![
        ("Run ID".into(), run.training_run_id.clone()),
        ("Base Model".into(), run.base_model.clone()),
        ("Owner".into(), run.model_owner.clone()),
        (
            "LoRA".into(),
            match (run.is_lora, run.lora_rank) {
                (true, Some(r)) if r > 0 => format!("Yes (Rank {r})"),
                (lora, _) => output::yes_no(lora),
            },
        ),
        ("Last Update".into(), output::when(&run.last_request_time)),
        ("Status".into(), status(run)),
    ];
    for (label, ckpt) in [
        ("Last Training Checkpoint", &run.last_checkpoint),
        ("Last Sampler Checkpoint", &run.last_sampler_checkpoint),
    ] {
        if let Some(c) = ckpt {
            rows.push((label.into(), c.checkpoint_id.clone()));
            rows.push(("  - Time".into(), output::when(&c.time)));
            rows.push(("  - Path".into(), c.tinker_path.clone()));
        }
    }
    if let Some(meta) = run.user_metadata.as_ref().filter(|m| !m.is_empty()) {
        rows.push(("Metadata".into(), String::new()));
        for (k, v) in meta {
            rows.push((format!("  - {k}"), v.clone()));
        }
    }
    rows
}

/// Runs `tinker run …`.
pub(crate) async fn run(cmd: Cmd, format: Format) -> Result<(), CliError> {
    match cmd {
        Cmd::List { limit, columns } => {
            let columns = parse_columns(columns.as_deref())?;
            let client = connect::rest().await?;
            let first_size = if limit > 0 { limit.min(BATCH) } else { BATCH };
            let first = client
                .list_training_runs(ListOptions::default().limit(first_size))
                .await?;
            let total = first.cursor.total_count;
            let mut runs = first.training_runs;
            let target = if limit > 0 { limit.min(total) } else { total };
            while (runs.len() as u64) < target {
                let want = BATCH.min(target - runs.len() as u64);
                let page = client
                    .list_training_runs(
                        ListOptions::default().limit(want).offset(runs.len() as u64),
                    )
                    .await?;
                let got = page.training_runs.len() as u64;
                runs.extend(page.training_runs);
                if got < want {
                    break;
                }
            }
            output::print(
                &RunList {
                    runs,
                    columns,
                    total,
                },
                format,
            )
        }
        Cmd::Info { run_id } => {
            let client = connect::rest().await?;
            let run = client.get_training_run(&run_id, AccessScope::Owned).await?;
            output::print(
                &Properties {
                    title: Some(format!("Training Run: {}", run.training_run_id)),
                    rows: run_properties(&run),
                    json: output::value(&run),
                },
                format,
            )
        }
    }
}
