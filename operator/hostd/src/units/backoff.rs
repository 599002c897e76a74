//! When to restart a unit that exited.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::spec::RestartPolicy;

pub const INITIAL_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELAY: Duration = Duration::from_secs(30);
/// A process that ran at least this long before exiting is considered to have been healthy:
/// the next delay starts again from [`INITIAL_DELAY`].
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Exponential restart delay: 1s, 2s, 4s, ... up to 30s, back to 1s after a healthy run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: INITIAL_DELAY,
        }
    }
}

impl Backoff {
    /// The delay before restarting a process that exited after running for `ran_for`.
    pub fn delay_after_exit(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= HEALTHY_RUN {
            self.next = INITIAL_DELAY;
        }
        let delay = self.next;
        self.next = (delay * 2).min(MAX_DELAY);
        delay
    }
}

/// How a unit's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitOutcome {
    Code(i32),
    Signal(i32),
    /// An adopted process (not hostd's child) or a process that could not be started.
    Unknown,
}

impl ExitOutcome {
    pub fn succeeded(self) -> bool {
        self == ExitOutcome::Code(0)
    }
}

pub fn should_restart(policy: RestartPolicy, outcome: ExitOutcome) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => !outcome.succeeded(),
        RestartPolicy::Never => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum() {
        let mut backoff = Backoff::default();
        let quick = Duration::from_millis(100);
        let delays: Vec<u64> = (0..8)
            .map(|_| backoff.delay_after_exit(quick).as_secs())
            .collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_healthy_run_resets_the_delay() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.delay_after_exit(Duration::ZERO);
        }
        assert_eq!(
            backoff.delay_after_exit(Duration::from_secs(59)),
            Duration::from_secs(30)
        );
        assert_eq!(backoff.delay_after_exit(HEALTHY_RUN), INITIAL_DELAY);
        assert_eq!(
            backoff.delay_after_exit(Duration::ZERO),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn policies_decide_restarts() {
        use ExitOutcome::*;
        assert!(should_restart(RestartPolicy::Always, Code(0)));
        assert!(should_restart(RestartPolicy::Always, Signal(9)));
        assert!(!should_restart(RestartPolicy::OnFailure, Code(0)));
        assert!(should_restart(RestartPolicy::OnFailure, Code(1)));
        assert!(should_restart(RestartPolicy::OnFailure, Signal(15)));
        assert!(should_restart(RestartPolicy::OnFailure, Unknown));
        assert!(!should_restart(RestartPolicy::Never, Code(1)));
    }
}
