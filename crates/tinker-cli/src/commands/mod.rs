//! One module per command group.

pub(crate) mod auth;
pub(crate) mod billing;
pub(crate) mod checkpoint;
pub(crate) mod fetch;
pub(crate) mod model;
pub(crate) mod push_hf;
pub(crate) mod run;
pub(crate) mod sample;
pub(crate) mod session;
