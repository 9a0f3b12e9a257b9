//! Uploading a loss (`create_custom_loss`) and training with its handle.

use std::collections::HashMap;

use tinker_transport::RequestSpec;
use tinker_types::{
    CreateCustomLossRequest, CreateCustomLossResponse, CustomLossInput, Datum,
    ForwardBackwardOutput, LossConfigValue, LossFn, LossFnConfig,
};

use crate::error::{Error, Result};
use crate::future::{ApiFuture, PollTarget, retrieve_decoded, submit};
use crate::payload::{FromPayload, Payload, RequestType};
use crate::service::ServiceClient;
use crate::training::TrainingClient;

use super::*;

/// Custom losses a holder's session created, by [`CustomLoss`] key (kept in the holder's
/// extensions); the async lock makes concurrent creations of one loss wait for the first
/// instead of creating it twice.
#[derive(Default)]
pub(crate) struct CreatedCustomLosses(tokio::sync::Mutex<HashMap<String, CustomLossHandle>>);

/// A custom loss the server holds (see [`ServiceClient::create_custom_loss`]). Pass it to
/// [`TrainingClient::forward_backward_custom_loss`]; it only works with clients of the
/// session that created it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomLossHandle {
    pub(super) name: String,
    pub(super) inputs: Vec<CustomLossInput>,
    pub(super) session_id: String,
    pub(super) loss_id: String,
}

impl CustomLossHandle {
    /// The loss's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's id for the loss (`loss_fn_config = {"loss_id": ...}`).
    pub fn loss_id(&self) -> &str {
        &self.loss_id
    }

    /// The session that created it.
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The declared inputs, `logprobs` first.
    pub fn inputs(&self) -> &[CustomLossInput] {
        &self.inputs
    }

    /// Checks that every datum has each input at its declared rank (`logprobs` against
    /// `target_tokens`), as the SDK does before sending.
    ///
    /// # Errors
    /// [`CustomLossError::MissingInput`] or [`CustomLossError::InputRank`].
    pub fn check_data(&self, data: &[Datum]) -> std::result::Result<(), CustomLossError> {
        for (i, datum) in data.iter().enumerate() {
            for (n, input) in self.inputs.iter().enumerate() {
                let key = if n == 0 { "target_tokens" } else { &input.name };
                let tensor =
                    datum
                        .loss_fn_inputs
                        .get(key)
                        .ok_or_else(|| CustomLossError::MissingInput {
                            datum: i,
                            key: key.to_owned(),
                        })?;
                let rank = tensor.shape().map_or(1, <[usize]>::len);
                if rank != usize::from(input.rank) {
                    return Err(CustomLossError::InputRank {
                        datum: i,
                        key: key.to_owned(),
                        rank,
                        declared: input.rank,
                    });
                }
            }
        }
        Ok(())
    }
}

impl FromPayload for CreateCustomLossResponse {
    fn from_payload(payload: Payload) -> Result<Self> {
        match payload {
            Payload::Json(v) => tinker_types::json::from_value(v)
                .map_err(|e| Error::protocol(format!("invalid create_custom_loss result: {e}"))),
            Payload::Proto(_) => Err(Error::protocol("unexpected protobuf result")),
        }
    }
}

impl ServiceClient {
    /// Uploads a custom loss (`create_custom_loss`, a future) and returns its handle. Each
    /// distinct loss (graph and inputs) is created once per session: asking again returns
    /// the same handle without a request.
    ///
    /// # Errors
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) (source [`CustomLossError::ServerSideDisabled`]) when the
    /// server's `custom_loss_server_side` flag is off; [`ErrorKind::RequestFailed`](crate::ErrorKind::RequestFailed) with a
    /// user category when the server refuses the graph; API or connection errors.
    pub async fn create_custom_loss(&self, loss: &CustomLoss) -> Result<CustomLossHandle> {
        let holder = self.holder().await?;
        if !holder.config.custom_loss_server_side {
            return Err(CustomLossError::ServerSideDisabled.into());
        }
        let session_id = holder.session_id()?.to_owned();
        let created_losses = holder.extensions.get_or_default::<CreatedCustomLosses>();
        let mut created = created_losses.0.lock().await;
        let key = loss.key();
        if let Some(handle) = created.get(&key) {
            return Ok(handle.clone());
        }
        let req = CreateCustomLossRequest {
            session_id: session_id.clone(),
            custom_loss_seq_id: holder.next_custom_loss_seq(),
            name: loss.name.clone(),
            inputs: loss.inputs.clone(),
            graph: loss.graph.clone(),
        };
        let body = bytes::Bytes::from(tinker_types::json::to_vec(&req)?);
        let (fut, roundtrip) = submit(holder, "create_custom_loss", || {
            Ok(RequestSpec::post("/api/v1/create_custom_loss")
                .with_body(body.clone(), tinker_transport::APPLICATION_JSON)
                .with_sdk_method("ServiceClient.create_custom_loss"))
        })
        .await?;
        let response: CreateCustomLossResponse = retrieve_decoded(
            holder,
            PollTarget {
                request_id: fut.request_id.clone(),
                request_type: RequestType::CreateCustomLoss,
                sdk_method: "ServiceClient.create_custom_loss",
                roundtrip,
                reserved: None,
            },
            self.observer(),
        )
        .await?;
        let handle = CustomLossHandle {
            name: loss.name.clone(),
            inputs: loss.inputs.clone(),
            session_id,
            loss_id: response.loss_id,
        };
        created.insert(key, handle.clone());
        Ok(handle)
    }
}

impl TrainingClient {
    /// Forward and backward pass with a server-side custom loss: one ordinary
    /// `forward_backward(data, "custom", {"loss_id": ...})`, ordered and chunked like any
    /// other. The result's `loss:sum` is the summed loss; the loss's metrics are reduced
    /// over datums (`:sum` summed, `:mean` averaged).
    ///
    /// Before anything is sent, the handle must belong to this client's session and every
    /// datum must hold each declared input at its declared rank
    /// ([`CustomLossHandle::check_data`]).
    pub fn forward_backward_custom_loss(
        &self,
        data: Vec<Datum>,
        loss: &CustomLossHandle,
    ) -> ApiFuture<ForwardBackwardOutput> {
        match self.custom_loss_config(&data, loss) {
            Ok(config) => self.forward_backward_with_config(data, LossFn::Custom, config),
            Err(e) => ApiFuture::failed(e.into()),
        }
    }

    /// A forward pass only with a server-side custom loss: its loss and metrics (e.g. on
    /// held-out data), no gradients. Checked as
    /// [`forward_backward_custom_loss`](Self::forward_backward_custom_loss).
    pub fn forward_custom_loss(
        &self,
        data: Vec<Datum>,
        loss: &CustomLossHandle,
    ) -> ApiFuture<ForwardBackwardOutput> {
        match self.custom_loss_config(&data, loss) {
            Ok(config) => self.forward_with_config(data, LossFn::Custom, config),
            Err(e) => ApiFuture::failed(e.into()),
        }
    }

    /// Checks the handle's session and the data; the `loss_fn_config` naming the loss.
    fn custom_loss_config(
        &self,
        data: &[Datum],
        loss: &CustomLossHandle,
    ) -> std::result::Result<LossFnConfig, CustomLossError> {
        if self.holder().session_id.as_deref() != Some(loss.session_id.as_str()) {
            return Err(CustomLossError::WrongSession {
                loss: loss.name.clone(),
            });
        }
        loss.check_data(data)?;
        Ok(LossFnConfig::from([(
            "loss_id".to_owned(),
            LossConfigValue::Text(loss.loss_id.clone()),
        )]))
    }
}
