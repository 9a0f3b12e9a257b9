//! Digests of training request bodies, so that a resubmitted `seq_id` can be told apart
//! from a reused one (see the `worker` module). The digest is taken over a canonical form,
//! so the same request digests alike however it was spelled: a JSON body is parsed into its
//! request type and re-serialized with sorted keys (key order, spacing, number spelling and
//! field aliases do not matter); a protobuf body is decoded (after its `Content-Encoding`
//! is undone) and re-encoded, which writes fields in tag order and maps sorted.

use serde::Serialize;
use serde_json::Value;

use crate::worker::PayloadDigest;

/// Fields a client may legitimately change between retries of one request: the SDK takes
/// a fresh `sampling_session_seq_id` for each retry of an ephemeral
/// `save_weights_for_sampler` (protocol §6.4).
const RETRY_VARIANT_FIELDS: &[&str] = &["sampling_session_seq_id"];

/// A 128-bit digest (XXH3-128); a collision only matters within one model's `seq_id`s of
/// one account, so no cryptographic hash is needed. A forward_backward body can be tens of
/// megabytes: XXH3 digests it in one pass at memory speed (two SipHash runs took ~45 ms of
/// server CPU on the 33.6 MB of issue 14's P1).
struct Digester(twox_hash::XxHash3_128);

impl Digester {
    fn new(kind: &str) -> Self {
        let mut d = Self(twox_hash::XxHash3_128::new());
        d.bytes(kind.as_bytes());
        d
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    /// Length-prefixed bytes, so concatenations cannot collide.
    fn bytes(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.write(b"n"),
            Value::Bool(b) => self.write(if *b { b"t" } else { b"f" }),
            Value::Number(n) => {
                self.write(b"#");
                // One spelling per value: integers as integers, the rest as f64 bits.
                match (n.as_i64(), n.as_u64(), n.as_f64()) {
                    (Some(i), _, _) => self.bytes(&i.to_le_bytes()),
                    (_, Some(u), _) => self.bytes(&u.to_le_bytes()),
                    (_, _, Some(f)) => self.bytes(&f.to_bits().to_le_bytes()),
                    _ => self.bytes(n.to_string().as_bytes()),
                }
            }
            Value::String(s) => {
                self.write(b"s");
                self.bytes(s.as_bytes());
            }
            Value::Array(items) => {
                self.write(b"[");
                self.write(&(items.len() as u64).to_le_bytes());
                for item in items {
                    self.value(item);
                }
            }
            Value::Object(map) => {
                self.write(b"{");
                self.write(&(map.len() as u64).to_le_bytes());
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for key in keys {
                    self.bytes(key.as_bytes());
                    self.value(&map[key]);
                }
            }
        }
    }

    fn finish(self) -> PayloadDigest {
        PayloadDigest(self.0.finish_128())
    }
}

/// The digest of a parsed JSON request of endpoint `kind`. `raw` (the body as received) is
/// the fallback if the request cannot be re-serialized.
pub(crate) fn of_json<T: Serialize>(kind: &str, request: &T, raw: &[u8]) -> PayloadDigest {
    let mut d = Digester::new(kind);
    match tinker_types::json::to_value(request) {
        Ok(mut value) => {
            if let Value::Object(map) = &mut value {
                for field in RETRY_VARIANT_FIELDS {
                    map.remove(*field);
                }
            }
            d.value(&value);
        }
        Err(_) => d.bytes(raw),
    }
    d.finish()
}

/// The digest of a body as received (a request refused before it could be parsed).
pub(crate) fn of_bytes(kind: &str, raw: &[u8]) -> PayloadDigest {
    let mut d = Digester::new(kind);
    d.bytes(raw);
    d.finish()
}

/// The digest of a decoded `ForwardBackwardRequest`, over its canonical re-encoding (`raw`,
/// the body as received, if it cannot be re-encoded).
pub(crate) fn of_forward_backward(
    request: &tinker_types::ForwardBackwardRequest,
    raw: &[u8],
) -> PayloadDigest {
    let mut d = Digester::new("forward_backward");
    let canonical = request.encode_proto().ok();
    d.bytes(canonical.as_deref().unwrap_or(raw));
    d.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_retry_variant_fields_do_not_matter() {
        let a =
            json!({"model_id": "m", "seq_id": 3, "sampling_session_seq_id": 0, "kind": "snapshot"});
        let b =
            json!({"kind": "snapshot", "sampling_session_seq_id": 5, "seq_id": 3, "model_id": "m"});
        assert_eq!(of_json("x", &a, b""), of_json("x", &b, b""));
        let c = json!({"model_id": "m", "seq_id": 3, "kind": "inflight"});
        assert_ne!(of_json("x", &a, b""), of_json("x", &c, b""));
        assert_ne!(of_json("x", &a, b""), of_json("y", &a, b""));
        assert_ne!(
            of_json("x", &json!({"a": 1}), b""),
            of_json("x", &json!({"a": 1.5}), b"")
        );
    }
}
