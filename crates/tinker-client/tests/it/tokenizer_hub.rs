//! Tokenizer downloads from the Hugging Face hub through the SDK transport, against an
//! in-process hyper server laid out like the hub (`/<repo>/resolve/<rev>/<file>`, a 302 to
//! a CDN path, `/api/models/<repo>/revision/<rev>`).

use std::path::{Path, PathBuf};

use tinker_client::{TransportHubFetcher, tokenizer_loader};
use tinker_testkit::{Reply, Server};
use tinker_tokenizer::{Error as TokenizerError, LoaderSettings, TokenizerLoader};
use tinker_transport::Env;

const REPO: &str = "tinker-local/micro";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const CDN_PATH: &str = "/cdn-lfs/blobs/9f2c-tokenizer";
const HF_TOKEN: &str = "hf_test_token_not_logged";

fn model_file(name: &str) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tinker-local/models/micro");
    std::fs::read(dir.join(name)).unwrap()
}

/// The hub's answer to `path`.
fn respond(path: &str) -> Reply {
    let resolve = format!("/{REPO}/resolve/main/");
    let reply = |status: u16, body: Vec<u8>| {
        Reply::bytes(status, body).with_header("x-repo-commit", COMMIT)
    };
    match path.strip_prefix(resolve.as_str()) {
        // Large files live on the CDN: the hub redirects there.
        Some("tokenizer.json") => Reply::status(302)
            .with_header("location", CDN_PATH)
            .with_header("x-repo-commit", COMMIT),
        Some("tokenizer_config.json") => reply(200, model_file("tokenizer_config.json")),
        Some(_) => reply(404, b"{\"error\":\"Entry not found\"}".to_vec()),
        None if path == CDN_PATH => reply(200, model_file("tokenizer.json")),
        None if path == format!("/api/models/{REPO}/revision/main") => reply(
            200,
            format!("{{\"id\":\"{REPO}\",\"sha\":\"{COMMIT}\"}}").into_bytes(),
        ),
        None => reply(404, b"{\"error\":\"Repository not found\"}".to_vec()),
    }
}

/// A scripted server laid out like the hub.
async fn fake_hub() -> Server {
    Server::start(|seen, _| respond(seen.uri.path())).await
}

fn settings(endpoint: &str, hub_cache: PathBuf) -> LoaderSettings {
    let mut settings = LoaderSettings::default();
    settings.hf_endpoint = endpoint.to_owned();
    settings.hf_hub_cache = Some(hub_cache);
    settings.hf_token = Some(HF_TOKEN.to_owned());
    settings
}

#[tokio::test]
async fn downloads_follow_the_redirect_and_land_in_the_hf_cache() {
    let hub = fake_hub().await;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    // An empty environment: no proxy of the machine running the test gets in the way.
    let fetcher =
        TransportHubFetcher::with_env(&hub.url, Env::from_pairs::<&str, &str>([])).unwrap();
    let loader = TokenizerLoader::new(settings(&hub.url, cache.clone())).hub_fetcher(fetcher);
    let debug = format!("{loader:?}");
    assert!(
        !debug.contains(HF_TOKEN),
        "the token leaked into Debug: {debug}"
    );
    assert!(debug.contains("[REDACTED]"), "{debug}");

    let tok = loader.load_for_model(REPO, None).await.unwrap();
    let ids = tok.encode("hello world", false).unwrap();
    assert!(!ids.is_empty());
    assert_eq!(tok.decode(&ids, false).unwrap(), "hello world");

    // The hub's layout was used, the redirect followed, and the token sent to the hub
    // only as a bearer token; nothing of Tinker's went there.
    let seen = hub.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.uri.path()).collect();
    assert_eq!(
        paths,
        [
            format!("/{REPO}/resolve/main/tokenizer.json").as_str(),
            CDN_PATH,
            format!("/{REPO}/resolve/main/tokenizer_config.json").as_str(),
            format!("/{REPO}/resolve/main/chat_template.jinja").as_str(),
            format!("/api/models/{REPO}/revision/main").as_str(),
        ]
    );
    for s in &seen {
        assert_eq!(
            s.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {HF_TOKEN}").as_str()),
            "{}",
            s.uri
        );
        assert!(s.headers.get("x-api-key").is_none(), "{}", s.uri);
        assert!(s.headers.get("cf-access-client-secret").is_none());
    }

    // The Hugging Face cache layout (`huggingface_hub` without symlinks).
    let repo_dir = cache.join("models--tinker-local--micro");
    let snapshot = repo_dir.join("snapshots").join(COMMIT);
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    assert_eq!(
        std::fs::read(snapshot.join("tokenizer.json")).unwrap(),
        model_file("tokenizer.json")
    );
    assert_eq!(
        std::fs::read(snapshot.join("tokenizer_config.json")).unwrap(),
        model_file("tokenizer_config.json")
    );
    assert!(!snapshot.join("chat_template.jinja").exists());

    // A new process, offline: the cached snapshot loads without the hub.
    let mut offline = settings(&hub.url, cache);
    offline.offline = true;
    let again = tokenizer_loader(offline)
        .unwrap()
        .load_for_model(REPO, None)
        .await
        .unwrap();
    assert_eq!(again.encode("hello world", false).unwrap(), ids);
    assert_eq!(hub.seen().len(), seen.len(), "nothing fetched offline");
}

#[tokio::test]
async fn an_offline_miss_says_where_it_looked() {
    let hub = fake_hub().await;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("hub");
    let mut offline = settings(&hub.url, cache.clone());
    offline.offline = true;
    let err = tokenizer_loader(offline)
        .unwrap()
        .load_for_model(REPO, None)
        .await
        .unwrap_err();
    let TokenizerError::NotFound { id, looked } = &err else {
        panic!("{err:?}");
    };
    assert_eq!(id, REPO);
    let places: Vec<&str> = looked.iter().map(|l| l.place.as_str()).collect();
    let snapshot = cache.join("models--tinker-local--micro/snapshots/main");
    assert!(
        places.contains(&snapshot.display().to_string().as_str()),
        "{places:?}"
    );
    assert!(
        looked
            .iter()
            .any(|l| l.place == hub.url && l.outcome.contains("HF_HUB_OFFLINE")),
        "{looked:?}"
    );
    let text = err.to_string();
    assert!(text.contains("looked in:"), "{text}");
    assert!(text.contains("HF_HUB_OFFLINE is set"), "{text}");
    assert!(hub.seen().is_empty(), "offline means no request");
}

#[tokio::test]
async fn an_unknown_repository_is_a_404_miss_not_a_failure() {
    let hub = fake_hub().await;
    let tmp = tempfile::tempdir().unwrap();
    let fetcher =
        TransportHubFetcher::with_env(&hub.url, Env::from_pairs::<&str, &str>([])).unwrap();
    let loader =
        TokenizerLoader::new(settings(&hub.url, tmp.path().join("hub"))).hub_fetcher(fetcher);
    let err = loader
        .load_for_model("acme/missing", None)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "{}/acme/missing/resolve/main/tokenizer.json: not found (404)",
            hub.url.clone()
        )),
        "{text}"
    );
    assert!(text.contains("tiktoken.model: not found (404)"), "{text}");
    assert!(!text.contains(HF_TOKEN), "{text}");
}
