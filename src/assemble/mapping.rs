//! Field mapping: output columns taken from source paths in a record, through
//! built-in transforms.

use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use serde_json::Value;
use std::borrow::Cow;

/// A built-in transform, written in config as `"digits_only"`, `"uppercase"`,
/// `"lowercase"`, `"trim"`, `"default:VALUE"` or `"truncate:N"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transform {
    DigitsOnly,
    Uppercase,
    Lowercase,
    Trim,
    Default(String),
    Truncate(usize),
}

impl Transform {
    pub fn parse(s: &str) -> Result<Transform, String> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        match (name, arg) {
            ("digits_only", None) => Ok(Transform::DigitsOnly),
            ("uppercase", None) => Ok(Transform::Uppercase),
            ("lowercase", None) => Ok(Transform::Lowercase),
            ("trim", None) => Ok(Transform::Trim),
            ("default", Some(v)) => Ok(Transform::Default(v.to_string())),
            ("truncate", Some(n)) => n
                .parse()
                .map(Transform::Truncate)
                .map_err(|_| format!("truncate:{n}: {n:?} is not a character count")),
            ("default", None) => Err("`default` needs a value: \"default:N/A\"".into()),
            ("truncate", None) => Err("`truncate` needs a length: \"truncate:10\"".into()),
            _ => Err(format!(
                "unknown transform {s:?}; built-in: digits_only, uppercase, lowercase, trim, default:VALUE, truncate:N"
            )),
        }
    }

    fn apply<'a>(&self, v: Option<Cow<'a, str>>) -> Option<Cow<'a, str>> {
        match self {
            Transform::Default(d) => match v {
                Some(s) if !s.is_empty() => Some(s),
                _ => Some(Cow::Owned(d.clone())),
            },
            _ => {
                let s = v?;
                Some(match self {
                    Transform::DigitsOnly => {
                        if s.bytes().all(|b| b.is_ascii_digit()) {
                            s
                        } else {
                            Cow::Owned(digits_only(&s))
                        }
                    }
                    Transform::Uppercase if !s.chars().any(char::is_lowercase) => s,
                    Transform::Uppercase => Cow::Owned(s.to_uppercase()),
                    Transform::Lowercase if !s.chars().any(char::is_uppercase) => s,
                    Transform::Lowercase => Cow::Owned(s.to_lowercase()),
                    Transform::Trim => match s {
                        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                        Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
                    },
                    Transform::Truncate(n) => match s.char_indices().nth(*n) {
                        Some((cut, _)) => Cow::Owned(s[..cut].to_string()),
                        None => s,
                    },
                    Transform::Default(_) => s,
                })
            }
        }
    }
}

/// Phone numbers keep only their digits; an extension (`x123`, `ext. 9`) is dropped.
/// Only an `x`/`ext` after the number has started marks an extension, so
/// labels such as "Fax 555…" or "Text 555…" keep their digits.
pub(crate) fn digits_only(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let start = lower
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(lower.len());
    let main = lower[start..]
        .find("ext")
        .or_else(|| lower[start..].find('x'))
        .map(|i| &s[..start + i])
        .unwrap_or(s);
    main.chars().filter(|c| c.is_ascii_digit()).collect()
}

impl std::fmt::Display for Transform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transform::DigitsOnly => f.write_str("digits_only"),
            Transform::Uppercase => f.write_str("uppercase"),
            Transform::Lowercase => f.write_str("lowercase"),
            Transform::Trim => f.write_str("trim"),
            Transform::Default(v) => write!(f, "default:{v}"),
            Transform::Truncate(n) => write!(f, "truncate:{n}"),
        }
    }
}

impl serde::Serialize for Transform {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Transform {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Transform::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A record parsed lazily: its top-level keys in order, each with the raw
/// JSON text of its value. Only the values a mapping asks for are decoded, and
/// numbers keep their exact digits because they are never converted.
pub struct RawRecord<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> RawRecord<'a> {
    pub fn parse(json: &'a str) -> Result<RawRecord<'a>, serde_json::Error> {
        serde_json::from_str(json)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_ref())
    }

    pub fn entries(&self) -> impl Iterator<Item = (&str, &'a RawValue)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// The fields, keys borrowed from the input where they had no escapes.
    pub fn into_entries(self) -> Vec<(Cow<'a, str>, &'a RawValue)> {
        self.fields
    }

    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RawRecord<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = RawRecord<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut fields = Vec::with_capacity(m.size_hint().unwrap_or(16));
                while let Some((k, v)) = m.next_entry::<Text<'de>, &'de RawValue>()? {
                    fields.push((k.0, v));
                }
                Ok(RawRecord { fields })
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

/// A JSON string, borrowed from the input when it has no escapes (serde's own
/// `Cow<str>` always allocates).
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// Where a value comes from in a record: the whole key first (`"First Name"`,
/// `"a.b"` as one key), else a dotted path into nested objects.
#[derive(Debug, Clone)]
pub struct SourcePath {
    whole: String,
    parts: Vec<String>,
}

impl SourcePath {
    pub fn new(path: &str) -> SourcePath {
        SourcePath {
            whole: path.to_string(),
            parts: path.split('.').map(str::to_string).collect(),
        }
    }

    /// The raw JSON of the value at this path.
    pub fn lookup<'a>(&self, record: &RawRecord<'a>) -> Option<&'a RawValue> {
        if let Some(v) = record.get(&self.whole) {
            return Some(v);
        }
        if self.parts.len() < 2 {
            return None;
        }
        let mut cur = record.get(&self.parts[0])?;
        for p in &self.parts[1..] {
            let text = cur.get().trim_start();
            cur = if text.starts_with('{') {
                RawRecord::parse(cur.get()).ok()?.get(p)?
            } else if text.starts_with('[') {
                let items: Vec<&RawValue> = serde_json::from_str(cur.get()).ok()?;
                *items.get(p.parse::<usize>().ok()?)?
            } else {
                return None;
            };
        }
        Some(cur)
    }
}

/// One compiled output column.
#[derive(Debug, Clone)]
pub struct Column {
    pub name: String,
    source: SourcePath,
    transforms: Vec<Transform>,
}

impl Column {
    pub fn new(name: &str, source: Option<&str>, transforms: Vec<Transform>) -> Column {
        Column {
            name: name.to_string(),
            source: SourcePath::new(source.unwrap_or(name)),
            transforms,
        }
    }

    /// The value for JSON output: the source's raw JSON when no transform
    /// applies (numbers keep their digits, strings stay strings), else text.
    pub fn json_value<'a>(&self, record: &RawRecord<'a>) -> JsonValue<'a> {
        if self.transforms.is_empty() {
            return match self.source.lookup(record) {
                Some(raw) if raw.get() != "null" => JsonValue::Raw(raw),
                _ => JsonValue::Missing,
            };
        }
        match self.value(record) {
            Some(t) => JsonValue::Text(t),
            None => JsonValue::Missing,
        }
    }

    /// The column's text for `record`; `None` when missing or null.
    pub fn value<'a>(&self, record: &RawRecord<'a>) -> Option<Cow<'a, str>> {
        let mut v = self.source.lookup(record).and_then(raw_text);
        for t in &self.transforms {
            v = t.apply(v);
        }
        v
    }
}

/// A value for JSON output.
pub enum JsonValue<'a> {
    Missing,
    Raw(&'a RawValue),
    Text(Cow<'a, str>),
}

/// Text of a JSON value as a partner sees it: strings unescaped, numbers with
/// their exact digits, `true`/`false`, objects and arrays as compact JSON,
/// `null` as missing.
pub fn raw_text(v: &RawValue) -> Option<Cow<'_, str>> {
    let text = v.get();
    match text.as_bytes().first() {
        Some(b'"') if text.len() >= 2 && !text.contains('\\') => {
            Some(Cow::Borrowed(&text[1..text.len() - 1]))
        }
        Some(b'"') => serde_json::from_str::<Text<'_>>(text).ok().map(|t| t.0),
        Some(b'n') => None,
        Some(b'{') | Some(b'[') => serde_json::from_str::<Value>(text)
            .ok()
            .map(|v| Cow::Owned(v.to_string())),
        Some(_) => Some(Cow::Borrowed(text)),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(s: &str) -> RawRecord<'_> {
        RawRecord::parse(s).expect("json")
    }

    #[test]
    fn paths_with_spaces_and_dots() {
        let r = rec(r#"{"First Name":"Ann","lead":{"phone_1":"(555) 123-4567"},"a.b":1}"#);
        assert_eq!(
            Column::new("f", Some("First Name"), vec![])
                .value(&r)
                .as_deref(),
            Some("Ann")
        );
        let phone = Column::new("p", Some("lead.phone_1"), vec![Transform::DigitsOnly]);
        assert_eq!(phone.value(&r).as_deref(), Some("5551234567"));
        assert_eq!(
            Column::new("x", Some("a.b"), vec![]).value(&r).as_deref(),
            Some("1")
        );
        assert_eq!(Column::new("m", Some("missing"), vec![]).value(&r), None);
    }

    #[test]
    fn transforms() {
        let r = rec(
            r#"{"p":"001-307-937-7505x54026","n":"  Bob ","big":123456789012345678901,"z":""}"#,
        );
        assert_eq!(
            Column::new("p", None, vec![Transform::DigitsOnly])
                .value(&r)
                .as_deref(),
            Some("0013079377505")
        );
        let c = Column::new(
            "n",
            None,
            vec![
                Transform::Trim,
                Transform::Uppercase,
                Transform::Truncate(2),
            ],
        );
        assert_eq!(c.value(&r).as_deref(), Some("BO"));
        assert_eq!(
            Column::new("big", None, vec![]).value(&r).as_deref(),
            Some("123456789012345678901")
        );
        let d = Column::new("z", None, vec![Transform::Default("N/A".into())]);
        assert_eq!(d.value(&r).as_deref(), Some("N/A"));
        let fax = rec(r#"{"p":"Fax 555-123-4567","q":"Text or call (555) 765-4321 ext. 12"}"#);
        assert_eq!(
            Column::new("p", None, vec![Transform::DigitsOnly])
                .value(&fax)
                .as_deref(),
            Some("5551234567")
        );
        assert_eq!(
            Column::new("q", None, vec![Transform::DigitsOnly])
                .value(&fax)
                .as_deref(),
            Some("5557654321")
        );
        assert!(Transform::parse("shout")
            .unwrap_err()
            .contains("digits_only"));
        assert!(Transform::parse("truncate:x").is_err());
    }
}
