//! The plugin's configuration: the operator's
//! `[delivery.destination.config]` over the manifest's `[config.*]` defaults.
//!
//! Values come as text (strings as they are, numbers and booleans spelled
//! out). The typed getters turn a missing or malformed value into an
//! [`Error::Permanent`] that names the key, which is
//! what a plugin should return for bad configuration.

use std::str::FromStr;

use crate::bindings::consign::destination::host;
use crate::{Error, Result};

/// The whole configuration as a JSON object.
pub fn json() -> String {
    host::config_json()
}

/// One value as text, or `None` when it is not set.
pub fn get(key: &str) -> Option<String> {
    host::config_get(key)
}

/// One value, or `default` when it is not set.
pub fn get_or(key: &str, default: &str) -> String {
    get(key).unwrap_or_else(|| default.to_string())
}

/// A value that must be set and not empty.
pub fn require(key: &str) -> Result<String> {
    require_value(key, get(key))
}

/// A value parsed as `T` (integers, floats, ...), `None` when not set.
pub fn parse<T: FromStr>(key: &str) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    parse_value(key, get(key))
}

/// A boolean (`true`/`false`, also `1`/`0`, `yes`/`no`), `None` when not set.
pub fn get_bool(key: &str) -> Result<Option<bool>> {
    bool_value(key, get(key))
}

fn require_value(key: &str, value: Option<String>) -> Result<String> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v),
        Some(_) => Err(Error::permanent(format!("config `{key}` is empty"))),
        None => Err(Error::permanent(format!("config `{key}` is required"))),
    }
}

fn parse_value<T: FromStr>(key: &str, value: Option<String>) -> Result<Option<T>>
where
    T::Err: std::fmt::Display,
{
    match value {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map(Some)
            .map_err(|e| Error::permanent(format!("config `{key}` = {v:?} is not valid: {e}"))),
    }
}

fn bool_value(key: &str, value: Option<String>) -> Result<Option<bool>> {
    match value.as_deref().map(str::trim) {
        None => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(v) => Err(Error::permanent(format!(
            "config `{key}` = {v:?} is not a boolean (true or false)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values() {
        assert_eq!(require_value("k", Some("v".into())).as_deref(), Ok("v"));
        assert_eq!(
            require_value("k", None),
            Err(Error::permanent("config `k` is required"))
        );
        assert_eq!(parse_value::<u64>("n", Some("42".into())), Ok(Some(42)));
        assert!(parse_value::<u64>("n", Some("x".into()))
            .unwrap_err()
            .message()
            .contains("config `n`"));
        assert_eq!(bool_value("b", Some("true".into())), Ok(Some(true)));
        assert_eq!(bool_value("b", None), Ok(None));
        assert!(bool_value("b", Some("maybe".into())).is_err());
    }
}
