//! The machine-readable table of deliberate differences in `docs/compat.md` (the rows
//! between the `compat-table` markers).

/// What a row allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Allowance {
    /// Both send header `name`; the values may differ.
    HeaderValue,
    /// The SDK sends header `name`; tinker-rs may leave it out.
    HeaderAbsentRust,
    /// tinker-rs sends header `name`; the SDK does not.
    HeaderAbsentPython,
    /// Header `name`'s values differ only in a prefix: tinker-rs's starts with this one.
    HeaderPrefix(String),
    /// The SDK sends request `name` (`METHOD path`); tinker-rs does not.
    RequestAbsentRust,
}

/// One row: a difference kind and the header or request it applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Row {
    /// What differs.
    pub(crate) allowance: Allowance,
    /// Lower-case header name, or `METHOD path` for a request.
    pub(crate) name: String,
}

impl Row {
    /// The stable key of the row, as the report prints it.
    pub(crate) fn key(&self) -> String {
        let kind = match &self.allowance {
            Allowance::HeaderValue => "header-value",
            Allowance::HeaderAbsentRust => "header-absent-rust",
            Allowance::HeaderAbsentPython => "header-absent-python",
            Allowance::HeaderPrefix(_) => "header-prefix",
            Allowance::RequestAbsentRust => "request-absent-rust",
        };
        format!("{kind} {}", self.name)
    }
}

const BEGIN: &str = "<!-- compat-table:begin -->";
const END: &str = "<!-- compat-table:end -->";

/// Parses the table of `markdown`; an unknown kind or a malformed row is an error (a typo
/// must not silently allow nothing).
pub(crate) fn parse(markdown: &str) -> Result<Vec<Row>, String> {
    let start = markdown
        .find(BEGIN)
        .ok_or("docs/compat.md has no compat-table:begin marker")?;
    let end = markdown
        .find(END)
        .ok_or("docs/compat.md has no compat-table:end marker")?;
    let table = markdown
        .get(start + BEGIN.len()..end)
        .ok_or("compat-table markers out of order")?;
    let mut rows = Vec::new();
    for line in table.lines().map(str::trim).filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        if cells.first() == Some(&"kind") || cells.iter().all(|c| c.chars().all(|ch| ch == '-')) {
            continue;
        }
        let [kind, name, detail, _reason] = cells.as_slice() else {
            return Err(format!("compat table row without 4 cells: {line}"));
        };
        let allowance = match *kind {
            "header-value" => Allowance::HeaderValue,
            "header-absent-rust" => Allowance::HeaderAbsentRust,
            "header-absent-python" => Allowance::HeaderAbsentPython,
            "header-prefix" => Allowance::HeaderPrefix((*detail).to_owned()),
            "request-absent-rust" => Allowance::RequestAbsentRust,
            other => {
                return Err(format!(
                    "unknown kind {other:?} in compat table row: {line}"
                ));
            }
        };
        rows.push(Row {
            allowance,
            name: (*name).to_owned(),
        });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_committed_table() {
        let md = include_str!("../../../../../docs/compat.md");
        let rows = parse(md).unwrap();
        assert!(rows.iter().any(|r| r.key() == "header-value user-agent"));
        assert!(
            rows.iter()
                .any(|r| r.allowance == Allowance::HeaderPrefix("tinker-rs-retry-".to_owned()))
        );
    }

    #[test]
    fn refuses_unknown_kinds() {
        let md = format!(
            "{BEGIN}\n| kind | name | detail | reason |\n|---|---|---|---|\n| header-vaule | a | - | typo |\n{END}"
        );
        assert!(parse(&md).unwrap_err().contains("unknown kind"));
    }
}
