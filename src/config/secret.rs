//! Secret values: `${env:NAME}` and `${file:PATH}` references resolved at load,
//! never printed. `Debug` and `Display` show `***`.

use serde::{Deserialize, Deserializer};
use std::fmt;

/// A resolved secret (password, passphrase, token). Its value is only reachable
/// through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand(&raw).map(Secret).map_err(serde::de::Error::custom)
    }
}

/// A plain string that may contain `${env:NAME}` / `${file:PATH}` references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded(pub String);

impl<'de> Deserialize<'de> for Expanded {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand(&raw).map(Expanded).map_err(serde::de::Error::custom)
    }
}

/// Replace every `${env:NAME}` and `${file:PATH}` in `raw`. File contents lose
/// one trailing newline. Error messages name the reference, never a value.
pub fn expand(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated reference in {:?}: missing `}}`", redact(raw)))?;
        let reference = &after[..end];
        let value = if let Some(name) = reference.strip_prefix("env:") {
            std::env::var(name).map_err(|_| {
                format!("environment variable {name} is not set (referenced as ${{env:{name}}})")
            })?
        } else if let Some(path) = reference.strip_prefix("file:") {
            let mut text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read secret file {path}: {e}"))?;
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            text
        } else {
            return Err(format!(
                "unknown reference ${{{reference}}}: use ${{env:NAME}} or ${{file:PATH}}"
            ));
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn redact(raw: &str) -> String {
    if raw.contains("${") {
        raw.to_string()
    } else {
        "***".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_env_and_file() {
        std::env::set_var("CONSIGN_TEST_SECRET_X", "s3cr3t");
        assert_eq!(
            expand("a${env:CONSIGN_TEST_SECRET_X}b").as_deref(),
            Ok("as3cr3tb")
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("pw");
        std::fs::write(&p, "filepw\n").expect("write");
        assert_eq!(
            expand(&format!("${{file:{}}}", p.display())).as_deref(),
            Ok("filepw")
        );
        let err = expand("${env:CONSIGN_NOPE_NOT_SET}").unwrap_err();
        assert!(err.contains("CONSIGN_NOPE_NOT_SET"), "{err}");
        assert_eq!(format!("{:?}", Secret::new("pw")), "Secret(***)");
    }
}
