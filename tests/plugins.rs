//! Destination plugins through the engine, end to end: the first-party
//! `rest-upload` (Rust WASM) and `c-sink` (C WASM) components against the
//! project's webhook test server, the `native-copy` shared library, the
//! fixture's faults (trap, deadline, ungranted host), hot swap under
//! `serve` with batches in flight, and the SHA-256 recorded per batch.
//!
//! The components are the ones in `plugins/` (committed builds; `.ci/run`
//! rebuilds them from source before the tests). The native plugin is built
//! here with cargo.

mod common;

use common::*;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

fn base() -> String {
    server_env("WEBHOOK_BASE_URL")
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn unique(tag: &str) -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{tag}{}x{n}", std::process::id())
}

/// host:port of the webhook server (what a delivery must allow).
fn webhook_host() -> String {
    base()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

/// Requests the webhook server saw whose path contains `key`, in order.
fn requests(key: &str) -> Vec<Value> {
    let all: Vec<Value> = reqwest::blocking::get(format!("{}/_requests", base()))
        .expect("get")
        .json()
        .expect("json");
    all.into_iter()
        .filter(|r| r["path"].as_str().unwrap_or("").contains(key))
        .collect()
}

fn header<'a>(r: &'a Value, name: &str) -> Option<&'a str> {
    r["headers"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

fn body(r: &Value) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(r["body_b64"].as_str().expect("body"))
        .expect("base64")
}

/// Copy plugin packages (folder name, source folder) into WS/plugins.
fn install(ws: &Workspace, folder: &str, src: &Path) {
    let dst = ws.path("plugins").join(folder);
    std::fs::create_dir_all(&dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("package") {
        let p = e.expect("entry").path();
        if p.is_file() {
            let tmp = dst.join(format!(
                ".{}.tmp",
                p.file_name().expect("name").to_string_lossy()
            ));
            std::fs::copy(&p, &tmp).expect("copy");
            std::fs::rename(&tmp, dst.join(p.file_name().expect("name"))).expect("rename");
        }
    }
}

fn config(destination: &str, extra: &str) -> String {
    format!(
        r#"
[plugins]
timeout = "2s"
memory_limit = "32MiB"
{extra}

[[delivery]]
name = "p"
[delivery.batch]
max_records = 100000
[delivery.file]
name = "leads_{{batch_id}}.csv.gz"
format = "csv"
compression = "gzip"
[[delivery.field]]
name = "id"
source = "Account Id"
[[delivery.field]]
name = "phone"
source = "Phone 1"
transform = ["digits_only"]
[delivery.destination]
{destination}
[delivery.retry]
max_attempts = 3
initial_delay = "1h"
jitter = 0.0
"#
    )
}

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).expect("read")))
}

/// The plugin component recorded with the batch: (name@version, sha256).
fn plugin_component(show: &Value) -> (String, String) {
    let c = show["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["kind"] == "plugin")
        .unwrap_or_else(|| panic!("no plugin component recorded: {show}"));
    (
        c["name"].as_str().expect("name").to_string(),
        c["sha256"].as_str().expect("sha").to_string(),
    )
}

fn flush_one(ws: &Workspace, code: i32) -> Value {
    let out = ws.json(&["flush", "p"], code);
    let id = out["batches"][0]["batch"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no batch: {out}"))
        .to_string();
    ws.json(&["batches", "show", &id], 0)
}

#[test]
fn rest_upload_delivers_chunks_with_bearer_auth_and_records_its_hash() {
    let key = unique("restchunks");
    let ws = Workspace::new(&config(
        &format!(
            r#"type = "plugin"
plugin = "rest-upload"
allow_http = ["{host}"]
[delivery.destination.config]
endpoint = "{base}/auth/bearer/tok-{key}/{key}"
auth = "bearer"
token = "tok-{key}"
chunk_bytes = 2000"#,
            host = webhook_host(),
            base = base()
        ),
        "",
    ));
    install(&ws, "rest-upload", &repo("plugins/rest-upload"));
    ws.enqueue_leads("p", 300);
    let show = flush_one(&ws, 0);
    assert_eq!(show["batch"]["state"], "delivered", "{show}");
    let (name, sha) = plugin_component(&show);
    assert_eq!(name, "rest-upload@1.0.0");
    assert_eq!(
        sha,
        sha256_file(&ws.path("plugins/rest-upload/rest_upload.wasm"))
    );

    // Reassemble the file from its chunks, in Content-Range order.
    let reqs = requests(&key);
    assert!(
        reqs.len() >= 3,
        "expected several chunks, got {}",
        reqs.len()
    );
    let mut chunks: Vec<(u64, Vec<u8>)> = Vec::new();
    let batch_id = show["batch"]["id"].as_str().expect("id");
    for r in &reqs {
        assert_eq!(r["method"], "PUT");
        assert_eq!(
            header(r, "Authorization"),
            Some(format!("Bearer tok-{key}").as_str())
        );
        assert_eq!(header(r, "X-Batch-Id"), Some(batch_id));
        assert!(
            header(r, "Idempotency-Key").is_some_and(|k| k.starts_with(batch_id)),
            "{r}"
        );
        let range = header(r, "Content-Range").expect("Content-Range");
        let start: u64 = range
            .trim_start_matches("bytes ")
            .split('-')
            .next()
            .and_then(|s| s.parse().ok())
            .expect("range start");
        chunks.push((start, body(r)));
    }
    chunks.sort_by_key(|c| c.0);
    let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.1).collect();
    let file = ws.path("got.csv.gz");
    std::fs::write(&file, &bytes).expect("write");
    let rows = csv_rows(&gunzip(&file));
    assert_eq!(rows.len(), 301, "header + 300 leads");
    assert_eq!(rows[0], vec!["id", "phone"]);
    assert!(rows[1..]
        .iter()
        .all(|r| r[1].bytes().all(|b| b.is_ascii_digit())));
}

#[test]
fn rest_upload_multipart_with_hmac_signature_is_accepted() {
    let key = unique("resthmac");
    let ws = Workspace::new(&config(
        &format!(
            r#"type = "plugin"
plugin = "rest-upload"
allow_http = ["{host}"]
[delivery.destination.config]
endpoint = "{base}/hmac-sha256/s3cr3t/{key}"
mode = "multipart"
auth = "hmac"
hmac_secret = "s3cr3t""#,
            host = webhook_host(),
            base = base()
        ),
        "",
    ));
    install(&ws, "rest-upload", &repo("plugins/rest-upload"));
    ws.enqueue_leads("p", 50);
    let show = flush_one(&ws, 0);
    // The server answers 401 to a bad signature: delivered means it checked out.
    assert_eq!(show["batch"]["state"], "delivered", "{show}");
    let reqs = requests(&key);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0]["method"], "POST");
    assert!(header(&reqs[0], "Content-Type").is_some_and(|c| c.starts_with("multipart/form-data")));
    assert!(reqs[0]["body"]
        .as_str()
        .expect("body")
        .contains("name=\"batch_id\""));
}

#[test]
fn rest_upload_wrong_token_suspends_and_5xx_retries() {
    let key = unique("restauth");
    let dest = |endpoint: &str| {
        format!(
            r#"type = "plugin"
plugin = "rest-upload"
allow_http = ["{host}"]
[delivery.destination.config]
endpoint = "{endpoint}"
auth = "bearer"
token = "wrong""#,
            host = webhook_host()
        )
    };
    let ws = Workspace::new(&config(
        &dest(&format!("{}/auth/bearer/right/{key}", base())),
        "",
    ));
    install(&ws, "rest-upload", &repo("plugins/rest-upload"));
    ws.enqueue_leads("p", 5);
    let show = flush_one(&ws, 3);
    assert_eq!(show["batch"]["state"], "suspended", "{show}");
    assert_eq!(show["attempts"][0]["outcome"], "auth", "{show}");
    let status = ws.json(&["status"], 0);
    assert_eq!(status["deliveries"][0]["state"], "suspended", "{status}");

    let ws = Workspace::new(&config(&dest(&format!("{}/status/503/{key}", base())), ""));
    install(&ws, "rest-upload", &repo("plugins/rest-upload"));
    ws.enqueue_leads("p", 5);
    let show = flush_one(&ws, 3);
    assert_eq!(show["batch"]["state"], "retry_wait", "{show}");
    assert_eq!(show["attempts"][0]["outcome"], "transient", "{show}");
}

#[test]
fn a_host_the_operator_did_not_allow_is_refused_and_named() {
    let key = unique("restdeny");
    let ws = Workspace::new(&config(
        &format!(
            r#"type = "plugin"
plugin = "rest-upload"
allow_http = ["127.0.0.1:1"]
[delivery.destination.config]
endpoint = "{base}/ok/{key}""#,
            base = base()
        ),
        "",
    ));
    install(&ws, "rest-upload", &repo("plugins/rest-upload"));
    ws.enqueue_leads("p", 5);
    let show = flush_one(&ws, 3);
    assert_eq!(show["batch"]["state"], "manual", "{show}");
    let err = show["attempts"][0]["error"].as_str().expect("error");
    assert!(
        err.contains(&format!("capability http:{} denied", webhook_host()))
            && err.contains("allow_http"),
        "{err}"
    );
    assert!(requests(&key).is_empty(), "nothing reached the server");
}

#[test]
fn c_plugin_delivers_every_file_through_host_streamed_bodies() {
    let key = unique("csink");
    let ws = Workspace::new(
        &config(
            &format!(
                r#"type = "plugin"
plugin = "c-sink"
allow_http = ["{host}"]
[delivery.destination.config]
endpoint = "{base}/ok/{key}""#,
                host = webhook_host(),
                base = base()
            ),
            "",
        )
        .replace(
            "[delivery.destination]",
            "[delivery.manifest]\nsha256_sidecar = true\n[delivery.destination]",
        ),
    );
    install(&ws, "c-sink", &repo("plugins/c-sink"));
    ws.enqueue_leads("p", 40);
    let show = flush_one(&ws, 0);
    assert_eq!(show["batch"]["state"], "delivered", "{show}");
    assert_eq!(plugin_component(&show).0, "c-sink@1.0.0");
    let reqs = requests(&key);
    let files = show["files"].as_array().expect("files");
    assert_eq!(reqs.len(), files.len(), "one PUT per file: {reqs:?}");
    for f in files {
        let name = f["name"].as_str().expect("name");
        let r = reqs
            .iter()
            .find(|r| r["path"].as_str().expect("path").ends_with(name))
            .unwrap_or_else(|| panic!("no PUT for {name}"));
        assert_eq!(
            hex::encode(Sha256::digest(body(r))),
            f["sha256"].as_str().expect("sha")
        );
    }
}

#[test]
fn fixture_trap_and_deadline_fail_the_attempt_and_the_engine_carries_on() {
    for behaviour in ["trap", "loop", "hog"] {
        let ws = Workspace::new(&config(
            &format!("type = \"plugin\"\nplugin = \"fixture\"\n[delivery.destination.config]\nbehaviour = \"{behaviour}\""),
            "",
        ));
        install(&ws, "fixture", &repo("plugins/fixture"));
        ws.enqueue_leads("p", 5);
        let t = std::time::Instant::now();
        let show = flush_one(&ws, 3);
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{behaviour}: {:?}",
            t.elapsed()
        );
        assert_eq!(show["batch"]["state"], "retry_wait", "{behaviour}: {show}");
        let err = show["attempts"][0]["error"].as_str().expect("error");
        let want = match behaviour {
            "trap" => "trapped: wasm trap: wasm `unreachable` instruction executed: panicked at",
            "loop" => "compute deadline of 2s exceeded",
            _ => "memory limit of 33554432 bytes exceeded",
        };
        assert!(err.contains(want), "{behaviour}: {err}");
        if behaviour == "trap" {
            // The panic's own message, not a backtrace of wasm frames.
            assert!(err.contains("trap requested by config"), "{err}");
            assert!(!err.contains("<wasm function"), "{err}");
        }
    }
}

#[test]
fn a_plugin_that_only_waits_on_http_is_stopped_by_the_call_time_limit() {
    // Almost no compute of its own, so the compute deadline never fires:
    // the wall-clock `call_timeout` must end the call (as a crash).
    let ws = Workspace::new(&config(
        &format!(
            "type = \"plugin\"\nplugin = \"fixture\"\nallow_http = [\"{}\"]\n[delivery.destination.config]\nbehaviour = \"http-loop\"\nurl = \"{}/slow/200\"",
            webhook_host(),
            base()
        ),
        "call_timeout = \"3s\"",
    ));
    install(&ws, "fixture", &repo("plugins/fixture"));
    ws.enqueue_leads("p", 5);
    let t = std::time::Instant::now();
    let show = flush_one(&ws, 3);
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    assert_eq!(show["batch"]["state"], "retry_wait", "{show}");
    let err = show["attempts"][0]["error"].as_str().expect("error");
    assert!(err.contains("call time limit of 3s exceeded"), "{err}");
}

#[test]
fn a_plugin_that_keeps_crashing_suspends_its_delivery() {
    let ws = Workspace::new(&config(
        "type = \"plugin\"\nplugin = \"fixture\"\n[delivery.destination.config]\nbehaviour = \"trap\"",
        "crash_limit = 1",
    ));
    install(&ws, "fixture", &repo("plugins/fixture"));
    ws.enqueue_leads("p", 5);
    // The crash count lives in the process: one `serve` sees both attempts.
    let port = free_port();
    ws.write_config(
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n{}",
            std::fs::read_to_string(ws.config()).expect("config")
        )
        .replace("initial_delay = \"1h\"", "initial_delay = \"1s\""),
    );
    let mut serve = ws.serve();
    let client = reqwest::blocking::Client::new();
    wait_for(Duration::from_secs(20), || {
        client
            .post(format!("http://127.0.0.1:{port}/v1/deliveries/p/flush"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    })
    .unwrap_or_else(|| panic!("serve did not start: {}", ws.serve_log()));
    let status = wait_for(Duration::from_secs(30), || {
        let s: Value = client
            .get(format!("http://127.0.0.1:{port}/v1/status"))
            .send()
            .ok()?
            .json()
            .ok()?;
        (s["deliveries"][0]["state"] == "suspended").then_some(s)
    })
    .unwrap_or_else(|| panic!("not suspended; log:\n{}", ws.serve_log()));
    terminate(&mut serve);
    let reason = status["deliveries"][0]["suspended_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(
        reason.contains("suspended for delivery p after 1 crashes"),
        "{status}"
    );
}

#[test]
fn wrong_sdk_version_is_refused_with_what_to_do() {
    let ws = Workspace::new(&config("type = \"plugin\"\nplugin = \"fixture\"", ""));
    install(&ws, "fixture", &repo("plugins/fixture"));
    let m = ws.path("plugins/fixture/plugin.toml");
    let text = std::fs::read_to_string(&m).expect("read");
    std::fs::write(&m, text.replace("sdk = \"1.0\"", "sdk = \"2.0\"")).expect("write");
    let out = ws.run(&[
        "plugin",
        "inspect",
        ws.path("plugins/fixture").to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("built with SDK 2.0") && err.contains("upgrade consign"),
        "{err}"
    );
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("delivery[p].destination.plugin") && err.contains("SDK 2.0"),
        "{err}"
    );
}

#[test]
fn check_validates_plugin_config_against_the_manifest() {
    let ws = Workspace::new(&config(
        "type = \"plugin\"\nplugin = \"rest-upload\"\n[delivery.destination.config]\nchunk_bytes = \"big\"\nendpointt = \"x\"",
        "",
    ));
    install(&ws, "rest-upload", &repo("plugins/rest-upload"));
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("delivery[p].destination.config.chunk_bytes: chunk_bytes must be an integer"),
        "{err}"
    );
    assert!(
        err.contains("config.endpointt: plugin rest-upload has no such setting"),
        "{err}"
    );
    assert!(err.contains("config.endpoint: required"), "{err}");
}

#[test]
fn plugin_list_inspect_and_check_connect() {
    let key = unique("listcheck");
    let ws = Workspace::new(&config(
        &format!(
            r#"type = "plugin"
plugin = "rest-upload"
allow_http = ["{host}"]
[delivery.destination.config]
endpoint = "{base}/ok/{key}""#,
            host = webhook_host(),
            base = base()
        ),
        "",
    ));
    install(&ws, "rest-upload", &repo("plugins/rest-upload"));
    install(&ws, "fixture", &repo("plugins/fixture"));
    let list = ws.json(&["plugin", "list"], 0);
    let rows = list["plugins"].as_array().expect("plugins");
    assert_eq!(rows.len(), 2, "{list}");
    let rest = rows
        .iter()
        .find(|r| r["status"]["name"] == "rest-upload")
        .expect("rest");
    assert_eq!(rest["used_by"][0], "p");
    assert_eq!(
        rest["status"]["sha256"],
        sha256_file(&ws.path("plugins/rest-upload/rest_upload.wasm"))
    );
    let inspect = ws.json(
        &[
            "plugin",
            "inspect",
            ws.path("plugins/fixture").to_str().expect("utf8"),
        ],
        0,
    );
    assert_eq!(
        inspect["exports"],
        serde_json::json!(["info", "deliver", "check"])
    );
    assert_eq!(
        inspect["manifest"]["capabilities"]["env"][0],
        "CONSIGN_FIXTURE_VAR"
    );
    let connect = ws.json(&["check", "--connect"], 0);
    assert_eq!(connect["results"][0]["ok"], true, "{connect}");
    assert_eq!(requests(&key).len(), 1, "check reached the endpoint once");
    // plugin check PATH with a config on the command line; a denied host fails.
    let out = ws.run(&[
        "plugin",
        "check",
        ws.path("plugins/fixture").to_str().expect("utf8"),
        "--set",
        "check=http",
        "--set",
        &format!("url={}/ok/{key}", base()),
    ]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("denied"));
    ws.ok(&[
        "plugin",
        "check",
        ws.path("plugins/fixture").to_str().expect("utf8"),
        "--set",
        "check=http",
        "--set",
        &format!("url={}/ok/{key}", base()),
        "--allow-http",
        &webhook_host(),
    ]);
}

/// Build the native plugin once per test run (cargo, host target).
fn native_build(feature: Option<&str>) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let target = repo("target/native-plugin").join(feature.unwrap_or("default"));
    let mut cmd = std::process::Command::new(env!("CARGO"));
    cmd.args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(repo("plugins/native-copy/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target);
    if let Some(f) = feature {
        cmd.args(["--features", f]);
    }
    let st = cmd.status().expect("cargo");
    assert!(st.success(), "building plugins/native-copy failed");
    target.join("release/libconsign_native_copy.so")
}

fn native_package(ws: &Workspace, feature: Option<&str>) {
    static DEFAULT: OnceLock<PathBuf> = OnceLock::new();
    let so = match feature {
        None => DEFAULT.get_or_init(|| native_build(None)).clone(),
        Some(f) => native_build(Some(f)),
    };
    let dir = ws.path("plugins/native-copy");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(
        repo("plugins/native-copy/plugin.toml"),
        dir.join("plugin.toml"),
    )
    .expect("manifest");
    std::fs::copy(so, dir.join("libconsign_native_copy.so")).expect("so");
}

#[test]
fn native_plugin_copies_the_batch_end_to_end() {
    let ws = Workspace::new(&config(
        "type = \"plugin\"\nplugin = \"native-copy\"\n[delivery.destination.config]\ndir = \"OUT\"",
        "",
    ));
    let out = ws.path("partner");
    ws.write_config(
        &std::fs::read_to_string(ws.config())
            .expect("cfg")
            .replace("OUT", out.to_str().expect("utf8")),
    );
    native_package(&ws, None);
    ws.enqueue_leads("p", 120);
    let show = flush_one(&ws, 0);
    assert_eq!(show["batch"]["state"], "delivered", "{show}");
    let (name, sha) = plugin_component(&show);
    assert_eq!(name, "native-copy@1.0.0");
    assert_eq!(
        sha,
        sha256_file(&ws.path("plugins/native-copy/libconsign_native_copy.so"))
    );
    let f = &show["files"][0];
    let delivered = out.join(f["name"].as_str().expect("name"));
    assert_eq!(sha256_file(&delivered), f["sha256"].as_str().expect("sha"));
    assert_eq!(csv_rows(&gunzip(&delivered)).len(), 121);
}

#[test]
fn native_plugin_with_another_abi_is_refused() {
    let ws = Workspace::new(&config(
        "type = \"plugin\"\nplugin = \"native-copy\"\n[delivery.destination.config]\ndir = \"x\"",
        "",
    ));
    native_package(&ws, Some("wrong-abi"));
    let out = ws.run(&[
        "plugin",
        "inspect",
        ws.path("plugins/native-copy").to_str().expect("utf8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("built for native plugin ABI 999") && err.contains("ABI 1"),
        "{err}"
    );
}

#[test]
fn hot_swap_under_serve_finishes_in_flight_batches_on_their_version() {
    let key = unique("swap");
    let port = free_port();
    // 8 batches, 4 delivered at once; each takes ~3 s at the partner (host
    // HTTP time is not the plugin's compute), so the swap lands while the
    // first ones are in flight and before the last ones start.
    let ws = Workspace::new(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n{}",
        config(
            &format!(
                "type = \"plugin\"\nplugin = \"fixture\"\nallow_http = [\"{}\"]\n[delivery.destination.config]\nbehaviour = \"http\"\nurl = \"{}/slow/3000/{key}\"",
                webhook_host(),
                base()
            ),
            "",
        )
        .replace("max_records = 100000", "max_records = 10")
    ));
    install(&ws, "fixture", &repo("plugins/fixture"));
    ws.enqueue_leads("p", 80);
    let mut serve = ws.serve();
    let client = reqwest::blocking::Client::new();
    wait_for(Duration::from_secs(20), || {
        client
            .post(format!("http://127.0.0.1:{port}/v1/deliveries/p/flush"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    })
    .unwrap_or_else(|| panic!("serve did not start: {}", ws.serve_log()));
    // Swap as soon as the first batches are being delivered (the slow route
    // logs a request only when it answers, too late to swap in between).
    wait_for(Duration::from_secs(20), || {
        let l = ws.json(&["batches", "list"], 0);
        l["batches"]
            .as_array()?
            .iter()
            .any(|b| b["state"] == "delivering")
            .then_some(())
    })
    .unwrap_or_else(|| panic!("no delivery started; log:\n{}", ws.serve_log()));
    install(&ws, "fixture", &repo("plugins/fixture/v2"));
    let batches = wait_for(Duration::from_secs(60), || {
        let l = ws.json(&["batches", "list"], 0);
        let all = l["batches"].as_array()?.clone();
        (all.len() == 8 && all.iter().all(|b| b["state"] == "delivered")).then_some(all)
    })
    .unwrap_or_else(|| panic!("not all delivered; log:\n{}", ws.serve_log()));
    terminate(&mut serve);
    let mut versions = Vec::new();
    let mut records = 0;
    for b in &batches {
        let show = ws.json(&["batches", "show", b["id"].as_str().expect("id")], 0);
        let (name, sha) = plugin_component(&show);
        let receipt = show["batch"]["receipt"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // The receipt comes from the version recorded for the batch.
        let v = name.trim_start_matches("fixture@").to_string();
        assert!(
            receipt.contains(&format!("fixture {v}")),
            "{name} vs {receipt}"
        );
        let wasm = if v == "1.0.0" {
            "plugins/fixture/fixture.wasm"
        } else {
            "plugins/fixture/v2/fixture.wasm"
        };
        assert_eq!(sha, sha256_file(&repo(wasm)));
        versions.push(v);
        records += b["record_count"].as_u64().expect("count");
    }
    assert_eq!(records, 80, "no record lost or duplicated");
    assert!(versions.contains(&"1.0.0".to_string()), "{versions:?}");
    assert!(versions.contains(&"2.0.0".to_string()), "{versions:?}");
    assert!(ws.serve_log().contains("plugin loaded"), "reload logged");
}

#[test]
fn a_native_library_replaced_in_place_is_loaded_anew_from_a_private_copy() {
    use consign::config::PluginsConfig;
    use consign::plugin::Plugins;
    let ws = Workspace::new("");
    native_package(&ws, None);
    let cfg = PluginsConfig {
        dir: ws.path("plugins"),
        cache_dir: ws.path("cache"),
        ..PluginsConfig::default()
    };
    let (p, errors) = Plugins::load(&cfg);
    assert!(errors.is_empty(), "{errors:?}");
    let v1 = p.get("native-copy").expect("loaded");
    // Overwrite the library IN PLACE (same inode) with another build: the
    // running copy is private, so nothing crashes, and the reload really
    // opens the new file (which is refused for its ABI).
    let wrong = native_build(Some("wrong-abi"));
    std::fs::write(
        ws.path("plugins/native-copy/libconsign_native_copy.so"),
        std::fs::read(wrong).expect("read"),
    )
    .expect("overwrite");
    let r = p.reload();
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert!(r.failed[0].1.contains("ABI 999"), "{r:?}");
    let still = p.get("native-copy").expect("previous version still active");
    assert_eq!(still.sha256, v1.sha256);
    assert!(
        ws.path("cache/native")
            .read_dir()
            .expect("private copies")
            .count()
            >= 1
    );
}
