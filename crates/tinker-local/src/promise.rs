//! Server-side futures: every asynchronous request gets a request id whose outcome clients
//! fetch with `retrieve_future`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// How a request ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A JSON result.
    Json(serde_json::Value),
    /// A protobuf result (`ForwardBackwardOutput` or `SampleResponse`).
    Proto(Vec<u8>),
    /// A failed request, reported as `{"error", "category"}`.
    Failed {
        error: String,
        category: &'static str,
    },
}

impl Outcome {
    /// A failure caused by the request ("user").
    pub(crate) fn user(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            category: "user",
        }
    }

    /// A JSON result built from a `tinker-types` response type (a failure on the server's
    /// side if it cannot be encoded, e.g. a non-finite metric).
    pub(crate) fn typed<T: serde::Serialize>(value: &T) -> Self {
        match tinker_types::json::to_value(value) {
            Ok(v) => Self::Json(v),
            Err(e) => Self::server(format!("encoding the result: {e}")),
        }
    }

    /// A failure on the server's side.
    pub(crate) fn server(error: impl Into<String>) -> Self {
        Self::Failed {
            error: error.into(),
            category: "server",
        }
    }
}

/// What kind of request a future belongs to (faults and content negotiation use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FutureKind {
    /// Training-side requests (create, fwd/bwd, optim, save, load).
    Training,
    /// Sampling requests.
    Sample,
}

type Slot = Option<Arc<Outcome>>;

#[derive(Debug)]
struct Entry {
    tx: watch::Sender<Slot>,
    kind: FutureKind,
    /// The account that made the request (only it may poll or cancel the future).
    owner: String,
    finished_at: Option<Instant>,
    /// For `retrieve_futures`: the (sampling session, clone id) the request belongs to.
    group: Option<(String, i64)>,
    /// Global completion order (0 while pending).
    completion: u64,
}

/// All futures of the server.
#[derive(Debug)]
pub(crate) struct Promises {
    map: Mutex<HashMap<String, Entry>>,
    /// Count of completed futures; bumps wake `retrieve_futures` long polls.
    completions: watch::Sender<u64>,
}

impl Default for Promises {
    fn default() -> Self {
        Self {
            map: Mutex::default(),
            completions: watch::channel(0).0,
        }
    }
}

/// One finished future, as `retrieve_futures` reports it.
#[derive(Debug)]
pub(crate) struct Completion {
    pub(crate) request_id: String,
    pub(crate) cursor: u64,
    pub(crate) failed: bool,
    pub(crate) size: usize,
}

/// A pending future's receiving side.
pub(crate) struct Waiter {
    pub(crate) rx: watch::Receiver<Slot>,
    pub(crate) kind: FutureKind,
    /// The account that made the request.
    pub(crate) owner: String,
}

impl Promises {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new pending future of `owner`'s and returns the handle that completes it.
    pub(crate) fn create(
        self: &Arc<Self>,
        request_id: String,
        kind: FutureKind,
        owner: &str,
    ) -> Completer {
        self.create_in_group(request_id, kind, owner, None)
    }

    /// Like [`Promises::create`], for a request that `retrieve_futures` reports on.
    pub(crate) fn create_in_group(
        self: &Arc<Self>,
        request_id: String,
        kind: FutureKind,
        owner: &str,
        group: Option<(String, i64)>,
    ) -> Completer {
        let (tx, _) = watch::channel(None);
        self.lock().insert(
            request_id.clone(),
            Entry {
                tx,
                kind,
                owner: owner.to_owned(),
                finished_at: None,
                group,
                completion: 0,
            },
        );
        Completer {
            promises: Arc::clone(self),
            request_id,
            done: false,
        }
    }

    fn complete(&self, request_id: &str, outcome: Outcome) {
        let mut map = self.lock();
        if let Some(entry) = map.get_mut(request_id)
            && entry.finished_at.is_none()
        {
            Self::finish(&self.completions, entry, outcome);
        }
    }

    fn finish(completions: &watch::Sender<u64>, entry: &mut Entry, outcome: Outcome) {
        entry.finished_at = Some(Instant::now());
        let mut n = 0;
        completions.send_modify(|c| {
            *c += 1;
            n = *c;
        });
        entry.completion = n;
        entry.tx.send_replace(Some(Arc::new(outcome)));
    }

    /// Watches the global completion counter.
    pub(crate) fn completions(&self) -> watch::Receiver<u64> {
        self.completions.subscribe()
    }

    /// Finished futures of `group` completed after `cursor`, oldest first.
    pub(crate) fn completed_in_group(&self, group: &(String, i64), cursor: u64) -> Vec<Completion> {
        let map = self.lock();
        let mut out: Vec<Completion> = map
            .iter()
            .filter(|(_, e)| e.group.as_ref() == Some(group) && e.completion > cursor)
            .map(|(id, e)| {
                let outcome = e.tx.borrow();
                let (failed, size) = match outcome.as_deref() {
                    Some(Outcome::Proto(b)) => (false, b.len()),
                    Some(Outcome::Json(v)) => (false, v.to_string().len()),
                    _ => (true, 0),
                };
                Completion {
                    request_id: id.clone(),
                    cursor: e.completion,
                    failed,
                    size,
                }
            })
            .collect();
        out.sort_by_key(|c| c.cursor);
        out
    }

    /// The receiving side of a future, if it exists.
    pub(crate) fn waiter(&self, request_id: &str) -> Option<Waiter> {
        self.lock().get(request_id).map(|e| Waiter {
            rx: e.tx.subscribe(),
            kind: e.kind,
            owner: e.owner.clone(),
        })
    }

    /// Marks a pending future cancelled; returns false for unknown or finished ones.
    pub(crate) fn cancel(&self, request_id: &str) -> bool {
        let mut map = self.lock();
        match map.get_mut(request_id) {
            Some(entry) if entry.finished_at.is_none() => {
                Self::finish(
                    &self.completions,
                    entry,
                    Outcome::user("the request was cancelled by the client"),
                );
                true
            }
            _ => false,
        }
    }

    /// True if the future exists and has not finished.
    pub(crate) fn is_pending(&self, request_id: &str) -> bool {
        self.lock()
            .get(request_id)
            .is_some_and(|e| e.finished_at.is_none())
    }

    /// Forgets futures that finished more than `age` ago.
    pub(crate) fn forget_older_than(&self, age: Duration) {
        let now = Instant::now();
        self.lock()
            .retain(|_, e| e.finished_at.is_none_or(|t| now.duration_since(t) < age));
    }

    /// Releases every pending future with a server error (used at shutdown).
    pub(crate) fn fail_all_pending(&self, reason: &str) {
        for entry in self.lock().values_mut() {
            if entry.finished_at.is_none() {
                Self::finish(&self.completions, entry, Outcome::server(reason.to_owned()));
            }
        }
    }
}

/// Completes one future exactly once. Dropping it unused fails the future, so a crashed
/// worker never leaves a client polling forever.
#[derive(Debug)]
pub(crate) struct Completer {
    promises: Arc<Promises>,
    request_id: String,
    done: bool,
}

impl Completer {
    /// The future's request id.
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Publishes the outcome.
    pub(crate) fn complete(mut self, outcome: Outcome) {
        self.done = true;
        self.promises.complete(&self.request_id, outcome);
    }
}

impl Drop for Completer {
    fn drop(&mut self) {
        if !self.done {
            self.promises.complete(
                &self.request_id,
                Outcome::server("the request was abandoned by the server"),
            );
        }
    }
}
