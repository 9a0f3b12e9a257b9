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
