//! Training with a [`CustomLoss`] evaluated on the client: the same graph
//! [`ServiceClient::create_custom_loss`](crate::ServiceClient::create_custom_loss) uploads,
//! run by [`CustomLoss::evaluate_batch`] inside
//! [`TrainingClient::forward_backward_custom`].

use tinker_types::{Datum, ForwardBackwardOutput};

use crate::future::ApiFuture;
use crate::training::TrainingClient;

use super::*;

impl TrainingClient {
    /// Forward and backward pass with `loss` evaluated here: a `forward` gives every
    /// datum's logprobs, the client evaluates the loss graph on them with reverse-mode
    /// autodiff, and a backward pass applies `d loss / d logprobs` (see
    /// [`forward_backward_custom`](Self::forward_backward_custom)). The result's
    /// `loss:sum` and `custom/…` metrics are what
    /// [`forward_backward_custom_loss`](Self::forward_backward_custom_loss) reports for the
    /// same loss on the server; this works with any server, even without
    /// `custom_loss_server_side`.
    ///
    /// Every datum's inputs are checked before anything is sent.
    pub fn forward_backward_custom_expr(
        &self,
        data: Vec<Datum>,
        loss: &CustomLoss,
    ) -> ApiFuture<ForwardBackwardOutput> {
        let check = CustomLossHandle {
            name: loss.name.clone(),
            inputs: loss.inputs.clone(),
            session_id: String::new(),
            loss_id: String::new(),
        };
        if let Err(e) = check.check_data(&data) {
            return ApiFuture::failed(e.into());
        }
        let loss = loss.clone();
        self.forward_backward_custom(data, move |data, logprobs| {
            loss.evaluate_batch(data, logprobs).map_err(Into::into)
        })
    }
}
