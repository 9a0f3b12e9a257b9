//! Request ordering of a training model (protocol §6.4): every call reserves its `seq_id`
//! synchronously when it is made, and requests are *sent* strictly in id order.
//!
//! A reservation is a [`Turn`]; its owner awaits [`Turn::wait`], posts its request(s) while
//! holding the turn, then passes the turn on with [`Turn::sent`].
//!
//! # No lost `seq_id`
//!
//! The server runs a model's requests in `seq_id` order and waits for a missing id, so an
//! id that is reserved but never reaches the server would stall every later request
//! forever. Two rules keep that from happening:
//!
//! * A call validates **and encodes** its request before it reserves an id
//!   ([`TurnOrder::reserve_with`]): input the wire cannot carry is an
//!   [`ErrorKind::InvalidInput`] error with nothing reserved and nothing sent.
//! * A turn that ends without its request having been accepted by the server
//!   ([`Turn::lost`], or a turn dropped unsent) *breaks* the order at that id: the server
//!   may never have received it (a 503 on every attempt, a connection lost mid-request, a
//!   call abandoned before it was sent). From then on every later call of the model, and
//!   every call reserved after the lost id but not yet sent, fails at once with
//!   [`ErrorKind::SequenceBroken`], naming the lost `seq_id`, its request and the original
//!   failure. Requests already accepted keep polling normally: the server resolves them
//!   (its gap wait bound turns a request stuck behind the gap into an error result).
//!
//! A broken order does not heal: the only way on is a new training client, e.g. from the
//! last checkpoint (`ServiceClient::create_training_client_from_state`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::error::{Error, ErrorKind, Result};

/// Where and why the order broke.
#[derive(Debug, Clone)]
struct Broken {
    /// The lost id (wire `seq_id` − 1).
    id: u64,
    /// The SDK method of the lost request.
    method: &'static str,
    /// What happened to it (the original failure).
    cause: String,
}

#[derive(Debug)]
struct State {
    /// The next id to hand out.
    next: u64,
    /// The id whose turn it is.
    current: u64,
    /// Ids released before their turn came.
    released_early: BTreeSet<u64>,
    /// The lowest lost id, once one was lost.
    broken: Option<Broken>,
}

/// What waiting turns watch: whose turn it is, and the lowest lost id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Progress {
    current: u64,
    broken_at: Option<u64>,
}

/// The turn order of one model. Ids start at 0; the wire `seq_id` is `id + 1` (the model's
/// creation is request 0).
#[derive(Debug, Clone)]
pub(crate) struct TurnOrder {
    model_id: Arc<str>,
    state: Arc<Mutex<State>>,
    progress: Arc<watch::Sender<Progress>>,
}

impl TurnOrder {
    pub(crate) fn new(model_id: &str) -> Self {
        let (tx, _) = watch::channel(Progress {
            current: 0,
            broken_at: None,
        });
        Self {
            model_id: Arc::from(model_id),
            state: Arc::new(Mutex::new(State {
                next: 0,
                current: 0,
                released_early: BTreeSet::new(),
                broken: None,
            })),
            progress: Arc::new(tx),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fails with [`ErrorKind::SequenceBroken`] once an id was lost.
    pub(crate) fn check(&self) -> Result<()> {
        match &self.lock().broken {
            Some(b) => Err(self.broken_error(b)),
            None => Ok(()),
        }
    }

    /// Reserves `n ≥ 1` consecutive ids, synchronously.
    ///
    /// # Errors
    /// [`ErrorKind::SequenceBroken`] once an id was lost.
    pub(crate) fn reserve(&self, n: u64) -> Result<Turn> {
        self.reserve_with(n, |_| Ok(())).map(|(turn, ())| turn)
    }

    /// Builds (validates and encodes) a request for the next `n ≥ 1` ids with
    /// `build(first_wire_seq_id)` and reserves the ids only if that succeeds, so a request
    /// that cannot be sent never holds an id. The order is locked meanwhile: no other call
    /// can take these ids.
    ///
    /// # Errors
    /// [`ErrorKind::SequenceBroken`] once an id was lost; `build`'s error (nothing is
    /// reserved).
    pub(crate) fn reserve_with<T>(
        &self,
        n: u64,
        build: impl FnOnce(u64) -> Result<T>,
    ) -> Result<(Turn, T)> {
        let n = n.max(1);
        let mut st = self.lock();
        if let Some(b) = &st.broken {
            return Err(self.broken_error(b));
        }
        let first = st.next;
        let built = build(first + 1)?;
        st.next += n;
        drop(st);
        let turn = Turn {
            order: self.clone(),
            first,
            n,
            done: false,
        };
        Ok((turn, built))
    }

    fn broken_error(&self, b: &Broken) -> Error {
        Error::new(
            ErrorKind::SequenceBroken,
            format!(
                "training client {} cannot send more requests: seq_id {} ({}) was lost: {}. \
                 The server may never have received it and runs requests strictly in seq_id \
                 order, so every later request of this client would wait forever. Create a \
                 new training client from your last checkpoint \
                 (ServiceClient::create_training_client_from_state).",
                self.model_id,
                b.id + 1,
                b.method,
                b.cause
            ),
        )
    }

    /// Passes the turn over `first..first + n` on.
    fn release(&self, first: u64, n: u64) {
        let mut st = self.lock();
        for id in first..first + n {
            if id >= st.current {
                st.released_early.insert(id);
            }
        }
        loop {
            let cur = st.current;
            if !st.released_early.remove(&cur) {
                break;
            }
            st.current += 1;
        }
        let progress = Progress {
            current: st.current,
            broken_at: st.broken.as_ref().map(|b| b.id),
        };
        drop(st);
        self.progress.send_replace(progress);
    }

    /// Breaks the order at `id` (keeping the lowest lost id), then releases the turn so
    /// that every waiting turn wakes up to the verdict.
    fn break_at(&self, broken: Broken, first: u64, n: u64) {
        {
            let mut st = self.lock();
            if st.broken.as_ref().is_none_or(|b| broken.id < b.id) {
                st.broken = Some(broken);
            }
        }
        self.release(first, n);
    }
}

/// A reservation of consecutive ids in a [`TurnOrder`]. End it with [`Turn::sent`] once the
/// server accepted its request(s), or [`Turn::lost`]; dropped otherwise, it breaks the order
/// (its request was abandoned unsent).
#[derive(Debug)]
pub(crate) struct Turn {
    order: TurnOrder,
    first: u64,
    n: u64,
    /// `sent` or `lost` already released it.
    done: bool,
}

impl Turn {
    /// The first reserved id (the wire `seq_id` is this + 1).
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Waits until every earlier reservation has been released.
    ///
    /// # Errors
    /// [`ErrorKind::SequenceBroken`] when an earlier id was lost: this turn's request must
    /// not be sent (the server would hold it behind the gap forever).
    pub(crate) async fn wait(&self) -> Result<()> {
        let mut rx = self.order.progress.subscribe();
        let first = self.first;
        // `wait_for` only fails when the sender is gone, and we hold a clone of it.
        let progress = rx
            .wait_for(|p| p.current >= first || p.broken_at.is_some_and(|b| b < first))
            .await
            .map(|p| *p)
            .ok();
        match progress {
            Some(p) if p.broken_at.is_some_and(|b| b < first) => self.order.check(),
            _ => Ok(()),
        }
    }

    /// Every id of this turn was accepted by the server: passes the turn on.
    pub(crate) fn sent(mut self) {
        self.done = true;
        self.order.release(self.first, self.n);
    }

    /// The request at `first() + offset` (and maybe later ones of this turn) did not reach
    /// the server for sure: breaks the order there, naming `method` and `cause`.
    pub(crate) fn lost(mut self, offset: u64, method: &'static str, cause: &Error) {
        self.done = true;
        let broken = Broken {
            id: self.first + offset.min(self.n - 1),
            method,
            cause: describe(cause),
        };
        self.order.break_at(broken, self.first, self.n);
    }
}

/// The original failure, for the broken-order message.
fn describe(cause: &Error) -> String {
    match cause.status() {
        Some(s) if !cause.message().contains(&s.to_string()) => {
            format!("{:?} error (HTTP {s}): {}", cause.kind(), cause.message())
        }
        _ => format!("{:?} error: {}", cause.kind(), cause.message()),
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if !self.done {
            let broken = Broken {
                id: self.first,
                method: "a training request",
                cause: "the call ended before its request was sent".to_owned(),
            };
            self.order.break_at(broken, self.first, self.n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn turns_run_in_reservation_order() {
        let order = TurnOrder::new("m");
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        let turns: Vec<Turn> = (0..5).map(|_| order.reserve(1).unwrap()).collect();
        // Spawn in reverse so the scheduler would naturally run them backwards.
        for turn in turns.into_iter().rev() {
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                turn.wait().await.unwrap();
                tokio::time::sleep(Duration::from_millis(1)).await;
                log.lock().unwrap().push(turn.first());
                turn.sent();
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn a_failed_build_reserves_nothing() {
        let order = TurnOrder::new("m");
        let err = order
            .reserve_with(1, |_| -> Result<()> { Err(Error::invalid("bad token")) })
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        let (turn, seq) = order.reserve_with(2, Ok).unwrap();
        assert_eq!((turn.first(), seq), (0, 1));
        tokio::time::timeout(Duration::from_secs(1), turn.wait())
            .await
            .unwrap()
            .unwrap();
        turn.sent();
        assert_eq!(order.reserve(1).unwrap().first(), 2);
    }

    #[tokio::test]
    async fn a_lost_id_fails_every_later_turn_at_once() {
        let order = TurnOrder::new("m");
        let a = order.reserve(1).unwrap();
        let b = order.reserve(2).unwrap();
        let c = order.reserve(1).unwrap();
        a.wait().await.unwrap();
        a.sent();
        b.wait().await.unwrap();
        let cause = Error::new(ErrorKind::Api, "Error code: 503 - unavailable");
        b.lost(1, "TrainingClient.forward_backward", &cause);
        let err = tokio::time::timeout(Duration::from_secs(1), c.wait())
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SequenceBroken);
        // The lost id is b's second (id 2), wire seq_id 3.
        assert!(err.message().contains("seq_id 3"), "{err}");
        assert!(err.message().contains("503"), "{err}");
        assert!(err.message().contains("forward_backward"), "{err}");
        let err = order.reserve(1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SequenceBroken);
    }

    #[tokio::test]
    async fn a_dropped_unsent_turn_breaks_the_order_after_it_only() {
        let order = TurnOrder::new("m");
        let a = order.reserve(1).unwrap();
        let b = order.reserve(1).unwrap();
        let c = order.reserve(1).unwrap();
        drop(b);
        // `a` is before the lost id: it still runs.
        a.wait().await.unwrap();
        a.sent();
        let err = c.wait().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SequenceBroken);
        assert!(err.message().contains("seq_id 2"), "{err}");
    }
}
