//! Shared helpers for the server tests: a real server on a free port and a small HTTP client.
#![allow(dead_code)] // not every test module uses every helper

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prost::Message;
use serde_json::{Value, json};
use tinker_local::{LocalServer, LocalServerConfig, LocalServerHandle};
use tinker_types::proto::wire;

pub(crate) const MODEL: &str = "tinker-local/micro";
pub(crate) const KEY: &str = "tml-test";

/// A running server plus a client pointed at it.
pub(crate) struct Harness {
    pub server: LocalServerHandle,
    pub client: Client<HttpConnector, Full<Bytes>>,
    pub base: String,
    pub key: String,
}

/// A response: status, headers and body.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// A config for tests: short long-polls so pending futures answer quickly.
pub(crate) fn config(dir: &std::path::Path) -> LocalServerConfig {
    let mut c = LocalServerConfig::new(dir);
    c.long_poll = Duration::from_millis(500);
    c
}

impl Harness {
    pub(crate) async fn start(config: LocalServerConfig) -> Self {
        let server = LocalServer::start(config).await.expect("server starts");
        let client = Client::builder(TokioExecutor::new()).build_http();
        let base = server.url();
        Self {
            server,
            client,
            base,
            key: KEY.to_owned(),
        }
    }

    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path));
        if !self.key.is_empty() {
            builder = builder.header("x-api-key", &self.key);
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let req = builder
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Reply {
        // Polls take protobuf results, as SDK >= 0.18.1 and tinker-rs say; without it the
        // server answers older clients with the JSON form (`api/legacy.rs`).
        let headers: &[(&str, &str)] = if path == "retrieve_future" {
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, application/x-protobuf"),
            ]
        } else {
            &[("content-type", "application/json")]
        };
        self.request(
            Method::POST,
            &format!("/api/v1/{path}"),
            headers,
            body.to_string().into_bytes(),
        )
        .await
        .expect("request succeeds")
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, &format!("/api/v1/{path}"), &[], Vec::new())
            .await
            .expect("request succeeds")
    }

    /// POST expecting 200 JSON.
    pub(crate) async fn ok(&self, path: &str, body: Value) -> Value {
        let r = self.post(path, body).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    pub(crate) async fn session(&self) -> String {
        let r = self
            .ok(
                "create_session",
                json!({"tags": [], "user_metadata": {}, "sdk_version": "test", "type": "create_session"}),
            )
            .await;
        r["session_id"].as_str().expect("session id").to_owned()
    }

    /// Polls a future until it is done; returns the final reply.
    pub(crate) async fn wait(&self, request_id: &str) -> Reply {
        for _ in 0..400 {
            let r = self
                .request(
                    Method::POST,
                    "/api/v1/retrieve_future",
                    &[
                        ("content-type", "application/json"),
                        ("accept", "application/x-protobuf"),
                    ],
                    json!({"request_id": request_id, "allow_metadata_only": false})
                        .to_string()
                        .into_bytes(),
                )
                .await
                .expect("poll succeeds");
            let pending = r.status == StatusCode::REQUEST_TIMEOUT
                || (r.status == StatusCode::OK && is_json(&r) && r.json()["type"] == "try_again");
            if !pending {
                return r;
            }
        }
        panic!("future {request_id} never finished");
    }

    /// Waits for a JSON future result and checks it did not fail.
    pub(crate) async fn result(&self, future: &Value) -> Value {
        let id = future["request_id"].as_str().expect("request id");
        let r = self.wait(id).await;
        assert_eq!(r.status, StatusCode::OK);
        let v = r.json();
        assert!(v.get("error").is_none(), "future failed: {v}");
        v
    }

    pub(crate) async fn create_model(&self, session: &str, seq: i64) -> String {
        let f = self
            .ok(
                "create_model",
                json!({"session_id": session, "model_seq_id": seq, "base_model": MODEL,
                       "lora_config": {"rank": 4, "seed": 1, "train_unembed": true, "train_mlp": true, "train_attn": true},
                       "optimizer_config": {"type": "adamw"}, "type": "create_model"}),
            )
            .await;
        let done = self.result(&f).await;
        done["model_id"].as_str().expect("model id").to_owned()
    }

    /// Submits a forward/backward request; returns the untyped future.
    pub(crate) async fn fwd_bwd(
        &self,
        model: &str,
        seq: i32,
        data: &[Vec<u32>],
        forward_only: bool,
    ) -> Value {
        let body = fwd_bwd_body(model, seq, data, "cross_entropy", forward_only);
        let r = self.post_proto(body).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// POSTs a protobuf `forward_backward` body.
    pub(crate) async fn post_proto(&self, body: Vec<u8>) -> Reply {
        self.request(
            Method::POST,
            "/api/v1/forward_backward",
            &[("content-type", "application/x-protobuf")],
            body,
        )
        .await
        .expect("request succeeds")
    }

    /// Status of a heartbeat for `session`.
    pub(crate) async fn heartbeat(&self, session: &str) -> u16 {
        self.post(
            "session_heartbeat",
            json!({"session_id": session, "type": "session_heartbeat"}),
        )
        .await
        .status
        .as_u16()
    }

    /// Waits for a forward/backward result and decodes it.
    pub(crate) async fn fwd_bwd_result(&self, future: &Value) -> wire::ForwardBackwardOutput {
        let r = self.wait(future["request_id"].as_str().expect("id")).await;
        assert_eq!(
            r.headers
                .get("content-type")
                .map(|v| v.to_str().unwrap_or("")),
            Some("application/x-protobuf"),
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        wire::ForwardBackwardOutput::decode(r.body).expect("valid protobuf")
    }

    pub(crate) async fn optim(&self, model: &str, seq: i64, lr: f64) -> Value {
        self.ok(
            "optim_step",
            json!({"model_id": model, "seq_id": seq, "type": "optim_step",
                   "adam_params": {"learning_rate": lr, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8,
                                   "weight_decay": 0.0, "grad_clip_norm": 0.0}}),
        )
        .await
    }
}

pub(crate) fn is_json(r: &Reply) -> bool {
    r.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
}

/// A tiny dataset: each sequence repeats its own pattern.
pub(crate) fn dataset() -> Vec<Vec<u32>> {
    (0..4u32)
        .map(|i| {
            (0..24u32)
                .map(|j| 10 + (i * 7 + (j % 5) * 3) % 200)
                .collect()
        })
        .collect()
}

/// Encodes a `ForwardBackwardRequest` whose datums predict each next token with weight 1.
pub(crate) fn fwd_bwd_body(
    model: &str,
    seq: i32,
    data: &[Vec<u32>],
    loss: &str,
    forward_only: bool,
) -> Vec<u8> {
    let data = data
        .iter()
        .map(|tokens| {
            let (input, target) = (&tokens[..tokens.len() - 1], &tokens[1..]);
            let n = i64::try_from(input.len()).unwrap();
            let ids: Vec<u8> = input
                .iter()
                .flat_map(|t| (*t as i32).to_le_bytes())
                .collect();
            let targets: Vec<u8> = target
                .iter()
                .flat_map(|t| i64::from(*t).to_le_bytes())
                .collect();
            let weights: Vec<u8> = target.iter().flat_map(|_| 1.0f32.to_le_bytes()).collect();
            wire::Datum {
                model_input: vec![wire::Chunk {
                    chunk: Some(wire::chunk::Chunk::EncodedText(wire::EncodedTextChunk {
                        tokens: ids,
                    })),
                }],
                loss_fn_inputs: [
                    (
                        "target_tokens".to_owned(),
                        wire::Tensor {
                            encoding: Some(wire::tensor::Encoding::Dense(targets)),
                            dtype: wire::DType::DtypeInt64 as i32,
                            shape: vec![n],
                        },
                    ),
                    (
                        "weights".to_owned(),
                        wire::Tensor {
                            encoding: Some(wire::tensor::Encoding::Dense(weights)),
                            dtype: wire::DType::DtypeFloat32 as i32,
                            shape: vec![n],
                        },
                    ),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            }
        })
        .collect();
    wire::ForwardBackwardRequest {
        model_id: model.to_owned(),
        seq_id: seq,
        data,
        loss_fn: loss.to_owned(),
        forward_only,
        ..Default::default()
    }
    .encode_to_vec()
}

/// Per-datum logprobs of a forward/backward output.
pub(crate) fn logprobs(out: &wire::ForwardBackwardOutput) -> Vec<Vec<f32>> {
    let mut all = Vec::new();
    for record in &out.loss_fn_outputs {
        let field = &record.fields["logprobs"];
        let offsets: Vec<usize> = field
            .offsets
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as usize)
            .collect();
        for w in offsets.windows(2) {
            all.push(
                field.data[w[0]..w[1]]
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                    .collect(),
            );
        }
    }
    all
}

pub(crate) fn loss(out: &wire::ForwardBackwardOutput) -> f64 {
    out.metrics["loss:sum"]
}
