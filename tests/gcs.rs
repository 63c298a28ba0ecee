//! GCS delivery against a real fake-gcs-server (tests/servers/servers.sh),
//! through the JSON API. Objects are read back with plain JSON API requests.

mod common;

use common::*;
use sha2::{Digest, Sha256};

fn endpoint() -> String {
    server_env("GCS_ENDPOINT")
}

fn enc(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn bucket(test: &str) -> String {
    let name = format!("consign-{test}-{}", std::process::id());
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/storage/v1/b?project=test", endpoint()))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .expect("create bucket");
    assert!(r.status().is_success(), "create bucket: {}", r.status());
    name
}

fn names(bucket: &str) -> Vec<String> {
    let v: serde_json::Value =
        reqwest::blocking::get(format!("{}/storage/v1/b/{bucket}/o", endpoint()))
            .expect("list")
            .json()
            .expect("json");
    let mut out: Vec<String> = v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|o| o["name"].as_str().expect("name").to_string())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn object(bucket: &str, name: &str) -> (serde_json::Value, Vec<u8>) {
    let url = format!("{}/storage/v1/b/{bucket}/o/{}", endpoint(), enc(name));
    let meta = reqwest::blocking::get(&url)
        .expect("get")
        .json()
        .expect("json");
    let body = reqwest::blocking::get(format!("{url}?alt=media"))
        .expect("get")
        .bytes()
        .expect("bytes")
        .to_vec();
    (meta, body)
}

fn put_object(bucket: &str, name: &str, body: &'static [u8]) {
    let r = reqwest::blocking::Client::new()
        .post(format!(
            "{}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
            endpoint(),
            enc(name)
        ))
        .body(body)
        .send()
        .expect("upload");
    assert!(r.status().is_success());
}

fn config(bucket: &str, extra: &str, file: &str) -> String {
    format!(
        r#"
[store]
path = "q.db"

[[delivery]]
name = "partner"
timezone = "America/New_York"
[delivery.file]
{file}
{LEAD_FIELDS}
[delivery.destination]
type = "gcs"
bucket = "{bucket}"
endpoint = "{endpoint}"
timeout = "20s"
{extra}
[delivery.retry]
max_attempts = 3
initial_delay = "1s"
"#,
        endpoint = endpoint(),
    )
}

#[test]
fn delivers_with_prefix_metadata_class_and_refuses_to_overwrite_other_content() {
    let b = bucket("keys");
    let extra = r#"auth = "none"
prefix = "in/{year}/{month}"
storage_class = "NEARLINE"
metadata = { batch = "{batch_id}", records = "{record_count}" }"#;
    let file = "name = \"leads +%ü {batch_id}.csv.gz\"\ncompression = \"gzip\"";
    let ws = Workspace::new(&config(&b, extra, file));
    let check = ws.json(&["check", "--connect"], 0);
    assert_eq!(check["results"][0]["ok"], true, "{check}");
    ws.enqueue_leads("partner", 10_000);
    let out = ws.json(&["flush", "partner"], 0);
    let batch = &out["batches"][0]["batch"];
    assert_eq!(batch["state"], "delivered", "{out}");
    let id = batch["id"].as_str().expect("id").to_string();
    let created = chrono::DateTime::parse_from_rfc3339(batch["created_at"].as_str().expect("at"))
        .expect("date")
        .with_timezone(&chrono_tz::America::New_York);
    let expected = format!("in/{}/leads +%ü {id}.csv.gz", created.format("%Y/%m"));
    assert_eq!(names(&b), vec![expected.clone()]);
    let (meta, body) = object(&b, &expected);
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        out["batches"][0]["files"][0]["sha256"]
            .as_str()
            .expect("sha")
    );
    let local = ws.path("got.csv.gz");
    std::fs::write(&local, &body).expect("write");
    assert_eq!(csv_rows(&gunzip(&local)).len(), 10_001);
    assert_eq!(meta["contentType"], "application/gzip", "{meta}");
    assert!(
        meta.get("contentEncoding")
            .is_none_or(|v| v.is_null() || v == ""),
        "{meta}"
    );
    assert_eq!(meta["metadata"]["batch"], id.as_str(), "{meta}");
    assert_eq!(meta["metadata"]["records"], "10000", "{meta}");
    // (fake-gcs-server ignores `storageClass` in upload metadata, so it is not asserted here.)

    // Redelivering the same bytes finds them there: delivered, not refused.
    let again = ws.json(&["batches", "retry", &id], 0);
    assert_eq!(again["batch"]["state"], "delivered", "{again}");
    // Someone else's object under that name is not overwritten.
    put_object(&b, &expected, b"someone else's file");
    let refused = ws.json(&["batches", "retry", &id], 3);
    assert_eq!(refused["batch"]["state"], "manual", "{refused}");
    assert!(
        refused["batch"]["last_error"]
            .as_str()
            .expect("err")
            .contains("already exists"),
        "{refused}"
    );
    assert_eq!(object(&b, &expected).1, b"someone else's file");
}

#[test]
fn resumable_upload_in_chunks_arrives_intact() {
    let b = bucket("chunks");
    let ws = Workspace::new(&config(
        &b,
        "auth = \"none\"\nchunk_size = \"256KiB\"",
        "name = \"big_{batch_id}.csv\"",
    ));
    ws.enqueue_leads("partner", 10_000);
    let out = ws.json(&["flush", "partner"], 0);
    assert_eq!(out["batches"][0]["batch"]["state"], "delivered", "{out}");
    let file = &out["batches"][0]["files"][0];
    assert!(
        file["bytes"].as_u64().expect("bytes") > 3 * 256 * 1024,
        "{file}"
    );
    let name = names(&b).pop().expect("one object");
    let (_, body) = object(&b, &name);
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        file["sha256"].as_str().expect("sha")
    );
    assert_eq!(csv_rows(&body).len(), 10_001);
}

#[test]
fn unusable_credentials_suspend_and_server_down_retries() {
    let b = bucket("creds");
    let ws = Workspace::new("");
    // A well-formed key that Google (here: a token endpoint answering 401) refuses.
    let pem = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl");
    let key = ws.path("sa.json");
    let sa = serde_json::json!({
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "1",
        "private_key": String::from_utf8(pem.stdout).expect("pem"),
        "client_email": "consign@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": format!("{}/auth/bearer/not-this-key", server_env("WEBHOOK_BASE_URL")),
    });
    std::fs::write(&key, sa.to_string()).expect("write");
    ws.write_config(&config(
        &b,
        &format!(
            "auth = \"service_account\"\ncredentials_file = \"{}\"",
            key.display()
        ),
        "name = \"l_{batch_id}.csv\"",
    ));
    ws.enqueue_leads("partner", 3);
    let out = ws.json(&["flush", "partner"], 3);
    assert_eq!(out["batches"][0]["batch"]["state"], "suspended", "{out}");
    assert!(names(&b).is_empty());
    let check = ws.json(&["check", "--connect"], 4);
    assert_eq!(check["results"][0]["class"], "auth", "{check}");

    // The token server down: that passes, so the batch waits to retry.
    let mut sa = sa;
    sa["token_uri"] = format!("http://127.0.0.1:{}/token", free_port()).into();
    std::fs::write(&key, sa.to_string()).expect("write");
    let out = ws.json(&["batches", "list"], 0);
    let id = out["batches"][0]["id"].as_str().expect("id").to_string();
    ws.json(&["deliveries", "resume", "partner"], 0);
    let out = ws.json(&["flush", "partner"], 3);
    assert_eq!(out["batches"][0]["batch"]["id"], id.as_str(), "{out}");
    assert_eq!(out["batches"][0]["batch"]["state"], "retry_wait", "{out}");

    let cfg = config(&b, "auth = \"none\"", "name = \"l_{batch_id}.csv\"")
        .replace(&endpoint(), &format!("http://127.0.0.1:{}", free_port()));
    let ws = Workspace::new(&cfg);
    ws.enqueue_leads("partner", 3);
    let out = ws.json(&["flush", "partner"], 3);
    let batch = &out["batches"][0]["batch"];
    assert_eq!(batch["state"], "retry_wait", "{out}");
    let show = ws.json(&["batches", "show", batch["id"].as_str().expect("id")], 0);
    assert_eq!(show["attempts"][0]["outcome"], "connect", "{show}");
}

#[test]
fn config_mistakes_are_reported_by_key() {
    let ws = Workspace::new(&config(
        "b",
        "auth = \"service_account\"\nchunk_size = \"100KiB\"",
        "name = \"l_{batch_id}.csv\"",
    ));
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("destination.credentials_file"), "{err}");
    assert!(err.contains("destination.chunk_size"), "{err}");

    let ws = Workspace::new("");
    let garbage = ws.path("sa.json");
    std::fs::write(&garbage, "not json").expect("write");
    ws.write_config(&config(
        "b",
        &format!(
            "auth = \"service_account\"\ncredentials_file = \"{}\"",
            garbage.display()
        ),
        "name = \"l_{batch_id}.csv\"",
    ));
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("is not a service-account JSON key"), "{err}");
}

#[test]
fn a_missing_bucket_is_said_in_plain_words_and_goes_to_manual() {
    let b = format!("no-such-bucket-{}", std::process::id());
    let ws = Workspace::new(&config(
        &b,
        "auth = \"none\"",
        "name = \"l_{batch_id}.csv\"",
    ));
    ws.enqueue_leads("partner", 3);
    let out = ws.json(&["flush", "partner"], 3);
    let batch = &out["batches"][0]["batch"];
    assert_eq!(batch["state"], "manual", "{out}");
    let err = batch["last_error"].as_str().expect("error");
    assert!(err.contains("the bucket does not exist"), "{err}");
}
