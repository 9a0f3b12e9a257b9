//! `tinker checkpoint push-hf`: downloads a LoRA checkpoint and uploads it to the Hugging
//! Face Hub through its HTTP API at `HF_ENDPOINT` (default `https://huggingface.co`) with
//! `HF_TOKEN`. No Tinker credential is ever sent there.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::commands::fetch;
use crate::connect;
use crate::error::CliError;
use crate::output::{Format, Properties};

/// Options of `push-hf`, as the SDK names them.
#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// The checkpoint's tinker:// path.
    pub checkpoint_path: String,
    /// Hub repo id (default: tinker-<base model>-<run id> in your namespace).
    #[arg(short = 'r', long = "repo")]
    pub repo: Option<String>,
    /// Create the repo public (default: private).
    #[arg(long)]
    pub public: bool,
    /// Branch to push to (default with a derived repo: the checkpoint id).
    #[arg(long)]
    pub revision: Option<String>,
    /// Commit message.
    #[arg(long)]
    pub commit_message: Option<String>,
    /// Open a pull request instead of committing to the branch.
    #[arg(long)]
    pub create_pr: bool,
    /// Only upload files matching this pattern (repeatable).
    #[arg(long = "allow-pattern")]
    pub allow_pattern: Vec<String>,
    /// Skip files matching this pattern (repeatable).
    #[arg(long = "ignore-pattern")]
    pub ignore_pattern: Vec<String>,
    /// Do not add a README.md model card.
    #[arg(long)]
    pub no_model_card: bool,
}

/// Largest Hub answer read (they are small JSON documents).
const MAX_ANSWER: usize = 4 << 20;

/// The Hub's HTTP API with a bearer token.
struct Hub {
    endpoint: String,
    token: String,
    client: Client<
        hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
}

impl Hub {
    fn from_env() -> Result<Self, CliError> {
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                CliError::with(
                    "Not logged in",
                    "Set HF_TOKEN to a Hugging Face write token.",
                )
            })?;
        let endpoint = std::env::var("HF_ENDPOINT")
            .unwrap_or_else(|_| "https://huggingface.co".to_owned())
            .trim_end_matches('/')
            .to_owned();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            endpoint,
            token,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// One request; `url` is absolute or a path on the endpoint. The token only goes with
    /// paths on the endpoint (absolute LFS upload URLs carry their own signed headers).
    async fn send(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Bytes,
        extra: &[(String, String)],
    ) -> Result<(StatusCode, Bytes), CliError> {
        let absolute = url.starts_with("http://") || url.starts_with("https://");
        let full = if absolute {
            url.to_owned()
        } else {
            format!("{}{url}", self.endpoint)
        };
        let mut req = Request::builder().method(method).uri(&full);
        if !absolute {
            let mut auth = http::HeaderValue::from_str(&format!("Bearer {}", self.token))
                .map_err(|_| CliError::new("HF_TOKEN contains characters a header cannot carry"))?;
            auth.set_sensitive(true);
            req = req.header(http::header::AUTHORIZATION, auth);
        }
        if let Some(ct) = content_type {
            req = req.header(http::header::CONTENT_TYPE, ct);
        }
        for (k, v) in extra {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| CliError::new(format!("Bad Hub request: {e}")))?;
        let fail = |e: &dyn std::fmt::Display| {
            CliError::with("Hugging Face Hub request failed", e.to_string())
        };
        let resp = self.client.request(req).await.map_err(|e| fail(&e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| fail(&e))?
            .to_bytes();
        Ok((status, body))
    }

    async fn json(
        &self,
        method: Method,
        url: &str,
        body: &Value,
    ) -> Result<(StatusCode, Value), CliError> {
        let (status, bytes) = self
            .send(
                method,
                url,
                Some("application/json"),
                Bytes::from(body.to_string()),
                &[],
            )
            .await?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}

fn hub_error(what: &str, status: StatusCode, body: &Value) -> CliError {
    let detail = body.get("error").and_then(Value::as_str).unwrap_or("");
    CliError::with(format!("{what} failed (HTTP {status})"), detail.to_owned())
}

/// Repo names keep letters, digits, `-`, `_`, `.`; other characters become `-`.
fn sanitize(value: &str) -> String {
    let mut name: String = value
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    while name.contains("--") {
        name = name.replace("--", "-");
    }
    name.trim_matches(|c| "-_ .".contains(c)).to_owned()
}

/// `fnmatch`-style matching (`*`, `?`), as the Hub client filters files.
fn matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some('?'), Some(_)) => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(
        &pattern.chars().collect::<Vec<_>>(),
        &name.chars().collect::<Vec<_>>(),
    )
}

/// Every file under `dir`, as `/`-separated relative paths, sorted.
fn files(dir: &Path) -> Result<Vec<(String, PathBuf)>, CliError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)
            .map_err(|e| CliError::io(&format!("reading {}", d.display()), &e))?
        {
            let e = e.map_err(|e| CliError::io("reading the download", &e))?;
            let t = e
                .file_type()
                .map_err(|e| CliError::io("reading the download", &e))?;
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .unwrap_or(&e.path())
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((rel, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn model_card(
    path: &str,
    repo: &str,
    base: &str,
    info: Option<&tinker_types::weights::WeightsInfoResponse>,
) -> String {
    let mut tags = vec!["tinker".to_owned(), "peft".into(), "lora".into()];
    if base != "unknown" {
        tags.push(format!("base_model:adapter:{base}"));
    }
    let mut card = format!("---\nbase_model: {base}\nlibrary_name: peft\ntags:\n");
    for t in tags {
        card.push_str(&format!("- {t}\n"));
    }
    card.push_str(&format!(
        "tinker_path: {path}\n---\n\n# Tinker LoRA adapter\n\nA LoRA adapter exported from Tinker \
         (`{path}`), for the base model `{base}`.\n\nLoad it with PEFT: `PeftModel.from_pretrained(base, \"{repo}\")`.\n"
    ));
    if let Some(i) = info {
        if let Some(r) = i.lora_rank {
            card.push_str(&format!("\n- LoRA rank: {r}\n"));
        }
        card.push_str(&format!(
            "- Trained modules: attn={:?}, mlp={:?}, unembed={:?}\n",
            i.train_attn, i.train_mlp, i.train_unembed
        ));
    }
    card
}

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `tinker checkpoint push-hf`.
#[allow(clippy::too_many_lines)]
pub(crate) async fn run(args: PushArgs, format: Format) -> Result<(), CliError> {
    let parsed = fetch::downloadable(&args.checkpoint_path)?;
    let hub = Hub::from_env()?;
    let (status, who) = hub
        .json(Method::GET, "/api/whoami-v2", &Value::Null)
        .await?;
    if !status.is_success() {
        return Err(CliError::with(
            "Not logged in",
            "Set HF_TOKEN to a valid Hugging Face token.",
        ));
    }
    let user = who
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();

    let client = connect::rest().await?;
    let work = tempfile::tempdir().map_err(|e| CliError::io("creating a temporary folder", &e))?;
    let dir = work.path().join("checkpoint");
    std::fs::create_dir(&dir).map_err(|e| CliError::io("creating a temporary folder", &e))?;
    fetch::into_folder(&client, &args.checkpoint_path, &dir, Format::Json).await?;
    let config = dir.join("adapter_config.json");
    if !config.exists()
        || !(dir.join("adapter_model.safetensors").exists()
            || dir.join("adapter_model.bin").exists())
    {
        return Err(CliError::with(
            "Checkpoint does not contain a PEFT adapter.",
            "Expected adapter_config.json and adapter_model.safetensors (or adapter_model.bin). \
             Encrypted (.age) external weights cannot be uploaded.",
        ));
    }
    let info = client
        .get_weights_info_by_tinker_path(&args.checkpoint_path)
        .await
        .ok();
    let base = info
        .as_ref()
        .map_or_else(|| "unknown".to_owned(), |i| i.base_model.clone());
    // PEFT needs base_model_name_or_path to load the adapter.
    if let Ok(text) = std::fs::read_to_string(&config)
        && let Ok(Value::Object(mut cfg)) = serde_json::from_str::<Value>(&text)
        && !cfg
            .get("base_model_name_or_path")
            .is_some_and(Value::is_string)
    {
        cfg.insert("base_model_name_or_path".into(), base.clone().into());
        let _ = std::fs::write(&config, format!("{}\n", Value::Object(cfg)));
    }
    let mut revision = args.revision.clone();
    let repo = match args.repo.clone() {
        Some(r) => r,
        None => {
            let short = if base == "unknown" {
                "adapter"
            } else {
                base.rsplit('/').next().unwrap_or("adapter")
            };
            if revision.is_none() {
                revision = Some(sanitize(&parsed.checkpoint_id().replace('/', "-")));
            }
            let name = sanitize(&format!("tinker-{short}-{}", parsed.training_run_id));
            if user.is_empty() {
                name
            } else {
                format!("{user}/{name}")
            }
        }
    };
    let readme = dir.join("README.md");
    if !args.no_model_card && !readme.exists() {
        std::fs::write(
            &readme,
            model_card(&args.checkpoint_path, &repo, &base, info.as_ref()),
        )
        .map_err(|e| CliError::io("writing the model card", &e))?;
    }

    let (namespace, name) = repo
        .split_once('/')
        .map_or((None, repo.as_str()), |(o, n)| (Some(o), n));
    let mut create = json!({ "name": name, "private": !args.public, "type": "model" });
    if let Some(ns) = namespace.filter(|ns| *ns != user) {
        create["organization"] = ns.into();
    }
    let (status, body) = hub.json(Method::POST, "/api/repos/create", &create).await?;
    if !(status.is_success() || status == StatusCode::CONFLICT) {
        return Err(hub_error("Creating the Hub repo", status, &body));
    }
    let rev = revision.clone().unwrap_or_else(|| "main".to_owned());
    // A repo holding another checkpoint is never overwritten.
    let (status, text) = hub
        .send(
            Method::GET,
            &format!("/{repo}/resolve/{rev}/README.md"),
            None,
            Bytes::new(),
            &[],
        )
        .await?;
    if status.is_success()
        && let Some(found) = String::from_utf8_lossy(&text)
            .split_whitespace()
            .find(|w| w.contains("tinker://"))
            .map(|w| {
                w.trim_matches(|c: char| c == '`' || c == '(' || c == ')')
                    .to_owned()
            })
        && found != args.checkpoint_path
    {
        return Err(CliError::with(
            "Repo ID appears to contain a different Tinker checkpoint.",
            format!("Found {found}, expected {}.", args.checkpoint_path),
        ));
    }
    if rev != "main" {
        let (status, body) = hub
            .json(
                Method::POST,
                &format!("/api/models/{repo}/branch/{rev}"),
                &json!({}),
            )
            .await?;
        if !(status.is_success() || status == StatusCode::CONFLICT) {
            return Err(hub_error("Creating the branch", status, &body));
        }
    }

    let mut ignore = args.ignore_pattern.clone();
    if args.allow_pattern.is_empty() {
        ignore.push("checkpoint_complete".into());
    }
    let selected: Vec<(String, PathBuf)> = files(&dir)?
        .into_iter()
        .filter(|(rel, _)| {
            args.allow_pattern.is_empty() || args.allow_pattern.iter().any(|p| matches(p, rel))
        })
        .filter(|(rel, _)| !ignore.iter().any(|p| matches(p, rel)))
        .collect();
    let mut contents = Vec::new();
    for (rel, path) in &selected {
        let data = std::fs::read(path).map_err(|e| CliError::io(&format!("reading {rel}"), &e))?;
        contents.push((rel.clone(), data));
    }
    // Ask the Hub which files go through LFS.
    let pre = json!({ "files": contents.iter().map(|(rel, d)| json!({
        "path": rel, "size": d.len(), "sample": B64.encode(&d[..d.len().min(512)]),
    })).collect::<Vec<_>>() });
    let (status, body) = hub
        .json(
            Method::POST,
            &format!("/api/models/{repo}/preupload/{rev}"),
            &pre,
        )
        .await?;
    if !status.is_success() {
        return Err(hub_error("Preparing the upload", status, &body));
    }
    let lfs: Vec<String> = body["files"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["uploadMode"] == "lfs")
        .filter_map(|f| f["path"].as_str().map(str::to_owned))
        .collect();
    let mut ops = vec![json!({ "key": "header", "value": {
        "summary": args.commit_message.clone().unwrap_or_else(|| format!("Upload {}", args.checkpoint_path)),
        "description": "",
    }})];
    for (rel, data) in &contents {
        if lfs.contains(rel) {
            let oid = sha256_hex(data);
            let batch = json!({ "operation": "upload", "transfers": ["basic"], "hash_algo": "sha256",
                "objects": [{ "oid": oid, "size": data.len() }] });
            let (status, answer) = hub
                .send(
                    Method::POST,
                    &format!("/{repo}.git/info/lfs/objects/batch"),
                    Some("application/vnd.git-lfs+json"),
                    Bytes::from(batch.to_string()),
                    &[],
                )
                .await?;
            let answer: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
            if !status.is_success() {
                return Err(hub_error("Preparing an LFS upload", status, &answer));
            }
            // No `actions.upload`: the Hub already has this object.
            if let Some(upload) = answer["objects"][0]["actions"]["upload"].as_object() {
                let href = upload
                    .get("href")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let headers: Vec<(String, String)> = upload
                    .get("header")
                    .and_then(Value::as_object)
                    .map(|h| {
                        h.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                let (status, body) = hub
                    .send(
                        Method::PUT,
                        href,
                        Some("application/octet-stream"),
                        Bytes::from(data.clone()),
                        &headers,
                    )
                    .await?;
                if !status.is_success() {
                    return Err(hub_error(
                        &format!("Uploading {rel}"),
                        status,
                        &serde_json::from_slice(&body).unwrap_or(Value::Null),
                    ));
                }
            }
            ops.push(json!({ "key": "lfsFile", "value": { "path": rel, "algo": "sha256", "oid": oid, "size": data.len() } }));
        } else {
            ops.push(json!({ "key": "file", "value": { "path": rel, "encoding": "base64", "content": B64.encode(data) } }));
        }
    }
    let ndjson: String = ops.iter().map(|o| format!("{o}\n")).collect();
    let mut url = format!("/api/models/{repo}/commit/{rev}");
    if args.create_pr {
        url.push_str("?create_pr=1");
    }
    let (status, body) = hub
        .send(
            Method::POST,
            &url,
            Some("application/x-ndjson"),
            Bytes::from(ndjson),
            &[],
        )
        .await?;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(hub_error("Committing to the Hub", status, &body));
    }
    let commit_url = body["pullRequestUrl"]
        .as_str()
        .or(body["commitUrl"].as_str())
        .unwrap_or_default()
        .to_owned();
    let rows = vec![
        ("Checkpoint".into(), args.checkpoint_path.clone()),
        ("Repo".into(), repo.clone()),
        ("Revision".into(), rev.clone()),
        ("URL".into(), commit_url.clone()),
    ];
    let doc = json!({ "checkpoint_path": args.checkpoint_path, "repo_id": repo, "revision": rev, "url": commit_url });
    crate::output::print(
        &Properties {
            title: Some("Pushed to the Hugging Face Hub".into()),
            rows,
            json: doc,
        },
        format,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_patterns() {
        assert_eq!(
            sanitize("tinker-micro-session-1:train:0"),
            "tinker-micro-session-1-train-0"
        );
        assert_eq!(sanitize("--a//b__"), "a-b");
        assert!(matches("*.json", "adapter_config.json"));
        assert!(matches("adapter_?odel*", "adapter_model.safetensors"));
        assert!(!matches("*.bin", "adapter_model.safetensors"));
    }
}
