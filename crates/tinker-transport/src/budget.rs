//! [`ByteBudget`]: the SDK's "bytes semaphores" (protocol §6.6).

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

/// A byte budget with the SDK's exact semantics: an acquirer waits only while the
/// *remaining* amount is negative, then subtracts its cost, which may drive the remaining
/// amount below zero (so a single request larger than the whole budget still proceeds).
/// Dropping the permit adds the cost back and wakes every waiter.
///
/// Cheap to clone; clones share the budget.
#[derive(Clone)]
pub struct ByteBudget {
    inner: Arc<Inner>,
}

struct Inner {
    capacity: i64,
    remaining: Mutex<i64>,
    released: Notify,
}

impl fmt::Debug for ByteBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteBudget")
            .field("capacity", &self.inner.capacity)
            .field("remaining", &self.remaining())
            .finish()
    }
}

impl ByteBudget {
    /// A budget of `capacity` bytes.
    pub fn new(capacity: u64) -> Self {
        let capacity = i64::try_from(capacity).unwrap_or(i64::MAX);
        Self {
            inner: Arc::new(Inner {
                capacity,
                remaining: Mutex::new(capacity),
                released: Notify::new(),
            }),
        }
    }

    /// The configured size.
    pub fn capacity(&self) -> u64 {
        u64::try_from(self.inner.capacity).unwrap_or(0)
    }

    /// The remaining amount (negative while over-committed).
    pub fn remaining(&self) -> i64 {
        *self
            .inner
            .remaining
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits while the remaining amount is negative, then takes `bytes`.
    pub async fn acquire(&self, bytes: u64) -> BytePermit {
        let cost = i64::try_from(bytes).unwrap_or(i64::MAX);
        loop {
            // Register interest before checking, so a release between the check and the
            // wait is not missed.
            let notified = self.inner.released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(permit) = self.try_acquire_cost(cost) {
                return permit;
            }
            notified.await;
        }
    }

    /// Takes `bytes` now if the remaining amount is not negative.
    pub fn try_acquire(&self, bytes: u64) -> Option<BytePermit> {
        self.try_acquire_cost(i64::try_from(bytes).unwrap_or(i64::MAX))
    }

    fn try_acquire_cost(&self, cost: i64) -> Option<BytePermit> {
        let mut remaining = self
            .inner
            .remaining
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *remaining < 0 {
            return None;
        }
        *remaining = remaining.saturating_sub(cost);
        Some(BytePermit {
            budget: self.inner.clone(),
            cost,
        })
    }
}

/// Bytes taken from a [`ByteBudget`]; given back on drop.
#[must_use = "the bytes are released when the permit is dropped"]
pub struct BytePermit {
    budget: Arc<Inner>,
    cost: i64,
}

impl BytePermit {
    /// The bytes this permit holds.
    pub fn bytes(&self) -> u64 {
        u64::try_from(self.cost).unwrap_or(0)
    }
}

impl fmt::Debug for BytePermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BytePermit")
            .field("bytes", &self.cost)
            .finish()
    }
}

impl Drop for BytePermit {
    fn drop(&mut self) {
        {
            let mut remaining = self
                .budget
                .remaining
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *remaining = remaining.saturating_add(self.cost);
        }
        self.budget.released.notify_waiters();
    }
}
