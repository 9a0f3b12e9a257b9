//! Optimizers: the config fixed at model creation, the per-step parameters, and LoRA.

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Adam(W) step parameters; all six fields are always sent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamParams {
    /// Learning rate (default `1e-4`).
    #[serde(
        default = "AdamParams::default_learning_rate",
        serialize_with = "crate::json::finite"
    )]
    pub learning_rate: f64,
    /// First-moment decay (default `0.9`).
    #[serde(
        default = "AdamParams::default_beta1",
        serialize_with = "crate::json::finite"
    )]
    pub beta1: f64,
    /// Second-moment decay (default `0.95`).
    #[serde(
        default = "AdamParams::default_beta2",
        serialize_with = "crate::json::finite"
    )]
    pub beta2: f64,
    /// Numerical epsilon (default `1e-12`).
    #[serde(
        default = "AdamParams::default_eps",
        serialize_with = "crate::json::finite"
    )]
    pub eps: f64,
    /// Decoupled weight decay (default `0.0`).
    #[serde(default, serialize_with = "crate::json::finite")]
    pub weight_decay: f64,
    /// Global gradient-norm clip; `0.0` disables clipping (default).
    #[serde(default, serialize_with = "crate::json::finite")]
    pub grad_clip_norm: f64,
}

impl AdamParams {
    fn default_learning_rate() -> f64 {
        1e-4
    }
    fn default_beta1() -> f64 {
        0.9
    }
    fn default_beta2() -> f64 {
        0.95
    }
    fn default_eps() -> f64 {
        1e-12
    }

    /// Defaults with the given learning rate.
    pub fn with_learning_rate(learning_rate: f64) -> Self {
        Self {
            learning_rate,
            ..Self::default()
        }
    }
}

impl Default for AdamParams {
    fn default() -> Self {
        Self {
            learning_rate: Self::default_learning_rate(),
            beta1: Self::default_beta1(),
            beta2: Self::default_beta2(),
            eps: Self::default_eps(),
            weight_decay: 0.0,
            grad_clip_norm: 0.0,
        }
    }
}

/// Dimuon step parameters (`{"type":"dimuon", ...}`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "dimuon")]
pub struct DimuonParams {
    /// Learning rate (required, `>= 0`).
    #[serde(serialize_with = "crate::json::finite")]
    pub learning_rate: f64,
    /// Global gradient-norm clip; `0.0` disables clipping (default).
    #[serde(default, serialize_with = "crate::json::finite")]
    pub grad_clip_norm: f64,
    /// Momentum, `0 <= beta1 < 1` (default `0.9`).
    #[serde(
        default = "DimuonParams::default_beta1",
        serialize_with = "crate::json::finite"
    )]
    pub beta1: f64,
}

impl DimuonParams {
    fn default_beta1() -> f64 {
        0.9
    }

    /// Defaults with the given learning rate.
    pub fn new(learning_rate: f64) -> Self {
        Self {
            learning_rate,
            grad_clip_norm: 0.0,
            beta1: Self::default_beta1(),
        }
    }

    /// Checks the SDK's bounds (`learning_rate >= 0`, `0 <= beta1 < 1`, finite values).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, reason: &str| Error::InvalidValue {
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        if !(self.learning_rate.is_finite() && self.learning_rate >= 0.0) {
            return Err(bad("learning_rate", "must be a finite number >= 0"));
        }
        if !self.grad_clip_norm.is_finite() {
            return Err(bad("grad_clip_norm", "must be finite"));
        }
        if !(0.0..1.0).contains(&self.beta1) {
            return Err(bad("beta1", "must be in [0, 1)"));
        }
        Ok(())
    }
}

/// An optimizer object this SDK has no dedicated type for: `{"type": kind, ...fields}`.
#[derive(Debug, Clone, PartialEq)]
pub struct GenericOptimizerObject {
    /// The `"type"` discriminator.
    pub kind: String,
    /// All other fields, in order.
    pub fields: Map<String, Value>,
}

impl GenericOptimizerObject {
    fn from_map(mut map: Map<String, Value>) -> Result<Self, String> {
        match map.remove("type") {
            Some(Value::String(kind)) => Ok(Self { kind, fields: map }),
            Some(_) => Err("`type` must be a string".to_owned()),
            None => Err("missing field `type`".to_owned()),
        }
    }
}

impl Serialize for GenericOptimizerObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.fields.len() + 1))?;
        map.serialize_entry("type", &self.kind)?;
        for (k, v) in self.fields.iter().filter(|(k, _)| k.as_str() != "type") {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Per-step optimizer parameters (`adam_params` or `optimizer_params` of `optim_step`).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum OptimParams {
    /// Adam(W).
    Adam(AdamParams),
    /// Dimuon.
    Dimuon(DimuonParams),
    /// Another family, passed through.
    Other(GenericOptimizerObject),
}

impl Default for OptimParams {
    fn default() -> Self {
        Self::Adam(AdamParams::default())
    }
}

impl From<AdamParams> for OptimParams {
    fn from(p: AdamParams) -> Self {
        Self::Adam(p)
    }
}
impl From<DimuonParams> for OptimParams {
    fn from(p: DimuonParams) -> Self {
        Self::Dimuon(p)
    }
}

impl Serialize for OptimParams {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Adam(p) => p.serialize(serializer),
            Self::Dimuon(p) => p.serialize(serializer),
            Self::Other(p) => p.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for OptimParams {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::deserialize(deserializer)?;
        match map.get("type").and_then(Value::as_str) {
            // Adam parameters carry no discriminator.
            None => serde_json::from_value(Value::Object(map))
                .map(Self::Adam)
                .map_err(D::Error::custom),
            Some("dimuon") => serde_json::from_value(Value::Object(map))
                .map(Self::Dimuon)
                .map_err(D::Error::custom),
            Some(_) => GenericOptimizerObject::from_map(map)
                .map(Self::Other)
                .map_err(D::Error::custom),
        }
    }
}

/// The optimizer a model is created with (`optimizer_config`), fixed for its lifetime.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub enum OptimizerConfig {
    /// `{"type":"adamw"}` (the default).
    #[default]
    AdamW,
    /// `{"type":"dimuon","version":1}`.
    Dimuon {
        /// Dimuon version (1).
        version: u32,
    },
    /// Any other `{"type": ..., ...}`, passed through.
    Other(GenericOptimizerObject),
}

impl OptimizerConfig {
    /// Dimuon version 1.
    pub fn dimuon() -> Self {
        Self::Dimuon { version: 1 }
    }

    /// The `"type"` discriminator.
    pub fn kind(&self) -> &str {
        match self {
            Self::AdamW => "adamw",
            Self::Dimuon { .. } => "dimuon",
            Self::Other(o) => &o.kind,
        }
    }
}

impl Serialize for OptimizerConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::AdamW => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("type", "adamw")?;
                map.end()
            }
            Self::Dimuon { version } => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("type", "dimuon")?;
                map.serialize_entry("version", version)?;
                map.end()
            }
            Self::Other(o) => o.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for OptimizerConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::deserialize(deserializer)?;
        match map.get("type").and_then(Value::as_str) {
            Some("adamw") => Ok(Self::AdamW),
            Some("dimuon") => {
                let version = match map.get("version") {
                    None => 1,
                    Some(v) => v
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .ok_or_else(|| D::Error::custom("dimuon `version` must be an integer"))?,
                };
                Ok(Self::Dimuon { version })
            }
            _ => GenericOptimizerObject::from_map(map)
                .map(Self::Other)
                .map_err(D::Error::custom),
        }
    }
}

/// LoRA adapter configuration of a new training model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoraConfig {
    /// Adapter rank (default 32).
    pub rank: u32,
    /// Seed of the adapter initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Train the unembedding (default true).
    #[serde(default = "yes")]
    pub train_unembed: bool,
    /// Train MLP blocks (default true).
    #[serde(default = "yes")]
    pub train_mlp: bool,
    /// Train attention blocks (default true).
    #[serde(default = "yes")]
    pub train_attn: bool,
}

fn yes() -> bool {
    true
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self::with_rank(32)
    }
}

impl LoraConfig {
    /// All blocks trained, the given rank, no seed.
    pub fn with_rank(rank: u32) -> Self {
        Self {
            rank,
            seed: None,
            train_unembed: true,
            train_mlp: true,
            train_attn: true,
        }
    }

    /// Checks that at least one block kind is trained (the SDK asserts this).
    ///
    /// # Errors
    /// [`Error::InvalidValue`] when all three train flags are false.
    pub fn validate(&self) -> Result<()> {
        if self.train_unembed || self.train_mlp || self.train_attn {
            Ok(())
        } else {
            Err(Error::InvalidValue {
                field: "lora_config".to_owned(),
                reason: "at least one of train_mlp, train_attn, train_unembed must be true"
                    .to_owned(),
            })
        }
    }
}
