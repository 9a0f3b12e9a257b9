//! The cached Python venv holding the pinned official SDK (`tinker==0.38.0`).
//!
//! It lives outside the clone (`~/.cache/tinker-rs/venv-<version>`, or under
//! `$TINKER_RS_CACHE`) so CI creates it once and reuses it.

use std::path::PathBuf;
use std::process::Command;

use crate::cache_dir;

/// The official SDK version whose wire behaviour we reproduce.
pub(crate) const SDK_VERSION: &str = "0.38.0";

/// Returns the venv's `python`, creating the venv and installing the SDK on first use.
pub(crate) fn sdk_python() -> Result<PathBuf, String> {
    let venv = cache_dir().join(format!("venv-{SDK_VERSION}"));
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
        &format!("tinker=={SDK_VERSION}"),
    ]))?;
    std::fs::write(&marker, SDK_VERSION)
        .map_err(|e| format!("writing {}: {e}", marker.display()))?;
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
