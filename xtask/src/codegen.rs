//! `cargo xtask codegen [--check]`: regenerate committed generated code.
//!
//! Today that is the prost code of the protobuf schema: `proto/tinker_public.proto` is
//! compiled by `protox` (a pure-Rust protobuf compiler, so no `protoc` binary is needed),
//! turned into Rust by `prost-build`, formatted by `rustfmt` and written, with a header, to
//! `crates/tinker-types/src/proto/generated.rs`. With `--check` nothing is written: the code
//! is generated in memory and compared with the committed file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::workspace_root;

/// The schema, relative to the workspace root.
const PROTO_DIR: &str = "proto";
/// The schema file, relative to [`PROTO_DIR`].
const PROTO_FILE: &str = "tinker_public.proto";
/// Where the generated module is committed, relative to the workspace root.
const GENERATED: &str = "crates/tinker-types/src/proto/generated.rs";

const HEADER: &str = "\
// @generated from proto/tinker_public.proto by prost-build (via protox).
// Do not edit: change the .proto and run `cargo xtask codegen`.
// `cargo xtask codegen --check` (part of `cargo xtask test`) fails when this file is stale.

";

/// Runs code generation; with `check`, fails when the committed code is stale.
pub(crate) fn run(check: bool) -> Result<(), String> {
    let root = workspace_root();
    let fresh = generate(&root)?;
    let target = root.join(GENERATED);
    if check {
        let committed = std::fs::read_to_string(&target).unwrap_or_default();
        if committed == fresh {
            println!("codegen: {GENERATED} is up to date");
            return Ok(());
        }
        print_diff(&committed, &fresh);
        return Err(format!(
            "{GENERATED} is stale (it does not match proto/{PROTO_FILE}); run `cargo xtask codegen` and commit the result"
        ));
    }
    std::fs::write(&target, &fresh).map_err(|e| format!("writing {}: {e}", target.display()))?;
    println!("codegen: wrote {GENERATED}");
    Ok(())
}

/// Generates the formatted module text, header included, without touching the tree.
fn generate(root: &Path) -> Result<String, String> {
    let proto_dir = root.join(PROTO_DIR);
    let descriptors = protox::compile([PROTO_FILE], [&proto_dir])
        .map_err(|e| format!("compiling {PROTO_DIR}/{PROTO_FILE}: {e}"))?;

    let out_dir = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
    prost_build::Config::new()
        .out_dir(out_dir.path())
        // Sorted maps: deterministic encoding, so our direct encoder can be proven
        // byte-identical to the prost-struct encoding.
        .btree_map(["."])
        // A forward result's tensors stay slices of the response body until each datum's
        // values are copied out (one copy, not two).
        .bytes([".tinker_public.BatchedTensor.data"])
        .compile_fds(descriptors)
        .map_err(|e| format!("prost-build: {e}"))?;
    let generated_file: PathBuf = out_dir.path().join("tinker_public.rs");
    let code = std::fs::read_to_string(&generated_file)
        .map_err(|e| format!("reading {}: {e}", generated_file.display()))?;

    let formatted = rustfmt(root, &escape_doc_markup(&code))?;
    Ok(format!("{HEADER}{formatted}"))
}

/// Escapes `<` (and a `>` that starts a line) in `///` comments, outside code spans and
/// fenced blocks: the schema's comments are plain text, and rustdoc would read
/// `"<name>:<reduction>"` as HTML tags (an error under `-D warnings`) and a comment
/// starting with `>=` as a block quote.
fn escape_doc_markup(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut in_fence = false;
    for line in code.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let Some(text) = trimmed.strip_prefix("///") else {
            out.push_str(line);
            continue;
        };
        let fence = text.trim_start().starts_with("```");
        in_fence ^= fence;
        if fence || in_fence {
            out.push_str(line);
            continue;
        }
        out.push_str(&line[..line.len() - trimmed.len()]);
        out.push_str("///");
        let mut in_code = false;
        let mut line_start = true;
        for c in text.chars() {
            match c {
                '`' => in_code = !in_code,
                '<' if !in_code => out.push('\\'),
                '>' if line_start => out.push('\\'),
                _ => {}
            }
            line_start &= c == ' ';
            out.push(c);
        }
    }
    out
}

/// Formats `code` with the workspace's rustfmt and `rustfmt.toml`, so `cargo fmt --check`
/// agrees with what we commit.
fn rustfmt(root: &Path, code: &str) -> Result<String, String> {
    let mut child = Command::new("rustfmt")
        .args(["--edition", "2024", "--emit", "stdout", "--config-path"])
        .arg(root.join("rustfmt.toml"))
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not run rustfmt: {e}"))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| "rustfmt has no stdin".to_owned())?;
    let input = code.to_owned();
    // Feed stdin from a thread so a large output cannot deadlock against our write.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for rustfmt: {e}"))?;
    writer
        .join()
        .map_err(|_| "the rustfmt stdin writer panicked".to_owned())?
        .map_err(|e| format!("writing to rustfmt: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "rustfmt failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8(output.stdout).map_err(|e| format!("rustfmt output is not UTF-8: {e}"))
}

/// Prints a unified diff (committed → fresh), capped so a wholesale change stays readable.
fn print_diff(committed: &str, fresh: &str) {
    const MAX_LINES: usize = 80;
    let diff = similar::TextDiff::from_lines(committed, fresh);
    let text = diff
        .unified_diff()
        .context_radius(2)
        .header(&format!("{GENERATED} (committed)"), "(generated)")
        .to_string();
    let total = text.lines().count();
    for line in text.lines().take(MAX_LINES) {
        println!("{line}");
    }
    if total > MAX_LINES {
        println!("... ({} more diff lines)", total - MAX_LINES);
    }
}

#[cfg(test)]
mod tests {
    use super::escape_doc_markup;

    #[test]
    fn doc_markup_is_escaped_outside_code() {
        let code = "    /// Keys are \"<name>:<reduction>\", `Vec<u8>`, a => b.\n    /// >= 1\n    /// ```\n    /// a < b\n    /// ```\n    let x = a < b;\n";
        let want = "    /// Keys are \"\\<name>:\\<reduction>\", `Vec<u8>`, a => b.\n    /// \\>= 1\n    /// ```\n    /// a < b\n    /// ```\n    let x = a < b;\n";
        assert_eq!(escape_doc_markup(code), want);
    }
}
