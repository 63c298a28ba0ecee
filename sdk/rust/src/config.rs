//! The plugin's configuration: the operator's
//! `[delivery.destination.config]` over the manifest's `[config.*]` defaults.
//!
//! Values come as text (strings as they are, numbers and booleans spelled
//! out). The typed getters turn a missing or malformed value into an
//! [`Error::Permanent`] that names the key, which is
//! what a plugin should return for bad configuration.
//!
//! Their messages name the key and the expected type, never the value: a
//! config value may be a secret. Do the same in your own messages.

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
///
/// A value that does not parse is a permanent error naming the key and `T`
/// (not the value, nor `T::Err`'s message, which may quote it).
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
        Some(v) => v.trim().parse::<T>().map(Some).map_err(|_| {
            Error::permanent(format!(
                "config `{key}` is not a valid {}",
                type_label::<T>()
            ))
        }),
    }
}

/// `T`'s name without its module path (`u64`, `IpAddr`), for messages.
fn type_label<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    if full.contains('<') {
        full
    } else {
        full.rsplit("::").next().unwrap_or(full)
    }
}

fn bool_value(key: &str, value: Option<String>) -> Result<Option<bool>> {
    match value.as_deref().map(str::trim) {
        None => Ok(None),
        Some("true" | "1" | "yes") => Ok(Some(true)),
        Some("false" | "0" | "no") => Ok(Some(false)),
        Some(_) => Err(Error::permanent(format!(
            "config `{key}` is not a boolean (true or false)"
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
        assert_eq!(
            parse_value::<u64>("n", Some("x".into())),
            Err(Error::permanent("config `n` is not a valid u64"))
        );
        assert_eq!(
            parse_value::<std::net::IpAddr>("ip", Some("x".into())),
            Err(Error::permanent("config `ip` is not a valid IpAddr"))
        );
        assert_eq!(bool_value("b", Some("true".into())), Ok(Some(true)));
        assert_eq!(bool_value("b", None), Ok(None));
        assert!(bool_value("b", Some("maybe".into())).is_err());
    }

    #[test]
    fn messages_never_show_the_value() {
        let secret = "s3cr3t-value";
        for e in [
            parse_value::<u32>("token", Some(secret.into())).unwrap_err(),
            bool_value("token", Some(secret.into())).unwrap_err(),
        ] {
            assert!(e.message().contains("`token`"), "{e}");
            assert!(!e.message().contains(secret), "{e}");
        }
    }
}
