//! The `tinker-wire` binary's command line, without Python: bad arguments fail with a clear
//! message, and the repository's `docs/compat.md` table parses (the run then stops at the
//! missing interpreter). The wire comparison itself runs in `cargo xtask wire`.

use std::path::Path;
use std::process::{Command, Output};

fn tinker_wire(args: &[&str]) -> Output {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    Command::new(env!("CARGO_BIN_EXE_tinker-wire"))
        .args(args)
        .current_dir(root)
        .output()
        .expect("tinker-wire runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn python_is_required() {
    let out = tinker_wire(&[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--python VENV/bin/python is required"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unknown_flag_is_refused() {
    let out = tinker_wire(&["--python", "python3", "--frobnicate"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--frobnicate"), "{}", stderr(&out));
}

#[test]
fn the_compat_table_parses_and_a_missing_python_is_reported() {
    let out = tinker_wire(&["--python", "/nonexistent/bin/python"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("could not run /nonexistent/bin/python"),
        "the run must get past docs/compat.md to the interpreter: {err}"
    );
}
