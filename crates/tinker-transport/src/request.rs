//! [`RequestSpec`]: a replayable description of one API call.
//!
//! A spec is plain data (the body is a cheaply cloned [`Bytes`]), so every retry and the
//! JWT replay rebuild the HTTP request from it and never lack a body.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use serde::Serialize;

use crate::error::{Cause, ErrorKind, TransportError};

/// The media type of JSON bodies.
pub const APPLICATION_JSON: &str = "application/json";
/// The media type of protobuf bodies and results.
pub const APPLICATION_PROTOBUF: &str = "application/x-protobuf";

/// Request-body compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Send the body as is.
    #[default]
    None,
    /// zstd-compress the body and send `Content-Encoding: zstd` (flag
    /// `proto_compress_fwdbwd`).
    Zstd,
    /// The body is already one zstd frame (compressed by the caller, e.g. off the async
    /// executor and in parallel): send it as is with `Content-Encoding: zstd`.
    ZstdEncoded,
}

/// One API call, described so it can be sent any number of times.
///
/// Build with [`RequestSpec::get`], [`RequestSpec::post`], … then chain `with_*` setters.
/// The path is the API path, starting with `/api/v1/`; it is appended to the base URL as
/// is (no percent-encoding, as in the SDK).
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) query: Vec<(String, String)>,
    pub(crate) body: Option<Bytes>,
    pub(crate) content_type: Option<HeaderValue>,
    pub(crate) compression: Compression,
    pub(crate) accept: HeaderValue,
    pub(crate) headers: HeaderMap,
    pub(crate) max_retries: Option<u32>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) sdk_method: Option<HeaderValue>,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) authenticate: bool,
}

impl RequestSpec {
    /// A request with `method` to `path` (`/api/v1/...`).
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
            query: Vec::new(),
            body: None,
            content_type: None,
            compression: Compression::None,
            accept: HeaderValue::from_static(APPLICATION_JSON),
            headers: HeaderMap::new(),
            max_retries: None,
            timeout: None,
            sdk_method: None,
            idempotency_key: None,
            authenticate: true,
        }
    }

    /// A `GET` request.
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }

    /// A `POST` request.
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }

    /// A `PUT` request.
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::PUT, path)
    }

    /// A `DELETE` request. It carries `Content-Type: application/json` and no body, as the
    /// SDK's do.
    pub fn delete(path: impl Into<String>) -> Self {
        let mut spec = Self::new(Method::DELETE, path);
        spec.content_type = Some(HeaderValue::from_static(APPLICATION_JSON));
        spec
    }

    /// Adds a query parameter (the value is percent-encoded on the wire).
    pub fn with_query(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.query.push((key.into(), value.into()));
        self
    }

    /// Sets a raw body and its content type.
    pub fn with_body(mut self, body: impl Into<Bytes>, content_type: &'static str) -> Self {
        self.body = Some(body.into());
        self.content_type = Some(HeaderValue::from_static(content_type));
        self
    }

    /// Sets a compact JSON body (`Content-Type: application/json`).
    pub fn with_json<T: Serialize + ?Sized>(self, body: &T) -> Result<Self, TransportError> {
        let bytes = serde_json::to_vec(body).map_err(|source| {
            TransportError::new(ErrorKind::InvalidRequest, Cause::EncodeJson { source })
        })?;
        Ok(self.with_body(bytes, APPLICATION_JSON))
    }

    /// Sets a protobuf body (`Content-Type: application/x-protobuf`).
    pub fn with_protobuf(self, body: impl Into<Bytes>) -> Self {
        self.with_body(body, APPLICATION_PROTOBUF)
    }

    /// Compresses the body (once, before the first attempt).
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets the `Accept` header (default `application/json`).
    pub fn with_accept(mut self, accept: &'static str) -> Self {
        self.accept = HeaderValue::from_static(accept);
        self
    }

    /// Adds an extra header (sent on every attempt).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Overrides the number of HTTP-level retries (`0` disables them).
    pub fn with_max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = Some(max_retries);
        self
    }

    /// Overrides the read timeout of this request (echoed in `x-stainless-read-timeout`).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Names the public SDK method this request serves (`x-sdk-method`, e.g.
    /// `TrainingClient.forward_backward`); also sends `x-sdk-version`.
    pub fn with_sdk_method(mut self, method: &str) -> Self {
        self.sdk_method = HeaderValue::from_str(method).ok();
        self
    }

    /// [`RequestSpec::with_sdk_method`] for a method name known at compile time: the header
    /// value then points at the name instead of copying it for every request.
    pub fn with_static_sdk_method(mut self, method: &'static str) -> Self {
        let visible = method
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
        self.sdk_method = if visible {
            Some(HeaderValue::from_static(method))
        } else {
            HeaderValue::from_str(method).ok()
        };
        self
    }

    /// Uses this idempotency key instead of a fresh one (e.g. `copy_weights` reuses one
    /// bare UUID across every retry layer).
    pub fn with_idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    /// Sends the request without `X-API-Key` (public endpoints, signed URLs).
    pub fn without_auth(mut self) -> Self {
        self.authenticate = false;
        self
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The API path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The body, before compression.
    pub fn body(&self) -> Option<&Bytes> {
        self.body.as_ref()
    }
}
