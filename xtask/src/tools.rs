//! Cargo tools the xtask commands run (cargo-deny, cargo-fuzz), installed once into the
//! tool cache (`~/.cache/tinker-rs/tools`) when they are not on PATH.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::cache_dir;

/// The cache folder whose `bin/` holds installed tools.
pub(crate) fn tools_dir() -> PathBuf {
    cache_dir().join("tools")
}

/// The program to run for `name`: the one on PATH, else the cached one, installed at
/// `version` first if it is missing.
pub(crate) fn ensure(name: &str, version: &str) -> Result<OsString, String> {
    let on_path = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if on_path {
        return Ok(name.into());
    }
    let tools = tools_dir();
    let bin = tools.join("bin").join(name);
    if !bin.exists() {
        println!("installing {name} {version} into {}", tools.display());
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["install", "--locked", name, "--version", version])
            .arg("--root")
            .arg(&tools)
            .status()
            .map_err(|e| format!("could not run cargo install: {e}"))?;
        if !status.success() {
            return Err(format!("installing {name} failed"));
        }
    }
    Ok(bin.into_os_string())
}
