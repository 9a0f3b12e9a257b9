//! `tinker://` checkpoint paths: `tinker://<training_run_id>/<kind>/<name>`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result, TinkerPathProblem};
use crate::rest::CheckpointType;

/// The middle segment of a checkpoint path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CheckpointKind {
    /// `weights`: full training state (checkpoint type `training`).
    Weights,
    /// `sampler_weights`: weights for sampling (checkpoint type `sampler`).
    SamplerWeights,
    /// `external_weights`: an exported copy (checkpoint type `external`).
    ExternalWeights,
}

impl CheckpointKind {
    /// The path segment.
    pub fn segment(self) -> &'static str {
        match self {
            Self::Weights => "weights",
            Self::SamplerWeights => "sampler_weights",
            Self::ExternalWeights => "external_weights",
        }
    }

    /// The matching `checkpoint_type` of REST listings.
    pub fn checkpoint_type(self) -> CheckpointType {
        match self {
            Self::Weights => CheckpointType::Training,
            Self::SamplerWeights => CheckpointType::Sampler,
            Self::ExternalWeights => CheckpointType::External,
        }
    }

    fn from_segment(segment: &str) -> Option<Self> {
        match segment {
            "weights" => Some(Self::Weights),
            "sampler_weights" => Some(Self::SamplerWeights),
            "external_weights" => Some(Self::ExternalWeights),
            _ => None,
        }
    }
}

/// A parsed checkpoint path.
///
/// ```
/// use tinker_types::{CheckpointKind, TinkerPath};
///
/// let path = TinkerPath::parse("tinker://sess:train:0/weights/step-100")?;
/// assert_eq!(path.training_run_id, "sess:train:0");
/// assert_eq!(path.kind, CheckpointKind::Weights);
/// assert_eq!(path.checkpoint_id(), "weights/step-100");
/// assert_eq!(path.to_string(), "tinker://sess:train:0/weights/step-100");
/// # Ok::<(), tinker_types::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TinkerPath {
    /// The training run (`<session_id>:train:<n>`).
    pub training_run_id: String,
    /// The checkpoint kind.
    pub kind: CheckpointKind,
    /// The checkpoint name.
    pub name: String,
}

/// Scheme prefix of every checkpoint path.
pub const TINKER_SCHEME: &str = "tinker://";

impl TinkerPath {
    /// Parses `tinker://<training_run_id>/<kind>/<name>`.
    ///
    /// # Errors
    /// [`Error::InvalidTinkerPath`] naming the problem (scheme, part count, empty run id or
    /// name, unknown kind).
    pub fn parse(path: &str) -> Result<Self> {
        let fail = |problem| Error::InvalidTinkerPath {
            path: path.to_owned(),
            problem,
        };
        let rest = path
            .strip_prefix(TINKER_SCHEME)
            .ok_or_else(|| fail(TinkerPathProblem::MissingScheme))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [run, segment, name] = parts.as_slice() else {
            return Err(fail(TinkerPathProblem::WrongPartCount {
                found: parts.len(),
            }));
        };
        if run.is_empty() {
            return Err(fail(TinkerPathProblem::EmptyTrainingRunId));
        }
        let kind = CheckpointKind::from_segment(segment)
            .ok_or_else(|| fail(TinkerPathProblem::UnknownCheckpointKind))?;
        if name.is_empty() {
            return Err(fail(TinkerPathProblem::EmptyName));
        }
        Ok(Self {
            training_run_id: (*run).to_owned(),
            kind,
            name: (*name).to_owned(),
        })
    }

    /// A path from its parts.
    pub fn new(
        training_run_id: impl Into<String>,
        kind: CheckpointKind,
        name: impl Into<String>,
    ) -> Self {
        Self {
            training_run_id: training_run_id.into(),
            kind,
            name: name.into(),
        }
    }

    /// The checkpoint id used in REST routes: `<kind>/<name>`.
    pub fn checkpoint_id(&self) -> String {
        format!("{}/{}", self.kind.segment(), self.name)
    }

    /// The checkpoint type of REST listings.
    pub fn checkpoint_type(&self) -> CheckpointType {
        self.kind.checkpoint_type()
    }
}

impl fmt::Display for TinkerPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TINKER_SCHEME}{}/{}/{}",
            self.training_run_id,
            self.kind.segment(),
            self.name
        )
    }
}

impl FromStr for TinkerPath {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}
