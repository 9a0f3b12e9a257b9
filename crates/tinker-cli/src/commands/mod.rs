//! One module per command group.

pub mod auth;
pub mod billing;
pub mod checkpoint;
pub mod fetch;
pub mod model;
pub mod push_hf;
pub mod run;
pub mod session;
