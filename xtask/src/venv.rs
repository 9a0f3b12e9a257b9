//! The cached Python venvs holding official SDKs: the pinned one (`tinker==0.38.0`) and the
//! older versions of the compatibility matrix ([`MATRIX`]).
//!
//! Each lives outside the clone (`~/.cache/tinker-rs/venv-<version>`, or under
//! `$TINKER_RS_CACHE`) so CI creates it once and reuses it.

use std::path::PathBuf;
use std::process::Command;

use crate::cache_dir;

/// The official SDK version whose wire behaviour we reproduce.
pub(crate) const SDK_VERSION: &str = "0.38.0";

/// The official SDK versions the conformance run is repeated with (`cargo xtask test`):
/// the wire of SDK ≤ 0.24 and tinkex (JSON training requests), 0.25 (the last with the
/// checkpoint archive), and the pinned version.
pub(crate) const MATRIX: &[&str] = &["0.15.0", "0.25.0", SDK_VERSION];

/// Returns the pinned SDK venv's `python`, creating it on first use.
pub(crate) fn sdk_python() -> Result<PathBuf, String> {
    sdk_python_for(SDK_VERSION)
}

/// Returns the `python` of the venv of SDK `version`, creating the venv and installing
/// that SDK on first use.
pub(crate) fn sdk_python_for(version: &str) -> Result<PathBuf, String> {
    let venv = cache_dir().join(format!("venv-{version}"));
    let python = venv.join("bin").join("python");
    let marker = venv.join(".tinker-installed");
    if python.exists() && marker.exists() {
        return Ok(python);
    }
    std::fs::create_dir_all(cache_dir()).map_err(|e| format!("creating the cache dir: {e}"))?;
    let host_python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    run(Command::new(host_python).args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        &format!("tinker=={version}"),
    ]))?;
    std::fs::write(&marker, version).map_err(|e| format!("writing {}: {e}", marker.display()))?;
    Ok(python)
}

fn run(command: &mut Command) -> Result<(), String> {
    let status = command
        .status()
        .map_err(|e| format!("could not run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} exited with {status}"))
    }
}
