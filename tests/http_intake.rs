//! HTTP intake and admin API of `consign serve` (local outbox destination).

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;

struct Server {
    ws: Workspace,
    child: std::process::Child,
    base: String,
}

impl Server {
    async fn start(extra: &str) -> Server {
        let port = free_port();
        let ws = Workspace::new(&format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
max_body = "1MiB"
max_record = "2KiB"
[[delivery]]
name = "web"
[delivery.file]
name = "web_{{batch_id}}.csv"
[[delivery.field]]
name = "email"
[[delivery.field]]
name = "phone"
transform = ["digits_only"]
[delivery.destination]
type = "local"
dir = "outbox"
{extra}
"#
        ));
        let child = ws.serve();
        let base = format!("http://127.0.0.1:{port}");
        // From here on Drop kills and waits for the child.
        let server = Server { ws, child, base };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if client
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("serve did not start; log:\n{}", server.ws.serve_log());
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>, ctype: &str) -> (u16, Value) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("content-type", ctype)
            .body(body)
            .send()
            .await
            .expect("request");
        let code = r.status().as_u16();
        let text = r.text().await.expect("body");
        (
            code,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str) -> Value {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn pending(s: &Server) -> u64 {
    s.get("/v1/status").await["deliveries"][0]["pending"]["count"]
        .as_u64()
        .expect("count")
}

#[tokio::test]
async fn object_array_and_ndjson_bodies_are_committed_and_acknowledged_with_ids() {
    let s = Server::start("").await;
    let (code, v) = s
        .post(
            "/v1/deliveries/web/records",
            r#"{"email":"a@x.com","phone":5551234567}"#,
            "application/json",
        )
        .await;
    assert_eq!(code, 201, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["ids"].as_array().expect("ids").len(), 1);
    let (code, v) = s
        .post(
            "/v1/deliveries/web/records",
            json!([{"email": "b@x.com"}, {"email": "c@x.com", "phone": "(555) 000-1111"}])
                .to_string(),
            "application/json",
        )
        .await;
    assert_eq!((code, v["accepted"].clone()), (201, json!(2)));
    let (code, v) = s
        .post(
            "/v1/deliveries/web/records",
            "{\"email\":\"d@x.com\"}\n{\"email\":\"e@x.com\"}\n",
            "application/x-ndjson",
        )
        .await;
    assert_eq!((code, v["accepted"].clone()), (201, json!(2)));
    assert_eq!(pending(&s).await, 5);

    let (code, v) = s
        .post("/v1/deliveries/web/flush", "", "application/json")
        .await;
    assert_eq!(code, 200, "{v}");
    let id = v["batches"][0]["id"].as_str().expect("id").to_string();
    // The worker delivers it to the outbox.
    let file = s.ws.path(&format!("outbox/web_{id}.csv"));
    let got = wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&file).ok()
    });
    let text = got.unwrap_or_else(|| panic!("not delivered; log:\n{}", s.ws.serve_log()));
    assert_eq!(text, "email,phone\r\na@x.com,5551234567\r\nb@x.com,\r\nc@x.com,5550001111\r\nd@x.com,\r\ne@x.com,\r\n");
    let b = s.get(&format!("/v1/batches/{id}")).await;
    assert_eq!(b["batch"]["state"], "delivered");
    assert_eq!(pending(&s).await, 0);
}

#[tokio::test]
async fn a_bad_record_rejects_the_whole_request_and_names_it() {
    let s = Server::start("").await;
    let body = "{\"email\":\"ok@x.com\"}\n{\"email\":\"ok2@x.com\"}\n{\"email\": oops}\n";
    let (code, v) = s
        .post("/v1/deliveries/web/records", body, "application/x-ndjson")
        .await;
    assert_eq!(code, 422, "{v}");
    assert_eq!(v["record"], 3);
    assert_eq!(v["line"], 3);
    assert_eq!(v["stored"], 0);
    let (code, v) = s
        .post(
            "/v1/deliveries/web/records",
            "[{\"a\":1}, \"text\"]",
            "application/json",
        )
        .await;
    assert_eq!(code, 422);
    assert!(v["error"].as_str().expect("e").contains("record 2"), "{v}");
    let big = json!({ "email": "x".repeat(4000) }).to_string();
    let (code, v) = s
        .post("/v1/deliveries/web/records", big, "application/json")
        .await;
    assert_eq!(code, 422);
    assert!(v["error"].as_str().expect("e").contains("limit"), "{v}");
    let (code, v) = s
        .post(
            "/v1/deliveries/web/records",
            "x".repeat(2 << 20),
            "application/json",
        )
        .await;
    assert_eq!(code, 413);
    assert!(v["error"].as_str().expect("e").contains("max_body"), "{v}");
    let (code, v) = s
        .post("/v1/deliveries/nope/records", "{}", "application/json")
        .await;
    assert_eq!(code, 404);
    assert!(v["error"].as_str().expect("e").contains("nope"));
    assert_eq!(
        pending(&s).await,
        0,
        "nothing of a rejected request is stored"
    );
}

#[tokio::test]
async fn concurrent_clients_all_get_their_records_stored_once() {
    let s = Server::start("").await;
    let mut tasks = Vec::new();
    for c in 0..32 {
        let url = format!("{}/v1/deliveries/web/records", s.base);
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut ids = Vec::new();
            for i in 0..20 {
                let r: Value = client
                    .post(&url)
                    .body(json!({ "email": format!("{c}-{i}@x.com") }).to_string())
                    .send()
                    .await
                    .expect("send")
                    .json()
                    .await
                    .expect("json");
                ids.push(r["ids"][0].as_i64().expect("id"));
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("join"));
    }
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 640);
    assert_eq!(pending(&s).await, 640);
}

#[tokio::test]
async fn count_trigger_cuts_and_delivers_and_sigterm_exits_cleanly() {
    let mut s = Server::start("[delivery.trigger]\nrecords = 3").await;
    let body =
        "{\"email\":\"1@x\"}\n{\"email\":\"2@x\"}\n{\"email\":\"3@x\"}\n{\"email\":\"4@x\"}\n";
    let (code, _) = s
        .post("/v1/deliveries/web/records", body, "application/x-ndjson")
        .await;
    assert_eq!(code, 201);
    let outbox = s.ws.path("outbox");
    let files = wait_for(Duration::from_secs(10), || {
        let f = list(&outbox);
        (!f.is_empty()).then_some(f)
    })
    .unwrap_or_else(|| panic!("count trigger did not deliver; log:\n{}", s.ws.serve_log()));
    assert_eq!(files.len(), 1);
    // 4 records, trigger at 3: one batch of 4 (max_records is larger), nothing left behind.
    let text = std::fs::read_to_string(outbox.join(&files[0])).expect("read");
    assert_eq!(text.lines().count(), 5);
    assert_eq!(pending(&s).await, 0);
    // A second `serve` on the same store is refused.
    let second = std::process::Command::new(bin())
        .arg("--config")
        .arg(s.ws.config())
        .arg("serve")
        .output()
        .expect("run");
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another `consign serve`"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let status = terminate(&mut s.child);
    assert!(
        status.success(),
        "exit {status:?}; log:\n{}",
        s.ws.serve_log()
    );
}
