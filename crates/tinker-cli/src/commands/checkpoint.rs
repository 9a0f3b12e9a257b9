//! `tinker checkpoint list|info|publish|unpublish|set-ttl|delete`.

use std::io::{BufRead as _, Write as _};

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use futures_util::StreamExt as _;
use tinker_client::rest::{AccessScope, Checkpoint, CheckpointType};
use tinker_client::{ListOptions, RestClient};

use crate::connect;
use crate::error::CliError;
use crate::output::{self, Format, Properties, Render};

/// `tinker checkpoint …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Cmd {
    /// List checkpoints (of one run with --run-id, else your most recent).
    List {
        /// Training run ID.
        #[arg(long)]
        run_id: Option<String>,
        /// Most checkpoints to fetch (0 = all; ignored with --run-id).
        #[arg(long, default_value_t = 20)]
        limit: u64,
    },
    /// Show details of a checkpoint (tinker://run-id/weights/0001).
    Info {
        /// The checkpoint's tinker:// path.
        checkpoint_path: String,
    },
    /// Publish a checkpoint (make it publicly accessible).
    Publish {
        /// The checkpoint's tinker:// path.
        checkpoint_path: String,
    },
    /// Unpublish a checkpoint (make it private again).
    Unpublish {
        /// The checkpoint's tinker:// path.
        checkpoint_path: String,
    },
    /// Set or remove the TTL (time-to-live) of a checkpoint.
    SetTtl {
        /// The checkpoint's tinker:// path.
        checkpoint_path: String,
        /// TTL in seconds (1 hour to 10 years).
        #[arg(long)]
        ttl: Option<u64>,
        /// Remove the expiration from the checkpoint.
        #[arg(long)]
        remove: bool,
    },
    /// Delete checkpoints permanently, by path or by run (with filters).
    Delete {
        /// tinker:// paths to delete.
        checkpoint_paths: Vec<String>,
        /// Delete all checkpoints of a training run.
        #[arg(long)]
        run_id: Option<String>,
        /// Filter by type: weights, sampler_weights or external_weights.
        #[arg(long = "type")]
        checkpoint_type: Option<String>,
        /// Filter: created before this UTC date (ISO 8601, e.g. 2024-01-01, 2024-01-01T08:00:00Z).
        #[arg(long)]
        before: Option<String>,
        /// Filter: created after this UTC date (ISO 8601).
        #[arg(long)]
        after: Option<String>,
        /// Skip the confirmation prompt.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// Download a training (tinker://run-id/weights/name) or external weights checkpoint
    /// into a folder named after it.
    Download {
        /// The checkpoint's tinker:// path.
        checkpoint_path: String,
        /// Parent folder of the downloaded checkpoint (default: current folder).
        #[arg(short = 'o', long)]
        output: Option<std::path::PathBuf>,
        /// Replace the folder if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Upload a LoRA checkpoint to the Hugging Face Hub (HF_TOKEN, HF_ENDPOINT).
    PushHf(super::push_hf::PushArgs),
}

const PATH_HINT: &str = "Checkpoint path must be in the format: tinker://run-id/weights/0001";
/// Checkpoints fetched per request of the user-wide listing.
const BATCH: u64 = 1000;
/// Deletions in flight at once.
const DELETE_CONCURRENCY: usize = 32;

/// Refuses anything that is not a well-formed `tinker://` checkpoint path, before sending.
pub(crate) fn check_path(path: &str) -> Result<tinker_types::TinkerPath, CliError> {
    if !path.starts_with("tinker://") {
        return Err(CliError::with(
            format!("Invalid checkpoint path: {path}"),
            PATH_HINT,
        ));
    }
    tinker_types::TinkerPath::parse(path)
        .map_err(|e| CliError::with(format!("Invalid checkpoint path: {e}"), PATH_HINT))
}

fn expires(c: &Checkpoint) -> String {
    c.expires_at
        .as_ref()
        .map_or_else(|| "Never".to_owned(), output::when)
}

fn size(c: &Checkpoint) -> String {
    c.size_bytes.map_or_else(|| "N/A".to_owned(), output::size)
}

struct CheckpointList {
    checkpoints: Vec<Checkpoint>,
    run_id: Option<String>,
    total: Option<u64>,
}

impl Render for CheckpointList {
    fn json(&self) -> serde_json::Value {
        let mut doc = serde_json::Map::new();
        if let Some(r) = &self.run_id {
            doc.insert("run_id".into(), r.clone().into());
        }
        doc.insert("checkpoints".into(), output::value(&self.checkpoints));
        doc.into()
    }
    fn title(&self) -> Option<String> {
        let n = self.checkpoints.len();
        let suffix = self
            .run_id
            .as_ref()
            .map(|r| format!(" for run {r}"))
            .unwrap_or_default();
        if n == 0 {
            return Some(format!("No checkpoints found{suffix}"));
        }
        let base = output::count_title(n, "checkpoint", "checkpoints", None);
        let rest = output::count_title(n, "", "", self.total);
        // The "(N more not shown…)" tail goes after the run suffix, as the SDK prints it.
        let tail = rest
            .split_once(" (")
            .map(|(_, t)| format!(" ({t}"))
            .unwrap_or_default();
        Some(format!("{base}{suffix}{tail}"))
    }
    fn columns(&self) -> Vec<String> {
        [
            "Checkpoint ID",
            "Type",
            "Size",
            "Public",
            "Created",
            "Expires",
            "Path",
        ]
        .map(String::from)
        .to_vec()
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.checkpoints
            .iter()
            .map(|c| {
                vec![
                    c.checkpoint_id.clone(),
                    c.checkpoint_type.as_str().to_owned(),
                    size(c),
                    output::yes_no(c.public),
                    output::when(&c.time),
                    expires(c),
                    c.tinker_path.clone(),
                ]
            })
            .collect()
    }
}

/// Finds a checkpoint in its run's listing (there is no single-checkpoint endpoint).
async fn find(client: &RestClient, path: &str) -> Result<Checkpoint, CliError> {
    let parsed = check_path(path)?;
    client
        .list_checkpoints(&parsed.training_run_id)
        .await?
        .checkpoints
        .into_iter()
        .find(|c| c.tinker_path == path)
        .ok_or_else(|| {
            CliError::with(
                format!("Checkpoint not found: {path}"),
                format!(
                    "Run 'tinker checkpoint list --run-id {}' to see its checkpoints.",
                    parsed.training_run_id
                ),
            )
        })
}

/// Parses an ISO-8601 date or date-time; naive values are UTC.
fn parse_date(value: &str) -> Result<DateTime<Utc>, CliError> {
    let v = value.trim();
    let parsed = DateTime::parse_from_rfc3339(&v.replace('Z', "+00:00"))
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(v, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|d| d.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        });
    parsed.ok_or_else(|| {
        CliError::with(
            format!("Invalid date: {v}"),
            "Use ISO 8601 format: 2024-01-01, 2024-01-01T12:00:00Z",
        )
    })
}

fn type_filter(name: &str) -> Result<CheckpointType, CliError> {
    match name {
        "weights" | "training" => Ok(CheckpointType::Training),
        "sampler_weights" | "sampler" => Ok(CheckpointType::Sampler),
        "external_weights" | "external" => Ok(CheckpointType::External),
        other => Err(CliError::with(
            format!("Invalid checkpoint type: {other}"),
            "Valid types: weights, sampler_weights, external_weights",
        )),
    }
}

/// Prints what will be deleted and asks on stdin; anything but y/yes cancels.
fn confirm(paths: &[String], checkpoints: Option<&[Checkpoint]>) -> Result<bool, CliError> {
    let n = paths.len();
    println!("Will delete {n} checkpoint(s):");
    match checkpoints {
        Some(cs) => {
            for c in cs {
                println!(
                    "  - {} ({}, created {})",
                    c.tinker_path,
                    size(c),
                    output::when(&c.time)
                );
            }
            let total: u64 = cs.iter().filter_map(|c| c.size_bytes).sum();
            println!("\nTotal size: {}", output::size(total));
        }
        None => {
            for p in paths {
                println!("  - {p}");
            }
            println!();
        }
    }
    println!("WARNING: This action is permanent and cannot be undone.");
    print!("Are you sure you want to delete {n} checkpoint(s)? [y/N]: ");
    std::io::stdout()
        .flush()
        .map_err(|e| CliError::io("writing the prompt", &e))?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::io("reading the answer", &e))?;
    Ok(matches!(answer.trim().to_lowercase().as_str(), "y" | "yes"))
}

async fn delete_paths(
    client: &RestClient,
    paths: Vec<String>,
    format: Format,
) -> Result<(), CliError> {
    let results: Vec<(String, Result<(), tinker_client::Error>)> =
        futures_util::stream::iter(paths)
            .map(|p| async move {
                let r = client.delete_checkpoint_from_tinker_path(&p).await;
                (p, r)
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
    let failed: Vec<(String, String)> = results
        .iter()
        .filter_map(|(p, r)| {
            r.as_ref()
                .err()
                .map(|e| (p.clone(), e.message().to_owned()))
        })
        .collect();
    let deleted = results.len() - failed.len();
    match format {
        Format::Json => println!(
            "{}",
            output::to_json(&serde_json::json!({
                "deleted_count": deleted,
                "failed": failed
                    .iter()
                    .map(|(p, e)| serde_json::json!({ "tinker_path": p, "error": e }))
                    .collect::<Vec<_>>(),
            }))?
        ),
        Format::Table => {
            println!("Deleted {deleted} checkpoint(s)");
            if !failed.is_empty() {
                println!("Failed to delete {} checkpoint(s):", failed.len());
                for (p, e) in &failed {
                    println!("  - {p}: {e}");
                }
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(CliError::new(format!(
            "{} deletion(s) failed",
            failed.len()
        )))
    }
}

/// Runs `tinker checkpoint …`.
#[allow(clippy::too_many_lines)]
pub(crate) async fn run(cmd: Cmd, format: Format) -> Result<(), CliError> {
    match cmd {
        Cmd::Download {
            checkpoint_path,
            output,
            force,
        } => super::fetch::run(&checkpoint_path, output, force, format).await,
        Cmd::PushHf(args) => super::push_hf::run(args, format).await,
        Cmd::List { run_id, limit } => {
            let client = connect::rest().await?;
            let out = if let Some(run_id) = run_id {
                let r = client.list_checkpoints(&run_id).await?;
                CheckpointList {
                    checkpoints: r.checkpoints,
                    run_id: Some(run_id),
                    total: None,
                }
            } else {
                let first_size = if limit > 0 { limit.min(BATCH) } else { BATCH };
                let first = client
                    .list_user_checkpoints(ListOptions::default().limit(first_size))
                    .await?;
                let total = first
                    .cursor
                    .as_ref()
                    .map_or(first.checkpoints.len() as u64, |c| c.total_count);
                let mut all = first.checkpoints;
                let target = if limit > 0 { limit.min(total) } else { total };
                while (all.len() as u64) < target {
                    let want = BATCH.min(target - all.len() as u64);
                    let page = client
                        .list_user_checkpoints(
                            ListOptions::default().limit(want).offset(all.len() as u64),
                        )
                        .await?;
                    let got = page.checkpoints.len() as u64;
                    all.extend(page.checkpoints);
                    if got < want {
                        break;
                    }
                }
                CheckpointList {
                    checkpoints: all,
                    run_id: None,
                    total: Some(total),
                }
            };
            output::print(&out, format)
        }
        Cmd::Info { checkpoint_path } => {
            let parsed = check_path(&checkpoint_path)?;
            let client = connect::rest().await?;
            let c = find(&client, &checkpoint_path).await?;
            let run = client
                .get_training_run(&parsed.training_run_id, AccessScope::Owned)
                .await?;
            let mut json = output::value(&c);
            if let Some(obj) = json.as_object_mut() {
                obj.insert("is_lora".into(), run.is_lora.into());
                obj.insert("lora_rank".into(), output::value(&run.lora_rank));
            }
            let mut rows = vec![
                ("Checkpoint ID".into(), c.checkpoint_id.clone()),
                ("Type".into(), c.checkpoint_type.as_str().to_owned()),
                ("Tinker Path".into(), c.tinker_path.clone()),
            ];
            if c.size_bytes.is_some() {
                rows.push(("Size".into(), size(&c)));
            }
            rows.push(("Public".into(), output::yes_no(c.public)));
            rows.push(("Created".into(), output::when(&c.time)));
            rows.push(("Expires".into(), expires(&c)));
            rows.push(("Training Run ID".into(), parsed.training_run_id.clone()));
            rows.push((
                "LoRA".into(),
                match (run.is_lora, run.lora_rank) {
                    (true, Some(r)) if r > 0 => format!("Yes (Rank {r})"),
                    (lora, _) => output::yes_no(lora),
                },
            ));
            let title = Some(format!("Checkpoint: {}", c.checkpoint_id));
            output::print(&Properties { title, rows, json }, format)
        }
        Cmd::Publish { checkpoint_path } => {
            check_path(&checkpoint_path)?;
            let client = connect::rest().await?;
            client
                .publish_checkpoint_from_tinker_path(&checkpoint_path)
                .await?;
            Ok(())
        }
        Cmd::Unpublish { checkpoint_path } => {
            check_path(&checkpoint_path)?;
            let client = connect::rest().await?;
            client
                .unpublish_checkpoint_from_tinker_path(&checkpoint_path)
                .await?;
            Ok(())
        }
        Cmd::SetTtl {
            checkpoint_path,
            ttl,
            remove,
        } => {
            check_path(&checkpoint_path)?;
            let hint = "Use --ttl to set an expiration or --remove to clear it";
            let ttl = match (ttl, remove) {
                (None, false) => {
                    return Err(CliError::with(
                        "Must specify either --ttl <seconds> or --remove",
                        hint,
                    ));
                }
                (Some(_), true) => {
                    return Err(CliError::with(
                        "Cannot specify both --ttl and --remove",
                        hint,
                    ));
                }
                (t, _) => t,
            };
            let client = connect::rest().await?;
            client
                .set_checkpoint_ttl_from_tinker_path(&checkpoint_path, ttl)
                .await?;
            Ok(())
        }
        Cmd::Delete {
            checkpoint_paths,
            run_id,
            checkpoint_type,
            before,
            after,
            yes,
        } => {
            if checkpoint_paths.is_empty() && run_id.is_none() {
                return Err(CliError::with(
                    "Must specify checkpoint paths or --run-id",
                    "Examples:\n  tinker checkpoint delete tinker://run-id/weights/0001\n  \
                     tinker checkpoint delete --run-id <run-id>\n  \
                     tinker checkpoint delete --run-id <run-id> --type weights --before 2024-06-01",
                ));
            }
            if !checkpoint_paths.is_empty() && run_id.is_some() {
                return Err(CliError::with(
                    "Cannot specify both checkpoint paths and --run-id",
                    "Use either explicit paths or --run-id with optional filters",
                ));
            }
            let filtered = checkpoint_type.is_some() || before.is_some() || after.is_some();
            if filtered && run_id.is_none() {
                return Err(CliError::with(
                    "--type, --before, and --after require --run-id",
                    "Example: tinker checkpoint delete --run-id <run-id> --type weights --before 2024-06-01",
                ));
            }
            if let Some(run_id) = run_id {
                // Every filter is checked before anything is sent.
                let kind = checkpoint_type.as_deref().map(type_filter).transpose()?;
                let before = before.as_deref().map(parse_date).transpose()?;
                let after = after.as_deref().map(parse_date).transpose()?;
                let client = connect::rest().await?;
                let matching: Vec<Checkpoint> = client
                    .list_checkpoints(&run_id)
                    .await?
                    .checkpoints
                    .into_iter()
                    .filter(|c| kind.as_ref().is_none_or(|k| &c.checkpoint_type == k))
                    .filter(|c| before.is_none_or(|b| c.time < b))
                    .filter(|c| after.is_none_or(|a| c.time > a))
                    .collect();
                if matching.is_empty() {
                    println!("No checkpoints found for run {run_id} matching filters");
                    return Ok(());
                }
                let paths: Vec<String> = matching.iter().map(|c| c.tinker_path.clone()).collect();
                if !yes && !confirm(&paths, Some(&matching))? {
                    println!("Deletion cancelled.");
                    return Ok(());
                }
                delete_paths(&client, paths, format).await
            } else {
                for p in &checkpoint_paths {
                    check_path(p)?;
                }
                if !yes && !confirm(&checkpoint_paths, None)? {
                    println!("Deletion cancelled.");
                    return Ok(());
                }
                let client = connect::rest().await?;
                delete_paths(&client, checkpoint_paths, format).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_accept_the_sdk_forms_and_refuse_others() {
        let midnight = parse_date("2024-01-01").unwrap();
        assert_eq!(midnight.to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert_eq!(
            parse_date("2024-01-01T08:00:00Z").unwrap().to_rfc3339(),
            "2024-01-01T08:00:00+00:00"
        );
        assert_eq!(
            parse_date("2024-01-01T08:00:00").unwrap().to_rfc3339(),
            "2024-01-01T08:00:00+00:00"
        );
        assert_eq!(
            parse_date("2024-01-01T08:00:00+02:00")
                .unwrap()
                .to_rfc3339(),
            "2024-01-01T06:00:00+00:00"
        );
        assert!(parse_date("yesterday").is_err());
    }
}
