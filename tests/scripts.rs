//! Lua scripts through the real binary: the shipped transform, response
//! handler and schedule hook; reload while batches assemble (no loss, no
//! duplicate, versions recorded); a broken script kept out; `script test`.

mod common;

use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

/// Copy the shipped `scripts/` folder into the workspace.
fn copy_scripts(ws: &Workspace) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    let dst = ws.path("scripts");
    for entry in walk(&src) {
        let rel = entry.strip_prefix(&src).expect("prefix");
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&entry, &to).expect("copy");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

const ACME_FIELDS: &str = r#"
[[delivery.field]]
name = "first_name"
source = "First Name"
[[delivery.field]]
name = "phone"
source = "Phone 1"
[[delivery.field]]
name = "email"
source = "Email 1"
[[delivery.field]]
name = "stage"
source = "Deal Stage"
[[delivery.field]]
name = "lead_key"
[[delivery.field]]
name = "partner_batch"
"#;

fn acme_config(dest: &str) -> String {
    format!(
        r#"
[[delivery]]
name = "acme"
timezone = "America/New_York"
[delivery.file]
name = "acme_{{batch_id}}.csv"
{ACME_FIELDS}
[delivery.script]
transform = "acme_transform.lua"
response = "partner_response.lua"
[delivery.destination]
{dest}
[delivery.retry]
max_attempts = 3
initial_delay = "1ms"
jitter = 0.0
"#
    )
}

const SAMPLE: &str = "First Name,Phone 1,Email 1,Deal Stage\n\
Ann,+1 (555) 123-4567 x89, Ann@Example.COM ,new\n\
Bob,12345,bob@example.com,won\n\
Cy,555.765.4321,no-email,lost\n\
Di,001-555-222-3333,di@example.com,on hold\n";

/// Queue SAMPLE for the `acme` delivery.
fn enqueue_sample(ws: &Workspace) {
    std::fs::write(ws.path("sample.csv"), SAMPLE).expect("write");
    ws.ok(&[
        "enqueue",
        "--delivery",
        "acme",
        ws.path("sample.csv").to_str().expect("utf8"),
    ]);
}

#[test]
fn shipped_transform_changes_fields_and_drops_with_reasons() {
    let ws = Workspace::new(&acme_config("type = \"local\"\ndir = \"outbox\""));
    copy_scripts(&ws);
    ws.ok(&["check"]);
    enqueue_sample(&ws);
    let v = ws.json(&["flush", "acme"], 0);
    let id = v["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let file = ws.path(&format!("outbox/acme_{id}.csv"));
    let text = std::fs::read_to_string(&file).expect("delivered file");
    let key = |email: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(email.as_bytes()))[..16].to_string()
    };
    assert_eq!(
        text,
        format!(
            "first_name,phone,email,stage,lead_key,partner_batch\r\n\
             Ann,5551234567,ann@example.com,NEW,{},{id}\r\n\
             Di,5552223333,di@example.com,ON HOLD,{},{id}\r\n",
            key("ann@example.com"),
            key("di@example.com")
        )
    );
    let show = ws.json(&["batches", "show", &id], 0);
    let rejected: Vec<(i64, String)> = show["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| {
            (
                r["record"].as_i64().expect("id"),
                r["reason"].as_str().expect("reason").to_string(),
            )
        })
        .collect();
    assert_eq!(
        rejected,
        vec![
            (
                2,
                "dropped by transform: no 10-digit US phone: 12345".to_string()
            ),
            (3, "dropped by transform: no email address".to_string()),
        ]
    );
    let names: BTreeSet<String> = show["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect();
    assert!(
        names.contains("acme_transform.lua") && names.contains("lib/phone.lua"),
        "{names:?}"
    );
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn unique(tag: &str) -> String {
    format!(
        "{tag}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// A workspace whose acme delivery posts to the webhook server's
/// `/reply/{code}/{n}/{key}?body=JSON`, with the sample queued and flushed.
fn partner_replies(code: u16, times: u32, body: &str, exit: i32) -> (Workspace, Value) {
    let url = format!(
        "{}/reply/{code}/{times}/{}?body={}",
        server_env("WEBHOOK_BASE_URL"),
        unique("r"),
        encode(body)
    );
    let ws = Workspace::new(&acme_config(&format!("type = \"http\"\nurl = \"{url}\"")));
    copy_scripts(&ws);
    enqueue_sample(&ws);
    let v = ws.json(&["flush", "acme"], exit);
    let id = v["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let show = ws.json(&["batches", "show", &id], 0);
    (ws, show)
}

#[test]
fn response_handler_quota_waits_until_local_midnight() {
    let (_ws, show) = partner_replies(429, 1, r#"{"error":"quota_exceeded"}"#, 3);
    assert_eq!(show["batch"]["state"], "delayed");
    let next = show["batch"]["next_attempt_at"].as_str().expect("next");
    let at = chrono::DateTime::parse_from_rfc3339(next).expect("time");
    let local = at.with_timezone(&chrono_tz::America::New_York);
    assert_eq!(local.format("%H:%M:%S").to_string(), "00:00:00", "{next}");
    assert!(at > chrono::Utc::now());
    // A quota pause does not use up retries.
    assert_eq!(show["batch"]["attempt_base"], show["batch"]["attempts"]);
}

#[test]
fn response_handler_duplicate_is_skipped_and_invalid_format_asks_for_reformat() {
    let (_ws, show) = partner_replies(409, 0, r#"{"error":"duplicate_batch"}"#, 3);
    assert_eq!(show["batch"]["state"], "skipped");
    assert!(show["batch"]["last_error"]
        .as_str()
        .expect("why")
        .contains("partner already has batch"));

    let (_ws, show) = partner_replies(
        400,
        0,
        r#"{"error":"invalid_format","detail":"column 3 must be a date"}"#,
        3,
    );
    assert_eq!(show["batch"]["state"], "manual");
    let why = show["batch"]["last_error"].as_str().expect("why");
    assert!(
        why.contains("REFORMAT") && why.contains("column 3 must be a date"),
        "{why}"
    );
}

#[test]
fn response_handler_partial_requeues_only_the_refused_records() {
    // Records 1 and 4 reach the file (2 and 3 are dropped by the transform); the partner refuses 4.
    let (ws, show) = partner_replies(
        422,
        1,
        r#"{"error":"rejected_records","ids":[4],"detail":"bad zip"}"#,
        0,
    );
    assert_eq!(show["batch"]["state"], "delivered");
    let detail = show["batch"]["receipt"]
        .as_str()
        .unwrap_or_default()
        .to_string()
        + show["events"].to_string().as_str();
    assert!(detail.contains("refused 1 record(s) (bad zip)"), "{detail}");
    let status = ws.json(&["status"], 0);
    assert_eq!(status["deliveries"][0]["pending"]["count"], 1);
    // The re-queued record goes out in the next batch (the partner now accepts).
    let v = ws.json(&["flush", "acme"], 0);
    assert_eq!(v["batches"][0]["batch"]["record_count"], 1);
}

#[test]
fn reload_under_load_loses_nothing_duplicates_nothing_and_records_versions() {
    let port = free_port();
    let ws = Workspace::new(&format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[[delivery]]
name = "v"
[delivery.trigger]
records = 40
[delivery.batch]
max_records = 40
[delivery.file]
format = "ndjson"
name = "v_{{batch_id}}.ndjson"
[delivery.script]
transform = "t.lua"
mode = "instead_of_mapping"
batch_size = 7
[delivery.destination]
type = "local"
dir = "outbox"
"#
    ));
    let version =
        |n: u32| format!("function transform(r) r.version = {n} return r end\n-- version {n}\n");
    std::fs::create_dir_all(ws.path("scripts")).expect("mkdir");
    std::fs::write(ws.path("scripts/t.lua"), version(1)).expect("write");
    let mut hashes = BTreeMap::new();
    let sha = |text: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(text.as_bytes()))
    };
    hashes.insert(sha(&version(1)), 1u32);
    let mut serve = ws.serve();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(20), || {
        reqwest::blocking::get(format!("{base}/healthz"))
            .ok()
            .filter(|r| r.status().is_success())
    })
    .unwrap_or_else(|| panic!("serve did not start: {}", ws.serve_log()));

    const TOTAL: u64 = 1200;
    let writer = {
        let base = base.clone();
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            for chunk in 0..(TOTAL / 10) {
                let body: String = (0..10)
                    .map(|i| format!("{{\"seq\":{}}}\n", chunk * 10 + i))
                    .collect();
                let r = client
                    .post(format!("{base}/v1/deliveries/v/records"))
                    .header("Content-Type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .expect("post");
                assert_eq!(r.status().as_u16(), 201);
                std::thread::sleep(Duration::from_millis(4));
            }
        })
    };
    let client = reqwest::blocking::Client::new();
    for n in 2..=5u32 {
        std::thread::sleep(Duration::from_millis(150));
        if n == 4 {
            // A broken version is kept out: the API says so and v3 keeps serving.
            std::fs::write(
                ws.path("scripts/t.lua"),
                "function transform(r) return r +\n",
            )
            .expect("write");
            let r = client
                .post(format!("{base}/v1/admin/reload"))
                .send()
                .expect("reload");
            assert_eq!(r.status().as_u16(), 422);
            let body: Value = r.json().expect("json");
            assert!(
                body["failed"][0][1]
                    .as_str()
                    .expect("err")
                    .contains("t.lua:"),
                "{body}"
            );
            let st: Value = client
                .get(format!("{base}/v1/scripts"))
                .send()
                .expect("get")
                .json()
                .expect("json");
            assert!(st["scripts"][0]["error"].is_string(), "{st}");
            let out = ws.run(&["reload"]);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
            std::thread::sleep(Duration::from_millis(150));
        }
        std::fs::write(ws.path("scripts/t.lua"), version(n)).expect("write");
        hashes.insert(sha(&version(n)), n);
        // Half of the swaps by the admin API, half by the folder watcher.
        if n % 2 == 0 {
            let r = client
                .post(format!("{base}/v1/admin/reload"))
                .send()
                .expect("reload");
            assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap_or_default());
        }
    }
    writer.join().expect("writer");
    // Deliver the tail.
    client
        .post(format!("{base}/v1/deliveries/v/flush"))
        .send()
        .expect("flush");
    let seen = wait_for(Duration::from_secs(30), || {
        let mut seqs = Vec::new();
        for name in list_complete(&ws.path("outbox")) {
            let text = std::fs::read_to_string(ws.path(&format!("outbox/{name}"))).ok()?;
            for line in text.lines() {
                let v: Value = serde_json::from_str(line).ok()?;
                seqs.push(v["seq"].as_u64()?);
            }
        }
        (seqs.len() as u64 >= TOTAL).then_some(seqs)
    })
    .unwrap_or_else(|| panic!("not everything was delivered; log:\n{}", ws.serve_log()));
    terminate(&mut serve);
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(
        sorted.len() as u64,
        TOTAL,
        "duplicates: {} lines for {} records",
        seen.len(),
        sorted.len()
    );
    assert_eq!(sorted, (0..TOTAL).collect::<Vec<_>>());

    // Each batch was made by one version, and records that version's hash.
    let batches = ws.json(&["batches", "list", "--limit", "1000"], 0);
    let mut versions = BTreeSet::new();
    for b in batches["batches"].as_array().expect("batches") {
        let id = b["id"].as_str().expect("id");
        let text =
            std::fs::read_to_string(ws.path(&format!("outbox/v_{id}.ndjson"))).expect("file");
        let in_file: BTreeSet<u64> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).expect("json")["version"]
                    .as_u64()
                    .expect("version")
            })
            .collect();
        assert_eq!(in_file.len(), 1, "batch {id} mixes versions {in_file:?}");
        let v = *in_file.iter().next().expect("one") as u32;
        versions.insert(v);
        let show = ws.json(&["batches", "show", id], 0);
        let recorded: Vec<u32> = show["components"]
            .as_array()
            .expect("components")
            .iter()
            .filter_map(|c| hashes.get(c["sha256"].as_str()?).copied())
            .collect();
        assert_eq!(
            recorded,
            vec![v],
            "batch {id} made by version {v} records {recorded:?}"
        );
    }
    assert!(
        versions.len() >= 3,
        "batches came from versions {versions:?} only"
    );
}

#[test]
fn a_broken_script_is_refused_at_start_and_by_check_with_its_line() {
    let ws = Workspace::new(
        r#"
[[delivery]]
name = "b"
[delivery.script]
transform = "bad.lua"
[delivery.destination]
type = "local"
dir = "outbox"
"#,
    );
    std::fs::create_dir_all(ws.path("scripts")).expect("mkdir");
    std::fs::write(
        ws.path("scripts/bad.lua"),
        "function transform(r)\n  return r +\nend\n",
    )
    .expect("write");
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.lua:3:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ws.run(&["serve"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.lua:3:"));
    // Nothing is cut while the transform cannot run: the records wait.
    ws.enqueue_leads("b", 5);
    let out = ws.run(&["flush", "b"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was cut"));
    assert_eq!(
        ws.json(&["status"], 0)["deliveries"][0]["pending"]["count"],
        5
    );
}

#[test]
fn schedule_hook_cuts_when_the_script_says_so() {
    let port = free_port();
    let ws = Workspace::new(&format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[[delivery]]
name = "s"
[delivery.file]
format = "ndjson"
name = "s_{{batch_id}}.ndjson"
[delivery.script]
schedule = "hook.lua"
[delivery.destination]
type = "local"
dir = "outbox"
"#
    ));
    std::fs::create_dir_all(ws.path("scripts")).expect("mkdir");
    std::fs::write(
        ws.path("scripts/hook.lua"),
        "function next_batch(m) if m.pending >= 5 then return 'now' end return nil end",
    )
    .expect("write");
    let mut serve = ws.serve();
    let base = format!("http://127.0.0.1:{port}");
    wait_for(Duration::from_secs(20), || {
        reqwest::blocking::get(format!("{base}/healthz"))
            .ok()
            .filter(|r| r.status().is_success())
    })
    .unwrap_or_else(|| panic!("serve did not start: {}", ws.serve_log()));
    let post = |n: u32| {
        let body: String = (0..n).map(|i| format!("{{\"i\":{i}}}\n")).collect();
        let r = reqwest::blocking::Client::new()
            .post(format!("{base}/v1/deliveries/s/records"))
            .header("Content-Type", "application/x-ndjson")
            .body(body)
            .send()
            .expect("post");
        assert_eq!(r.status().as_u16(), 201);
    };
    post(3);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        list_complete(&ws.path("outbox")).is_empty(),
        "cut before the hook said so"
    );
    post(2);
    let files = wait_for(Duration::from_secs(15), || {
        let l = list_complete(&ws.path("outbox"));
        (!l.is_empty()).then_some(l)
    })
    .unwrap_or_else(|| panic!("no batch; log:\n{}", ws.serve_log()));
    terminate(&mut serve);
    let text = std::fs::read_to_string(ws.path(&format!("outbox/{}", files[0]))).expect("file");
    assert_eq!(text.lines().count(), 5);
    let b = ws.json(&["batches", "list"], 0);
    assert_eq!(b["batches"][0]["trigger"], "script");
}

#[test]
fn script_test_runs_each_shipped_hook_on_sample_input() {
    let ws = Workspace::new(&acme_config("type = \"local\"\ndir = \"outbox\""));
    copy_scripts(&ws);
    std::fs::write(ws.path("sample.csv"), SAMPLE).expect("write");
    let out = ws.ok(&[
        "script",
        "test",
        ws.path("scripts/acme_transform.lua")
            .to_str()
            .expect("utf8"),
        "--input",
        ws.path("sample.csv").to_str().expect("utf8"),
        "--delivery",
        "acme",
    ]);
    assert!(out.contains(r#""phone":"5551234567""#), "{out}");
    assert!(
        out.contains("REJECTED: dropped by transform: no 10-digit US phone: 12345"),
        "{out}"
    );

    std::fs::write(
        ws.path("reply.json"),
        r#"{"ok":false,"class":"permanent","status":409,"body":"{\"error\":\"duplicate_batch\"}"}"#,
    )
    .expect("write");
    let out = ws.ok(&[
        "script",
        "test",
        ws.path("scripts/partner_response.lua")
            .to_str()
            .expect("utf8"),
        "--hook",
        "response",
        "--input",
        ws.path("reply.json").to_str().expect("utf8"),
    ]);
    assert_eq!(out.trim(), "skip: partner already has batch test");

    // Saturday 2026-12-05 12:00 in New York: wait for Monday 09:00.
    std::fs::write(ws.path("m.json"), r#"{"pending":900,"now":1796490000}"#).expect("write");
    let out = ws.ok(&[
        "script",
        "test",
        ws.path("scripts/business_hours.lua")
            .to_str()
            .expect("utf8"),
        "--hook",
        "schedule",
        "--input",
        ws.path("m.json").to_str().expect("utf8"),
        "--delivery",
        "acme",
    ]);
    assert!(out.contains("2026-12-07 09:00 EST"), "{out}");
}

#[test]
fn a_json_envelope_announces_the_records_the_transform_kept() {
    let cfg = acme_config("type = \"local\"\ndir = \"outbox\"").replace(
        "name = \"acme_{batch_id}.csv\"",
        "name = \"acme_{batch_id}.json\"\nformat = \"json\"",
    );
    let ws = Workspace::new(&cfg);
    copy_scripts(&ws);
    enqueue_sample(&ws);
    let v = ws.json(&["flush", "acme"], 0);
    let id = v["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let text = std::fs::read_to_string(ws.path(&format!("outbox/acme_{id}.json"))).expect("file");
    let doc: Value = serde_json::from_str(&text).expect("json");
    let (info, leads) = doc
        .as_object()
        .map(|o| {
            let info = o
                .values()
                .find(|v| v.get("record_count").is_some())
                .cloned();
            let leads = o.values().find_map(|v| v.as_array().cloned());
            (info, leads)
        })
        .expect("object");
    let leads = leads.expect("records array");
    assert_eq!(leads.len(), 2, "{text}");
    assert_eq!(info.expect("info")["record_count"], 2, "{text}");
}
