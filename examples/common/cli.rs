//! Running the `tinker` command-line tool from an example, against the example's server.
//!
//! Included by the CLI examples with `#[path = "common/cli.rs"] mod cli;`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{BoxError, Connection};

/// The `tinker` binary: `TINKER_CLI` when set, else the one cargo built next to this
/// example (`target/<profile>/tinker`; `cargo xtask examples` builds it).
pub(crate) fn binary() -> Result<PathBuf, BoxError> {
    if let Some(path) = std::env::var_os("TINKER_CLI") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/<name> -> target/<profile>/tinker
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot locate the target folder")?;
    let bin = profile_dir.join(format!("tinker{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        return Err(format!(
            "the tinker CLI is not built at {}: run `cargo build --release -p tinker-cli` (or set TINKER_CLI)",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

/// A `tinker` command aimed at the connection's server. With the embedded server it gets
/// that server's URL and a key in its environment, and a tokenizer search path holding the
/// server's model tokenizers (`<dir>/tinker-local/<name>/`), since they are on no hub.
/// Against a remote service it inherits `TINKER_API_KEY`/`TINKER_BASE_URL`: the key travels
/// in the environment, never on the command line.
pub(crate) fn command(conn: &Connection, scratch: &Path) -> Result<Command, BoxError> {
    let mut cmd = Command::new(binary()?);
    if let Some(server) = conn.local_server() {
        let search = scratch.join("tokenizers");
        for model in tinker::local::engine::builtin_models() {
            let dir = search.join(&model.name);
            std::fs::create_dir_all(&dir)?;
            for entry in std::fs::read_dir(&model.tokenizer_dir)? {
                let entry = entry?;
                if entry.file_type()?.is_file() {
                    std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
                }
            }
        }
        cmd.env("TINKER_BASE_URL", server.url())
            .env("TINKER_API_KEY", "tml-local-example")
            .env("TINKER_TOKENIZER_PATH", &search);
    }
    Ok(cmd)
}

/// Runs `cmd` with `args`, echoing the arguments and the output; fails on a non-zero exit.
pub(crate) fn run(mut cmd: Command, args: &[String]) -> Result<String, BoxError> {
    println!("Running CLI with args: {}", args.join(" "));
    let out = cmd.args(args).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines() {
        println!("  [stderr] {line}");
    }
    if !out.status.success() {
        return Err(format!("tinker exited with {}:\n{stdout}", out.status).into());
    }
    Ok(stdout)
}
