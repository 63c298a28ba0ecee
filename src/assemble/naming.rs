//! File name patterns such as `leads_{date}_{time}_{batch_id}.csv.gz`,
//! rendered in the delivery's time zone when a batch is cut.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Date,
    Time,
    Timestamp,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    BatchId,
    Delivery,
    Part,
    Parts,
    RecordCount,
}

/// A validated name pattern. Placeholders: `{date}` (YYYYMMDD), `{time}`
/// (HHMMSS), `{timestamp}` (Unix seconds), `{year} {month} {day} {hour}
/// {minute} {second}`, `{batch_id}`, `{delivery}`, `{part}` (1-based),
/// `{record_count}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    text: String,
    pieces: Vec<Piece>,
}

/// What a name is rendered from.
pub struct NameContext<'a> {
    pub delivery: &'a str,
    pub batch_id: &'a str,
    pub at: DateTime<Utc>,
    pub zone: Tz,
    pub part: u32,
    pub parts: u32,
    pub record_count: u64,
}

impl NamePattern {
    pub fn parse(text: &str) -> Result<NamePattern, String> {
        if text.is_empty() {
            return Err("the name pattern is empty".into());
        }
        if text.starts_with('/') || text.contains('\\') {
            return Err(format!(
                "{text:?} could escape the target directory: write it relative (no leading `/`, no `\\`)"
            ));
        }
        if text
            .split('/')
            .any(|c| c == ".." || c == "." || c.is_empty())
        {
            return Err(format!(
                "{text:?} could escape the target directory: no `..`, `.` or empty path parts"
            ));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            match rest.find('{') {
                Some(0) => {
                    let end = rest
                        .find('}')
                        .ok_or_else(|| format!("{text:?}: `{{` without `}}`"))?;
                    let name = &rest[1..end];
                    pieces.push(match name {
                        "date" => Piece::Date,
                        "time" => Piece::Time,
                        "timestamp" => Piece::Timestamp,
                        "year" => Piece::Year,
                        "month" => Piece::Month,
                        "day" => Piece::Day,
                        "hour" => Piece::Hour,
                        "minute" => Piece::Minute,
                        "second" => Piece::Second,
                        "batch_id" => Piece::BatchId,
                        "delivery" => Piece::Delivery,
                        "part" => Piece::Part,
                        "parts" => Piece::Parts,
                        "record_count" => Piece::RecordCount,
                        other => {
                            return Err(format!(
                                "unknown placeholder {{{other}}} in {text:?}; known: date, time, timestamp, year, month, day, hour, minute, second, batch_id, delivery, part, parts, record_count"
                            ))
                        }
                    });
                    rest = &rest[end + 1..];
                }
                Some(i) => {
                    pieces.push(Piece::Lit(rest[..i].to_string()));
                    rest = &rest[i..];
                }
                None => {
                    if rest.contains('}') {
                        return Err(format!("{text:?}: `}}` without `{{`"));
                    }
                    pieces.push(Piece::Lit(rest.to_string()));
                    rest = "";
                }
            }
        }
        Ok(NamePattern {
            text: text.to_string(),
            pieces,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `{batch_id}` appears (names unique per batch).
    pub fn has_batch_id(&self) -> bool {
        self.pieces.contains(&Piece::BatchId)
    }

    /// Whether `{part}` appears (needed to give split parts distinct names).
    pub fn has_part(&self) -> bool {
        self.pieces.contains(&Piece::Part)
    }

    /// The literal text after the last placeholder (e.g. `.csv.gz`).
    pub fn literal_suffix(&self) -> &str {
        match self.pieces.last() {
            Some(Piece::Lit(s)) => s,
            _ => "",
        }
    }

    pub fn render(&self, cx: &NameContext<'_>) -> String {
        let local = cx.at.with_timezone(&cx.zone);
        let mut out = String::with_capacity(self.text.len() + 16);
        for p in &self.pieces {
            match p {
                Piece::Lit(s) => out.push_str(s),
                Piece::Date => out.push_str(&local.format("%Y%m%d").to_string()),
                Piece::Time => out.push_str(&local.format("%H%M%S").to_string()),
                Piece::Timestamp => out.push_str(&cx.at.timestamp().to_string()),
                Piece::Year => out.push_str(&local.format("%Y").to_string()),
                Piece::Month => out.push_str(&local.format("%m").to_string()),
                Piece::Day => out.push_str(&local.format("%d").to_string()),
                Piece::Hour => out.push_str(&local.format("%H").to_string()),
                Piece::Minute => out.push_str(&local.format("%M").to_string()),
                Piece::Second => out.push_str(&local.format("%S").to_string()),
                Piece::BatchId => out.push_str(cx.batch_id),
                Piece::Delivery => out.push_str(cx.delivery),
                Piece::Part => out.push_str(&cx.part.to_string()),
                Piece::Parts => out.push_str(&cx.parts.to_string()),
                Piece::RecordCount => out.push_str(&cx.record_count.to_string()),
            }
        }
        out
    }
}

impl serde::Serialize for NamePattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for NamePattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NamePattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_in_zone() {
        let p = NamePattern::parse(
            "{delivery}/leads_{date}_{time}_{batch_id}_{part}_{record_count}.csv.gz",
        )
        .expect("ok");
        let at = DateTime::parse_from_rfc3339("2026-01-15T03:30:00Z")
            .expect("t")
            .with_timezone(&Utc);
        let name = p.render(&NameContext {
            delivery: "acme",
            batch_id: "B7",
            at,
            zone: chrono_tz::America::New_York,
            part: 1,
            parts: 1,
            record_count: 42,
        });
        assert_eq!(name, "acme/leads_20260114_223000_B7_1_42.csv.gz");
        assert_eq!(p.literal_suffix(), ".csv.gz");
    }

    #[test]
    fn refuses_escapes_and_unknown_placeholders() {
        assert!(NamePattern::parse("../x.csv").is_err());
        assert!(NamePattern::parse("/etc/x.csv").is_err());
        assert!(NamePattern::parse("a//b.csv").is_err());
        assert!(NamePattern::parse("x_{nope}.csv")
            .unwrap_err()
            .contains("nope"));
    }
}
