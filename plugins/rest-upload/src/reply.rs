//! How a partner's reply becomes a result.

use consign_plugin::http::Response;
use consign_plugin::{Error, Result};

/// 2xx ok; 401/403 auth; 408/429/5xx retryable (honouring `Retry-After`
/// seconds); 409 rejected as `DUPLICATE` with the body; other 4xx rejected
/// with the status and the first 200 characters of the body.
pub fn classify(reply: Response) -> Result<Response> {
    if reply.status == 409 {
        return Err(Error::rejected("DUPLICATE", reply.snippet(200)));
    }
    reply.error_for_status()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("retry-after".into(), "3".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn classes() {
        assert!(classify(reply(201, "")).is_ok());
        assert_eq!(
            classify(reply(409, "already have it")).unwrap_err(),
            Error::rejected("DUPLICATE", "already have it")
        );
        assert_eq!(classify(reply(403, "")).unwrap_err().class(), "auth");
        assert_eq!(classify(reply(503, "")).unwrap_err().retry_after(), Some(3));
        assert_eq!(classify(reply(408, "")).unwrap_err().class(), "retryable");
        assert_eq!(
            classify(reply(400, "bad")).unwrap_err(),
            Error::rejected("400", "bad")
        );
    }
}
