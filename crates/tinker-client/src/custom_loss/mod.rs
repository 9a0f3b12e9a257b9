//! Server-side custom losses (protocol §2.3, §6.8): a typed expression builder that emits
//! the same graph encoding the Python SDK gets from torch.fx, the upload
//! ([`ServiceClient::create_custom_loss`](crate::ServiceClient::create_custom_loss)) and the training call
//! ([`TrainingClient::forward_backward_custom_loss`](crate::TrainingClient::forward_backward_custom_loss)).
//!
//! A custom loss runs once per datum on the server: it takes the datum's `logprobs` (the
//! learner's logprobs of `target_tokens`) and the `loss_fn_inputs` it declares, and returns
//! a scalar loss plus scalar metrics keyed `custom/<name>:sum` or `custom/<name>:mean`.
//! The per-datum losses are summed; `:sum` metrics are summed and `:mean` metrics averaged
//! over datums.
//!
//! ```
//! use tinker_client::custom_loss::{CustomLoss, Rank};
//!
//! // PPO with clipping, as a custom loss.
//! let mut b = CustomLoss::builder("ppo");
//! let lp = b.logprobs();
//! let old = b.input("sampling_logprobs", Rank::R1);
//! let adv = b.input("advantages", Rank::R1);
//! let ratio = (&lp - &old).exp();
//! let clipped = ratio.clamp(0.8, 1.2);
//! let loss = -(&ratio * &adv).minimum(&(&clipped * &adv)).sum();
//! let ppo = b.build(loss, [("custom/ratio:mean", ratio.mean())]).unwrap();
//! assert_eq!(ppo.graph().nodes.len(), 13);
//! ```

mod builder;
mod error;
mod eval;
mod expr;
mod grad;
mod local;
mod names;
#[cfg(test)]
mod tests;
mod upload;

pub use builder::{CustomLoss, CustomLossBuilder};
pub use error::CustomLossError;
pub use eval::DatumEvaluation;
pub use expr::{ArgValue, Expr, IntoArg};
pub use upload::CustomLossHandle;

use expr::{Arg, CallKind, Kind, NEXT_BUILDER, Node};
use names::Namespace;

/// At most this many inputs, `logprobs` included (as the SDK).
pub const MAX_INPUTS: usize = tinker_types::custom_loss::MAX_CUSTOM_LOSS_INPUTS;

/// The rank every datum's value of an input has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rank {
    /// A scalar.
    R0,
    /// A vector `[T]`.
    R1,
    /// A matrix `[T, K]`.
    R2,
}

impl Rank {
    /// 0, 1 or 2.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::R0 => 0,
            Self::R1 => 1,
            Self::R2 => 2,
        }
    }
}
