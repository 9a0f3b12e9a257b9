//! The futures engine (protocol §3.2): the `retrieve_future` polling engine (`retrieve`),
//! used by every future-returning call, and [`ApiFuture`] (`api_future`), the handle
//! those calls return.

mod api_future;
mod retrieve;

pub use api_future::ApiFuture;
pub(crate) use api_future::note_request;
pub use retrieve::QueueStateObserver;
pub(crate) use retrieve::{PollTarget, poll_until_decoded, retrieve_decoded, submit};
