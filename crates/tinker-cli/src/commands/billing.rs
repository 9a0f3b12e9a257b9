//! `tinker billing usage|checkpoint-storage`: hourly usage rows and current storage, as a
//! table, JSON, or CSV (`--csv PATH`, `-` for stdout).

use std::io::Write as _;

use serde_json::{Map, Value};
use tinker_types::admin::{BillingUsageQuery, CurrentCheckpointStorageUsageQuery};

use crate::connect;
use crate::error::CliError;
use crate::output::{self, Format, Render};

/// `tinker billing …`
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Cmd {
    /// Show hourly billing usage of your organization. STARTING_ON and ENDING_BEFORE are
    /// RFC 3339 times on UTC hour boundaries (e.g. 2026-07-13T00:00:00Z), at most 14 days apart.
    Usage {
        /// Window start (inclusive).
        starting_on: String,
        /// Window end (exclusive).
        ending_before: String,
        /// Write usage rows as CSV to PATH instead of table/JSON output ('-' for stdout).
        #[arg(long = "csv", value_name = "PATH")]
        csv: Option<String>,
        /// Write the per-session metadata as CSV to PATH ('-' for stdout).
        #[arg(long = "sessions-csv", value_name = "PATH")]
        sessions_csv: Option<String>,
    },
    /// Show current checkpoint storage and its projected run rate.
    CheckpointStorage {
        /// Only show storage in this project.
        #[arg(long)]
        project_id: Option<String>,
        /// Write storage rows as CSV to PATH instead of table/JSON output ('-' for stdout).
        #[arg(long = "csv", value_name = "PATH")]
        csv: Option<String>,
    },
}

/// A row with a nested `event_info` object flattened into it.
fn flatten(row: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    if let Value::Object(m) = row {
        for (k, v) in m {
            match (k.as_str(), v) {
                ("event_info", Value::Object(info)) => out.extend(info.clone()),
                _ => {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
    }
    out
}

/// Column order: first row's keys, then keys only later rows carry.
fn columns(rows: &[Map<String, Value>]) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    for r in rows {
        for k in r.keys() {
            if !cols.contains(k) {
                cols.push(k.clone());
            }
        }
    }
    cols
}

fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

struct Rows {
    title: String,
    rows: Vec<Map<String, Value>>,
    json: Value,
}

impl Render for Rows {
    fn json(&self) -> Value {
        self.json.clone()
    }
    fn title(&self) -> Option<String> {
        Some(self.title.clone())
    }
    fn columns(&self) -> Vec<String> {
        columns(&self.rows)
    }
    fn rows(&self) -> Vec<Vec<String>> {
        let cols = columns(&self.rows);
        self.rows
            .iter()
            .map(|r| cols.iter().map(|c| cell(r.get(c))).collect())
            .collect()
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Writes rows as CSV to `path` (`-` = stdout).
fn write_csv(rows: &[Map<String, Value>], path: &str) -> Result<(), CliError> {
    let cols = columns(rows);
    let mut text = cols
        .iter()
        .map(|c| csv_field(c))
        .collect::<Vec<_>>()
        .join(",");
    text.push_str("\r\n");
    for r in rows {
        let line: Vec<String> = cols.iter().map(|c| csv_field(&cell(r.get(c)))).collect();
        text.push_str(&line.join(","));
        text.push_str("\r\n");
    }
    if path == "-" {
        std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| CliError::io("writing CSV", &e))
    } else {
        std::fs::write(path, text).map_err(|e| CliError::io(&format!("writing {path}"), &e))?;
        eprintln!("Wrote {} row(s) to {path}", rows.len());
        Ok(())
    }
}

/// Applicable but unknown costs read `null` in the table (CSV leaves them blank).
fn mark_unknown(mut row: Map<String, Value>) -> Map<String, Value> {
    let rate = match row.get("type").and_then(Value::as_str) {
        Some("training" | "sampling_prefill" | "sampling_sample") => {
            "effective_rate_usd_per_million_tokens"
        }
        Some("storage") => "effective_rate_usd_per_gigabyte_month",
        _ => return row,
    };
    for key in ["estimated_cost_usd", rate] {
        if row.get(key).is_none_or(Value::is_null) {
            row.insert(key.into(), "null".into());
        }
    }
    row
}

/// Runs `tinker billing …`.
pub(crate) async fn run(cmd: Cmd, format: Format) -> Result<(), CliError> {
    match cmd {
        Cmd::Usage {
            starting_on,
            ending_before,
            csv,
            sessions_csv,
        } => {
            // The window is checked before anything is sent.
            let query = BillingUsageQuery::parse(&starting_on, &ending_before).map_err(|e| {
                CliError::with(
                    format!("Invalid billing window: {e}"),
                    "Use RFC 3339 times on UTC hour boundaries, at most 14 days apart, e.g. \
                     2026-07-13T00:00:00Z 2026-07-14T00:00:00Z",
                )
            })?;
            let response = connect::admin().await?.get_billing_usage(&query).await?;
            let json = output::value(&response);
            let data: Vec<Map<String, Value>> = json
                .get("data")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(flatten).collect())
                .unwrap_or_default();
            if let Some(path) = &sessions_csv {
                let rows: Vec<Map<String, Value>> = response
                    .sessions
                    .iter()
                    .map(|(id, s)| {
                        let meta = output::value(s)
                            .get("user_metadata")
                            .filter(|m| !m.is_null())
                            .map_or(Value::Null, |m| Value::String(m.to_string()));
                        Map::from_iter([
                            ("session_id".to_owned(), Value::String(id.clone())),
                            ("user_metadata".to_owned(), meta),
                        ])
                    })
                    .collect();
                write_csv(&rows, path)?;
            }
            if let Some(path) = &csv {
                write_csv(&data, path)?;
            }
            if csv.is_none() && sessions_csv.is_none() {
                let title = if data.is_empty() {
                    "No billing usage in this window".to_owned()
                } else {
                    format!("{} hourly usage row(s)", data.len())
                };
                let rows = data.into_iter().map(mark_unknown).collect();
                output::print(&Rows { title, rows, json }, format)?;
            }
            Ok(())
        }
        Cmd::CheckpointStorage { project_id, csv } => {
            let query = project_id.map_or_else(
                CurrentCheckpointStorageUsageQuery::all,
                CurrentCheckpointStorageUsageQuery::project,
            );
            let response = connect::admin()
                .await?
                .get_current_checkpoint_storage_usage(&query)
                .await?;
            let json = output::value(&response);
            let rate = json
                .get("effective_rate_usd_per_gigabyte_month")
                .cloned()
                .unwrap_or(Value::Null);
            let rows: Vec<Map<String, Value>> = json
                .get("data")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            let mut m = Map::new();
                            m.insert("effective_rate_usd_per_gigabyte_month".into(), rate.clone());
                            m.extend(flatten(r));
                            m
                        })
                        .collect()
                })
                .unwrap_or_default();
            if let Some(path) = &csv {
                return write_csv(&rows, path);
            }
            let title = if rows.is_empty() {
                "No active checkpoint storage"
            } else {
                "Current checkpoint storage"
            };
            output::print(
                &Rows {
                    title: title.to_owned(),
                    rows,
                    json,
                },
                format,
            )
        }
    }
}
