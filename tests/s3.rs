//! S3 delivery against a real moto server (tests/servers/servers.sh). What
//! arrived is read back with plain HTTP requests (moto does not check
//! signatures), independently of our object_store client.

mod common;

use common::*;
use sha2::{Digest, Sha256};

fn endpoint() -> String {
    server_env("S3_ENDPOINT")
}

/// Run a boto3 snippet (signed requests, an S3 client independent of ours)
/// with `s3` bound to a client of the test server; returns its stdout as JSON.
fn boto(code: &str) -> serde_json::Value {
    let script = format!(
        "import boto3, json, sys, hashlib\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1')\n{code}",
        endpoint()
    );
    let out = std::process::Command::new(server_env("S3_PYTHON"))
        .arg("-c")
        .arg(script)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from boto3")
}

/// A fresh bucket for one test.
fn bucket(test: &str) -> String {
    let name = format!("consign-{test}-{}", std::process::id());
    boto(&format!("s3.create_bucket(Bucket='{name}'); print('{{}}')"));
    name
}

/// Keys in a bucket, exactly as the store lists them.
fn keys(bucket: &str) -> Vec<String> {
    let v = boto(&format!(
        "print(json.dumps(sorted(o['Key'] for o in s3.list_objects_v2(Bucket='{bucket}').get('Contents', []))))"
    ));
    serde_json::from_value(v).expect("keys")
}

/// An object's body (saved to `dest`) and its headers, read with boto3.
fn fetch(bucket: &str, key: &str, dest: &std::path::Path) -> serde_json::Value {
    let key_json = serde_json::to_string(key).expect("json");
    boto(&format!(
        "o = s3.get_object(Bucket='{bucket}', Key=json.loads({key_json:?}))\nbody = o['Body'].read()\nopen({dest:?}, 'wb').write(body)\nprint(json.dumps({{'headers': o['ResponseMetadata']['HTTPHeaders'], 'metadata': o['Metadata'], 'len': len(body)}}))",
        dest = dest.to_str().expect("utf8")
    ))
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
type = "s3"
bucket = "{bucket}"
endpoint = "{endpoint}"
region = "us-east-1"
access_key_id = "${{env:AWS_ACCESS_KEY_ID}}"
secret_access_key = "${{env:AWS_SECRET_ACCESS_KEY}}"
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
fn delivers_with_key_pattern_metadata_storage_class_and_sse_exact_keys() {
    let b = bucket("keys");
    let extra = r#"prefix = "incoming/{year}/{month}/{day}"
storage_class = "STANDARD_IA"
sse = "AES256"
metadata = { batch = "{batch_id}", records = "{record_count}", source = "consign", note = "café" }"#;
    let file = r#"name = "leads +%ü {batch_id}.csv.gz"
compression = "gzip""#;
    let ws = Workspace::new(&config(&b, extra, file));
    let check = ws.json(&["check", "--connect"], 0);
    assert_eq!(check["results"][0]["ok"], true, "{check}");
    let leads = ws.enqueue_leads("partner", 10_000);
    let out = ws.json(&["flush", "partner"], 0);
    let batch = &out["batches"][0]["batch"];
    assert_eq!(batch["state"], "delivered", "{out}");
    let id = batch["id"].as_str().expect("id");
    let created = chrono::DateTime::parse_from_rfc3339(batch["created_at"].as_str().expect("at"))
        .expect("date")
        .with_timezone(&chrono_tz::America::New_York);
    let expected = format!(
        "incoming/{}/leads +%ü {id}.csv.gz",
        created.format("%Y/%m/%d")
    );
    // Exactly one object, under exactly this key (the check probe is gone).
    assert_eq!(keys(&b), vec![expected.clone()]);

    let local = ws.path("got.csv.gz");
    let got = fetch(&b, &expected, &local);
    let body = std::fs::read(&local).expect("read");
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        out["batches"][0]["files"][0]["sha256"]
            .as_str()
            .expect("sha")
    );
    let rows = csv_rows(&gunzip(&local));
    assert_eq!(rows.len(), 10_001);
    let source = csv_rows(&std::fs::read(&leads).expect("read"));
    assert_eq!(source[1][5], rows[1][3]);

    let h = &got["headers"];
    let header = |k: &str| h.get(k).and_then(|v| v.as_str()).map(str::to_string);
    assert_eq!(header("content-type").as_deref(), Some("application/gzip"));
    assert_eq!(
        header("content-encoding"),
        None,
        "a gzip file must not claim Content-Encoding"
    );
    assert_eq!(got["metadata"]["batch"], id);
    assert_eq!(got["metadata"]["records"], "10000");
    assert_eq!(got["metadata"]["source"], "consign");
    // Headers are ASCII: non-ASCII metadata is stored percent-encoded.
    assert_eq!(got["metadata"]["note"], "caf%C3%A9");
    assert_eq!(
        header("x-amz-storage-class").as_deref(),
        Some("STANDARD_IA")
    );
    assert_eq!(
        header("x-amz-server-side-encryption").as_deref(),
        Some("AES256")
    );
}

#[test]
fn large_file_goes_up_in_parts_and_arrives_intact() {
    let b = bucket("multipart");
    let extra = "multipart_threshold = \"1MiB\"\npart_size = \"5MiB\"";
    // Uncompressed: 80k leads are more than one 5 MiB part.
    let ws = Workspace::new(&config(&b, extra, "name = \"big_{batch_id}.csv\"").replace(
        "[delivery.retry]",
        "[delivery.batch]\nmax_records = 200000\n[delivery.retry]",
    ));
    ws.enqueue_leads("partner", 80_000);
    let out = ws.json(&["flush", "partner"], 0);
    assert_eq!(out["batches"][0]["batch"]["state"], "delivered", "{out}");
    let file = &out["batches"][0]["files"][0];
    let bytes = file["bytes"].as_u64().expect("bytes");
    assert!(bytes > 5 << 20, "fixture too small for 2 parts: {bytes}");
    let key = keys(&b).pop().expect("one key");
    let local = ws.path("big.csv");
    let got = fetch(&b, &key, &local);
    let etag = got["headers"]["etag"].as_str().expect("etag").to_string();
    let body = std::fs::read(&local).expect("read");
    assert_eq!(body.len() as u64, bytes);
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        file["sha256"].as_str().expect("sha")
    );
    let parts = bytes.div_ceil(5 << 20);
    assert!(
        etag.trim_matches('"').ends_with(&format!("-{parts}")),
        "multipart ETag {etag}"
    );
    assert_eq!(csv_rows(&body).len(), 80_001);
}

#[test]
fn missing_bucket_goes_to_the_manual_queue() {
    let ws = Workspace::new(&config(
        &format!("no-such-bucket-{}", std::process::id()),
        "",
        "name = \"l_{batch_id}.csv\"",
    ));
    ws.enqueue_leads("partner", 3);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "manual", "{out}");
    let err = b["last_error"].as_str().expect("err");
    assert!(err.contains("not_found"), "{b}");
    assert!(err.contains("the bucket does not exist"), "{b}");
    let check = ws.json(&["check", "--connect"], 4);
    assert_eq!(check["results"][0]["class"], "not_found", "{check}");
}

#[test]
fn server_not_listening_means_retry() {
    let cfg = config("any", "", "name = \"l_{batch_id}.csv\"")
        .replace(&endpoint(), &format!("http://127.0.0.1:{}", free_port()));
    let ws = Workspace::new(&cfg);
    ws.enqueue_leads("partner", 3);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "retry_wait", "{out}");
    let show = ws.json(&["batches", "show", b["id"].as_str().expect("id")], 0);
    assert_eq!(show["attempts"][0]["outcome"], "connect", "{show}");
}

#[test]
fn config_mistakes_are_reported_by_key() {
    let ws = Workspace::new(&config(
        "b",
        "sse = \"DES\"\npart_size = \"1MiB\"\nmetadata = { x = \"{nope}\" }\nvirtual_hosted_style = true\nstorage_class = \"GLACIERX\"",
        "name = \"l_{batch_id}.csv\"",
    ));
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("destination.sse"), "{err}");
    assert!(err.contains("destination.part_size"), "{err}");
    assert!(err.contains("destination.virtual_hosted_style"), "{err}");
    assert!(
        err.contains("destination.storage_class") && err.contains("GLACIERX"),
        "{err}"
    );
    assert!(
        err.contains("destination.metadata.x") && err.contains("{nope}"),
        "{err}"
    );
}
