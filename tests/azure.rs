//! Azure Blob delivery against a real azurite (tests/servers/servers.sh).
//! Containers are created and blobs read back with Microsoft's Python SDK,
//! independently of our object_store client.

mod common;

use common::*;
use sha2::{Digest, Sha256};

/// Run a snippet with `svc` bound to a BlobServiceClient of azurite.
fn sdk(code: &str) -> serde_json::Value {
    let script = format!(
        "import json, os\nfrom azure.storage.blob import BlobServiceClient\nsvc = BlobServiceClient.from_connection_string(os.environ['AZURE_STORAGE_CONNECTION_STRING'])\n{code}"
    );
    let out = std::process::Command::new(server_env("AZURE_PYTHON"))
        .arg("-c")
        .arg(script)
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            server_env("AZURE_STORAGE_CONNECTION_STRING"),
        )
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "azure SDK failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from SDK")
}

fn container(test: &str) -> String {
    let name = format!("consign-{test}-{}", std::process::id());
    sdk(&format!("svc.create_container('{name}'); print('{{}}')"));
    name
}

fn blobs(container: &str) -> Vec<String> {
    let v = sdk(&format!(
        "print(json.dumps(sorted(b.name for b in svc.get_container_client('{container}').list_blobs())))"
    ));
    serde_json::from_value(v).expect("names")
}

/// Download a blob to `dest`; returns its properties.
fn fetch(container: &str, name: &str, dest: &std::path::Path) -> serde_json::Value {
    let name_json = serde_json::to_string(name).expect("json");
    sdk(&format!(
        "b = svc.get_blob_client('{container}', json.loads({name_json:?}))\nopen({dest:?}, 'wb').write(b.download_blob().readall())\np = b.get_blob_properties()\nprint(json.dumps({{'metadata': p.metadata, 'tier': p.blob_tier, 'content_type': p.content_settings.content_type, 'content_encoding': p.content_settings.content_encoding, 'size': p.size}}))",
        dest = dest.to_str().expect("utf8")
    ))
}

fn config(container: &str, extra: &str, file: &str) -> String {
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
type = "azure"
account = "${{env:AZURE_STORAGE_ACCOUNT}}"
container = "{container}"
endpoint = "{endpoint}"
access_key = "${{env:AZURE_STORAGE_KEY}}"
timeout = "20s"
{extra}
[delivery.retry]
max_attempts = 3
initial_delay = "1s"
"#,
        endpoint = server_env("AZURE_BLOB_ENDPOINT"),
    )
}

#[test]
fn delivers_with_prefix_metadata_and_access_tier_under_exact_names() {
    let c = container("tier");
    let extra = r#"prefix = "in/{year}-{month}-{day}"
access_tier = "Cool"
metadata = { batch = "{batch_id}", records = "{record_count}", note = "café" }"#;
    let file = "name = \"leads +%ü {batch_id}.csv.gz\"\ncompression = \"gzip\"";
    let ws = Workspace::new(&config(&c, extra, file));
    let check = ws.json(&["check", "--connect"], 0);
    assert_eq!(check["results"][0]["ok"], true, "{check}");
    ws.enqueue_leads("partner", 10_000);
    let out = ws.json(&["flush", "partner"], 0);
    let batch = &out["batches"][0]["batch"];
    assert_eq!(batch["state"], "delivered", "{out}");
    let id = batch["id"].as_str().expect("id");
    let created = chrono::DateTime::parse_from_rfc3339(batch["created_at"].as_str().expect("at"))
        .expect("date")
        .with_timezone(&chrono_tz::America::New_York);
    let expected = format!("in/{}/leads +%ü {id}.csv.gz", created.format("%Y-%m-%d"));
    assert_eq!(blobs(&c), vec![expected.clone()]);
    let local = ws.path("got.csv.gz");
    let props = fetch(&c, &expected, &local);
    let body = std::fs::read(&local).expect("read");
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        out["batches"][0]["files"][0]["sha256"]
            .as_str()
            .expect("sha")
    );
    assert_eq!(csv_rows(&gunzip(&local)).len(), 10_001);
    assert_eq!(props["tier"], "Cool", "{props}");
    assert_eq!(props["content_type"], "application/gzip", "{props}");
    assert!(props["content_encoding"].is_null(), "{props}");
    assert_eq!(props["metadata"]["batch"], id, "{props}");
    assert_eq!(props["metadata"]["records"], "10000", "{props}");
    assert_eq!(props["metadata"]["note"], "caf%C3%A9", "{props}");
}

#[test]
fn large_file_goes_up_in_blocks() {
    let c = container("blocks");
    let extra = "multipart_threshold = \"1MiB\"\npart_size = \"512KiB\"";
    let ws = Workspace::new(&config(&c, extra, "name = \"big_{batch_id}.csv\""));
    ws.enqueue_leads("partner", 20_000);
    let out = ws.json(&["flush", "partner"], 0);
    assert_eq!(out["batches"][0]["batch"]["state"], "delivered", "{out}");
    let file = &out["batches"][0]["files"][0];
    assert!(file["bytes"].as_u64().expect("bytes") > 1 << 20, "{file}");
    let name = blobs(&c).pop().expect("one blob");
    let local = ws.path("big.csv");
    fetch(&c, &name, &local);
    let body = std::fs::read(&local).expect("read");
    assert_eq!(
        hex::encode(Sha256::digest(&body)),
        file["sha256"].as_str().expect("sha")
    );
    assert_eq!(csv_rows(&body).len(), 20_001);
}

#[test]
fn wrong_key_suspends_and_missing_container_goes_to_manual() {
    let c = container("badkey");
    // A valid base64 key that is not azurite's.
    let cfg = config(&c, "", "name = \"l_{batch_id}.csv\"").replace(
        "${env:AZURE_STORAGE_KEY}",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let ws = Workspace::new(&cfg);
    ws.enqueue_leads("partner", 3);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "suspended", "{out}");
    assert!(blobs(&c).is_empty());

    let ws = Workspace::new(&config(
        &format!("no-such-container-{}", std::process::id()),
        "",
        "name = \"l_{batch_id}.csv\"",
    ));
    ws.enqueue_leads("partner", 3);
    let out = ws.json(&["flush", "partner"], 3);
    assert_eq!(out["batches"][0]["batch"]["state"], "manual", "{out}");
    let err = out["batches"][0]["batch"]["last_error"]
        .as_str()
        .expect("err");
    assert!(err.contains("the container does not exist"), "{err}");
}

#[test]
fn server_not_listening_means_retry() {
    let cfg = config("any", "", "name = \"l_{batch_id}.csv\"").replace(
        &server_env("AZURE_BLOB_ENDPOINT"),
        &format!("http://127.0.0.1:{}/devstoreaccount1", free_port()),
    );
    let ws = Workspace::new(&cfg);
    ws.enqueue_leads("partner", 3);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "retry_wait", "{out}");
    let show = ws.json(&["batches", "show", b["id"].as_str().expect("id")], 0);
    assert_eq!(show["attempts"][0]["outcome"], "connect", "{show}");
}
