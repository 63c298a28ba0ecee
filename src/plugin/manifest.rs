//! `plugin.toml`: what a plugin package says about itself — name, version,
//! the SDK it was built against, the capabilities it asks for and the schema
//! of its configuration — and the checks made before anything is compiled.

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The SDK (WIT package `consign:destination`) version this host implements.
pub const SDK_MAJOR: u32 = 1;
pub const SDK_MINOR: u32 = 0;
/// The native C ABI version (`CONSIGN_PLUGIN_ABI_VERSION` in `sdk/c/consign_plugin.h`).
pub const NATIVE_ABI_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A WebAssembly component (sandboxed).
    Wasm,
    /// A shared library loaded into the engine (trusted code, no sandbox).
    Native,
}

/// A parsed `plugin.toml`.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// SDK version it was built against, `MAJOR.MINOR`.
    pub sdk: String,
    pub kind: Kind,
    /// The component or library, relative to the manifest.
    pub file: PathBuf,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Configuration schema: one entry per key.
    #[serde(default)]
    pub config: IndexMap<String, ConfigKey>,
}

/// What a plugin asks for. The operator's config must allow it too.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Host patterns it may call over HTTP: `*`, `host`, `host:port`, `*.domain`.
    #[serde(default)]
    pub http: Vec<String>,
    /// Environment variables it may read.
    #[serde(default)]
    pub env: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    String,
    Integer,
    Number,
    Boolean,
}

/// One configuration key of the schema.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigKey {
    #[serde(rename = "type")]
    pub ty: KeyType,
    #[serde(default)]
    pub required: bool,
    pub default: Option<toml::Value>,
    /// Never shown by `plugin inspect` or logged.
    #[serde(default)]
    pub secret: bool,
    #[serde(default)]
    pub description: String,
}

impl Manifest {
    /// Read and check `dir/plugin.toml`. Errors name the file and the key.
    pub fn read(dir: &Path) -> Result<Manifest, String> {
        let path = dir.join("plugin.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: cannot read it: {e}", path.display()))?;
        let m: Manifest =
            toml::from_str(&text).map_err(|e| format!("{}: {}", path.display(), one_line(&e)))?;
        m.check().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(m)
    }

    fn check(&self) -> Result<(), String> {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(format!(
                "name {:?}: use lower-case letters, digits and '-'",
                self.name
            ));
        }
        check_sdk(&self.name, &self.sdk)?;
        if self.file.is_absolute()
            || self
                .file
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "file {:?}: must be a path inside the plugin's folder",
                self.file
            ));
        }
        for p in &self.capabilities.http {
            if !super::capability::valid_pattern(p) {
                return Err(format!(
                    "capabilities.http {p:?}: write a host pattern (host, host:port, host:*, *.domain or *), no scheme, no path"
                ));
            }
        }
        for (key, k) in &self.config {
            if let Some(d) = &k.default {
                check_type(key, k.ty, d, false)
                    .map_err(|e| format!("config.{key}.default: {e}"))?;
            }
        }
        Ok(())
    }

    /// Merge the operator's values over the schema's defaults. Unknown keys,
    /// wrong types and missing required keys are errors naming the key.
    pub fn resolve_config(
        &self,
        given: &toml::Table,
    ) -> Result<serde_json::Map<String, serde_json::Value>, Vec<String>> {
        let mut errors = Vec::new();
        let mut out = serde_json::Map::new();
        for (key, value) in given {
            match self.config.get(key) {
                None => errors.push(format!(
                    "config.{key}: plugin {} has no such setting (it knows: {})",
                    self.name,
                    if self.config.is_empty() {
                        "none".to_string()
                    } else {
                        self.config.keys().cloned().collect::<Vec<_>>().join(", ")
                    }
                )),
                // Only the operator's values may use ${env:} / ${file:}: a
                // manifest's defaults are the vendor's and stay literal.
                Some(k) => match check_type(key, k.ty, value, true) {
                    Ok(v) => {
                        out.insert(key.clone(), v);
                    }
                    Err(e) => errors.push(format!("config.{key}: {e}")),
                },
            }
        }
        for (key, k) in &self.config {
            if out.contains_key(key) {
                continue;
            }
            match &k.default {
                Some(d) => {
                    if let Ok(v) = check_type(key, k.ty, d, false) {
                        out.insert(key.clone(), v);
                    }
                }
                None if k.required => errors.push(format!(
                    "config.{key}: required by plugin {}{}",
                    self.name,
                    if k.description.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", k.description)
                    }
                )),
                None => {}
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(errors)
        }
    }

    /// The values of secret keys in a resolved config (to redact them from
    /// whatever the plugin says).
    pub fn secret_values(
        &self,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<String> {
        self.config
            .iter()
            .filter(|(_, k)| k.secret)
            .filter_map(|(n, _)| match config.get(n) {
                Some(serde_json::Value::String(s)) if s.len() >= 4 => Some(s.clone()),
                Some(serde_json::Value::Number(n)) if n.to_string().len() >= 4 => {
                    Some(n.to_string())
                }
                _ => None,
            })
            .collect()
    }

    /// The manifest as shown to operators: defaults of secret keys hidden.
    pub fn redacted(&self) -> Manifest {
        let mut m = self.clone();
        for k in m.config.values_mut() {
            if k.secret && k.default.is_some() {
                k.default = Some(toml::Value::String("(secret)".into()));
            }
        }
        m
    }
}

/// Refuse an SDK version this host does not implement, saying what to do.
pub fn check_sdk(plugin: &str, sdk: &str) -> Result<(), String> {
    let parsed = {
        let mut it = sdk.trim().split('.');
        let major = it.next().and_then(|s| s.parse::<u32>().ok());
        let minor = it.next().map_or(Some(0), |s| s.parse::<u32>().ok());
        major.zip(minor)
    };
    let Some((major, minor)) = parsed else {
        return Err(format!(
            "sdk {sdk:?}: not a version (write MAJOR.MINOR, e.g. \"{SDK_MAJOR}.{SDK_MINOR}\")"
        ));
    };
    if major != SDK_MAJOR {
        return Err(format!(
            "plugin {plugin} was built with SDK {sdk}, but this consign supports SDK {SDK_MAJOR}.0 to {SDK_MAJOR}.{SDK_MINOR} only: {}",
            if major > SDK_MAJOR {
                "upgrade consign, or ask the vendor for a build against SDK 1.x"
            } else {
                "ask the vendor to rebuild it with the current consign-plugin SDK (see sdk/rust/README.md)"
            }
        ));
    }
    if minor > SDK_MINOR {
        return Err(format!(
            "plugin {plugin} needs SDK {sdk}, newer than this consign's {SDK_MAJOR}.{SDK_MINOR}: upgrade consign"
        ));
    }
    Ok(())
}

fn check_type(
    key: &str,
    ty: KeyType,
    v: &toml::Value,
    expand: bool,
) -> Result<serde_json::Value, String> {
    use toml::Value as T;
    let bad = |what: &str| {
        Err(format!(
            "{key} must be {what}, not {}",
            match v {
                T::String(_) => "a string",
                T::Integer(_) => "an integer",
                T::Float(_) => "a number",
                T::Boolean(_) => "a boolean",
                T::Datetime(_) => "a date",
                T::Array(_) => "an array",
                T::Table(_) => "a table",
            }
        ))
    };
    match (ty, v) {
        (KeyType::String, T::String(s)) if expand => crate::config::expand(s)
            .map(serde_json::Value::String)
            .map_err(|e| format!("{key}: {e}")),
        (KeyType::String, T::String(s)) => Ok(serde_json::Value::String(s.clone())),
        (KeyType::Integer, T::Integer(i)) => Ok(serde_json::Value::from(*i)),
        (KeyType::Number, T::Integer(i)) => Ok(serde_json::Value::from(*i as f64)),
        (KeyType::Number, T::Float(f)) => serde_json::Number::from_f64(*f)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("{key}: {f} is not a finite number")),
        (KeyType::Boolean, T::Boolean(b)) => Ok(serde_json::Value::Bool(*b)),
        (KeyType::String, _) => bad("a string"),
        (KeyType::Integer, _) => bad("an integer"),
        (KeyType::Number, _) => bad("a number"),
        (KeyType::Boolean, _) => bad("a boolean"),
    }
}

fn one_line(e: &toml::de::Error) -> String {
    e.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_versions() {
        assert!(check_sdk("p", "1.0").is_ok());
        assert!(check_sdk("p", "1").is_ok());
        let e = check_sdk("p", "2.0").unwrap_err();
        assert!(
            e.contains("SDK 2.0") && e.contains("upgrade consign"),
            "{e}"
        );
        let e = check_sdk("p", "0.9").unwrap_err();
        assert!(e.contains("rebuild"), "{e}");
        let e = check_sdk("p", "1.7").unwrap_err();
        assert!(e.contains("newer"), "{e}");
        assert!(check_sdk("p", "one").unwrap_err().contains("not a version"));
    }

    #[test]
    fn http_capabilities_must_be_host_patterns() {
        let dir = tempfile::tempdir().expect("tmp");
        let write = |http: &str| {
            std::fs::write(
                dir.path().join("plugin.toml"),
                format!("name = \"x\"\nversion = \"1.0.0\"\nsdk = \"1.0\"\nkind = \"wasm\"\nfile = \"x.wasm\"\n[capabilities]\nhttp = [{http}]\n"),
            )
            .expect("write");
        };
        write(r#""api.partner.com:443", "*.example.com""#);
        assert!(Manifest::read(dir.path()).is_ok());
        write(r#""http://127.0.0.1:8085/x""#);
        let e = Manifest::read(dir.path()).unwrap_err();
        assert!(
            e.contains("capabilities.http") && e.contains("no scheme"),
            "{e}"
        );
    }

    #[test]
    fn config_resolution_names_keys() {
        let m: Manifest = toml::from_str(
            r#"
name = "x"
version = "1.0.0"
sdk = "1.0"
kind = "wasm"
file = "x.wasm"
[config.endpoint]
type = "string"
required = true
[config.size]
type = "integer"
default = 5
"#,
        )
        .expect("manifest");
        let given: toml::Table = toml::from_str("size = \"big\"\nother = 1").expect("toml");
        let errs = m.resolve_config(&given).unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.contains("config.size: size must be an integer, not a string")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("config.other") && e.contains("endpoint, size")),
            "{errs:?}"
        );
        assert!(
            errs.iter().any(|e| e.contains("config.endpoint: required")),
            "{errs:?}"
        );
        let given: toml::Table = toml::from_str("endpoint = \"http://h/\"").expect("toml");
        let ok = m.resolve_config(&given).expect("resolves");
        // A vendor's default stays literal: no ${env:} / ${file:} on the host.
        let m2: Manifest = toml::from_str(
            "name = \"x\"\nversion = \"1\"\nsdk = \"1.0\"\nkind = \"wasm\"\nfile = \"x.wasm\"\n[config.u]\ntype = \"string\"\ndefault = \"${file:/etc/hostname}\"\n",
        )
        .expect("manifest");
        let r = m2.resolve_config(&toml::Table::new()).expect("resolves");
        assert_eq!(r["u"], "${file:/etc/hostname}");
        assert_eq!(ok["size"], 5);
        assert_eq!(ok["endpoint"], "http://h/");
    }
}
