//! [`Response`]: a complete, decompressed HTTP response.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::TransportError;

/// A response whose body has been read to the end and content-decoded.
#[derive(Debug, Clone)]
pub struct Response {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) retries: u32,
    pub(crate) elapsed: Duration,
}

impl Response {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The decoded body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Takes the decoded body.
    pub fn into_body(self) -> Bytes {
        self.body
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(http::header::CONTENT_TYPE)?.to_str().ok()
    }

    /// Whether the body is protobuf (`Content-Type` contains `application/x-protobuf`).
    pub fn is_protobuf(&self) -> bool {
        self.content_type()
            .is_some_and(|c| c.contains(crate::request::APPLICATION_PROTOBUF))
    }

    /// HTTP-level retries taken before this response.
    pub fn retries(&self) -> u32 {
        self.retries
    }

    /// Time from the first attempt to this response.
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// Parses the body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, TransportError> {
        serde_json::from_slice(&self.body).map_err(TransportError::decode_json)
    }
}
