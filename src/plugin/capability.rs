//! Capabilities: what a plugin may reach outside its sandbox. A capability
//! is granted only when the plugin's manifest asks for it **and** the
//! operator's config allows it; a denial names the capability and says
//! which side is missing.

use super::manifest::Capabilities;

/// The capabilities one plugin instance holds.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    plugin: String,
    asked: Capabilities,
    allow_http: Vec<String>,
    allow_env: Vec<String>,
}

impl Grants {
    pub fn new(
        plugin: &str,
        asked: &Capabilities,
        allow_http: &[String],
        allow_env: &[String],
    ) -> Grants {
        Grants {
            plugin: plugin.to_string(),
            asked: asked.clone(),
            allow_http: allow_http.to_vec(),
            allow_env: allow_env.to_vec(),
        }
    }

    /// May the plugin call `host:port`?
    pub fn http(&self, host: &str, port: u16) -> Result<(), String> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let asked = self.asked.http.iter().any(|p| matches(p, host, port));
        let allowed = self.allow_http.iter().any(|p| matches(p, host, port));
        match (asked, allowed) {
            (true, true) => Ok(()),
            (false, _) => Err(format!(
                "capability http:{host}:{port} denied: plugin {} does not ask for it in its manifest (capabilities.http = {:?})",
                self.plugin, self.asked.http
            )),
            (true, false) => Err(format!(
                "capability http:{host}:{port} denied: the operator has not allowed it for plugin {} (add \"{host}:{port}\" to allow_http of the delivery's destination; allowed now: {:?})",
                self.plugin, self.allow_http
            )),
        }
    }

    /// May the plugin read environment variable `name`?
    pub fn env(&self, name: &str) -> Result<(), String> {
        let asked = self.asked.env.iter().any(|n| n == name);
        let allowed = self.allow_env.iter().any(|n| n == name);
        match (asked, allowed) {
            (true, true) => Ok(()),
            (false, _) => Err(format!(
                "capability env:{name} denied: plugin {} does not ask for it in its manifest (capabilities.env = {:?})",
                self.plugin, self.asked.env
            )),
            (true, false) => Err(format!(
                "capability env:{name} denied: the operator has not allowed it for plugin {} (add \"{name}\" to allow_env of the delivery's destination)",
                self.plugin
            )),
        }
    }

    /// Operator allowances the manifest never asks for (worth a warning).
    pub fn unused(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.allow_http {
            if !self.asked.http.iter().any(|p| p == "*" || p == a) {
                out.push(format!("http:{a}"));
            }
        }
        for a in &self.allow_env {
            if !self.asked.env.contains(a) {
                out.push(format!("env:{a}"));
            }
        }
        out
    }
}

/// Whether `pattern` is a host pattern (`*`, `host`, `host:port`, `host:*`,
/// `*.domain`), for config and command-line checks.
pub fn valid_pattern(pattern: &str) -> bool {
    !pattern.is_empty()
        && !pattern.contains("://")
        && !pattern.contains('/')
        && !pattern.contains(char::is_whitespace)
}

/// `*`, `host`, `host:port`, `host:*`, `*.domain` or `*.domain:port` against a host and port.
fn matches(pattern: &str, host: &str, port: u16) -> bool {
    if pattern == "*" {
        return true;
    }
    let (p_host, p_port) = match pattern.rsplit_once(':') {
        Some((h, "*")) if !h.contains(':') || h.ends_with(']') => (h, None),
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => match p.parse::<u16>() {
            Ok(p) => (h, Some(p)),
            Err(_) => return false,
        },
        _ => (pattern, None),
    };
    let p_host = p_host.trim_start_matches('[').trim_end_matches(']');
    if p_port.is_some_and(|p| p != port) {
        return false;
    }
    let host = host.to_ascii_lowercase();
    let p_host = p_host.to_ascii_lowercase();
    match p_host.strip_prefix("*.") {
        Some(domain) => host.len() > domain.len() + 1 && host.ends_with(&format!(".{domain}")),
        None => p_host == host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(asked: &[&str], allowed: &[&str]) -> Grants {
        Grants::new(
            "p",
            &Capabilities {
                http: asked.iter().map(|s| s.to_string()).collect(),
                env: vec!["TOKEN".into()],
            },
            &allowed.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &["TOKEN".into(), "OTHER".into()],
        )
    }

    #[test]
    fn both_sides_must_agree() {
        let g = grants(&["*"], &["127.0.0.1:8085"]);
        assert!(g.http("127.0.0.1", 8085).is_ok());
        let e = g.http("127.0.0.1", 9000).unwrap_err();
        assert!(
            e.contains("http:127.0.0.1:9000") && e.contains("operator"),
            "{e}"
        );
        let g = grants(&["api.partner.com"], &["*"]);
        assert!(g.http("api.partner.com", 443).is_ok());
        let e = g.http("evil.com", 443).unwrap_err();
        assert!(e.contains("manifest"), "{e}");
        let g = grants(&["*.partner.com:443"], &["*.partner.com"]);
        assert!(g.http("up.partner.com", 443).is_ok());
        assert!(g.http("partner.com", 443).is_err());
        assert!(g.http("up.partner.com", 80).is_err());
        let g = grants(&["*"], &[]);
        assert!(g.http("127.0.0.1", 1).is_err());
        let g = grants(&["*"], &["127.0.0.1:*"]);
        assert!(g.http("127.0.0.1", 18177).is_ok());
        assert!(!valid_pattern("http://h") && !valid_pattern("") && valid_pattern("h:*"));
    }

    #[test]
    fn env_needs_both() {
        let g = grants(&[], &[]);
        assert!(g.env("TOKEN").is_ok());
        assert!(g.env("OTHER").unwrap_err().contains("manifest"));
        assert!(g.env("HOME").is_err());
        assert_eq!(g.unused(), vec!["env:OTHER".to_string()]);
    }
}
