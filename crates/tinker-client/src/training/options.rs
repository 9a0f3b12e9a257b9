//! The options of the training client's saves and loads, with their checks.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use tinker_types::{OptimizerConfig, Sensitive};

/// Options of [`TrainingClient::save_state_with`](crate::TrainingClient::save_state_with)
/// and the sampler saves.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SaveOptions {
    /// Time to live in seconds (3600 s … 10 years); `None` keeps it forever.
    pub ttl_seconds: Option<u64>,
    /// Replace an existing checkpoint of the same name (`save_state` only).
    pub overwrite: bool,
    /// Metadata stored with the checkpoint.
    pub user_metadata: Option<BTreeMap<String, String>>,
}

impl SaveOptions {
    /// Sets the time to live.
    pub fn ttl_seconds(mut self, ttl: u64) -> Self {
        self.ttl_seconds = Some(ttl);
        self
    }

    /// Allows overwriting an existing checkpoint.
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Sets the metadata stored with the checkpoint.
    pub fn user_metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.user_metadata = Some(metadata);
        self
    }
}

/// Options of a load from a `tinker://` checkpoint: SDK 0.38's keyword arguments of
/// `ServiceClient.create_training_client_from_state[_with_optimizer]` (`base_model`,
/// `user_metadata`, `weights_access_token`, `optimizer`) and of
/// `TrainingClient.load_state[_with_optimizer]` (`weights_access_token` only).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LoadStateOptions {
    /// Restore the checkpoint's optimizer state (and optimizer) too; otherwise only the
    /// weights are loaded and the optimizer starts fresh.
    pub with_optimizer_state: bool,
    /// Override of the checkpoint's base model; must be compatible with it (e.g. a
    /// different context length). New training clients only.
    pub base_model: Option<String>,
    /// Metadata of the new training run. New training clients only.
    pub user_metadata: Option<BTreeMap<String, String>>,
    /// Access token for a checkpoint of another account.
    pub weights_access_token: Option<Sensitive>,
    /// Optimizer of the new training run (default AdamW). Weights-only loads into new
    /// training clients only: restored optimizer state brings its own optimizer.
    pub optimizer: Option<OptimizerConfig>,
}

impl LoadStateOptions {
    /// Weights only (a fresh optimizer).
    pub fn weights_only() -> Self {
        Self::default()
    }

    /// Weights and optimizer state.
    pub fn with_optimizer_state() -> Self {
        Self {
            with_optimizer_state: true,
            ..Self::default()
        }
    }

    /// Overrides the base model.
    pub fn base_model(mut self, base_model: impl Into<String>) -> Self {
        self.base_model = Some(base_model.into());
        self
    }

    /// Sets the metadata of the new training run.
    pub fn user_metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.user_metadata = Some(metadata);
        self
    }

    /// Sets the access token for a checkpoint of another account.
    pub fn weights_access_token(mut self, token: impl Into<Sensitive>) -> Self {
        self.weights_access_token = Some(token.into());
        self
    }

    /// Sets the optimizer of a weights-only load.
    pub fn optimizer(mut self, optimizer: OptimizerConfig) -> Self {
        self.optimizer = Some(optimizer);
        self
    }

    /// The SDK's rules: a new optimizer only for a weights-only load (the server refuses
    /// to override restored state), and an empty override is no override.
    pub(crate) fn check_for_new_client(&self) -> Result<()> {
        if self.with_optimizer_state && self.optimizer.is_some() {
            return Err(Error::invalid(
                "an optimizer can only be given for a weights-only load; the optimizer state \
                 restored from the checkpoint brings its own",
            ));
        }
        if self.base_model.as_deref() == Some("") {
            return Err(Error::invalid("base_model is empty"));
        }
        Ok(())
    }

    /// `TrainingClient.load_state*` takes only the access token: the model exists already.
    pub(super) fn check_for_existing_model(&self) -> Result<()> {
        if self.base_model.is_some() || self.user_metadata.is_some() || self.optimizer.is_some() {
            return Err(Error::invalid(
                "loading into an existing training client takes no base_model, user_metadata \
                 or optimizer (use ServiceClient::create_training_client_from_state_with)",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;

    #[test]
    fn load_options_keep_the_token_out_of_debug() {
        let options = LoadStateOptions::weights_only().weights_access_token("secret-token-123");
        assert!(!format!("{options:?}").contains("secret-token-123"));
    }

    #[test]
    fn load_options_follow_the_sdk_rules() {
        assert!(
            LoadStateOptions::weights_only()
                .check_for_new_client()
                .is_ok()
        );
        let restored = LoadStateOptions::with_optimizer_state();
        assert!(restored.clone().check_for_new_client().is_ok());
        let err = restored
            .optimizer(OptimizerConfig::AdamW)
            .check_for_new_client()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(
            LoadStateOptions::weights_only()
                .base_model("")
                .check_for_new_client()
                .is_err()
        );
        assert!(
            LoadStateOptions::with_optimizer_state()
                .weights_access_token("t")
                .check_for_existing_model()
                .is_ok()
        );
        for bad in [
            LoadStateOptions::weights_only().base_model("m"),
            LoadStateOptions::weights_only().user_metadata(BTreeMap::new()),
            LoadStateOptions::weights_only().optimizer(OptimizerConfig::AdamW),
        ] {
            assert!(bad.check_for_existing_model().is_err());
        }
    }
}
