//! Results of futures before and after typed decoding: the request types, the raw
//! [`Payload`] of a finished future and [`FromPayload`], the decoding into a result type.
//! Below both the polling loop (`future`) and telemetry, which report decode failures.

use bytes::Bytes;
use serde_json::Value;

use crate::error::{Error, Result};

/// The kind of request a future belongs to (`X-Tinker-Request-Type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestType {
    CreateModel,
    ForwardBackward,
    Forward,
    OptimStep,
    SaveWeights,
    LoadWeights,
    SaveWeightsForSampler,
    SaveWeightsExternal,
    Sample,
    CreateCustomLoss,
}

impl RequestType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::CreateModel => "CreateModel",
            Self::ForwardBackward => "ForwardBackward",
            Self::Forward => "Forward",
            Self::OptimStep => "OptimStep",
            Self::SaveWeights => "SaveWeights",
            Self::LoadWeights => "LoadWeights",
            Self::SaveWeightsForSampler => "SaveWeightsForSampler",
            Self::SaveWeightsExternal => "SaveWeightsExternal",
            Self::Sample => "Sample",
            Self::CreateCustomLoss => "CreateCustomLoss",
        }
    }

    pub(crate) fn expects_proto(self) -> bool {
        matches!(self, Self::ForwardBackward | Self::Forward | Self::Sample)
    }

    /// The protobuf message a result of this type is.
    pub(crate) fn proto_name(self) -> &'static str {
        match self {
            Self::Sample => "SampleResponse",
            _ => "ForwardBackwardOutput",
        }
    }
}

/// The error for a JSON result where a protobuf `message` was expected, saying what the
/// JSON was.
pub(crate) fn json_instead_of_proto(message: &str, value: &Value) -> Error {
    Error::protocol(format!(
        "expected a protobuf {message} result, but the server sent JSON: {}",
        describe_json(value)
    ))
}

/// The shape of a JSON value, for error messages: its type and, for an object, its fields
/// with their types (never the values: they may be large).
pub(crate) fn describe_json(value: &Value) -> String {
    fn type_of(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
    match value {
        Value::Object(map) => {
            const SHOWN: usize = 8;
            let mut fields: Vec<String> = map
                .iter()
                .take(SHOWN)
                .map(|(k, v)| format!("{k:?}: {}", type_of(v)))
                .collect();
            if map.len() > SHOWN {
                fields.push(format!("… {} more", map.len() - SHOWN));
            }
            format!("an object {{{}}}", fields.join(", "))
        }
        Value::Array(items) => format!("an array of {} items", items.len()),
        other => format!("a {}", type_of(other)),
    }
}

/// A finished future's payload, before typed decoding.
pub(crate) enum Payload {
    /// `application/x-protobuf` body.
    Proto(Bytes),
    /// A JSON success value.
    Json(Value),
}

/// Decodes a finished payload into a typed result.
pub(crate) trait FromPayload: Sized {
    fn from_payload(payload: Payload) -> Result<Self>;
}

macro_rules! json_payload {
    ($($t:ty),* $(,)?) => {$(
        impl $crate::payload::FromPayload for $t {
            fn from_payload(payload: $crate::payload::Payload) -> $crate::error::Result<Self> {
                match payload {
                    $crate::payload::Payload::Json(v) => tinker_types::json::from_value(v)
                        .map_err(|e| $crate::error::Error::protocol(format!(
                            "the result is not a valid {}: {e}", stringify!($t)
                        ))),
                    $crate::payload::Payload::Proto(b) => Err($crate::error::Error::protocol(format!(
                        "expected a JSON {} result, but the server sent {} bytes of protobuf",
                        stringify!($t), b.len()
                    ))),
                }
            }
        }
    )*};
}
pub(crate) use json_payload;

json_payload!(
    Value,
    tinker_types::CreateModelResponse,
    tinker_types::OptimStepResponse
);
