//! [`Error`]: why a call failed, in the four classes the host's retry policy
//! understands.

use std::fmt;

use crate::bindings::consign::destination::types as wit;

/// `Result` with the SDK's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why `deliver` or `check` failed. The class decides what the host does
/// next; plugins never retry themselves.
///
/// ```
/// use consign_plugin::Error;
/// let e = Error::retryable("HTTP 429: slow down").after(30);
/// assert_eq!(e.retry_after(), Some(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Transient (network, timeout, 5xx, 429): retried with backoff.
    Retryable {
        /// What went wrong, for the operator.
        message: String,
        /// The partner asked to wait this long (e.g. HTTP `Retry-After`).
        after_seconds: Option<u32>,
    },
    /// Credentials refused: the delivery is suspended until an operator
    /// resumes it.
    Auth(String),
    /// The partner refused the content: the batch goes to the manual queue.
    Rejected {
        /// The partner's code, e.g. `DUPLICATE_BATCH` or `422`.
        code: String,
        /// The partner's explanation.
        message: String,
    },
    /// Will not fix itself (bad config, missing target): manual queue.
    Permanent(String),
}

impl Error {
    /// A transient failure, retried with backoff.
    pub fn retryable(message: impl Into<String>) -> Self {
        Error::Retryable {
            message: message.into(),
            after_seconds: None,
        }
    }

    /// Ask the host to wait `seconds` before the next attempt (only for
    /// [`Error::Retryable`]; other classes are returned unchanged).
    pub fn after(self, seconds: u32) -> Self {
        match self {
            Error::Retryable { message, .. } => Error::Retryable {
                message,
                after_seconds: Some(seconds),
            },
            other => other,
        }
    }

    /// Credentials refused (HTTP 401/403 and the like).
    pub fn auth(message: impl Into<String>) -> Self {
        Error::Auth(message.into())
    }

    /// The partner refused the content with its own `code`.
    pub fn rejected(code: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Rejected {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A failure that will not fix itself (bad config, missing target).
    pub fn permanent(message: impl Into<String>) -> Self {
        Error::Permanent(message.into())
    }

    /// The message, whatever the class.
    pub fn message(&self) -> &str {
        match self {
            Error::Retryable { message, .. } => message,
            Error::Auth(m) | Error::Permanent(m) => m,
            Error::Rejected { message, .. } => message,
        }
    }

    /// The wait the partner asked for, if this is a retryable error with one.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::Retryable { after_seconds, .. } => *after_seconds,
            _ => None,
        }
    }

    /// The class as one word: `retryable`, `auth`, `rejected` or `permanent`.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Retryable { .. } => "retryable",
            Error::Auth(_) => "auth",
            Error::Rejected { .. } => "rejected",
            Error::Permanent(_) => "permanent",
        }
    }

    /// The same error with `context: ` put before its message.
    pub fn context(self, context: impl fmt::Display) -> Self {
        match self {
            Error::Retryable {
                message,
                after_seconds,
            } => Error::Retryable {
                message: format!("{context}: {message}"),
                after_seconds,
            },
            Error::Auth(m) => Error::Auth(format!("{context}: {m}")),
            Error::Rejected { code, message } => Error::Rejected {
                code,
                message: format!("{context}: {message}"),
            },
            Error::Permanent(m) => Error::Permanent(format!("{context}: {m}")),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Retryable {
                message,
                after_seconds: Some(s),
            } => write!(f, "retryable (after {s} s): {message}"),
            Error::Retryable { message, .. } => write!(f, "retryable: {message}"),
            Error::Auth(m) => write!(f, "auth: {m}"),
            Error::Rejected { code, message } => write!(f, "rejected [{code}]: {message}"),
            Error::Permanent(m) => write!(f, "permanent: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// A failed read of a batch file (the host refused or the file is gone):
/// permanent, with the reader's message.
impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::permanent(e.to_string())
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Retryable {
                message,
                after_seconds,
            } => wit::Error::Retryable(wit::RetryInfo {
                message,
                after_seconds,
            }),
            Error::Auth(m) => wit::Error::Auth(m),
            Error::Rejected { code, message } => {
                wit::Error::Rejected(wit::Rejection { code, message })
            }
            Error::Permanent(m) => wit::Error::Permanent(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_and_after() {
        assert_eq!(Error::retryable("x").after(5).retry_after(), Some(5));
        assert_eq!(Error::auth("x").after(5), Error::auth("x"));
        assert_eq!(Error::rejected("409", "dup").class(), "rejected");
        assert_eq!(Error::permanent("p").message(), "p");
        assert_eq!(
            Error::permanent("gone").context("part 3").to_string(),
            "permanent: part 3: gone"
        );
    }

    #[test]
    fn converts_to_wit() {
        match wit::Error::from(Error::retryable("r").after(7)) {
            wit::Error::Retryable(info) => {
                assert_eq!(info.message, "r");
                assert_eq!(info.after_seconds, Some(7));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
