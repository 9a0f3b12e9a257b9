//! Loading real tokenizer files from every supported place: an explicit file or directory,
//! the search path, the Hugging Face cache layout, the hub through a fetcher; the tiktoken
//! format; and the error listing every place looked at.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use tinker_tokenizer::{
    Error, HubRequest, HubResponse, LoaderSettings, Tokenizer, TokenizerKind, TokenizerLoader,
    TokenizerRef, resolve,
};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bpe")
}

fn fixture_file(name: &str) -> Vec<u8> {
    std::fs::read(fixture_dir().join(name)).unwrap()
}

/// Settings built from a fake environment.
fn settings(vars: &[(&str, String)]) -> LoaderSettings {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    LoaderSettings::from_vars(|k| map.get(k).cloned())
}

fn copy_fixture_to(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(fixture_dir().join(f), dir.join(f)).unwrap();
    }
}

fn check_tiny_bpe(tok: &Tokenizer) {
    assert_eq!(tok.kind(), TokenizerKind::HuggingFace);
    assert_eq!(tok.vocab_size(), 400);
    let text = "Hello world! The model says hello.";
    let plain = tok.encode(text, false).unwrap();
    let with_bos = tok.encode(text, true).unwrap();
    assert_eq!(with_bos[0], 0, "the post-processor adds <|begin_of_text|>");
    assert_eq!(&with_bos[1..], &plain[..]);
    assert!(plain.len() < text.len(), "merges were learned: {plain:?}");
    assert_eq!(tok.decode(&plain, false).unwrap(), text);
    assert_eq!(
        tok.decode(&with_bos, false).unwrap(),
        format!("<|begin_of_text|>{text}")
    );
    assert_eq!(tok.decode(&with_bos, true).unwrap(), text);
    // Special tokens written in the text are recognised.
    let chat = tok.encode("<|im_start|>user\nhi<|im_end|>", false).unwrap();
    assert_eq!(chat.first(), Some(&2));
    assert_eq!(chat.last(), Some(&3));
    assert!(tok.is_special(3) && !tok.is_special(plain[0]));
    assert_eq!(tok.token_to_id("<|im_end|>"), Some(3));
    assert_eq!(tok.id_to_token(2).as_deref(), Some("<|im_start|>"));
    let hello = tok
        .token_to_id("Hello")
        .expect("`Hello` is a learned token");
    assert_eq!(tok.id_to_token(hello).as_deref(), Some("Hello"));
    assert_eq!(tok.bos_token(), Some("<|begin_of_text|>"));
    assert_eq!(tok.bos_token_id(), Some(0));
    assert_eq!(tok.eos_token(), Some("<|im_end|>"));
    assert_eq!(tok.eos_token_id(), Some(3));
    assert_eq!(tok.pad_token_id(), Some(1));
    assert!(tok.chat_template().unwrap().contains("<|im_start|>"));
    // Like the Python fast tokenizer, ids outside the vocabulary decode to nothing.
    assert_eq!(tok.decode(&[100_000], false).unwrap(), "");
}

#[test]
fn explicit_directory_and_file() {
    check_tiny_bpe(&Tokenizer::from_path(fixture_dir()).unwrap());
    let from_file = Tokenizer::from_path(fixture_dir().join("tokenizer.json")).unwrap();
    check_tiny_bpe(&from_file);
    let from_bytes = Tokenizer::from_tokenizer_json(
        "tiny",
        &fixture_file("tokenizer.json"),
        Some(&fixture_file("tokenizer_config.json")),
    )
    .unwrap();
    check_tiny_bpe(&from_bytes);
    assert_eq!(from_bytes.name(), "tiny");
}

#[test]
fn empty_or_missing_path_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Tokenizer::from_path(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("no tokenizer.json or tiktoken.model")
    );
    let err = Tokenizer::from_path(tmp.path().join("nope.json")).unwrap_err();
    assert!(matches!(err, Error::Read { .. }), "{err}");
    std::fs::write(
        tmp.path().join("tokenizer.json"),
        b"{\"not\": \"a tokenizer\"}",
    )
    .unwrap();
    let err = Tokenizer::from_path(tmp.path()).unwrap_err();
    assert!(matches!(err, Error::TokenizerJson { .. }), "{err}");
}

#[tokio::test]
async fn tokenizer_id_that_is_an_absolute_directory_loads_directly() {
    let loader = TokenizerLoader::new(LoaderSettings::default());
    let dir = fixture_dir();
    let tok = loader
        .load_for_model("tiny-local", Some(dir.to_str().unwrap()))
        .await
        .unwrap();
    check_tiny_bpe(&tok);
}

#[tokio::test]
async fn a_model_name_that_is_a_local_folder_loads_its_tokenizer() {
    // As SkyRL's Tinker API serves a local model: its folder is the model name, with no
    // tokenizer id (more than one `/`, so not a Hugging Face id).
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("models").join("tiny");
    std::fs::create_dir_all(&dir).unwrap();
    copy_fixture_to(&dir);
    let loader = TokenizerLoader::new(LoaderSettings::default());
    let tok = loader
        .load_for_model(dir.to_str().unwrap(), None)
        .await
        .unwrap();
    check_tiny_bpe(&tok);
}

#[tokio::test]
async fn search_path_directories_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    let second = tmp.path().join("second");
    std::fs::create_dir_all(first.join("acme/empty-model")).unwrap();
    copy_fixture_to(&second.join("acme/tiny-model"));
    let path = std::env::join_paths([&first, &second]).unwrap();
    let loader = TokenizerLoader::new(settings(&[(
        "TINKER_TOKENIZER_PATH",
        path.to_str().unwrap().to_owned(),
    )]));
    // The tag after `:` and a variant segment are dropped.
    let tok = loader
        .load_for_model("acme/tiny-model/fast:tag", None)
        .await
        .unwrap();
    check_tiny_bpe(&tok);
    assert_eq!(tok.name(), "acme/tiny-model");
    // The synchronous local-only path sees the same files.
    let sync = loader
        .load_local(&TokenizerRef::hub("acme/tiny-model"))
        .unwrap();
    check_tiny_bpe(&sync);
}

/// Lays out `repo_id` in a Hugging Face hub cache as `huggingface_hub` does: blobs, a
/// snapshot of symlinks, and `refs/<rev>` when `refname` is given.
fn hf_cache_repo(
    hub: &Path,
    repo_id: &str,
    commit: &str,
    refname: Option<&str>,
    files: &[(&str, Vec<u8>)],
) {
    let repo = hub.join(format!("models--{}", repo_id.replace('/', "--")));
    let snapshot = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(&snapshot).unwrap();
    for (i, (name, bytes)) in files.iter().enumerate() {
        let blob_name = format!("{commit}-{i}");
        let blob = repo.join("blobs").join(&blob_name);
        std::fs::write(&blob, bytes).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(format!("../../blobs/{blob_name}"), snapshot.join(name))
            .unwrap();
        #[cfg(not(unix))]
        std::fs::copy(&blob, snapshot.join(name)).unwrap();
    }
    if let Some(refname) = refname {
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join(refname), commit).unwrap();
    }
}

#[tokio::test]
async fn hugging_face_cache_layout_follows_refs_main() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hf/hub");
    let files = [
        ("tokenizer.json", fixture_file("tokenizer.json")),
        (
            "tokenizer_config.json",
            fixture_file("tokenizer_config.json"),
        ),
    ];
    hf_cache_repo(&hub, "acme/cached", "0123abcd", Some("main"), &files);
    // A stale snapshot that refs/main does not point to must be ignored.
    hf_cache_repo(
        &hub,
        "acme/cached",
        "main",
        None,
        &[("tokenizer.json", b"{}".to_vec())],
    );
    let loader = TokenizerLoader::new(settings(&[
        ("HF_HOME", tmp.path().join("hf").display().to_string()),
        ("HOME", "/nonexistent-home".to_owned()),
    ]));
    let tok = loader.load_for_model("acme/cached", None).await.unwrap();
    check_tiny_bpe(&tok);
}

/// Learns `merges` BPE merges on `corpus` (most frequent adjacent pair first) and returns a
/// tiktoken rank file: the 256 bytes, then the merged tokens in merge order.
fn train_tiktoken_ranks(corpus: &str, merges: usize) -> (String, usize) {
    let mut ranks: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
    // Words as the split pattern yields them: with and without their leading space.
    let mut words: Vec<Vec<Vec<u8>>> = corpus
        .split_whitespace()
        .flat_map(|w| [w.to_owned(), format!(" {w}")])
        .map(|w| w.bytes().map(|b| vec![b]).collect())
        .collect();
    for _ in 0..merges {
        let mut counts: HashMap<(Vec<u8>, Vec<u8>), usize> = HashMap::new();
        for w in &words {
            for pair in w.windows(2) {
                *counts
                    .entry((pair[0].clone(), pair[1].clone()))
                    .or_default() += 1;
            }
        }
        let Some(((a, b), _)) = counts
            .into_iter()
            .max_by(|x, y| x.1.cmp(&y.1).then_with(|| y.0.cmp(&x.0)))
        else {
            break;
        };
        let merged: Vec<u8> = [a.clone(), b.clone()].concat();
        if ranks.contains(&merged) {
            break;
        }
        ranks.push(merged.clone());
        for w in &mut words {
            let mut out = Vec::with_capacity(w.len());
            let mut i = 0;
            while i < w.len() {
                if i + 1 < w.len() && w[i] == a && w[i + 1] == b {
                    out.push(merged.clone());
                    i += 2;
                } else {
                    out.push(w[i].clone());
                    i += 1;
                }
            }
            *w = out;
        }
    }
    let file = ranks
        .iter()
        .enumerate()
        .map(|(rank, bytes)| {
            format!(
                "{} {rank}\n",
                base64::engine::general_purpose::STANDARD.encode(bytes)
            )
        })
        .collect();
    (file, ranks.len())
}

const KIMI_REV: &str = "4d01dfe0332d63057c186e0b262165819efb6611";

fn kimi_like_files() -> (Vec<(&'static str, Vec<u8>)>, u32) {
    let (ranks, n) = train_tiktoken_ranks(
        "hello hello world the world says hello to the model the model says hello",
        60,
    );
    let n = n as u32;
    let config = format!(
        r#"{{"bos_token": "[BOS]", "eos_token": "[EOS]",
            "chat_template": "{{{{ messages }}}}",
            "added_tokens_decoder": {{
                "{n}": {{"content": "[BOS]", "special": true}},
                "{}": {{"content": "[EOS]", "special": true}},
                "{}": {{"content": "<|im_end|>", "special": true}}
            }}}}"#,
        n + 1,
        n + 2
    );
    (
        vec![
            ("tiktoken.model", ranks.into_bytes()),
            ("tokenizer_config.json", config.into_bytes()),
        ],
        n,
    )
}

#[tokio::test]
async fn tiktoken_model_with_pinned_revision_from_the_cache() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tmp.path().join("hub");
    let (files, n) = kimi_like_files();
    // Pinned commit: no refs/ file at all, the snapshot is named by the commit.
    hf_cache_repo(&hub, "moonshotai/Kimi-K2.5", KIMI_REV, None, &files);
    let loader = TokenizerLoader::new(settings(&[("HF_HUB_CACHE", hub.display().to_string())]));
    let tok = loader
        .load_for_model("moonshotai/Kimi-K2.5-Text-Only:x", None)
        .await
        .unwrap();
    assert_eq!(tok.kind(), TokenizerKind::Tiktoken);
    assert_eq!(tok.vocab_size(), n as usize + 256);
    let ids = tok.encode("hello world", false).unwrap();
    assert_eq!(
        ids.len(),
        2,
        "learned merges give one token per word: {ids:?}"
    );
    assert_eq!(tok.id_to_token(ids[1]).as_deref(), Some("Ġworld"));
    assert_eq!(tok.token_to_id("Ġworld"), Some(ids[1]));
    assert_eq!(tok.encode("hello world", true).unwrap(), ids);
    let text = "[BOS]hello 世界, the model!<|im_end|>";
    let ids = tok.encode(text, false).unwrap();
    assert_eq!(ids[0], n);
    assert_eq!(*ids.last().unwrap(), n + 2);
    assert_eq!(tok.decode(&ids, false).unwrap(), text);
    assert_eq!(tok.decode(&ids, true).unwrap(), "hello 世界, the model!");
    assert_eq!(tok.bos_token_id(), Some(n));
    assert_eq!(tok.eos_token_id(), Some(n + 1));
    assert_eq!(
        tok.id_to_token(n + 5).as_deref(),
        Some(format!("<|reserved_token_{}|>", n + 5).as_str())
    );
    assert!(tok.is_special(n + 5) && !tok.is_special(ids[1]));
    assert_eq!(tok.chat_template(), Some("{{ messages }}"));
    assert!(matches!(
        tok.decode(&[n + 256], false),
        Err(Error::Decode { .. })
    ));
}

#[tokio::test]
async fn missing_offline_lists_every_place_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let search = tmp.path().join("search");
    std::fs::create_dir_all(search.join("acme/absent")).unwrap();
    let loader = TokenizerLoader::new(settings(&[
        ("TINKER_TOKENIZER_PATH", search.display().to_string()),
        ("HF_HOME", tmp.path().join("hf").display().to_string()),
    ]));
    let err = loader
        .load_for_model("acme/absent", None)
        .await
        .unwrap_err();
    let Error::NotFound { id, looked } = &err else {
        panic!("expected NotFound, got {err}");
    };
    assert_eq!(id, "acme/absent");
    assert_eq!(looked.len(), 3, "{looked:?}");
    let text = err.to_string();
    let search_dir = search.join("acme/absent");
    let snapshot = tmp
        .path()
        .join("hf/hub/models--acme--absent/snapshots/main");
    for needle in [
        search_dir.display().to_string(),
        snapshot.display().to_string(),
        "no tokenizer.json or tiktoken.model".to_owned(),
        "refs/main".to_owned(),
        "https://huggingface.co: skipped: no hub fetcher configured".to_owned(),
        "TINKER_TOKENIZER_PATH".to_owned(),
    ] {
        assert!(text.contains(&needle), "`{needle}` missing from:\n{text}");
    }
}

#[tokio::test]
async fn unsupported_models_are_refused_before_looking() {
    let loader = TokenizerLoader::new(LoaderSettings::default());
    let err = loader.load_for_model("TML/secret", None).await.unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

/// A fetcher serving files from memory and recording the requests.
#[derive(Clone, Default)]
struct MemoryHub {
    files: Arc<HashMap<String, Vec<u8>>>,
    requests: Arc<Mutex<Vec<HubRequest>>>,
    fail: bool,
}

impl MemoryHub {
    /// Serves `files` (name, bytes) under `base`.
    fn serving(base: &str, files: Vec<(&str, Vec<u8>)>) -> Self {
        Self {
            files: Arc::new(
                files
                    .into_iter()
                    .map(|(name, bytes)| (format!("{base}/{name}"), bytes))
                    .collect(),
            ),
            ..Self::default()
        }
    }

    fn fetcher(
        &self,
    ) -> impl Fn(HubRequest) -> std::future::Ready<HubResponse> + Send + Sync + 'static {
        let hub = self.clone();
        move |req: HubRequest| {
            hub.requests.lock().unwrap().push(req.clone());
            std::future::ready(if hub.fail {
                Err("connection refused".into())
            } else {
                Ok(hub.files.get(&req.url).cloned())
            })
        }
    }

    fn urls(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.url.clone())
            .collect()
    }
}

#[tokio::test]
async fn hub_download_through_the_fetcher_and_cache() {
    let base = "http://hub.test/acme/tiny/resolve/main";
    let hub = MemoryHub::serving(
        base,
        vec![
            ("tokenizer.json", fixture_file("tokenizer.json")),
            (
                "tokenizer_config.json",
                fixture_file("tokenizer_config.json"),
            ),
        ],
    );
    let loader = TokenizerLoader::new(settings(&[
        ("HF_ENDPOINT", "http://hub.test/".to_owned()),
        ("HF_TOKEN", "hf_secret".to_owned()),
    ]))
    .hub_fetcher(hub.fetcher());
    let tok = loader.load_for_model("acme/tiny", None).await.unwrap();
    check_tiny_bpe(&tok);
    assert_eq!(
        hub.urls(),
        vec![
            format!("{base}/tokenizer.json"),
            format!("{base}/tokenizer_config.json"),
            format!("{base}/chat_template.jinja"),
        ]
    );
    assert!(
        hub.requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.bearer_token.as_deref() == Some("hf_secret"))
    );
    // Cached per id: a second load (also from a clone of the loader) downloads nothing.
    let again = loader
        .clone()
        .load(&resolve("acme/tiny:v2", None).unwrap())
        .await
        .unwrap();
    check_tiny_bpe(&again);
    assert_eq!(hub.urls().len(), 3);
}

#[tokio::test]
async fn hub_falls_back_to_tiktoken_and_uses_pinned_revision() {
    let (files, n) = kimi_like_files();
    let base = format!("https://huggingface.co/moonshotai/Kimi-K2.5/resolve/{KIMI_REV}");
    let hub = MemoryHub::serving(&base, files);
    let loader = TokenizerLoader::new(LoaderSettings::default()).hub_fetcher(hub.fetcher());
    let tok = loader
        .load_for_model("moonshotai/Kimi-K2.5", None)
        .await
        .unwrap();
    assert_eq!(tok.kind(), TokenizerKind::Tiktoken);
    assert_eq!(tok.eos_token_id(), Some(n + 1));
    assert_eq!(
        hub.urls()[..2],
        [
            format!("{base}/tokenizer.json"),
            format!("{base}/tiktoken.model")
        ]
    );
}

#[tokio::test]
async fn hub_failures_and_offline_mode_are_reported() {
    let hub = MemoryHub {
        fail: true,
        ..MemoryHub::default()
    };
    let loader = TokenizerLoader::new(LoaderSettings::default()).hub_fetcher(hub.fetcher());
    let err = loader.load_for_model("acme/tiny", None).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("download failed: connection refused"),
        "{err}"
    );
    assert_eq!(hub.urls().len(), 1, "stops at the first network failure");

    let offline = MemoryHub::default();
    let loader = TokenizerLoader::new(settings(&[("HF_HUB_OFFLINE", "1".to_owned())]))
        .hub_fetcher(offline.fetcher());
    let err = loader.load_for_model("acme/tiny", None).await.unwrap_err();
    assert!(
        err.to_string().contains("skipped: HF_HUB_OFFLINE is set"),
        "{err}"
    );
    assert!(offline.urls().is_empty());

    // A missing file everywhere on the hub: both main files were asked for.
    let empty = MemoryHub::default();
    let loader = TokenizerLoader::new(LoaderSettings::default()).hub_fetcher(empty.fetcher());
    let err = loader.load_for_model("acme/tiny", None).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("tokenizer.json: not found (404)"), "{text}");
    assert!(text.contains("tiktoken.model: not found (404)"), "{text}");
}

#[test]
fn loads_many_times_concurrently_share_one_tokenizer() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let bytes = fixture_file("tokenizer.json");
    let loader =
        TokenizerLoader::new(LoaderSettings::default()).hub_fetcher(move |req: HubRequest| {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = req.url.ends_with("/tokenizer.json").then(|| bytes.clone());
            async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                HubResponse::Ok(body)
            }
        });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let loader = loader.clone();
                tokio::spawn(async move { loader.load_for_model("acme/shared", None).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().vocab_size(), 400);
        }
    });
    // tokenizer.json, tokenizer_config.json, chat_template.jinja: once.
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn downloads_are_kept_for_offline_use() {
    let tmp = tempfile::tempdir().unwrap();
    let base = "https://huggingface.co/acme/kept/resolve/main";
    let hub = MemoryHub::serving(
        base,
        vec![
            ("tokenizer.json", fixture_file("tokenizer.json")),
            (
                "tokenizer_config.json",
                fixture_file("tokenizer_config.json"),
            ),
            ("chat_template.jinja", b"{{ messages }}".to_vec()),
        ],
    );
    let vars = [("HOME", tmp.path().display().to_string())];
    let online = TokenizerLoader::new(settings(&vars)).hub_fetcher(hub.fetcher());
    let tok = online.load_for_model("acme/kept", None).await.unwrap();
    assert_eq!(
        tok.chat_template(),
        Some("{{ messages }}"),
        "chat_template.jinja wins"
    );
    let kept = tmp
        .path()
        .join(".cache/tinker-rs/tokenizers/acme/kept/main");
    assert!(kept.join("tokenizer.json").is_file(), "{}", kept.display());

    // A new process, offline: found in the download cache.
    let offline = TokenizerLoader::new(settings(&vars));
    let tok = offline.load_for_model("acme/kept", None).await.unwrap();
    assert_eq!(tok.chat_template(), Some("{{ messages }}"));
    assert_eq!(tok.encode("Hello", false).unwrap().len(), 1);
    // Three files and the commit lookup (unknown to this hub, so the download cache is
    // used rather than the Hugging Face cache); nothing downloaded again.
    assert_eq!(
        hub.urls()[3],
        "https://huggingface.co/api/models/acme/kept/revision/main"
    );
    assert_eq!(hub.urls().len(), 4, "nothing downloaded again");

    // Files that do not parse are not kept.
    let broken = MemoryHub::serving(
        "https://huggingface.co/acme/broken/resolve/main",
        vec![("tokenizer.json", b"{\"model\": 1}".to_vec())],
    );
    let loader = TokenizerLoader::new(settings(&vars)).hub_fetcher(broken.fetcher());
    let err = loader
        .load_for_model("acme/broken", None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::TokenizerJson { .. }), "{err}");
    assert!(
        !tmp.path()
            .join(".cache/tinker-rs/tokenizers/acme/broken")
            .exists()
    );
}
