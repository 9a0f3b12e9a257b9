//! Rendering of command results: a titled table for people, pretty JSON for scripts.

use std::io::{IsTerminal as _, Write as _};

use chrono::{DateTime, Utc};
use comfy_table::{ContentArrangement, Table, presets};
use serde::Serialize;

use crate::error::CliError;

/// The `-f/--format` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Format {
    /// A table sized to the terminal (or `COLUMNS`).
    Table,
    /// Pretty-printed JSON (indent 2), stable for scripts.
    Json,
}

/// The width tables wrap to: `COLUMNS` when set, else the terminal's; `None` (one line per
/// row, so `grep` sees whole rows) when stdout is not a terminal.
fn width() -> Option<u16> {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
    {
        return Some(cols);
    }
    if std::io::stdout().is_terminal() {
        return comfy_table::Table::new().width();
    }
    None
}

/// A result that can be shown both ways.
pub(crate) trait Render {
    /// The JSON document.
    fn json(&self) -> serde_json::Value;
    /// The table title, if any.
    fn title(&self) -> Option<String> {
        None
    }
    /// Column headers.
    fn columns(&self) -> Vec<String>;
    /// Rows of cells.
    fn rows(&self) -> Vec<Vec<String>>;
}

/// Prints `out` in `format` to stdout.
pub(crate) fn print(out: &dyn Render, format: Format) -> Result<(), CliError> {
    let text = match format {
        Format::Json => to_json(&out.json())?,
        Format::Table => table(out),
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{text}").map_err(|e| CliError::io("writing the output", &e))
}

/// Pretty JSON text of any serialisable value.
pub(crate) fn to_json(value: &impl Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::new(format!("encoding JSON: {e}")))
}

/// A JSON value of any serialisable value (used by `Render::json`).
pub(crate) fn value(v: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn table(out: &dyn Render) -> String {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_header(out.columns());
    match width() {
        Some(w) => {
            t.set_content_arrangement(ContentArrangement::Dynamic)
                .set_width(w);
        }
        None => {
            t.set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    for row in out.rows() {
        t.add_row(row);
    }
    match out.title() {
        Some(title) => format!("{title}\n{t}"),
        None => t.to_string(),
    }
}

/// `1.5 KB`-style size (1024 steps), as the SDK shows it.
pub(crate) fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    #[allow(clippy::cast_precision_loss)]
    let mut size = bytes as f64;
    for unit in UNITS {
        if size < 1024.0 {
            return format!("{size:.1} {unit}");
        }
        size /= 1024.0;
    }
    format!("{size:.1} EB")
}

/// `Yes` / `No`.
pub(crate) fn yes_no(b: bool) -> String {
    if b { "Yes" } else { "No" }.to_owned()
}

/// Relative time (`3 hours ago`, `in 2 days`), or the date when more than 30 days away.
pub(crate) fn when(t: &DateTime<Utc>) -> String {
    when_from(t, Utc::now())
}

fn when_from(t: &DateTime<Utc>, now: DateTime<Utc>) -> String {
    let future = *t > now;
    let delta = if future { *t - now } else { now - *t };
    let (prefix, suffix) = if future { ("in ", "") } else { ("", " ago") };
    let days = delta.num_days();
    let secs = delta.num_seconds();
    let plural =
        |n: i64, unit: &str| format!("{prefix}{n} {unit}{}{suffix}", if n > 1 { "s" } else { "" });
    if days > 30 {
        t.format("%Y-%m-%d").to_string()
    } else if days > 7 {
        plural(days / 7, "week")
    } else if days > 0 {
        plural(days, "day")
    } else if secs > 3600 {
        plural(secs / 3600, "hour")
    } else if secs > 60 {
        plural(secs / 60, "minute")
    } else if future {
        "in less than a minute".to_owned()
    } else {
        "just now".to_owned()
    }
}

/// A two-column Property/Value result.
#[derive(Debug)]
pub(crate) struct Properties {
    /// Table title.
    pub title: Option<String>,
    /// Rows.
    pub rows: Vec<(String, String)>,
    /// The JSON document.
    pub json: serde_json::Value,
}

impl Render for Properties {
    fn json(&self) -> serde_json::Value {
        self.json.clone()
    }
    fn title(&self) -> Option<String> {
        self.title.clone()
    }
    fn columns(&self) -> Vec<String> {
        vec!["Property".into(), "Value".into()]
    }
    fn rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|(k, v)| vec![k.clone(), v.clone()])
            .collect()
    }
}

/// "N things (M more not shown, use --limit to see more)".
pub(crate) fn count_title(count: usize, noun: &str, nouns: &str, total: Option<u64>) -> String {
    let mut title = if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {nouns}")
    };
    if let Some(total) = total {
        let shown = count as u64;
        if total > shown {
            let more = total - shown;
            title.push_str(&format!(
                " ({more} more not shown, use --limit to see more)"
            ));
        }
    }
    title
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_read_like_the_sdk() {
        assert_eq!(size(10), "10 B");
        assert_eq!(size(1536), "1.5 KB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MB");
        let now = Utc::now();
        assert_eq!(when_from(&now, now), "just now");
        assert_eq!(
            when_from(&(now - chrono::Duration::hours(3)), now),
            "3 hours ago"
        );
        assert_eq!(
            when_from(&(now + chrono::Duration::days(2)), now),
            "in 2 days"
        );
        assert_eq!(
            when_from(&(now - chrono::Duration::days(9)), now),
            "1 week ago"
        );
    }
}
