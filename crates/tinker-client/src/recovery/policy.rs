//! How recovery behaves: attempts, backoff, polling, which checkpoint.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// Which checkpoint a broken run is restored from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CheckpointStrategy {
    /// The newest good one: the broken run's latest training checkpoint (REST
    /// `last_checkpoint`), else the checkpoint the broken run was itself restored from.
    #[default]
    Latest,
    /// Always this `tinker://` path.
    Specific(String),
}

/// Recovery settings. Start from [`RecoveryPolicy::default`] and adjust with the setters.
///
/// Defaults (tinkex's): 3 attempts, backoff 5 s doubling up to 60 s, REST polled every
/// 30 s, the latest checkpoint, optimizer state restored, a lost `seq_id` recovered too.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryPolicy {
    /// Restore attempts per incident (at least 1).
    pub max_attempts: u32,
    /// Wait after the first failed attempt; it doubles after each further one.
    pub backoff: Duration,
    /// The longest wait between attempts.
    pub max_backoff: Duration,
    /// How often the monitor reads the run's REST record (`corrupted`); zero turns the
    /// monitor off (failed requests still trigger recovery).
    pub poll_interval: Duration,
    /// Which checkpoint to restore.
    pub checkpoint: CheckpointStrategy,
    /// Restore the optimizer state with the weights (`load_state_with_optimizer`).
    pub restore_optimizer: bool,
    /// Also recover when the training client lost a `seq_id`
    /// ([`ErrorKind::SequenceBroken`]): the run is intact, but the client cannot go on.
    pub recover_sequence_broken: bool,
}

impl Default for RecoveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Duration::from_secs(5),
            max_backoff: Duration::from_secs(60),
            poll_interval: Duration::from_secs(30),
            checkpoint: CheckpointStrategy::Latest,
            restore_optimizer: true,
            recover_sequence_broken: true,
        }
    }
}

impl RecoveryPolicy {
    /// Sets the attempts per incident.
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// Sets the first wait and the longest wait between attempts.
    #[must_use]
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max;
        self
    }

    /// Sets how often the monitor polls the run (zero: no monitor).
    #[must_use]
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets which checkpoint to restore.
    #[must_use]
    pub fn checkpoint(mut self, strategy: CheckpointStrategy) -> Self {
        self.checkpoint = strategy;
        self
    }

    /// Sets whether the optimizer state is restored.
    #[must_use]
    pub fn restore_optimizer(mut self, restore: bool) -> Self {
        self.restore_optimizer = restore;
        self
    }

    /// Sets whether a lost `seq_id` triggers recovery.
    #[must_use]
    pub fn recover_sequence_broken(mut self, recover: bool) -> Self {
        self.recover_sequence_broken = recover;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// [`ErrorKind::InvalidInput`]: no attempts, a first backoff above the maximum, or a
    /// specific checkpoint that is not a `tinker://` path.
    pub fn validate(&self) -> Result<()> {
        let invalid = |m: String| Err(Error::new(ErrorKind::InvalidInput, m));
        if self.max_attempts == 0 {
            return invalid("recovery policy: max_attempts must be at least 1".into());
        }
        if self.backoff > self.max_backoff {
            return invalid(format!(
                "recovery policy: backoff {:?} exceeds max_backoff {:?}",
                self.backoff, self.max_backoff
            ));
        }
        if let CheckpointStrategy::Specific(path) = &self.checkpoint
            && let Err(e) = tinker_types::TinkerPath::parse(path)
        {
            return invalid(format!("recovery policy: checkpoint {path:?}: {e}"));
        }
        Ok(())
    }

    /// The wait after failed attempt `attempt` (from 1): `backoff × 2^(attempt−1)`, capped.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.backoff
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RecoveryPolicy::default().backoff(Duration::from_secs(2), Duration::from_secs(10));
        let waits: Vec<u64> = (1..=5).map(|a| p.delay_after(a).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 10, 10]);
        assert_eq!(p.delay_after(200), Duration::from_secs(10));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(RecoveryPolicy::default().validate().is_ok());
        for bad in [
            RecoveryPolicy::default().max_attempts(0),
            RecoveryPolicy::default().backoff(Duration::from_secs(9), Duration::from_secs(1)),
            RecoveryPolicy::default().checkpoint(CheckpointStrategy::Specific("s3://x".into())),
        ] {
            assert_eq!(bad.validate().unwrap_err().kind(), ErrorKind::InvalidInput);
        }
    }
}
