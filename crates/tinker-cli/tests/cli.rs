//! Runs the real `tinker` binary against one in-process tinker-local shared by every test,
//! in both output formats, plus the bad-input paths.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

use tinker_client::ServiceClient;
use tinker_local::{LocalServer, LocalServerConfig};
use tinker_testkit::{Reply, Seen, Server};

const KEY: &str = "tml-cli-test-key-0123456789";
const MODEL: &str = "tinker-local/micro";

struct Fixture {
    url: String,
    run_id: String,
    session_id: String,
    weights: String,
    sampler: String,
    external: String,
    /// Checkpoints the delete tests may remove (not used by any other test).
    doomed: Vec<String>,
    _data: tempfile::TempDir,
}

/// The shared server and its data: a run with a training, a sampler, an external and two
/// spare checkpoints. The server lives on its own thread for the whole test binary.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let data = tempfile::tempdir().unwrap();
                let mut config = LocalServerConfig::new(data.path());
                config.jwt = true;
                let server = LocalServer::start(config).await.unwrap();
                let service = ServiceClient::builder()
                    .base_url(server.url())
                    .api_key(KEY)
                    .telemetry(false)
                    .build()
                    .await
                    .unwrap();
                let tc = service.create_lora_training_client(MODEL, 4).await.unwrap();
                let weights = tc.save_state("final").await.unwrap().path;
                let sampler = tc.save_weights_for_sampler("smp").await.unwrap().path;
                let external = tc.save_weights_external("hf").await.unwrap().path;
                let doomed = vec![
                    tc.save_state("doomed-a").await.unwrap().path,
                    tc.save_state("doomed-b").await.unwrap().path,
                ];
                tx.send(Fixture {
                    url: server.url(),
                    run_id: tc.model_id().to_owned(),
                    session_id: service.session_id().to_owned(),
                    weights,
                    sampler,
                    external,
                    doomed,
                    _data: data,
                })
                .unwrap();
                // Keep the server (and the session) alive for the rest of the binary.
                let _keep = (server, service, tc);
                std::future::pending::<()>().await;
            });
        });
        rx.recv().unwrap()
    })
}

/// A `tinker` command with a clean environment: the test server, `KEY`, and a private
/// HOME (so no real credentials file is read or written).
fn tinker(home: &Path) -> Command {
    let f = fixture();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tinker"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("TINKER_BASE_URL", &f.url)
        .env("TINKER_API_KEY", KEY)
        .env("TINKER_TELEMETRY", "0")
        .current_dir(home)
        .stdin(Stdio::null());
    cmd
}

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stdout.contains(KEY) && !stderr.contains(KEY),
        "the key was printed"
    );
    (out, stdout, stderr)
}

fn ok(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = run(cmd);
    assert!(
        out.status.success(),
        "failed: {cmd:?}\nstdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

fn json(cmd: &mut Command) -> serde_json::Value {
    let stdout = ok(cmd.arg("-f").arg("json"));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Runs a command expected to fail with exit code 1; returns stderr.
fn fails(cmd: &mut Command) -> String {
    let (out, stdout, stderr) = run(cmd);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stderr.lines().any(|l| l.starts_with("Error: ")), "{stderr}");
    stderr
}

#[test]
fn version_and_completions() {
    let h = home();
    assert_eq!(
        ok(tinker(h.path()).arg("version")).trim(),
        format!("tinker {}", env!("CARGO_PKG_VERSION"))
    );
    let script = ok(tinker(h.path()).args(["completions", "bash"]));
    assert!(script.contains("checkpoint") && script.contains("export-trace"));
}

#[test]
fn run_list_and_info_in_both_formats() {
    let f = fixture();
    let h = home();
    let table = ok(tinker(h.path()).args(["run", "list"]));
    assert!(table.contains("training run"), "{table}");
    assert!(
        table.contains("Run ID") && table.contains("Base Model"),
        "{table}"
    );
    // Piped: one line per row, so grep sees the whole run id.
    assert!(table.lines().any(|l| l.contains(&f.run_id)), "{table}");
    // An 80-column terminal (COLUMNS) gets wrapped cells instead of overflowing lines.
    let narrow = ok(tinker(h.path()).env("COLUMNS", "80").args([
        "run",
        "list",
        "-c",
        "id,model,owner,lora,updated,status,checkpoint",
    ]));
    assert!(narrow.lines().all(|l| l.chars().count() <= 80), "{narrow}");
    let doc = json(tinker(h.path()).args(["run", "list", "--limit", "0"]));
    let runs = doc["runs"].as_array().unwrap();
    assert!(
        runs.iter()
            .any(|r| r["training_run_id"] == f.run_id.as_str())
    );

    let cols = ok(tinker(h.path()).args(["run", "list", "-c", "id,owner,checkpoint"]));
    assert!(
        cols.contains("Owner") && cols.contains("Last Checkpoint") && !cols.contains("Base Model")
    );
    let bad = fails(tinker(h.path()).args(["run", "list", "-c", "id,nope"]));
    assert!(bad.contains("nope") && bad.contains("Available"), "{bad}");

    let info = ok(tinker(h.path()).args(["run", "info", &f.run_id]));
    assert!(
        info.contains(&format!("Training Run: {}", f.run_id)) && info.contains("Rank 4"),
        "{info}"
    );
    let doc = json(tinker(h.path()).args(["run", "info", &f.run_id]));
    assert_eq!(doc["training_run_id"], f.run_id.as_str());
    assert_eq!(doc["base_model"], MODEL);

    let missing = fails(tinker(h.path()).args(["run", "info", "no-such-run:train:0"]));
    assert!(missing.contains("not found"), "{missing}");
}

#[test]
fn checkpoint_list_and_info_in_both_formats() {
    let f = fixture();
    let h = home();
    let table = ok(tinker(h.path()).args(["checkpoint", "list", "--run-id", &f.run_id]));
    assert!(table.contains(&format!("for run {}", f.run_id)), "{table}");
    assert!(table.contains("Checkpoint ID"), "{table}");
    let doc = json(tinker(h.path()).args(["checkpoint", "list", "--run-id", &f.run_id]));
    assert_eq!(doc["run_id"], f.run_id.as_str());
    let paths: Vec<&str> = doc["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tinker_path"].as_str().unwrap())
        .collect();
    assert!(paths.contains(&f.weights.as_str()) && paths.contains(&f.sampler.as_str()));

    let doc = json(tinker(h.path()).args(["checkpoint", "list", "--limit", "1"]));
    assert_eq!(doc["checkpoints"].as_array().unwrap().len(), 1);
    let table = ok(tinker(h.path()).args(["checkpoint", "list", "--limit", "1"]));
    assert!(
        table.contains("more not shown, use --limit to see more"),
        "{table}"
    );

    let info = ok(tinker(h.path()).args(["checkpoint", "info", &f.weights]));
    assert!(
        info.contains("Checkpoint: weights/final") && info.contains("Yes (Rank 4)"),
        "{info}"
    );
    let doc = json(tinker(h.path()).args(["checkpoint", "info", &f.weights]));
    assert_eq!(doc["tinker_path"], f.weights.as_str());
    assert_eq!(doc["is_lora"], true);
    assert_eq!(doc["lora_rank"], 4);

    let bad = fails(tinker(h.path()).args(["checkpoint", "info", "run/weights/x"]));
    assert!(
        bad.contains("Invalid checkpoint path") && bad.contains("tinker://run-id/weights/0001")
    );
    let bad = fails(tinker(h.path()).args(["checkpoint", "info", "tinker://only-a-run"]));
    assert!(bad.contains("Invalid checkpoint path"), "{bad}");
    let missing = format!("tinker://{}/weights/never-saved", f.run_id);
    let err = fails(tinker(h.path()).args(["checkpoint", "info", &missing]));
    assert!(
        err.contains("Checkpoint not found") && err.contains("checkpoint list --run-id"),
        "{err}"
    );
}

#[test]
fn publish_unpublish_and_ttl() {
    let f = fixture();
    let h = home();
    let public = |h: &Path| -> bool {
        json(tinker(h).args(["checkpoint", "info", &f.sampler]))["public"]
            .as_bool()
            .unwrap()
    };
    ok(tinker(h.path()).args(["checkpoint", "publish", &f.sampler]));
    assert!(public(h.path()));
    ok(tinker(h.path()).args(["checkpoint", "unpublish", &f.sampler]));
    assert!(!public(h.path()));

    ok(tinker(h.path()).args(["checkpoint", "set-ttl", &f.sampler, "--ttl", "7200"]));
    let doc = json(tinker(h.path()).args(["checkpoint", "info", &f.sampler]));
    assert!(doc["expires_at"].is_string(), "{doc}");
    ok(tinker(h.path()).args(["checkpoint", "set-ttl", &f.sampler, "--remove"]));
    let doc = json(tinker(h.path()).args(["checkpoint", "info", &f.sampler]));
    assert!(
        doc.get("expires_at").is_none_or(serde_json::Value::is_null),
        "{doc}"
    );

    let err = fails(tinker(h.path()).args(["checkpoint", "set-ttl", &f.sampler]));
    assert!(err.contains("--ttl <seconds> or --remove"), "{err}");
    let err = fails(tinker(h.path()).args([
        "checkpoint",
        "set-ttl",
        &f.sampler,
        "--ttl",
        "5",
        "--remove",
    ]));
    assert!(err.contains("Cannot specify both"), "{err}");
    let err = fails(tinker(h.path()).args(["checkpoint", "publish", "weights/x"]));
    assert!(err.contains("Invalid checkpoint path"), "{err}");
}

#[test]
fn delete_by_path_and_by_filters() {
    let f = fixture();
    let h = home();
    // Refused before anything is sent.
    let err = fails(tinker(h.path()).args(["checkpoint", "delete"]));
    assert!(
        err.contains("Must specify checkpoint paths or --run-id"),
        "{err}"
    );
    let err =
        fails(tinker(h.path()).args(["checkpoint", "delete", &f.doomed[0], "--run-id", &f.run_id]));
    assert!(err.contains("Cannot specify both"), "{err}");
    let err =
        fails(tinker(h.path()).args(["checkpoint", "delete", &f.doomed[0], "--type", "weights"]));
    assert!(err.contains("require --run-id"), "{err}");
    let err = fails(tinker(h.path()).args([
        "checkpoint",
        "delete",
        "--run-id",
        &f.run_id,
        "--type",
        "bogus",
        "-y",
    ]));
    assert!(err.contains("Invalid checkpoint type"), "{err}");
    let err = fails(tinker(h.path()).args([
        "checkpoint",
        "delete",
        "--run-id",
        &f.run_id,
        "--before",
        "soon",
        "-y",
    ]));
    assert!(err.contains("Invalid date"), "{err}");

    // Without -y and a "no" answer nothing is deleted.
    let mut cmd = tinker(h.path());
    cmd.args(["checkpoint", "delete", &f.doomed[0]])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Deletion cancelled."));

    let doc = json(tinker(h.path()).args(["checkpoint", "delete", &f.doomed[0], "-y"]));
    assert_eq!(doc["deleted_count"], 1);
    // A filter that matches nothing deletes nothing; one that matches the spare deletes it.
    let none = ok(tinker(h.path()).args([
        "checkpoint",
        "delete",
        "--run-id",
        &f.run_id,
        "--type",
        "weights",
        "--before",
        "2000-01-01",
        "-y",
    ]));
    assert!(none.contains("No checkpoints found"), "{none}");
    let table = ok(tinker(h.path()).args(["checkpoint", "delete", &f.doomed[1], "-y"]));
    assert!(table.contains("Deleted 1 checkpoint(s)"), "{table}");
    let doc = json(tinker(h.path()).args(["checkpoint", "list", "--run-id", &f.run_id]));
    let left: Vec<&str> = doc["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["tinker_path"].as_str().unwrap())
        .collect();
    assert!(!left.contains(&f.doomed[0].as_str()) && !left.contains(&f.doomed[1].as_str()));
    assert!(left.contains(&f.weights.as_str()));

    // Deleting what no longer exists is reported, with exit code 1.
    let (out, stdout, _) =
        run(tinker(h.path()).args(["-f", "json", "checkpoint", "delete", &f.doomed[0], "-y"]));
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["deleted_count"], 0);
    assert_eq!(doc["failed"][0]["tinker_path"], f.doomed[0].as_str());
}

#[test]
fn model_list_filters_case_insensitively() {
    let h = home();
    let table = ok(tinker(h.path()).args(["model", "list"]));
    assert!(
        table.contains("Max Context") && table.contains(MODEL),
        "{table}"
    );
    let doc = json(tinker(h.path()).args(["model", "list", "MICRO"]));
    let models = doc["models"].as_array().unwrap();
    assert!(!models.is_empty());
    assert!(
        models
            .iter()
            .all(|m| m["model_name"].as_str().unwrap().contains("micro"))
    );
    let err = fails(tinker(h.path()).args(["model", "list", "no-such-model"]));
    assert!(
        err.contains("No model name contains 'no-such-model'"),
        "{err}"
    );
}

#[test]
fn missing_or_bad_key_says_what_to_do() {
    let h = home();
    let err = fails(
        tinker(h.path())
            .env_remove("TINKER_API_KEY")
            .args(["run", "list"]),
    );
    assert!(err.contains("tinker auth login"), "{err}");
    let err = fails(
        tinker(h.path())
            .env("TINKER_API_KEY", "not-a-key")
            .args(["run", "list"]),
    );
    assert!(
        err.contains("tinker auth login") || err.contains("API key"),
        "{err}"
    );
    let (out, stdout, _) = run(tinker(h.path())
        .env_remove("TINKER_API_KEY")
        .args(["auth", "status"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.contains("Credentials available: no"), "{stdout}");
}

#[test]
fn auth_login_status_whoami_logout() {
    let h = home();
    let creds = h.path().join(".tinker").join("credentials.json");
    // Login reads the key from stdin (no terminal here), validates and stores it.
    let mut cmd = tinker(h.path());
    cmd.env_remove("TINKER_API_KEY")
        .args(["auth", "login"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), format!("{KEY}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Logged in as") && !stdout.contains(KEY),
        "{stdout}"
    );
    assert!(
        stdout.contains("keys?new_key=true&key_name=tinker-cli-"),
        "{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    // The stored key is now the credential.
    let status = ok(tinker(h.path())
        .env_remove("TINKER_API_KEY")
        .args(["auth", "status"]));
    assert!(
        status.contains("Credentials available: yes") && status.contains("Tinker accessible: yes")
    );
    let who = ok(tinker(h.path())
        .env_remove("TINKER_API_KEY")
        .args(["auth", "whoami"]));
    assert!(
        who.contains("Organization") && who.contains("tml:organization:tinker-local"),
        "{who}"
    );
    let doc = json(
        tinker(h.path())
            .env_remove("TINKER_API_KEY")
            .args(["auth", "whoami"]),
    );
    assert_eq!(doc["org_urn"], "tml:organization:tinker-local");

    // A second login is refused; logout removes the manual key and says it is still active.
    let err = fails(
        tinker(h.path())
            .env_remove("TINKER_API_KEY")
            .args(["auth", "login"]),
    );
    assert!(err.contains("Already logged in"), "{err}");
    let out = ok(tinker(h.path()).args(["auth", "logout"]));
    assert!(
        out.contains("The API key is still active") && out.contains("/keys/1"),
        "{out}"
    );
    let err = fails(tinker(h.path()).args(["auth", "logout"]));
    assert!(err.contains("No default credential is stored"), "{err}");
}

#[test]
fn auth_logout_revokes_generated_keys_and_login_refuses_bad_keys() {
    let h = home();
    let dir = h.path().join(".tinker");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("credentials.json"),
        format!(r#"{{"version":1,"default":"7","keys":{{"7":{{"type":"generated","key":"{GENERATED}","name":"gen"}}}}}}"#),
    )
    .unwrap();
    // Another key of the fixture's account, so revoking it leaves the other tests' key alone.
    const GENERATED: &str = "tml-cli-test-key-0123456789+generated";
    ok(tinker(h.path())
        .env("TINKER_API_KEY", GENERATED)
        .args(["run", "list"]));
    let out = ok(tinker(h.path())
        .env_remove("TINKER_API_KEY")
        .args(["auth", "logout"]));
    assert!(out.contains("deleted its API key on the server"), "{out}");
    // The server revoked it: the key no longer works.
    fails(
        tinker(h.path())
            .env("TINKER_API_KEY", GENERATED)
            .args(["run", "list"]),
    );

    let mut cmd = tinker(h.path());
    cmd.env_remove("TINKER_API_KEY")
        .args(["auth", "login"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"wrong-key\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Could not validate the API key"));
    assert!(
        !dir.join("credentials.json").exists()
            || !std::fs::read_to_string(dir.join("credentials.json"))
                .unwrap()
                .contains("wrong-key")
    );
}

#[test]
fn billing_in_table_json_and_csv() {
    let h = home();
    #[allow(clippy::disallowed_methods)] // tinker-local stamps real wall time
    let now = chrono::Utc::now();
    let end = now.format("%Y-%m-%dT%H:00:00Z").to_string();
    let start = (now - chrono::Duration::days(1))
        .format("%Y-%m-%dT%H:00:00Z")
        .to_string();
    let doc = json(tinker(h.path()).args(["billing", "usage", &start, &end]));
    assert!(
        doc["data"].is_array() && doc["sessions"].is_object(),
        "{doc}"
    );
    ok(tinker(h.path()).args(["billing", "usage", &start, &end]));
    let csv = ok(tinker(h.path()).args(["billing", "usage", &start, &end, "--csv", "-"]));
    // The current hour cannot be queried (a window may not reach into the future), so
    // the fixture's usage is not in it: an empty CSV.
    assert!(csv.trim().is_empty() || csv.contains(','), "{csv}");
    let err = fails(tinker(h.path()).args(["billing", "usage", "2024-01-01T00:30:00Z", &end]));
    assert!(err.contains("Invalid billing window"), "{err}");

    let doc = json(tinker(h.path()).args(["billing", "checkpoint-storage"]));
    assert!(doc["data"].is_array(), "{doc}");
    let table = ok(tinker(h.path()).args(["billing", "checkpoint-storage"]));
    assert!(table.contains("checkpoint storage"), "{table}");
    let path = h.path().join("storage.csv");
    ok(tinker(h.path())
        .args(["billing", "checkpoint-storage", "--csv"])
        .arg(&path));
    assert!(path.exists());
}

#[test]
fn session_export_trace_downloads_or_prints_the_url() {
    let f = fixture();
    let h = home();
    let url = ok(tinker(h.path()).args(["session", "export-trace", &f.session_id, "--url-only"]));
    assert!(
        url.trim().starts_with(&f.url) && url.contains("/traces/"),
        "{url}"
    );
    let doc = json(tinker(h.path()).args(["session", "export-trace", &f.session_id, "--url-only"]));
    assert_eq!(doc["session_id"], f.session_id.as_str());

    let doc = json(tinker(h.path()).args(["session", "export-trace", &f.session_id]));
    let dest = PathBuf::from(doc["destination"].as_str().unwrap());
    assert_eq!(dest, h.path().join(format!("{}.pftrace", f.session_id)));
    let trace: serde_json::Value = serde_json::from_slice(&std::fs::read(&dest).unwrap()).unwrap();
    assert!(trace.is_object() || trace.is_array());
    // An existing file is never replaced.
    let err = fails(tinker(h.path()).args(["session", "export-trace", &f.session_id]));
    assert!(err.contains("already exists"), "{err}");
    let err = fails(tinker(h.path()).args(["session", "export-trace", "session-nope"]));
    assert!(
        err.contains("not found") || err.contains("Resource"),
        "{err}"
    );
    let _ = (&f.weights, &f.external);
}

/// No staging folder or temp file is left next to a download.
fn no_leftovers(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tinker-download-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn checkpoint_download_external_and_training() {
    let f = fixture();
    let h = home();
    let out = h.path().join("models");
    let doc = json(
        tinker(h.path())
            .args(["checkpoint", "download", &f.external, "-o"])
            .arg(&out),
    );
    let dest = PathBuf::from(doc["destination"].as_str().unwrap());
    let name = f.external.trim_start_matches("tinker://").replace('/', "_");
    assert_eq!(dest, out.join(&name));
    assert!(doc["file_size_bytes"].as_u64().unwrap() > 0);
    let files: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|n| n == "adapter_config.json"),
        "{files:?}"
    );
    no_leftovers(&out);

    // An existing folder is kept unless --force.
    let err = fails(
        tinker(h.path())
            .args(["checkpoint", "download", &f.external, "-o"])
            .arg(&out),
    );
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    std::fs::write(dest.join("stale"), b"old").unwrap();
    let table = ok(tinker(h.path())
        .args(["checkpoint", "download", &f.external, "--force", "-o"])
        .arg(&out));
    assert!(
        table.contains("Checkpoint Download") && table.contains("Destination"),
        "{table}"
    );
    assert!(!dest.join("stale").exists() && dest.join("adapter_config.json").exists());

    // A training checkpoint goes through a temporary export that is deleted afterwards.
    let doc = json(tinker(h.path()).args(["checkpoint", "download", &f.weights]));
    let dest = PathBuf::from(doc["destination"].as_str().unwrap());
    assert!(dest.join("adapter_config.json").exists(), "{doc}");
    no_leftovers(h.path());
}

#[test]
fn checkpoint_download_refuses_bad_paths() {
    let f = fixture();
    let h = home();
    let err = fails(tinker(h.path()).args(["checkpoint", "download", &f.sampler]));
    assert!(
        err.contains("Sampler checkpoints cannot be downloaded"),
        "{err}"
    );
    let err = fails(tinker(h.path()).args(["checkpoint", "download", "not-a-path"]));
    assert!(
        err.contains("Invalid checkpoint path") && err.contains("can be downloaded"),
        "{err}"
    );
    let missing = format!("tinker://{}/external_weights/never", f.run_id);
    let err = fails(tinker(h.path()).args(["checkpoint", "download", &missing]));
    assert!(err.contains("not found"), "{err}");
    // Nothing is left behind after a failure.
    let name = missing.trim_start_matches("tinker://").replace('/', "_");
    assert!(!h.path().join(name).exists());
    no_leftovers(h.path());
}

/// An in-process Hugging Face Hub (the testkit's scripted server, on a runtime of its own
/// since these tests are synchronous) that checks the token, answers the calls `push-hf`
/// makes, verifies LFS uploads against their SHA-256, and records every request.
struct FakeHub {
    server: Server,
    // Drives the server; dropped after it.
    _runtime: tokio::runtime::Runtime,
}

fn fake_hub() -> FakeHub {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let base = Arc::new(OnceLock::<String>::new());
    let url = base.clone();
    let server = runtime.block_on(Server::start(move |req, _| {
        hub_answer(req, url.get().map_or("", String::as_str))
    }));
    base.set(server.url.clone()).unwrap();
    FakeHub {
        server,
        _runtime: runtime,
    }
}

/// The Hub's answer to one request (`base`: the hub's own URL, for LFS upload links).
fn hub_answer(req: &Seen, base: &str) -> Reply {
    let path = req.uri.path();
    let query = req.uri.query().unwrap_or("");
    let authed = req.header("authorization") == Some("Bearer hf_test_token");
    let (status, answer) = if let Some(oid) = path.strip_prefix("/lfs-upload/") {
        if ring_hex(&req.body) == oid {
            (200, String::new())
        } else {
            (400, "{\"error\":\"bad sha\"}".into())
        }
    } else if !authed {
        (401, "{\"error\":\"bad token\"}".into())
    } else if path == "/api/whoami-v2" {
        (200, "{\"name\":\"alice\"}".into())
    } else if path == "/api/repos/create" {
        (200, "{\"url\":\"x\"}".into())
    } else if path.ends_with("/README.md") {
        (404, "{\"error\":\"no\"}".into())
    } else if path.contains("/branch/") {
        (200, "{}".into())
    } else if path.contains("/preupload/") {
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let files: Vec<serde_json::Value> = v["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let p = f["path"].as_str().unwrap();
                let mode = if p.ends_with(".safetensors") {
                    "lfs"
                } else {
                    "regular"
                };
                serde_json::json!({"path": p, "uploadMode": mode})
            })
            .collect();
        (200, serde_json::json!({"files": files}).to_string())
    } else if path.ends_with(".git/info/lfs/objects/batch") {
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        let oid = v["objects"][0]["oid"].as_str().unwrap().to_owned();
        let upload = serde_json::json!({
            "href": format!("{base}/lfs-upload/{oid}"), "header": {"x-signed": "1"}});
        let objects = serde_json::json!({"objects": [{"oid": oid, "actions": {"upload": upload}}]});
        (200, objects.to_string())
    } else if path.contains("/commit/") {
        (
            200,
            serde_json::json!({"commitUrl": format!("{base}/commit?{query}")}).to_string(),
        )
    } else {
        (404, "{\"error\":\"unknown\"}".into())
    };
    Reply::bytes(status, answer)
}

fn ring_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn push_hf_uploads_through_the_hub_api_without_tinker_credentials() {
    let f = fixture();
    let h = home();
    let fake = fake_hub();
    let hub = fake.server.url.clone();
    let doc = json(
        tinker(h.path())
            .env("HF_ENDPOINT", &hub)
            .env("HF_TOKEN", "hf_test_token")
            .args(["checkpoint", "push-hf", &f.external, "--create-pr"]),
    );
    let requests = fake.server.seen();
    // No Tinker credential ever reaches the Hub.
    for r in &requests {
        assert!(
            !r.headers
                .iter()
                .any(|(k, v)| k == "x-api-key" || v.to_str().unwrap_or("").contains(KEY)),
            "{r:?}"
        );
        assert!(!String::from_utf8_lossy(&r.body).contains(KEY));
    }
    let lfs_put = requests
        .iter()
        .find(|r| r.uri.path().starts_with("/lfs-upload/"))
        .expect("an LFS upload");
    assert_eq!(lfs_put.method, "PUT");
    assert!(lfs_put.headers.contains_key("x-signed"));
    assert!(
        !lfs_put.headers.contains_key("authorization"),
        "the HF token went to the LFS URL"
    );
    let repo = doc["repo_id"].as_str().unwrap();
    assert!(repo.starts_with("alice/tinker-"), "{doc}");
    assert_eq!(doc["revision"], "external_weights-hf");
    let commit = requests
        .iter()
        .find(|r| r.uri.path().contains("/commit/"))
        .unwrap();
    assert!(commit.uri.path().ends_with("/commit/external_weights-hf"));
    let ops: Vec<serde_json::Value> = String::from_utf8_lossy(&commit.body)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ops[0]["key"], "header");
    let paths: Vec<&str> = ops[1..]
        .iter()
        .map(|o| o["value"]["path"].as_str().unwrap())
        .collect();
    assert!(
        paths.contains(&"adapter_config.json") && paths.contains(&"README.md"),
        "{paths:?}"
    );
    assert!(
        ops.iter()
            .any(|o| o["key"] == "lfsFile" && o["value"]["path"] == "adapter_model.safetensors")
    );
    assert!(!paths.contains(&"checkpoint_complete"));
    assert!(
        doc["url"].as_str().unwrap().contains("create_pr=1"),
        "{doc}"
    );

    // Without HF_TOKEN nothing is downloaded or sent.
    let err = fails(tinker(h.path()).env("HF_ENDPOINT", &hub).args([
        "checkpoint",
        "push-hf",
        &f.external,
    ]));
    assert!(err.contains("HF_TOKEN"), "{err}");
    let err = fails(
        tinker(h.path())
            .env("HF_ENDPOINT", &hub)
            .env("HF_TOKEN", "wrong")
            .args(["checkpoint", "push-hf", &f.external]),
    );
    assert!(err.contains("Not logged in"), "{err}");
}
