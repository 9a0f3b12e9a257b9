//! Checkpoint archives (servers that serve `archive`, as before SDK 0.38): downloaded from
//! tinker-local with progress, and hostile archives from a stub refused without writing
//! outside the target folder.

use std::path::Path;

use bytes::Bytes;
use tinker_client::ErrorKind;
use tinker_client::rest::DownloadOptions;
use tinker_testkit::local::{datum, rest_client, start, training};
use tinker_testkit::{Reply, Server};
use tinker_types::LossFn;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_and_extracts_a_checkpoint_from_tinker_local() {
    let env = start(None).await;
    let tc = training(&env).await;
    tc.forward_backward(vec![datum(&[1, 2, 3, 4])], LossFn::CrossEntropy)
        .await
        .unwrap();
    let state = tc.save_state("arch").await.unwrap().path;
    let rest = env.service.create_rest_client().await.unwrap();
    let url = rest.get_checkpoint_archive_url(&state).await.unwrap();
    assert!(url.url.contains("sig="), "{}", url.url);

    let outside = tempfile::tempdir().unwrap();
    let dir = outside.path().join("ckpt");
    let mut seen = Vec::new();
    let files = rest
        .download_checkpoint_archive(&state, &dir, |p| {
            assert!(p.file_index < p.file_count);
            seen.push((p.file.clone(), p.bytes));
        })
        .await
        .unwrap();
    assert!(!files.is_empty());
    assert_eq!(seen.len(), files.len());
    for (f, (_, bytes)) in files.iter().zip(&seen) {
        assert!(f.starts_with(&dir));
        assert_eq!(std::fs::metadata(f).unwrap().len(), *bytes);
        assert!(*bytes > 0, "{}", f.display());
    }
    // Only the extracted files remain (the archive itself is gone).
    let left: Vec<_> = walk(&dir);
    assert_eq!(left.len(), files.len(), "{left:?}");

    // A second download into the same folder does not overwrite anything.
    let err = rest
        .download_checkpoint_archive(&state, &dir, |_| {})
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DownloadRefused, "{err}");
    // A too-small bound refuses the archive and leaves no archive behind.
    let small = outside.path().join("small");
    let err = rest
        .download_checkpoint_archive_with(
            &state,
            &small,
            &DownloadOptions::default().max_file_bytes(100),
            |_| {},
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DownloadRefused, "{err}");
    assert!(walk(&small).is_empty());
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

/// A tar with one entry whose raw name and type are set as given (no checks).
fn raw_tar(name: &[u8], kind: tar::EntryType, link: Option<&[u8]>, data: &[u8]) -> Vec<u8> {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name);
    if let Some(link) = link {
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    }
    header.set_entry_type(kind);
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0; 1024]);
    out
}

/// An API whose archive URL serves `archive`.
async fn api_serving(archive: Vec<u8>) -> Server {
    let archive = Bytes::from(archive);
    let base_cell = std::sync::Arc::new(std::sync::OnceLock::<String>::new());
    let base = base_cell.clone();
    let stub = Server::start(move |seen, _| {
        let path = seen.uri.path();
        if path.ends_with("/archive") {
            let Some(base) = base.get() else {
                return Reply::status(500);
            };
            let body = serde_json::json!({
                "url": format!("{base}/archives/x?sig=1"),
                "expires": "2099-01-01T00:00:00Z",
            });
            Reply::json(200, &body.to_string())
        } else if path.starts_with("/archives/") {
            Reply::bytes(200, archive.clone())
        } else {
            Reply::json(200, "{}")
        }
    })
    .await;
    assert!(base_cell.set(stub.url.clone()).is_ok());
    stub
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_archives_are_refused_without_writing_outside() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "parent escape",
            raw_tar(b"../escaped", tar::EntryType::Regular, None, b"x"),
        ),
        (
            "absolute path",
            raw_tar(b"/tmp/escaped", tar::EntryType::Regular, None, b"x"),
        ),
        (
            "symlink",
            raw_tar(b"link", tar::EntryType::Symlink, Some(b"/etc/passwd"), b""),
        ),
        (
            "hard link",
            raw_tar(b"hard", tar::EntryType::Link, Some(b"../x"), b""),
        ),
        ("not a tar", b"this is not a tar archive at all".repeat(40)),
    ];
    for (what, archive) in cases {
        let stub = api_serving(archive).await;
        let rest = rest_client(&stub.url, None).await;
        let outside = tempfile::tempdir().unwrap();
        let dir = outside.path().join("in");
        let err = rest
            .download_checkpoint_archive("tinker://run-1/weights/w", &dir, |_| {})
            .await
            .unwrap_err();
        assert!(
            matches!(
                err.kind(),
                ErrorKind::DownloadRefused | ErrorKind::InvalidInput
            ),
            "{what}: {err}"
        );
        let names: Vec<_> = std::fs::read_dir(outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("in")], "{what}");
        assert!(walk(&dir).is_empty(), "{what}: {:?}", walk(&dir));
    }
}
