//! Server-side custom losses: `create_custom_loss` and its traced graph.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::macros::{open_enum, type_last_struct};

/// One declared input of a custom loss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomLossInput {
    /// Input name (a `loss_fn_inputs` key, or `logprobs`).
    pub name: String,
    /// Tensor rank: 0, 1 or 2.
    pub rank: u8,
}

open_enum! {
    /// Kind of a traced graph node (torch.fx opcodes).
    pub enum CustomLossOp {
        /// A function argument.
        Placeholder = "placeholder",
        /// An attribute read.
        GetAttr = "get_attr",
        /// A free function call.
        CallFunction = "call_function",
        /// A method call.
        CallMethod = "call_method",
        /// A module call.
        CallModule = "call_module",
        /// The graph output.
        Output = "output",
    }
}

/// One node of a traced loss graph. `args`/`kwargs` use the SDK's argument encoding
/// (`{"ref": node}`, `{"tuple": [...]}`, ...), kept as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomLossNode {
    /// Node kind.
    pub op: CustomLossOp,
    /// Node name.
    pub name: String,
    /// Qualified target, e.g. `torch.exp`.
    pub target: String,
    /// Positional arguments.
    #[serde(default)]
    pub args: Vec<Value>,
    /// Keyword arguments.
    #[serde(default)]
    pub kwargs: Map<String, Value>,
}

/// A traced loss graph (`format` 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomLossGraph {
    /// Encoding version (1).
    #[serde(default = "format_one")]
    pub format: u32,
    /// Nodes in execution order.
    pub nodes: Vec<CustomLossNode>,
}

fn format_one() -> u32 {
    1
}

type_last_struct! {
    /// `POST /api/v1/create_custom_loss` (future → [`CreateCustomLossResponse`]).
    #[derive(Debug, Clone, PartialEq)]
    pub struct CreateCustomLossRequest = "create_custom_loss" {
        /// The owning session.
        pub session_id: String,
        /// Per-session custom-loss counter.
        pub custom_loss_seq_id: u64,
        /// Loss name.
        pub name: String,
        /// Declared inputs.
        pub inputs: Vec<CustomLossInput>,
        /// The traced graph.
        pub graph: CustomLossGraph,
    }
}

/// Final result of `create_custom_loss`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateCustomLossResponse {
    /// Id to pass as `loss_fn_config = {"loss_id": ...}` with loss `custom`.
    pub loss_id: String,
}

/// A string-valued non-finite float (`{"float": "inf"}`), as Python spells `str(x)`.
fn non_finite_str(x: f64) -> &'static str {
    if x.is_nan() {
        "nan"
    } else if x > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

/// One argument of a [`CustomLossNode`], decoded from the SDK's encoding (§6.8): JSON
/// scalars, strings and lists stand for themselves; everything else is a one-key object.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CustomLossArg {
    /// `null` (Python `None`).
    None,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float; non-finite values travel as `{"float": "inf" | "-inf" | "nan"}`.
    Float(f64),
    /// A string.
    Str(String),
    /// A Python list.
    List(Vec<CustomLossArg>),
    /// `{"ref": name}`: the value of an earlier node.
    Ref(String),
    /// `{"tuple": [...]}`.
    Tuple(Vec<CustomLossArg>),
    /// `{"dict": {...}}` (string keys, in order).
    Dict(Vec<(String, CustomLossArg)>),
    /// `{"slice": [start, stop, step]}`.
    Slice(Box<[CustomLossArg; 3]>),
    /// `{"ellipsis": true}`.
    Ellipsis,
    /// `{"dtype": "float32"}`.
    Dtype(String),
    /// `{"device": "cpu"}`.
    Device(String),
    /// `{"layout": "strided"}`.
    Layout(String),
    /// `{"memory_format": "contiguous_format"}`.
    MemoryFormat(String),
}

impl CustomLossArg {
    /// The wire (JSON) form.
    pub fn to_value(&self) -> Value {
        let one = |key: &str, v: Value| {
            let mut m = Map::new();
            m.insert(key.to_owned(), v);
            Value::Object(m)
        };
        let list =
            |items: &[CustomLossArg]| Value::Array(items.iter().map(Self::to_value).collect());
        match self {
            Self::None => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Int(i) => Value::from(*i),
            Self::Float(x) => match serde_json::Number::from_f64(*x) {
                Some(n) => Value::Number(n),
                None => one("float", Value::from(non_finite_str(*x))),
            },
            Self::Str(s) => Value::String(s.clone()),
            Self::List(items) => list(items),
            Self::Ref(name) => one("ref", Value::String(name.clone())),
            Self::Tuple(items) => one("tuple", list(items)),
            Self::Dict(entries) => one(
                "dict",
                Value::Object(
                    entries
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_value()))
                        .collect(),
                ),
            ),
            Self::Slice(parts) => one("slice", list(&parts[..])),
            Self::Ellipsis => one("ellipsis", Value::Bool(true)),
            Self::Dtype(s) => one("dtype", Value::String(s.clone())),
            Self::Device(s) => one("device", Value::String(s.clone())),
            Self::Layout(s) => one("layout", Value::String(s.clone())),
            Self::MemoryFormat(s) => one("memory_format", Value::String(s.clone())),
        }
    }

    /// Decodes the wire form; the error says which part is not a known encoding.
    pub fn from_value(value: &Value) -> Result<Self, String> {
        let text = |v: &Value, what: &str| {
            v.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{{\"{what}\": ...}} needs a string"))
        };
        let items = |v: &Value, what: &str| -> Result<Vec<Self>, String> {
            v.as_array()
                .ok_or_else(|| format!("{{\"{what}\": ...}} needs a list"))?
                .iter()
                .map(Self::from_value)
                .collect()
        };
        Ok(match value {
            Value::Null => Self::None,
            Value::Bool(b) => Self::Bool(*b),
            Value::Number(n) => match n.as_i64() {
                Some(i) if !n.is_f64() => Self::Int(i),
                _ => Self::Float(n.as_f64().ok_or("number out of range")?),
            },
            Value::String(s) => Self::Str(s.clone()),
            Value::Array(a) => {
                Self::List(a.iter().map(Self::from_value).collect::<Result<_, _>>()?)
            }
            Value::Object(m) => {
                let mut entries = m.iter();
                let (Some((key, v)), None) = (entries.next(), entries.next()) else {
                    return Err("an encoded argument object must have exactly one key".to_owned());
                };
                match key.as_str() {
                    "ref" => Self::Ref(text(v, key)?),
                    "tuple" => Self::Tuple(items(v, key)?),
                    "dict" => Self::Dict(
                        v.as_object()
                            .ok_or("{\"dict\": ...} needs an object")?
                            .iter()
                            .map(|(k, v)| Ok((k.clone(), Self::from_value(v)?)))
                            .collect::<Result<_, String>>()?,
                    ),
                    "slice" => {
                        let parts: [Self; 3] = items(v, key)?
                            .try_into()
                            .map_err(|_| "{\"slice\": ...} needs [start, stop, step]")?;
                        Self::Slice(Box::new(parts))
                    }
                    "ellipsis" => Self::Ellipsis,
                    "float" => Self::Float(match text(v, key)?.as_str() {
                        "inf" => f64::INFINITY,
                        "-inf" => f64::NEG_INFINITY,
                        "nan" => f64::NAN,
                        other => return Err(format!("unknown float constant {other:?}")),
                    }),
                    "dtype" => Self::Dtype(text(v, key)?),
                    "device" => Self::Device(text(v, key)?),
                    "layout" => Self::Layout(text(v, key)?),
                    "memory_format" => Self::MemoryFormat(text(v, key)?),
                    other => return Err(format!("unknown argument encoding {other:?}")),
                }
            }
        })
    }

    /// The number this argument holds, if it is a plain int or float.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(x) => Some(*x),
            _ => None,
        }
    }
}

/// Most inputs a custom loss may declare, `logprobs` included (SDK 0.38).
pub const MAX_CUSTOM_LOSS_INPUTS: usize = 16;

/// Whether `name` may name a custom-loss input: lowercase letters, digits and underscores,
/// not starting with a digit, at most 64 bytes (the rule client and server share).
pub fn is_custom_loss_input_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && name.len() <= 64
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
}

/// Whether `key` is a valid custom-loss metric key: `custom/[a-z0-9_./-]{1,64}:(sum|mean)`.
pub fn is_custom_metric_key(key: &str) -> bool {
    let Some((name, reduction)) = key
        .strip_prefix("custom/")
        .and_then(|rest| rest.rsplit_once(':'))
    else {
        return false;
    };
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '/' | '-'))
        && matches!(reduction, "sum" | "mean")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn argument_encodings_round_trip() {
        let wire = json!([
            null, true, 3, 0.8, "s", [1, {"ref": "x"}],
            {"ref": "exp"}, {"tuple": [{"ref": "neg"}, {"dict": {"custom/a:sum": {"ref": "m"}}}]},
            {"slice": [null, 2, null]}, {"ellipsis": true}, {"float": "-inf"}, {"dtype": "float32"},
            {"device": "cpu"}, {"layout": "strided"}, {"memory_format": "contiguous_format"}
        ]);
        for v in wire.as_array().unwrap() {
            let arg = CustomLossArg::from_value(v).unwrap();
            assert_eq!(&arg.to_value(), v, "{arg:?}");
        }
        let nan = CustomLossArg::from_value(&json!({"float": "nan"})).unwrap();
        assert!(matches!(nan, CustomLossArg::Float(x) if x.is_nan()));
        assert_eq!(nan.to_value(), json!({"float": "nan"}));
        assert_eq!(
            CustomLossArg::Float(f64::INFINITY).to_value(),
            json!({"float": "inf"})
        );
        assert!(CustomLossArg::from_value(&json!({"module": "x"})).is_err());
        assert!(CustomLossArg::from_value(&json!({"ref": "a", "tuple": []})).is_err());
        assert!(CustomLossArg::from_value(&json!({"float": "big"})).is_err());
    }

    #[test]
    fn shared_name_and_metric_rules() {
        assert!(is_custom_loss_input_name("advantages"));
        assert!(is_custom_loss_input_name("_x1"));
        assert!(!is_custom_loss_input_name("1x"));
        assert!(!is_custom_loss_input_name("Adv"));
        assert!(!is_custom_loss_input_name(&"a".repeat(65)));
        assert!(is_custom_metric_key("custom/ratio:mean"));
        assert!(is_custom_metric_key("custom/a.b/c-d_1:sum"));
        assert!(!is_custom_metric_key("custom/:sum"));
        assert!(!is_custom_metric_key("custom/A:sum"));
        assert!(!is_custom_metric_key("ratio:mean"));
        assert!(!is_custom_metric_key("custom/x:max"));
        assert!(!is_custom_metric_key(&format!(
            "custom/{}:sum",
            "a".repeat(65)
        )));
    }
}
