//! `cargo xtask fixtures`: regenerate the golden fixtures written by the official SDK.
//!
//! Runs every `scripts/fixtures/*.py` (in name order) with the python of the cached venv
//! holding the pinned SDK, creating that venv first if needed. The scripts write into
//! `crates/*/tests/fixtures/`; the results are committed, so `cargo xtask test` never needs
//! the venv.

use std::process::Command;

use crate::workspace_root;

/// Runs every fixture script; stops at the first failure.
pub(crate) fn run() -> Result<(), String> {
    let root = workspace_root();
    let dir = root.join("scripts").join("fixtures");
    let mut scripts: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("reading {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "py"))
        .collect();
    scripts.sort();
    if scripts.is_empty() {
        return Err(format!("no fixture scripts in {}", dir.display()));
    }
    let python = crate::venv::sdk_python()?;
    for script in &scripts {
        println!("fixtures: running {}", script.display());
        let status = Command::new(&python)
            .arg(script)
            .current_dir(&root)
            .status()
            .map_err(|e| format!("could not run {}: {e}", python.display()))?;
        if !status.success() {
            return Err(format!("{} exited with {status}", script.display()));
        }
    }
    println!(
        "fixtures: {} script(s) ran; review and commit the changes",
        scripts.len()
    );
    Ok(())
}
