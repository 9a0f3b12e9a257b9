//! Request ordering of a training model (protocol §6.4): every call reserves its `seq_id`
//! synchronously when it is made, and requests are *sent* strictly in id order.
//!
//! A reservation is a [`Turn`]; its owner awaits [`Turn::wait`], posts its request(s) while
//! holding the turn, then drops it, which passes the turn on. A turn dropped before its time
//! (a cancelled or failed call) is skipped when the order reaches it, so one failure never
//! blocks the calls after it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

#[derive(Debug)]
struct State {
    /// The next id to hand out.
    next: u64,
    /// The id whose turn it is.
    current: u64,
    /// Ids released before their turn came.
    released_early: BTreeSet<u64>,
}

/// The turn order of one model. Ids start at 0; the wire `seq_id` is `id + 1` (the model's
/// creation is request 0).
#[derive(Debug, Clone)]
pub(crate) struct TurnOrder {
    state: Arc<Mutex<State>>,
    current: Arc<watch::Sender<u64>>,
}

impl TurnOrder {
    pub(crate) fn new() -> Self {
        let (tx, _) = watch::channel(0);
        Self {
            state: Arc::new(Mutex::new(State {
                next: 0,
                current: 0,
                released_early: BTreeSet::new(),
            })),
            current: Arc::new(tx),
        }
    }

    /// Reserves `n ≥ 1` consecutive ids, synchronously.
    pub(crate) fn reserve(&self, n: u64) -> Turn {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let first = st.next;
        st.next += n.max(1);
        Turn {
            order: self.clone(),
            first,
            n: n.max(1),
        }
    }

    fn release(&self, first: u64, n: u64) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
        let cur = st.current;
        drop(st);
        self.current.send_replace(cur);
    }
}

/// A reservation of consecutive ids in a [`TurnOrder`]. Dropping it passes the turn on.
#[derive(Debug)]
pub(crate) struct Turn {
    order: TurnOrder,
    first: u64,
    n: u64,
}

impl Turn {
    /// The first reserved id (the wire `seq_id` is this + 1).
    pub(crate) fn first(&self) -> u64 {
        self.first
    }

    /// Waits until every earlier reservation has been released.
    pub(crate) async fn wait(&self) {
        let mut rx = self.order.current.subscribe();
        // `wait_for` only fails when the sender is gone, and we hold a clone of it.
        let _ = rx.wait_for(|cur| *cur >= self.first).await;
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.order.release(self.first, self.n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn turns_run_in_reservation_order() {
        let order = TurnOrder::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut handles = Vec::new();
        let turns: Vec<Turn> = (0..5).map(|_| order.reserve(1)).collect();
        // Spawn in reverse so the scheduler would naturally run them backwards.
        for turn in turns.into_iter().rev() {
            let log = log.clone();
            handles.push(tokio::spawn(async move {
                turn.wait().await;
                tokio::time::sleep(Duration::from_millis(1)).await;
                log.lock().unwrap().push(turn.first());
            }));
        }
        for h in handles {
            h.await.unwrap();
        }
        assert_eq!(*log.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn early_release_is_skipped() {
        let order = TurnOrder::new();
        let a = order.reserve(2);
        let b = order.reserve(1);
        let c = order.reserve(1);
        assert_eq!((a.first(), b.first(), c.first()), (0, 2, 3));
        drop(b);
        drop(a);
        tokio::time::timeout(Duration::from_secs(1), c.wait())
            .await
            .unwrap();
    }
}
