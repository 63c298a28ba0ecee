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

/// A URL as it may be printed, logged and stored: without its query and
/// fragment (they may carry a key) and with any `user:password@` replaced
/// by `***@`.
pub fn shown_url(u: &str) -> String {
    let base = u.split(['?', '#']).next().unwrap_or(u);
    let Some((scheme, rest)) = base.split_once("://") else {
        // Not even a scheme: still never show what could be user:password@.
        return match base.rfind('@') {
            Some(i) => format!("***@{}", &base[i + 1..]),
            None => base.to_string(),
        };
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rfind('@') {
        Some(i) => format!("{scheme}://***@{}{path}", &authority[i + 1..]),
        None => base.to_string(),
    }
}

/// Check an http(s) URL template (`{placeholders}` allowed) as far as it can
/// be checked before a batch exists. Errors never show credentials or the query.
pub fn check_http_url(u: &str) -> Result<(), String> {
    let shown = shown_url(u);
    let lower = u.get(..8).unwrap_or(u).to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(format!("{shown:?} is not an http:// or https:// URL"));
    }
    // Placeholders become a plain value, so the rest can be parsed.
    let mut filled = String::with_capacity(u.len());
    let mut rest = u;
    while let Some(open) = rest.find('{') {
        filled.push_str(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => {
                filled.push('x');
                rest = &rest[open + close + 1..];
            }
            None => {
                filled.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    filled.push_str(rest);
    match url::Url::parse(&filled) {
        Ok(p) if p.host_str().is_some_and(|h| !h.is_empty()) => Ok(()),
        Ok(_) => Err(format!("{shown:?}: the URL has no host")),
        Err(e) => Err(format!("{shown:?} is not a valid URL: {e}")),
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn url_checks_never_show_credentials() {
        assert!(check_http_url("HTTPS://h.example/x/{batch_id}?k=1").is_ok());
        assert!(check_http_url("http://127.0.0.1:8085/{delivery}/{part}").is_ok());
        let e = check_http_url("ftp://u:Zz9Secret@h/x").unwrap_err();
        assert!(!e.contains("Zz9Secret") && e.contains("not an http"), "{e}");
        let e = check_http_url("https//u:Zz9Secret@h/x").unwrap_err();
        assert!(!e.contains("Zz9Secret"), "{e}");
        let e = check_http_url("http://u:Zz9Secret@h:99999/x").unwrap_err();
        assert!(
            !e.contains("Zz9Secret") && e.contains("not a valid URL"),
            "{e}"
        );
        assert!(check_http_url("http://[::1/x").is_err());
    }
}
