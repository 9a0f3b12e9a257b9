//! `download_external_weights` never writes outside its folder and never trusts the server
//! blindly (issue 9, cases 5 and 6): links already in the folder are refused, not followed;
//! plain-http signed URLs are refused before connecting unless the API is loopback http;
//! files are bounded in size.
//!
//! A scripted stub server plays the API: `external_weights_urls` lists the files, and
//! `/files/<name>` serves them.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinker_client::ErrorKind;
use tinker_client::rest::DownloadOptions;
use tinker_testkit::local::rest_client;
use tinker_testkit::{Reply, Server};

const EXPORT: &str = "tinker://run-1/external_weights/hf";
const CONTENT: &[u8] = b"weights from the network";

fn json(body: String) -> Reply {
    Reply::json(200, &body)
}

/// The path and query of a request.
fn target(seen: &tinker_testkit::Seen) -> &str {
    seen.uri.path_and_query().map_or("/", |p| p.as_str())
}

/// An API whose export lists `names`, each served from this stub with `body`.
async fn api_serving(names: &'static [&'static str], body: Bytes) -> Server {
    let port_cell = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let base = port_cell.clone();
    let stub = Server::start(move |seen, _| {
        let path = target(seen);
        if path.contains("/external_weights_urls") {
            // Set before the server's URL is handed to anyone.
            let Some(base) = base.get() else {
                return Reply::status(500);
            };
            let urls: serde_json::Map<String, serde_json::Value> = names
                .iter()
                .map(|n| ((*n).to_owned(), format!("{base}/files/{n}?sig=1").into()))
                .collect();
            json(serde_json::json!({ "urls": urls, "expires": "2099-01-01T00:00:00Z" }).to_string())
        } else if path.starts_with("/files/") {
            Reply::bytes(200, body.clone())
        } else {
            json("{}".to_owned())
        }
    })
    .await;
    assert!(port_cell.set(stub.url.clone()).is_ok(), "a fresh cell");
    stub
}

fn assert_untouched(outside: &Path) {
    let entries: Vec<_> = match std::fs::read_dir(outside) {
        Ok(dir) => dir.collect(),
        Err(e) => panic!("cannot list {}: {e}", outside.display()),
    };
    assert!(
        entries.is_empty(),
        "something was written outside: {entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_nested_files_into_the_folder() {
    let stub = api_serving(
        &["sub/deeper/weights", "config"],
        Bytes::from_static(CONTENT),
    )
    .await;
    let rest = rest_client(&stub.url, None).await;
    let dir = tempfile::tempdir().unwrap();
    let files = rest
        .download_external_weights(EXPORT, dir.path(), |_| {})
        .await
        .unwrap();
    assert_eq!(files.len(), 2);
    for f in &files {
        assert_eq!(std::fs::read(f).unwrap(), CONTENT);
    }
    assert!(dir.path().join("sub/deeper/weights").is_file());
    assert!(!dir.path().join("sub/deeper/weights.part").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlinked_sub_folder_is_refused() {
    let stub = api_serving(&["sub/weights"], Bytes::from_static(CONTENT)).await;
    let rest = rest_client(&stub.url, None).await;
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("sub")).unwrap();
    let err = rest
        .download_external_weights(EXPORT, dir.path(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DownloadRefused, "{err}");
    assert_untouched(outside.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_at_the_part_file_is_refused() {
    let stub = api_serving(&["weights"], Bytes::from_static(CONTENT)).await;
    let rest = rest_client(&stub.url, None).await;
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    // A dangling link: following it would create the victim.
    std::os::unix::fs::symlink(&victim, dir.path().join("weights.part")).unwrap();
    let err = rest
        .download_external_weights(EXPORT, dir.path(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DownloadRefused, "{err}");
    assert!(!victim.exists(), "the download wrote through the link");
    assert_untouched(outside.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_link_at_the_part_file_is_refused() {
    let stub = api_serving(&["weights"], Bytes::from_static(CONTENT)).await;
    let rest = rest_client(&stub.url, None).await;
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, b"keep me").unwrap();
    std::fs::hard_link(&victim, dir.path().join("weights.part")).unwrap();
    let err = rest
        .download_external_weights(EXPORT, dir.path(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DownloadRefused, "{err}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_signed_url_is_refused_at_once_with_an_https_api() {
    let (acceptor, ca) = tinker_testkit::tls::acceptor(&[b"http/1.1"]);
    let stub = Server::start_with(Some(acceptor), |seen, _| {
        let path = target(seen);
        if path.contains("/external_weights_urls") {
            json(
                r#"{"urls": {"weights": "http://127.0.0.1:1/weights?sig=1"},
                    "expires": "2099-01-01T00:00:00Z"}"#
                    .to_owned(),
            )
        } else {
            json("{}".to_owned())
        }
    })
    .await;
    let rest = rest_client(&stub.url, Some(ca.der)).await;
    let dir = tempfile::tempdir().unwrap();
    #[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
    let started = Instant::now();
    let err = rest
        .download_external_weights(EXPORT, dir.path(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DownloadRefused, "{err}");
    assert!(err.message().contains("http"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "refused only after {:?} (retried?)",
        started.elapsed()
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_over_the_limit_is_refused_and_removed() {
    let stub = api_serving(&["weights"], Bytes::from(vec![7u8; 1 << 20])).await;
    let rest = rest_client(&stub.url, None).await;
    let dir = tempfile::tempdir().unwrap();
    let err = rest
        .download_external_weights_with(
            EXPORT,
            dir.path(),
            &DownloadOptions::default().max_file_bytes(64 << 10),
            |_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DownloadRefused, "{err}");
    assert!(err.message().contains("limit"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_file_is_not_overwritten() {
    let stub = api_serving(&["weights"], Bytes::from_static(CONTENT)).await;
    let rest = rest_client(&stub.url, None).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("weights"), b"mine").unwrap();
    let err = rest
        .download_external_weights(EXPORT, dir.path(), |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DownloadRefused, "{err}");
    assert_eq!(std::fs::read(dir.path().join("weights")).unwrap(), b"mine");
}
