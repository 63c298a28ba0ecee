//! HTTP batch destination against the project's webhook test server
//! (tests/servers/webhook): chunks, templates, auth, idempotency keys,
//! partial chunk failure, Retry-After, success criteria.

mod common;

use common::*;
use serde_json::Value;

fn base() -> String {
    server_env("WEBHOOK_BASE_URL")
}

/// Requests the server saw whose path or query contains `key`.
fn requests(key: &str) -> Vec<Value> {
    let all: Vec<Value> = reqwest::blocking::get(format!("{}/_requests", base()))
        .expect("get")
        .json()
        .expect("json");
    all.into_iter()
        .filter(|r| {
            r["path"].as_str().unwrap_or("").contains(key)
                || r["query"].as_str().unwrap_or("").contains(key)
        })
        .collect()
}

fn header<'a>(r: &'a Value, name: &str) -> Option<&'a str> {
    r["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

fn unique(tag: &str) -> String {
    format!("{tag}{}x{}", std::process::id(), rand_suffix())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn config(url: &str, dest_extra: &str, split: u64) -> String {
    format!(
        r#"
[[delivery]]
name = "h"
[delivery.batch]
max_records = 100000
[delivery.file]
name = "chunk_{{batch_id}}_{{part}}.ndjson"
format = "ndjson"
split_records = {split}
[[delivery.field]]
name = "id"
source = "Account Id"
[[delivery.field]]
name = "phone"
source = "Phone 1"
transform = ["digits_only"]
[delivery.destination]
type = "http"
url = "{url}"
{dest_extra}
[delivery.retry]
max_attempts = 5
initial_delay = "1ms"
jitter = 0.0
"#
    )
}

#[test]
fn chunks_carry_templates_auth_and_a_stable_idempotency_key() {
    let key = unique("chunks");
    let url = format!("{}/auth/bearer/tok123?k={key}&p={{part}}", base());
    let extra = "auth = { type = \"bearer\", token = \"tok123\" }\nheaders = { X-Batch-ID = \"{batch_id}\", X-Record-Count = \"{record_count}\" }\nparallel = 2";
    let ws = Workspace::new(&config(&url, extra, 1000));
    let leads = ws.leads(2500);
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "h"], 0);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "delivered", "{b}");
    let id = b["id"].as_str().expect("id");
    let mut got = requests(&key);
    got.sort_by_key(|r| r["query"].as_str().unwrap_or("").to_string());
    assert_eq!(got.len(), 3);
    let mut total = 0;
    for (i, r) in got.iter().enumerate() {
        let lines: Vec<&str> = r["body"].as_str().expect("body").lines().collect();
        let n = lines.len();
        assert_eq!(header(r, "X-Record-Count"), Some(n.to_string().as_str()));
        assert_eq!(header(r, "X-Batch-ID"), Some(id));
        assert_eq!(
            header(r, "Idempotency-Key"),
            Some(format!("{id}-{}", i + 1).as_str())
        );
        assert_eq!(header(r, "Content-Type"), Some("application/x-ndjson"));
        let first: Value = serde_json::from_str(lines[0]).expect("ndjson");
        assert!(first["phone"]
            .as_str()
            .expect("phone")
            .bytes()
            .all(|c| c.is_ascii_digit()));
        total += n;
    }
    assert_eq!(total, 2500);
}

#[test]
fn only_failed_chunks_are_resent_with_the_same_key() {
    let key = unique("partial");
    let url = format!("{}/fail-parts/2/{key}/{{part}}", base());
    let ws = Workspace::new(&config(&url, "", 100));
    let leads = ws.leads(300);
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "h"], 3);
    let id = out["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(out["batches"][0]["batch"]["state"], "retry_wait");
    let show = ws.json(&["batches", "show", &id], 0);
    assert_eq!(show["delivered_parts"], serde_json::json!([1, 3]), "{show}");
    assert!(show["batch"]["last_error"]
        .as_str()
        .expect("e")
        .contains("outstanding: 2"));
    std::thread::sleep(std::time::Duration::from_millis(10));
    let again = ws.json(&["batches", "retry", &id], 0);
    assert_eq!(again["batch"]["state"], "delivered");
    let got = requests(&key);
    let per_part = |p: &str| {
        got.iter()
            .filter(|r| r["path"].as_str().unwrap_or("").ends_with(&format!("/{p}")))
            .count()
    };
    assert_eq!(
        (per_part("1"), per_part("2"), per_part("3")),
        (1, 2, 1),
        "only part 2 resent"
    );
    let keys: Vec<&str> = got
        .iter()
        .filter(|r| r["path"].as_str().unwrap_or("").ends_with("/2"))
        .filter_map(|r| header(r, "Idempotency-Key"))
        .collect();
    assert_eq!(keys, vec![format!("{id}-2").as_str(); 2]);
}

#[test]
fn too_many_requests_waits_at_least_retry_after() {
    let key = unique("ra");
    let url = format!("{}/retry-after/30/1/{key}", base());
    let ws = Workspace::new(&config(&url, "", 1000));
    let leads = ws.leads(10);
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    let before = chrono::Utc::now();
    let out = ws.json(&["flush", "h"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "retry_wait");
    let next = chrono::DateTime::parse_from_rfc3339(b["next_attempt_at"].as_str().expect("next"))
        .expect("time");
    let waited = next.with_timezone(&chrono::Utc) - before;
    assert!(
        waited >= chrono::Duration::seconds(29),
        "retry in {waited}, Retry-After said 30 s (backoff alone: 1 ms)"
    );
}

#[test]
fn server_errors_retry_and_refused_credentials_suspend() {
    let ws = Workspace::new(&config(&format!("{}/status/503", base()), "", 1000));
    let leads = ws.leads(5);
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    assert_eq!(
        ws.json(&["flush", "h"], 3)["batches"][0]["batch"]["state"],
        "retry_wait"
    );

    let url = format!("{}/auth/bearer/right", base());
    let ws = Workspace::new(&config(
        &url,
        "auth = { type = \"bearer\", token = \"wrong-token-value\" }",
        1000,
    ));
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "h"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "suspended");
    assert!(
        !b["last_error"]
            .as_str()
            .expect("e")
            .contains("wrong-token-value"),
        "secret leaked: {b}"
    );
}

#[test]
fn success_needs_the_json_reply_value_and_hmac_signs_the_body() {
    let ws = Workspace::new(&config(
        &format!("{}/fail-parts/0/{}/{{part}}", base(), unique("json")),
        "success_json_path = \"status\"\nsuccess_json_value = \"accepted\"",
        1000,
    ));
    let leads = ws.leads(5);
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "h"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "manual", "{b}");
    assert!(
        b["last_error"]
            .as_str()
            .expect("e")
            .contains("status is \"success\", not \"accepted\""),
        "{b}"
    );

    let ws = Workspace::new(&config(
        &format!("{}/hmac-sha256/s3cret", base()),
        "auth = { type = \"hmac\", secret = \"s3cret\" }",
        1000,
    ));
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    assert_eq!(
        ws.json(&["flush", "h"], 0)["batches"][0]["batch"]["state"],
        "delivered"
    );
}

/// An HTTPS webhook server with a certificate from a private CA.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> TlsServer {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        let sh = |cmd: &str| {
            let st = std::process::Command::new("bash")
                .arg("-c")
                .arg(cmd)
                .current_dir(d)
                .status()
                .expect("bash");
            assert!(st.success(), "{cmd}");
        };
        sh("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -keyout ca.key -out ca.pem -subj /CN=test-ca 2>/dev/null");
        sh("openssl req -newkey rsa:2048 -nodes -keyout key.pem -out leaf.csr -subj /CN=127.0.0.1 2>/dev/null");
        sh("printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext.cnf && openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -out cert.pem -extfile ext.cnf 2>/dev/null");
        let port = free_port();
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/servers/webhook/webhook_server.py");
        let child = std::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .args(["--tls", "cert.pem", "key.pem"])
            .current_dir(d)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn webhook");
        let up = wait_for(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "TLS webhook did not start");
        TlsServer {
            child,
            port,
            ca: d.join("ca.pem"),
            _dir: dir,
        }
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn tls_certificates_are_verified_unless_turned_off_for_one_destination() {
    let tls = TlsServer::start();
    let url = format!("https://127.0.0.1:{}/ok", tls.port);
    let leads_ws = Workspace::new("");
    let leads = leads_ws.leads(5);
    // Unknown CA: refused, and the delivery is suspended like a changed host key.
    let ws = Workspace::new(&config(&url, "", 1000));
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "h"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "suspended", "{b}");
    assert!(
        b["last_error"]
            .as_str()
            .expect("e")
            .to_ascii_lowercase()
            .contains("certificate"),
        "{b}"
    );
    // Trusting the partner's CA explicitly works.
    let ws = Workspace::new(&config(
        &url,
        &format!("ca_file = \"{}\"", tls.ca.display()),
        1000,
    ));
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    assert_eq!(
        ws.json(&["flush", "h"], 0)["batches"][0]["batch"]["state"],
        "delivered"
    );
    // So does turning verification off for this one destination.
    let ws = Workspace::new(&config(&url, "insecure_skip_tls_verify = true", 1000));
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    assert_eq!(
        ws.json(&["flush", "h"], 0)["batches"][0]["batch"]["state"],
        "delivered"
    );
}

#[test]
fn redirects_are_not_followed_and_redelivery_sends_every_part_again() {
    let leads_ws = Workspace::new("");
    let leads = leads_ws.leads(30);
    // A 302 would turn the POST into a GET without the data.
    let ws = Workspace::new(&config(&format!("{}/redirect/302", base()), "", 1000));
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "h"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "manual", "{b}");
    assert!(
        b["last_error"]
            .as_str()
            .expect("e")
            .contains("redirects are not followed"),
        "{b}"
    );
    // check --connect says so too, before any batch goes out.
    let check = ws.json(&["check", "--connect"], 4);
    assert_eq!(check["results"][0]["ok"], false, "{check}");
    assert!(
        check.to_string().contains("redirects are not followed"),
        "{check}"
    );

    let key = unique("again");
    let ws = Workspace::new(&config(
        &format!("{}/ok?k={key}&p={{part}}", base()),
        "",
        10,
    ));
    ws.ok(&["enqueue", "--delivery", "h", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "h"], 0);
    let id = out["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(requests(&key).len(), 3);
    assert_eq!(
        ws.json(&["batches", "retry", &id], 0)["batch"]["state"],
        "delivered"
    );
    assert_eq!(
        requests(&key).len(),
        6,
        "an operator redelivery sends all parts again"
    );
}

#[test]
fn check_refuses_unknown_placeholders_and_bad_headers() {
    let ws = Workspace::new(&config(
        &format!("{}/x/{{batchid}}", base()),
        "headers = { \"Bad Name\" = \"x\" }\ntimeout = \"0s\"",
        10,
    ));
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "unknown placeholder {batchid}",
        "not a valid header name",
        "timeout",
    ] {
        assert!(err.contains(needle), "missing {needle:?}:\n{err}");
    }
}

#[test]
fn a_killed_flush_is_recovered_by_the_next_flush_and_only_when_nobody_else_works() {
    let key = unique("killed");
    let slow = format!("{}/slow/20000?k={key}", base());
    let ws = Workspace::new(&config(&slow, "timeout = \"60s\"", 100));
    ws.enqueue_leads("h", 10);
    // A flush stuck in a slow upload, killed with SIGKILL.
    let mut child = std::process::Command::new(bin())
        .arg("--config")
        .arg(ws.config())
        .args(["flush", "h"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn flush");
    let seen = wait_for(std::time::Duration::from_secs(20), || {
        (!requests(&key).is_empty() || slow_request_started(&ws)).then_some(())
    });
    assert!(seen.is_some(), "the slow upload never started");
    child.kill().expect("kill");
    child.wait().expect("wait");
    let list = ws.json(&["batches", "list"], 0);
    assert_eq!(list["batches"][0]["state"], "delivering", "{list}");
    let id = list["batches"][0]["id"].as_str().expect("id").to_string();

    // The next flush finds nobody else working: it recovers the batch and
    // (nothing new pending) delivers that one, now due.
    ws.write_config(&config(&format!("{}/ok?k={key}", base()), "", 100));
    let out = ws.json(&["flush", "h"], 0);
    let batches = out["batches"].as_array().expect("batches");
    assert_eq!(batches.len(), 1, "{out}");
    assert_eq!(batches[0]["batch"]["id"], id.as_str(), "{out}");
    assert_eq!(batches[0]["batch"]["state"], "delivered", "{out}");
    let show = ws.json(&["batches", "show", &id], 0);
    assert!(show["events"].to_string().contains("recovered"), "{show}");
}

/// The slow route records a request only when it answers: look at the
/// batch state instead.
fn slow_request_started(ws: &Workspace) -> bool {
    let list = ws.json(&["batches", "list"], 0);
    list["batches"][0]["state"] == "delivering"
}
