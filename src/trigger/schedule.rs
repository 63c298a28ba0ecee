//! Time schedules for triggers: standard 5-field crontab expressions and the
//! simple "time + days" form, evaluated in an IANA time zone.
//!
//! DST rules: a local time that does not exist (spring forward) fires at the
//! first instant after the gap; a local time that occurs twice (fall back)
//! fires once, at its first occurrence.

use chrono::{
    DateTime, Datelike, Duration as ChronoDuration, LocalResult, NaiveDate, NaiveDateTime,
    NaiveTime, TimeZone, Timelike, Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};
use std::fmt;

/// An IANA time zone such as `America/New_York`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Zone(pub Tz);

impl Default for Zone {
    fn default() -> Self {
        Zone(Tz::UTC)
    }
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.name())
    }
}

impl Zone {
    pub fn parse(name: &str) -> Result<Zone, String> {
        let hint = match name.to_ascii_uppercase().as_str() {
            "EST" | "EDT" | "ET" => Some("America/New_York"),
            "CST" | "CDT" | "CT" => Some("America/Chicago"),
            "MST" | "MDT" | "MT" => Some("America/Denver"),
            "PST" | "PDT" | "PT" => Some("America/Los_Angeles"),
            "BST" => Some("Europe/London"),
            "CET" | "CEST" => Some("Europe/Berlin"),
            _ => None,
        };
        if let Some(h) = hint {
            return Err(format!(
                "{name:?} is an abbreviation, not a time zone (it ignores daylight saving); use an IANA name such as {h:?}"
            ));
        }
        name.parse::<Tz>().map(Zone).map_err(|_| {
            format!("unknown time zone {name:?}; use an IANA name such as \"America/New_York\" or \"UTC\"")
        })
    }
}

impl serde::Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for Zone {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Zone::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A parsed schedule: sets of minutes, hours, days of month, months and days
/// of week, matched in `zone`.
#[derive(Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    minutes: u64,
    hours: u32,
    dom: u32,
    months: u16,
    dow: u8,
    dom_any: bool,
    dow_any: bool,
    zone: Zone,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({:?})", self.text, self.zone)
    }
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

impl Schedule {
    /// Standard crontab: `minute hour day-of-month month day-of-week`.
    /// Day of week 0 and 7 are both Sunday; names (`MON-FRI`, `JAN`) are accepted.
    pub fn cron(expr: &str, zone: Zone) -> Result<Schedule, String> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(format!(
                "cron {expr:?} has {} fields; expected 5 (minute hour day-of-month month day-of-week), e.g. \"0 2 * * *\"",
                parts.len()
            ));
        }
        let field = |i: usize, name: &str, lo: u32, hi: u32, names: &[&str], name_base: u32| {
            parse_field(parts[i], lo, hi, names, name_base)
                .map_err(|e| format!("cron {expr:?}: {name} field {:?}: {e}", parts[i]))
        };
        let minutes = field(0, "minute", 0, 59, &[], 0)?;
        let hours = field(1, "hour", 0, 23, &[], 0)?;
        let dom = field(2, "day-of-month", 1, 31, &[], 0)?;
        let months = field(3, "month", 1, 12, &MONTHS, 1)?;
        let mut dow = field(4, "day-of-week", 0, 7, &DAYS, 0)?;
        if dow & (1 << 7) != 0 {
            dow = (dow | 1) & 0x7f;
        }
        Ok(Schedule {
            text: expr.trim().to_string(),
            minutes,
            hours: hours as u32,
            dom: dom as u32,
            months: months as u16,
            dow: dow as u8,
            dom_any: parts[2] == "*" || parts[2] == "?",
            dow_any: parts[4] == "*" || parts[4] == "?",
            zone,
        })
    }

    /// The simple form: a local time of day (`"02:00"`) and days such as
    /// `["mon-fri"]`, `["Monday-Friday"]`, `["sat", "sun"]`, `["weekdays"]`
    /// (empty = every day).
    pub fn simple(at: &str, days: &[String], zone: Zone) -> Result<Schedule, String> {
        let t = NaiveTime::parse_from_str(at.trim(), "%H:%M")
            .map_err(|_| format!("time {at:?} is not HH:MM (24-hour), e.g. \"02:00\""))?;
        let mut dow_parts = Vec::new();
        for d in days {
            let d = d.trim().to_ascii_lowercase();
            let part = match d.as_str() {
                "daily" | "every day" | "*" => "*".to_string(),
                "weekdays" => "1-5".to_string(),
                "weekends" => "0,6".to_string(),
                _ => d
                    .split('-')
                    .map(|x| x.trim().chars().take(3).collect::<String>())
                    .collect::<Vec<_>>()
                    .join("-"),
            };
            dow_parts.push(part);
        }
        let dow = if dow_parts.is_empty() {
            "*".to_string()
        } else {
            dow_parts.join(",")
        };
        let expr = format!("{} {} * * {}", t.minute(), t.hour(), dow);
        let mut s = Schedule::cron(&expr, zone).map_err(|e| format!("days {days:?}: {e}"))?;
        s.text = format!(
            "at {at} on {}",
            if days.is_empty() {
                "every day".to_string()
            } else {
                days.join(",")
            }
        );
        Ok(s)
    }

    pub fn zone(&self) -> Zone {
        self.zone
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        if self.months & (1 << d.month()) == 0 {
            return false;
        }
        let dom_ok = self.dom & (1 << d.day()) != 0;
        let dow_ok = self.dow & (1 << d.weekday().num_days_from_sunday()) != 0;
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (true, false) => dow_ok,
            (false, true) => dom_ok,
            // Vixie cron: when both are restricted, either one matching is enough.
            (false, false) => dom_ok || dow_ok,
        }
    }

    /// The first firing instant strictly after `after`, or `None` if there is
    /// none within five years (e.g. `0 0 31 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.zone.0;
        let local = after.with_timezone(&tz).naive_local();
        let mut day = local.date();
        let start_time = local.time();
        for day_index in 0..(366 * 5) {
            if self.day_matches(day) {
                for h in 0..24u32 {
                    if self.hours & (1 << h) == 0 {
                        continue;
                    }
                    for m in 0..60u32 {
                        if self.minutes & (1u64 << m) == 0 {
                            continue;
                        }
                        let Some(t) = NaiveTime::from_hms_opt(h, m, 0) else {
                            continue;
                        };
                        if day_index == 0 && t <= start_time {
                            continue;
                        }
                        let naive = NaiveDateTime::new(day, t);
                        if let Some(at) = resolve_local(tz, naive) {
                            if at > after {
                                return Some(at);
                            }
                        }
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }
}

/// Map a local wall-clock time to an instant: the first occurrence when it is
/// ambiguous, the first instant after the gap when it does not exist.
fn resolve_local(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => Some(a.min(b).with_timezone(&Utc)),
        LocalResult::None => {
            // Walk forward minute by minute to the end of the gap (gaps are < 3h).
            let mut probe = naive;
            for _ in 0..(3 * 60) {
                probe += ChronoDuration::minutes(1);
                let probe_floor = probe.with_second(0)?;
                match tz.from_local_datetime(&probe_floor) {
                    LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
                    LocalResult::Ambiguous(a, b) => return Some(a.min(b).with_timezone(&Utc)),
                    LocalResult::None => {}
                }
            }
            None
        }
    }
}

fn parse_field(
    text: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    name_base: u32,
) -> Result<u64, String> {
    let value = |s: &str| -> Result<u32, String> {
        let low = s.to_ascii_lowercase();
        if let Some(i) = names.iter().position(|n| *n == low) {
            return Ok(i as u32 + name_base);
        }
        let v: u32 = s.parse().map_err(|_| {
            format!(
                "{s:?} is not a number{}",
                if names.is_empty() { "" } else { " or name" }
            )
        })?;
        if v < lo || v > hi {
            return Err(format!("{v} is outside {lo}-{hi}"));
        }
        Ok(v)
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .map_err(|_| format!("step {s:?} is not a number"))?;
                if step == 0 {
                    return Err("step 0".into());
                }
                (r, step)
            }
            None => (item, 1),
        };
        let (a, b) = if range == "*" || range == "?" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a)?, value(b)?)
        } else {
            let v = value(range)?;
            (v, if step > 1 { hi } else { v })
        };
        if a > b {
            // Wrapping ranges such as FRI-MON for days of week.
            if names.len() == 7 {
                let mut v = a;
                loop {
                    bits |= 1 << v;
                    if v == b {
                        break;
                    }
                    v = (v + 1) % 7;
                }
                continue;
            }
            return Err(format!("range {a}-{b} runs backwards"));
        }
        let mut v = a;
        while v <= b {
            bits |= 1u64 << v;
            v += step;
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ny() -> Zone {
        Zone::parse("America/New_York").expect("zone")
    }
    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn rejects_abbreviation_with_hint() {
        let e = Zone::parse("EST").unwrap_err();
        assert!(e.contains("America/New_York"), "{e}");
        assert!(Zone::parse("Mars/Olympus").is_err());
    }

    #[test]
    fn business_hours_weekdays() {
        let s = Schedule::cron("0 9-17 * * MON-FRI", ny()).expect("cron");
        // Friday 2026-12-04 17:30 EST -> Monday 2026-12-07 09:00 EST (14:00 UTC).
        assert_eq!(
            s.next_after(utc("2026-12-04T22:30:00Z")),
            Some(utc("2026-12-07T14:00:00Z"))
        );
    }

    #[test]
    fn zero_and_seven_are_sunday() {
        let a = Schedule::cron("0 12 * * 0", Zone::default()).expect("0");
        let b = Schedule::cron("0 12 * * 7", Zone::default()).expect("7");
        let c = Schedule::cron("0 12 * * sun", Zone::default()).expect("sun");
        let from = utc("2026-12-03T00:00:00Z"); // Thursday
        let want = Some(utc("2026-12-06T12:00:00Z"));
        assert_eq!(a.next_after(from), want);
        assert_eq!(b.next_after(from), want);
        assert_eq!(c.next_after(from), want);
    }

    #[test]
    fn spring_forward_gap_fires_after_gap() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT. 02:30 does not exist.
        let s = Schedule::cron("30 2 * * *", ny()).expect("cron");
        let fire = s.next_after(utc("2026-03-08T05:00:00Z")).expect("fires");
        assert_eq!(fire, utc("2026-03-08T07:00:00Z")); // 03:00 EDT
                                                       // And the next day at 02:30 EDT as usual.
        assert_eq!(s.next_after(fire), Some(utc("2026-03-09T06:30:00Z")));
    }

    #[test]
    fn fall_back_repeated_time_fires_once() {
        // 2026-11-01: 02:00 EDT falls back to 01:00 EST. 01:30 happens twice.
        let s = Schedule::cron("30 1 * * *", ny()).expect("cron");
        let first = s.next_after(utc("2026-11-01T04:00:00Z")).expect("fires");
        assert_eq!(first, utc("2026-11-01T05:30:00Z")); // 01:30 EDT
        let next = s.next_after(first).expect("next");
        assert_eq!(next, utc("2026-11-02T06:30:00Z")); // next day 01:30 EST, not 01:30 EST same day
                                                       // Even when asked from inside the second 01:xx hour.
        assert_eq!(s.next_after(utc("2026-11-01T06:10:00Z")), Some(next));
    }

    #[test]
    fn simple_form() {
        let days = vec!["Monday-Friday".to_string()];
        let s = Schedule::simple("02:00", &days, ny()).expect("simple");
        // Saturday 2026-12-05 -> Monday 2026-12-07 02:00 EST = 07:00 UTC
        assert_eq!(
            s.next_after(utc("2026-12-05T12:00:00Z")),
            Some(utc("2026-12-07T07:00:00Z"))
        );
        assert!(Schedule::simple("2am", &[], ny()).is_err());
    }

    #[test]
    fn bad_cron_is_explained() {
        let e = Schedule::cron("0 25 * * *", ny()).unwrap_err();
        assert!(e.contains("hour") && e.contains("25"), "{e}");
        assert!(Schedule::cron("0 2 * *", ny()).unwrap_err().contains("5"));
        assert!(Schedule::cron("*/15 * * * *", ny()).is_ok());
    }
}
