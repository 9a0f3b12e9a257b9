//! `cargo xtask codegen [--check]`: regenerate committed generated code.

/// Runs code generation; with `check`, fails when the committed code is stale.
pub(crate) fn run(check: bool) -> Result<(), String> {
    // TODO(issue 2): generate the prost code from proto/tinker_public.proto.
    let _ = check;
    Err("codegen is not implemented yet".to_owned())
}
