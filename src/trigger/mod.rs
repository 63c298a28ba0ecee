//! Triggers: when to cut a batch. [`evaluate`] is the pure rule (count,
//! bytes, age, schedule; first to fire wins); [`run`] is the per-delivery
//! scheduler task that sleeps until the next deadline or a wake-up (new
//! records, flush, shutdown) — it never polls in a tight loop.

pub mod schedule;

use crate::config::{EmptyPolicy, TriggerConfig};
use crate::store::PendingStats;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Notify};

/// Why a batch was cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fire {
    Records,
    Bytes,
    Age,
    Schedule,
    Manual,
    /// The delivery's Lua schedule hook (`next_batch`).
    Hook,
}

impl Fire {
    pub fn as_str(self) -> &'static str {
        match self {
            Fire::Records => "records",
            Fire::Bytes => "bytes",
            Fire::Age => "age",
            Fire::Schedule => "schedule",
            Fire::Manual => "manual",
            Fire::Hook => "script",
        }
    }
}

/// Result of evaluating a delivery's triggers at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub fire: Option<Fire>,
    /// The earliest future instant at which a time-based trigger fires.
    pub next: Option<(Fire, DateTime<Utc>)>,
}

/// Apply the trigger rules. `next_schedule` is the pending schedule instant.
pub fn evaluate(
    cfg: &TriggerConfig,
    stats: &PendingStats,
    now: DateTime<Utc>,
    next_schedule: Option<DateTime<Utc>>,
) -> Evaluation {
    let mut next: Option<(Fire, DateTime<Utc>)> = None;
    let mut consider = |f: Fire, at: DateTime<Utc>| {
        if next.is_none_or(|(_, t)| at < t) {
            next = Some((f, at));
        }
    };
    if let Some(at) = next_schedule {
        if at <= now {
            return Evaluation {
                fire: Some(Fire::Schedule),
                next: None,
            };
        }
        consider(Fire::Schedule, at);
    }
    if stats.count > 0 {
        if let Some(n) = cfg.records {
            if stats.count >= n {
                return Evaluation {
                    fire: Some(Fire::Records),
                    next,
                };
            }
        }
        if let Some(b) = cfg.bytes {
            if stats.bytes >= b.0 {
                return Evaluation {
                    fire: Some(Fire::Bytes),
                    next,
                };
            }
        }
        if let (Some(age), Some(oldest)) = (cfg.max_age, stats.oldest) {
            let at = oldest + chrono::Duration::from_std(age.0).unwrap_or(chrono::Duration::MAX);
            if at <= now {
                return Evaluation {
                    fire: Some(Fire::Age),
                    next,
                };
            }
            consider(Fire::Age, at);
        }
    }
    Evaluation { fire: None, next }
}

/// Time source: the system clock, or tokio's (pausable) clock for tests.
#[derive(Debug, Clone)]
pub enum Clock {
    System,
    /// `base` at the tokio instant `start`; advances with tokio time.
    Tokio {
        base: DateTime<Utc>,
        start: tokio::time::Instant,
    },
}

impl Clock {
    pub fn tokio_at(base: DateTime<Utc>) -> Clock {
        Clock::Tokio {
            base,
            start: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Tokio { base, start } => {
                *base
                    + chrono::Duration::from_std(start.elapsed())
                        .unwrap_or(chrono::Duration::zero())
            }
        }
    }
}

/// What the scheduler acts on (the engine; a fake in unit tests).
pub trait TriggerTarget: Send + Sync + 'static {
    fn pending(&self, delivery: &str) -> Result<PendingStats, String>;
    /// Cut (and assemble) one batch; `Ok(false)` when there was nothing to cut.
    fn cut(
        &self,
        delivery: &str,
        reason: Fire,
        allow_empty: bool,
        now: DateTime<Utc>,
    ) -> Result<bool, String>;
    /// Whether the delivery has a schedule hook.
    fn has_hook(&self, _delivery: &str) -> bool {
        false
    }
    /// Ask the schedule hook when the next batch should be cut.
    fn ask_hook(
        &self,
        _delivery: &str,
        _stats: &PendingStats,
        _now: DateTime<Utc>,
    ) -> Result<HookVerdict, String> {
        Ok(HookVerdict::Nothing)
    }
}

/// A schedule hook's answer.
pub use crate::script::schedule::Verdict as HookVerdict;

/// Longest single sleep: wall-clock changes and records queued by other
/// processes (CLI `enqueue`) are noticed within this time.
const MAX_SLEEP: Duration = Duration::from_secs(5);
/// Pause after an error before trying again.
const ERROR_PAUSE: Duration = Duration::from_secs(5);

/// The per-delivery scheduler. Runs until `shutdown` turns true.
pub async fn run(
    delivery: String,
    cfg: TriggerConfig,
    empty: EmptyPolicy,
    target: Arc<dyn TriggerTarget>,
    clock: Clock,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next_schedule = cfg
        .schedule
        .as_ref()
        .and_then(|s| s.next_after(clock.now()));
    let mut hook_at: Option<DateTime<Utc>> = None;
    // A failing hook is asked every loop; its error is logged once a minute.
    let mut hook_error_logged: Option<DateTime<Utc>> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = clock.now();
        let t = target.clone();
        let d = delivery.clone();
        let stats = tokio::task::spawn_blocking(move || t.pending(&d))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let pause = match stats {
            Err(e) => {
                tracing::error!(delivery = %delivery, "cannot read pending records: {e}");
                Some(ERROR_PAUSE)
            }
            Ok(stats) => {
                let mut ev = evaluate(&cfg, &stats, now, next_schedule);
                // The schedule hook, combined with the other triggers: it is
                // asked when records wait and nothing else fires, and its
                // answer (a time) is kept until it comes or a batch is cut.
                if ev.fire.is_none() && stats.count > 0 && target.has_hook(&delivery) {
                    if hook_at.is_none() {
                        let t = target.clone();
                        let d = delivery.clone();
                        let st = stats.clone();
                        let answer = tokio::task::spawn_blocking(move || t.ask_hook(&d, &st, now))
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r);
                        match answer {
                            Ok(HookVerdict::Now) => hook_at = Some(now),
                            Ok(HookVerdict::At(at)) => hook_at = Some(at),
                            Ok(HookVerdict::Nothing) => {}
                            Err(e) => {
                                if hook_error_logged
                                    .is_none_or(|t| now - t >= chrono::Duration::minutes(1))
                                {
                                    hook_error_logged = Some(now);
                                    tracing::error!(delivery = %delivery, "schedule hook failed (other triggers still apply; logged once a minute): {e}")
                                }
                            }
                        }
                    }
                    match hook_at {
                        Some(at) if at <= now => ev.fire = Some(Fire::Hook),
                        Some(at) if ev.next.is_none_or(|(_, n)| at < n) => {
                            ev.next = Some((Fire::Hook, at))
                        }
                        _ => {}
                    }
                }
                if ev.fire.is_some() {
                    hook_at = None;
                }
                match ev.fire {
                    Some(fire) => {
                        if fire == Fire::Schedule {
                            next_schedule = cfg.schedule.as_ref().and_then(|s| s.next_after(now));
                        }
                        let allow_empty = fire == Fire::Schedule
                            && empty == EmptyPolicy::Deliver
                            && stats.count == 0;
                        if fire == Fire::Schedule && stats.count == 0 && !allow_empty {
                            None
                        } else {
                            let t = target.clone();
                            let d = delivery.clone();
                            let cut = tokio::task::spawn_blocking(move || {
                                t.cut(&d, fire, allow_empty, now)
                            })
                            .await
                            .map_err(|e| e.to_string())
                            .and_then(|r| r);
                            match cut {
                                Ok(true) if fire == Fire::Schedule && stats.count > 0 => {
                                    // Drain: a schedule delivers everything pending, in
                                    // batches of at most max_records.
                                    drain(&delivery, &target, now).await;
                                    None
                                }
                                Ok(true) => continue,
                                Ok(false) => None,
                                Err(e) => {
                                    tracing::error!(delivery = %delivery, "cut failed: {e}");
                                    Some(ERROR_PAUSE)
                                }
                            }
                        }
                    }
                    None => {
                        let until = ev.next.map(|(_, at)| at);
                        Some(match until {
                            Some(at) => {
                                (at - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP)
                            }
                            None => MAX_SLEEP,
                        })
                    }
                }
            }
        };
        let Some(pause) = pause else { continue };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = wake.notified() => {}
            _ = shutdown.changed() => {}
        }
    }
}

async fn drain(delivery: &str, target: &Arc<dyn TriggerTarget>, now: DateTime<Utc>) {
    loop {
        let t = target.clone();
        let d = delivery.to_string();
        match tokio::task::spawn_blocking(move || t.cut(&d, Fire::Schedule, false, now)).await {
            Ok(Ok(true)) => continue,
            Ok(Ok(false)) => return,
            Ok(Err(e)) => {
                tracing::error!(delivery, "cut failed: {e}");
                return;
            }
            Err(e) => {
                tracing::error!(delivery, "cut task failed: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::schedule::{Schedule, Zone};
    use super::*;
    use crate::config::{ByteSize, HumanDuration};
    use std::sync::Mutex;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("t")
            .with_timezone(&Utc)
    }

    #[test]
    fn first_to_fire_wins() {
        let cfg = TriggerConfig {
            records: Some(100),
            bytes: Some(ByteSize(1000)),
            max_age: Some(HumanDuration(Duration::from_secs(3600))),
            ..Default::default()
        };
        let now = at("2026-12-03T12:00:00Z");
        let s = |count, bytes, oldest: &str| PendingStats {
            count,
            bytes,
            oldest: Some(at(oldest)),
        };
        assert_eq!(
            evaluate(&cfg, &s(100, 10, "2026-12-03T11:59:00Z"), now, None).fire,
            Some(Fire::Records)
        );
        assert_eq!(
            evaluate(&cfg, &s(5, 1000, "2026-12-03T11:59:00Z"), now, None).fire,
            Some(Fire::Bytes)
        );
        assert_eq!(
            evaluate(&cfg, &s(5, 10, "2026-12-03T11:00:00Z"), now, None).fire,
            Some(Fire::Age)
        );
        let ev = evaluate(&cfg, &s(5, 10, "2026-12-03T11:30:00Z"), now, None);
        assert_eq!(
            ev,
            Evaluation {
                fire: None,
                next: Some((Fire::Age, at("2026-12-03T12:30:00Z")))
            }
        );
        let ev = evaluate(
            &cfg,
            &PendingStats::default(),
            now,
            Some(at("2026-12-03T13:00:00Z")),
        );
        assert_eq!(ev.next, Some((Fire::Schedule, at("2026-12-03T13:00:00Z"))));
    }

    #[derive(Default)]
    struct Fake {
        pending: Mutex<u64>,
        cuts: Mutex<Vec<(Fire, DateTime<Utc>, bool)>>,
    }

    impl TriggerTarget for Fake {
        fn pending(&self, _: &str) -> Result<PendingStats, String> {
            let n = *self.pending.lock().map_err(|e| e.to_string())?;
            Ok(PendingStats {
                count: n,
                bytes: n * 10,
                oldest: None,
            })
        }
        fn cut(
            &self,
            _: &str,
            reason: Fire,
            allow_empty: bool,
            now: DateTime<Utc>,
        ) -> Result<bool, String> {
            let mut p = self.pending.lock().map_err(|e| e.to_string())?;
            if *p == 0 && !allow_empty {
                return Ok(false);
            }
            *p = p.saturating_sub(3);
            self.cuts
                .lock()
                .map_err(|e| e.to_string())?
                .push((reason, now, allow_empty));
            Ok(true)
        }
    }

    /// Across the 2026 spring-forward day in New York, `30 2 * * *` fires at
    /// 03:00 EDT (the first instant after the gap), and drains all pending
    /// records in batches; with `empty = deliver` an empty day still cuts.
    #[tokio::test(start_paused = true)]
    async fn cron_in_new_york_over_dst_on_paused_clock() {
        let zone = Zone::parse("America/New_York").expect("zone");
        let cfg = TriggerConfig {
            schedule: Some(Schedule::cron("30 2 * * *", zone).expect("cron")),
            ..Default::default()
        };
        let fake = Arc::new(Fake::default());
        *fake.pending.lock().expect("lock") = 7;
        let clock = Clock::tokio_at(at("2026-03-08T04:00:00Z")); // 23:00 EST on the 7th
        let (stop_tx, stop_rx) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            "d".into(),
            cfg,
            EmptyPolicy::Deliver,
            fake.clone(),
            clock.clone(),
            wake,
            stop_rx,
        ));
        tokio::time::sleep(Duration::from_secs(2 * 3600 + 59 * 60)).await; // 06:59Z: nothing yet
        assert!(fake.cuts.lock().expect("lock").is_empty());
        tokio::time::sleep(Duration::from_secs(120)).await; // past 07:00Z = 03:00 EDT
        {
            let cuts = fake.cuts.lock().expect("lock");
            assert_eq!(cuts.len(), 3, "7 records in batches of 3: {cuts:?}");
            assert!(
                cuts.iter()
                    .all(|c| c.0 == Fire::Schedule && c.1 == at("2026-03-08T07:00:00Z")),
                "{cuts:?}"
            );
        }
        // Next day 02:30 EDT = 06:30Z, nothing pending: empty policy delivers an empty batch.
        tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
        {
            let cuts = fake.cuts.lock().expect("lock");
            assert_eq!(cuts.len(), 4, "{cuts:?}");
            assert_eq!(cuts[3], (Fire::Schedule, at("2026-03-09T06:30:00Z"), true));
        }
        stop_tx.send(true).expect("stop");
        task.await.expect("join");
    }

    #[tokio::test(start_paused = true)]
    async fn count_trigger_fires_on_wake_without_polling() {
        let cfg = TriggerConfig {
            records: Some(5),
            ..Default::default()
        };
        let fake = Arc::new(Fake::default());
        let clock = Clock::tokio_at(at("2026-12-03T12:00:00Z"));
        let (stop_tx, stop_rx) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let task = tokio::spawn(run(
            "d".into(),
            cfg,
            EmptyPolicy::Skip,
            fake.clone(),
            clock,
            wake.clone(),
            stop_rx,
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
        *fake.pending.lock().expect("lock") = 6;
        wake.notify_one();
        tokio::time::sleep(Duration::from_millis(10)).await;
        let cuts = fake.cuts.lock().expect("lock").clone();
        assert_eq!(cuts.len(), 1, "{cuts:?}");
        assert_eq!(cuts[0].0, Fire::Records);
        stop_tx.send(true).expect("stop");
        task.await.expect("join");
    }
}
