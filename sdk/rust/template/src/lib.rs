//! my-plugin: a consign destination plugin. Replace the body of `deliver`
//! with your partner's protocol; keep the shape: skip what is already
//! delivered, report each part, classify every failure.

use consign_plugin::http::{encode_component, Request};
use consign_plugin::{config, Batch, Destination, Error, Receipt, Result};

struct MyPlugin;

impl Destination for MyPlugin {
    fn deliver(batch: Batch) -> Result<Receipt> {
        let endpoint = config::require("endpoint")?;
        let endpoint = endpoint.trim_end_matches('/');
        let mut receipt = Receipt::new(String::new());
        for file in batch.pending() {
            let url = format!("{endpoint}/{}", encode_component(&file.name));
            Request::put(url.as_str())
                .header("X-Batch-Id", batch.id.as_str())
                // The host streams the file: its bytes never enter the plugin.
                .file_range(file.part, 0, file.size)
                .send()? // no reply: connect/timeout -> retryable, denied -> permanent
                .error_for_status() // 401/403 auth, 429/5xx retryable, 4xx rejected
                .map_err(|e| e.context(format!("PUT {url}")))?;
            consign_plugin::part_accepted(file.part);
            receipt.remote_ids.push(file.name.clone());
        }
        receipt.message = format!("sent {} files to {endpoint}", receipt.remote_ids.len());
        Ok(receipt)
    }

    fn check() -> Result<String> {
        let endpoint = config::require("endpoint")?;
        let reply = Request::head(endpoint.as_str()).send()?;
        match reply.status {
            401 | 403 => Err(Error::auth(format!(
                "HEAD {endpoint}: HTTP {}",
                reply.status
            ))),
            s if s >= 500 => Err(Error::retryable(format!("HEAD {endpoint}: HTTP {s}"))),
            s => Ok(format!("{endpoint} reachable (HTTP {s})")),
        }
    }
}

consign_plugin::export!(MyPlugin);
