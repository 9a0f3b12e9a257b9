//! Saving and loading weights and optimizer state: checkpoints, sampler weights,
//! external weights.

use tinker_transport::RequestSpec;

use crate::error::{Error, Result};
use crate::future::{ApiFuture, submit};
use crate::payload::{FromPayload, RequestType};
use crate::sampling::SamplingClient;
use crate::tinker_path::check_tinker_path;
use tinker_types::{
    LoadWeightsRequest, LoadWeightsResponse, SamplerWeightsKind, SaveWeightsExternalRequest,
    SaveWeightsExternalResponse, SaveWeightsForSamplerRequest, SaveWeightsForSamplerResponse,
    SaveWeightsForSamplerResponseInternal, SaveWeightsRequest, SaveWeightsResponse,
};

use super::*;

impl TrainingClient {
    /// Saves weights and optimizer state as `tinker://<run>/weights/<name>`.
    pub fn save_state(&self, name: &str) -> ApiFuture<SaveWeightsResponse> {
        self.save_state_with(name, SaveOptions::default())
    }

    /// [`save_state`](Self::save_state) with a TTL, overwrite flag or metadata.
    pub fn save_state_with(
        &self,
        name: &str,
        options: SaveOptions,
    ) -> ApiFuture<SaveWeightsResponse> {
        let name = name.to_owned();
        let op = Op::new(
            "/api/v1/save_weights",
            RequestType::SaveWeights,
            "TrainingClient.save_state",
        )
        .without_http_retries();
        self.simple_op(check_name(&name), op, move |model_id, seq_id| {
            SaveWeightsRequest {
                model_id,
                path: Some(name),
                seq_id: Some(seq_id),
                ttl_seconds: options.ttl_seconds,
                overwrite: options.overwrite,
                user_metadata: options.user_metadata,
            }
        })
    }

    /// Loads weights (not optimizer state) from a `tinker://` checkpoint into this model.
    /// Deprecated in the SDK in favour of
    /// [`ServiceClient::create_training_client_from_state`](crate::ServiceClient::create_training_client_from_state).
    pub fn load_state(&self, path: &str) -> ApiFuture<LoadWeightsResponse> {
        self.load_state_with(path, LoadStateOptions::weights_only())
    }

    /// Loads weights and optimizer state from a `tinker://` checkpoint into this model.
    pub fn load_state_with_optimizer(&self, path: &str) -> ApiFuture<LoadWeightsResponse> {
        self.load_state_with(path, LoadStateOptions::with_optimizer_state())
    }

    /// [`load_state`](Self::load_state) or, with `options.with_optimizer_state`,
    /// [`load_state_with_optimizer`](Self::load_state_with_optimizer), with an access token
    /// for a checkpoint of another account (the only extra argument SDK 0.38 takes here;
    /// any other option is refused before sending).
    pub fn load_state_with(
        &self,
        path: &str,
        options: LoadStateOptions,
    ) -> ApiFuture<LoadWeightsResponse> {
        let path = path.to_owned();
        let method = if options.with_optimizer_state {
            "TrainingClient.load_state_with_optimizer"
        } else {
            "TrainingClient.load_state"
        };
        let op = Op::new("/api/v1/load_weights", RequestType::LoadWeights, method);
        let check = check_tinker_path(&path).and(options.check_for_existing_model());
        self.simple_op(check, op, move |model_id, seq_id| LoadWeightsRequest {
            model_id: Some(model_id),
            seq_id: Some(seq_id),
            session_id: None,
            model_seq_id: None,
            base_model: None,
            user_metadata: None,
            path,
            optimizer: options.with_optimizer_state,
            optimizer_config: None,
            weights_access_token: options.weights_access_token,
        })
    }

    /// Saves sampler weights as `tinker://<run>/sampler_weights/<name>`. Unlike SDK 0.38,
    /// the request's place in the order is fixed when this is called.
    pub fn save_weights_for_sampler(&self, name: &str) -> ApiFuture<SaveWeightsForSamplerResponse> {
        self.save_weights_for_sampler_with(name, SaveOptions::default())
    }

    /// [`save_weights_for_sampler`](Self::save_weights_for_sampler) with a TTL or metadata.
    pub fn save_weights_for_sampler_with(
        &self,
        name: &str,
        options: SaveOptions,
    ) -> ApiFuture<SaveWeightsForSamplerResponse> {
        let name = name.to_owned();
        let op = Op::new(
            "/api/v1/save_weights_for_sampler",
            RequestType::SaveWeightsForSampler,
            "TrainingClient.save_weights_for_sampler",
        )
        .without_http_retries();
        self.simple_op(check_name(&name), op, move |model_id, seq_id| {
            SaveWeightsForSamplerRequest {
                model_id,
                path: Some(name),
                sampling_session_seq_id: None,
                kind: SamplerWeightsKind::Snapshot,
                seq_id: Some(seq_id),
                ttl_seconds: options.ttl_seconds,
                user_metadata: options.user_metadata,
            }
        })
    }

    /// Snapshots the current weights into a new sampling session and returns a
    /// [`SamplingClient`] for it (no named checkpoint is kept).
    pub fn save_weights_and_get_sampling_client(&self) -> ApiFuture<SamplingClient> {
        let turn = match self
            .check_usable()
            .and_then(|()| self.inner.turns.reserve(1))
        {
            Ok(turn) => turn,
            Err(e) => return ApiFuture::failed(e),
        };
        let inner = self.inner.clone();
        let holder = &self.inner.holder;
        ApiFuture::spawn_traced(holder, RequestType::SaveWeightsForSampler, async move {
            const METHOD: &str = "TrainingClient.save_weights_and_get_sampling_client";
            turn.wait().await?;
            let seq_id = turn.first() + 1;
            let model_id = inner.model_id.clone();
            crate::observe::spans::record_model_id(&model_id);
            crate::observe::spans::record_seq_id(seq_id);
            let holder = inner.holder.clone();
            // The sampling-session counter is read per attempt, as the SDK does.
            let make = || {
                let req = SaveWeightsForSamplerRequest {
                    model_id: model_id.clone(),
                    path: None,
                    sampling_session_seq_id: Some(holder.next_sampling_seq()),
                    kind: SamplerWeightsKind::Snapshot,
                    seq_id: Some(seq_id),
                    ttl_seconds: None,
                    user_metadata: None,
                };
                let body = tinker_types::json::to_vec(&req)?;
                Ok(RequestSpec::post("/api/v1/save_weights_for_sampler")
                    .with_body(body, tinker_transport::APPLICATION_JSON)
                    .with_max_retries(0)
                    .with_sdk_method(METHOD))
            };
            let (fut, roundtrip) = match submit(&holder, "save_weights_for_sampler", make).await {
                Ok(submitted) => {
                    turn.sent();
                    submitted
                }
                Err(e) => {
                    turn.lost(0, METHOD, &e);
                    return Err(e);
                }
            };
            let resp: SaveWeightsForSamplerResponseInternal = inner
                .poll(
                    fut.request_id,
                    RequestType::SaveWeightsForSampler,
                    METHOD,
                    roundtrip,
                )
                .await?;
            let session = resp.sampling_session_id.ok_or_else(|| {
                Error::protocol("save_weights_for_sampler returned no sampling_session_id")
            })?;
            let base_model = inner
                .info
                .model_data
                .model_name
                .clone()
                .or_else(|| inner.info.model_name.clone());
            SamplingClient::for_session(
                holder,
                session,
                base_model,
                None,
                inner.observer.clone(),
                METHOD,
            )
            .await
        })
    }

    /// Exports the weights in Hugging Face/PEFT format as
    /// `tinker://<run>/external_weights/<name>`, downloadable through the REST client.
    pub fn save_weights_external(&self, name: &str) -> ApiFuture<SaveWeightsExternalResponse> {
        self.save_weights_external_with(name, None, Vec::new())
    }

    /// [`save_weights_external`](Self::save_weights_external) with a TTL and `age`
    /// encryption recipients (at most 10).
    pub fn save_weights_external_with(
        &self,
        name: &str,
        ttl_seconds: Option<u64>,
        age_recipients: Vec<String>,
    ) -> ApiFuture<SaveWeightsExternalResponse> {
        let check = check_name(name).and_then(|()| {
            if age_recipients.len() > 10 {
                Err(Error::invalid("at most 10 age encryption recipients"))
            } else {
                Ok(())
            }
        });
        let name = name.to_owned();
        let op = Op::new(
            "/api/v1/save_weights_external",
            RequestType::SaveWeightsExternal,
            "TrainingClient.save_weights_external",
        )
        .without_http_retries();
        self.simple_op(check, op, move |model_id, seq_id| {
            SaveWeightsExternalRequest {
                model_id,
                path: name,
                seq_id: Some(seq_id),
                ttl_seconds,
                age_encryption_recipients: (!age_recipients.is_empty()).then_some(age_recipients),
            }
        })
    }

    /// The common shape of single-request training operations: validate, reserve the
    /// next id synchronously, then (in a task) wait for the turn, post the JSON body built
    /// by `build(model_id, seq_id)`, pass the turn on and poll the result.
    pub(super) fn simple_op<T, R>(
        &self,
        check: Result<()>,
        op: Op,
        build: impl FnOnce(String, u64) -> R + Send + 'static,
    ) -> ApiFuture<T>
    where
        T: FromPayload + Send + 'static,
        R: serde::Serialize,
    {
        let reserved = self.check_usable().and(check).and_then(|()| {
            // Built before the id is taken: a body that cannot be encoded holds none.
            self.inner.turns.reserve_with(1, |seq_id| {
                tinker_types::json::to_vec(&build(self.inner.model_id.clone(), seq_id))
                    .map_err(|e| Error::invalid(format!("{}: {e}", op.method)).with_source(e))
            })
        });
        let (turn, body) = match reserved {
            Ok(r) => r,
            Err(e) => return ApiFuture::failed(e),
        };
        let inner = self.inner.clone();
        ApiFuture::spawn_traced(&self.inner.holder, op.request_type, async move {
            inner.run_json(turn, op, body).await
        })
    }
}
