//! What happens after an attempt: the shared policy that turns an error class
//! and an attempt count into the next state. Destinations never retry.

use crate::config::RetryConfig;
use crate::destination::ErrorClass;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The worker's verdict on a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Try again at this time (`retry_wait`).
    RetryAt(DateTime<Utc>),
    /// Stop the whole delivery until an operator resumes it (`suspended`).
    Suspend,
    /// Hand to the operator queue (`manual`).
    Manual,
}

/// Delay before attempt `attempt + 1`, before jitter: initial × multiplier^(attempt-1), capped.
pub fn base_delay(cfg: &RetryConfig, attempt: u32) -> Duration {
    let exp = cfg
        .multiplier
        .powi(attempt.saturating_sub(1).min(60) as i32);
    let secs = cfg.initial_delay.0.as_secs_f64() * exp;
    Duration::from_secs_f64(secs.min(cfg.max_delay.0.as_secs_f64()))
}

/// Apply jitter: `unit` in [0, 1) spreads the delay by ± `cfg.jitter`.
pub fn jittered(cfg: &RetryConfig, base: Duration, unit: f64) -> Duration {
    let factor = 1.0 + cfg.jitter * (2.0 * unit - 1.0);
    Duration::from_secs_f64((base.as_secs_f64() * factor).max(0.0))
}

/// Decide after failed attempt number `attempt` (1-based).
pub fn decide(
    cfg: &RetryConfig,
    class: ErrorClass,
    attempt: u32,
    now: DateTime<Utc>,
    unit: f64,
) -> Decision {
    match class {
        ErrorClass::Auth | ErrorClass::HostKey | ErrorClass::PluginSuspended => Decision::Suspend,
        ErrorClass::Permission | ErrorClass::NotFound | ErrorClass::Permanent => Decision::Manual,
        ErrorClass::Connect | ErrorClass::Timeout | ErrorClass::Transient => {
            if attempt >= cfg.max_attempts {
                Decision::Manual
            } else {
                let d = jittered(cfg, base_delay(cfg, attempt), unit);
                Decision::RetryAt(
                    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HumanDuration;

    fn cfg() -> RetryConfig {
        RetryConfig {
            max_attempts: 4,
            initial_delay: HumanDuration(Duration::from_secs(10)),
            max_delay: HumanDuration(Duration::from_secs(60)),
            multiplier: 3.0,
            jitter: 0.2,
        }
    }

    #[test]
    fn exponential_capped() {
        let c = cfg();
        assert_eq!(base_delay(&c, 1), Duration::from_secs(10));
        assert_eq!(base_delay(&c, 2), Duration::from_secs(30));
        assert_eq!(base_delay(&c, 3), Duration::from_secs(60));
        assert_eq!(base_delay(&c, 30), Duration::from_secs(60));
        assert_eq!(
            jittered(&c, Duration::from_secs(10), 0.0),
            Duration::from_secs(8)
        );
        assert_eq!(
            jittered(&c, Duration::from_secs(10), 1.0),
            Duration::from_secs(12)
        );
        assert_eq!(
            jittered(&c, Duration::from_secs(10), 0.5),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn classes_decide() {
        let c = cfg();
        let now = Utc::now();
        assert_eq!(decide(&c, ErrorClass::Auth, 1, now, 0.5), Decision::Suspend);
        assert_eq!(
            decide(&c, ErrorClass::HostKey, 1, now, 0.5),
            Decision::Suspend
        );
        assert_eq!(
            decide(&c, ErrorClass::Permission, 1, now, 0.5),
            Decision::Manual
        );
        assert_eq!(
            decide(&c, ErrorClass::Connect, 1, now, 0.5),
            Decision::RetryAt(now + chrono::Duration::seconds(10))
        );
        assert_eq!(
            decide(&c, ErrorClass::Timeout, 4, now, 0.5),
            Decision::Manual
        );
    }
}
