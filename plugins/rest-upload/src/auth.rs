//! Request authentication: none, a bearer token (config `token` or the
//! environment variable named by `token_env`), or an HMAC-SHA256 signature of
//! the body.

use consign_plugin::http::Request;
use consign_plugin::{config, Error, Result};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::settings::{AuthKind, Settings};

/// Credentials ready to apply to requests. Never logged.
pub enum Auth {
    None,
    Bearer(String),
    Hmac(Vec<u8>),
}

impl Auth {
    pub fn load(settings: &Settings) -> Result<Auth> {
        match settings.auth {
            AuthKind::None => Ok(Auth::None),
            AuthKind::Bearer => bearer_token().map(Auth::Bearer),
            AuthKind::Hmac => config::require("hmac_secret")
                .map_err(|_| Error::permanent("auth = \"hmac\" needs config `hmac_secret`"))
                .map(|s| Auth::Hmac(s.into_bytes())),
        }
    }

    /// Whether the signature needs the body's bytes in the plugin.
    pub fn needs_body(&self) -> bool {
        matches!(self, Auth::Hmac(_))
    }

    /// Add the credentials for a request whose body is `body` (only read for
    /// HMAC).
    pub fn sign(&self, request: Request, body: &[u8]) -> Result<Request> {
        Ok(match self {
            Auth::None => request,
            Auth::Bearer(token) => request.header("Authorization", format!("Bearer {token}")),
            Auth::Hmac(secret) => request.header(
                "X-Signature-256",
                format!("sha256={}", hmac_hex(secret, body)?),
            ),
        })
    }
}

fn bearer_token() -> Result<String> {
    if let Some(token) = config::get("token").filter(|t| !t.is_empty()) {
        return Ok(token);
    }
    let Some(var) = config::get("token_env").filter(|v| !v.is_empty()) else {
        return Err(Error::permanent(
            "auth = \"bearer\" needs config `token` or `token_env`",
        ));
    };
    match consign_plugin::env_var(&var) {
        Ok(token) if !token.is_empty() => Ok(token),
        Ok(_) => Err(Error::permanent(format!(
            "token_env: environment variable {var} is empty"
        ))),
        Err(refusal) => Err(Error::permanent(format!("token_env {var}: {refusal}"))),
    }
}

/// Lower-case hex HMAC-SHA256 of `body` under `secret`.
pub fn hmac_hex(secret: &[u8], body: &[u8]) -> Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret)
        .map_err(|e| Error::permanent(format!("hmac_secret: {e}")))?;
    mac.update(body);
    Ok(hex(&mac.finalize().into_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
        assert_eq!(
            hmac_hex(b"Jefe", b"what do ya want for nothing?").unwrap(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
