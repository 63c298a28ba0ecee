//! SFTP delivery against a real OpenSSH sshd (tests/servers/servers.sh).

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

/// A remote directory unique to one test, and its host-side path.
fn remote(test: &str) -> (String, PathBuf) {
    let sub = format!("{test}-{}", std::process::id());
    let remote = format!("{}/{sub}", server_env("SFTP_REMOTE_DIR"));
    let local = PathBuf::from(server_env("SFTP_LOCAL_DIR")).join(&sub);
    (remote, local)
}

fn config(remote_dir: &str, auth: &str, known_hosts: &str) -> String {
    format!(
        r#"
[store]
path = "q.db"

[[delivery]]
name = "partner"
timezone = "America/New_York"
[delivery.file]
name = "leads_{{date}}_{{batch_id}}.csv.gz"
compression = "gzip"
{LEAD_FIELDS}
[delivery.destination]
type = "sftp"
host = "{host}"
port = {port}
username = "{user}"
{auth}
known_hosts = "{known_hosts}"
remote_dir = "{remote_dir}"
connect_timeout = "5s"
io_timeout = "20s"
[delivery.retry]
max_attempts = 3
initial_delay = "1s"
"#,
        host = server_env("SFTP_HOST"),
        port = server_env("SFTP_PORT"),
        user = server_env("SFTP_USER"),
    )
}

fn key_auth() -> String {
    format!("private_key = \"{}\"", server_env("SFTP_KEY"))
}

fn good_hosts() -> String {
    server_env("SFTP_KNOWN_HOSTS")
}

fn only_file(dir: &std::path::Path) -> PathBuf {
    let files = list(dir);
    assert_eq!(
        files.len(),
        1,
        "expected exactly one file in {}: {files:?}",
        dir.display()
    );
    dir.join(&files[0])
}

#[test]
fn key_auth_delivers_ten_thousand_mapped_rows_as_one_gzip_csv() {
    let (rdir, ldir) = remote("keyauth");
    let ws = Workspace::new(&config(&rdir, &key_auth(), &good_hosts()));
    let leads = ws.leads(10_000);
    ws.ok(&["check", "--connect"]);
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    let out = ws.json(&["flush", "partner"], 0);
    let batch = &out["batches"][0]["batch"];
    assert_eq!(batch["state"], "delivered");
    assert_eq!(batch["record_count"], 10_000);
    let file = only_file(&ldir);
    assert!(file.to_string_lossy().ends_with(".csv.gz"));
    assert_eq!(
        std::fs::metadata(&file).expect("stat").len(),
        out["batches"][0]["files"][0]["bytes"]
            .as_u64()
            .expect("bytes")
    );
    let rows = csv_rows(&gunzip(&file));
    assert_eq!(
        rows[0],
        [
            "account_id",
            "first_name",
            "last_name",
            "company",
            "phone",
            "email"
        ]
    );
    assert_eq!(rows.len(), 10_001);
    assert!(rows[1..]
        .iter()
        .all(|r| r[4].chars().all(|c| c.is_ascii_digit()) && !r[4].is_empty()));
    // Companies with commas and quotes survive the round trip (the source had them).
    let source = csv_rows(&std::fs::read(&leads).expect("read"));
    let with_comma = source[1..].iter().filter(|r| r[5].contains(',')).count();
    assert!(
        with_comma > 100,
        "fixture should contain companies with commas"
    );
    assert_eq!(
        rows[1..].iter().filter(|r| r[3].contains(',')).count(),
        with_comma
    );
    for (src, got) in source[1..].iter().zip(&rows[1..]) {
        assert_eq!(src[5], got[3], "company changed");
        assert_eq!(src[1], got[0], "order changed");
    }
    let status = ws.json(&["status"], 0);
    assert_eq!(status["deliveries"][0]["pending"]["count"], 0);
}

#[test]
fn password_and_encrypted_key_authenticate() {
    let (rdir, ldir) = remote("pw");
    let auth = "password = \"${env:SFTP_PASSWORD}\"".to_string();
    let ws = Workspace::new(&config(&rdir, &auth, &good_hosts()));
    let leads = ws.leads(10);
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    ws.ok(&["flush", "partner"]);
    assert_eq!(list(&ldir).len(), 1);

    let (rdir, ldir) = remote("enckey");
    let auth = format!(
        "private_key = \"{}\"\npassphrase = \"${{env:SFTP_KEY_PASSPHRASE}}\"",
        server_env("SFTP_KEY_ENCRYPTED")
    );
    let ws = Workspace::new(&config(&rdir, &auth, &good_hosts()));
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    ws.ok(&["flush", "partner"]);
    assert_eq!(csv_rows(&gunzip(&only_file(&ldir))).len(), 11);
}

#[test]
fn unknown_host_key_is_refused_and_suspends() {
    let (rdir, ldir) = remote("unknownhost");
    let ws = Workspace::new("");
    let empty_hosts = ws.path("known_hosts");
    std::fs::write(&empty_hosts, "").expect("write");
    ws.write_config(&config(
        &rdir,
        &key_auth(),
        empty_hosts.to_str().expect("utf8"),
    ));
    let leads = ws.leads(5);
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "suspended");
    assert!(
        b["last_error"]
            .as_str()
            .expect("error")
            .contains("unknown host"),
        "{b}"
    );
    assert!(list(&ldir).is_empty());
    let st = ws.json(&["status"], 0);
    assert_eq!(st["deliveries"][0]["state"], "suspended");
    let check = ws.json(&["check", "--connect"], 4);
    assert_eq!(check["results"][0]["class"], "host_key");
}

#[test]
fn changed_host_key_is_refused() {
    let (rdir, ldir) = remote("changedhost");
    let ws = Workspace::new(&config(
        &rdir,
        &key_auth(),
        &server_env("SFTP_BAD_KNOWN_HOSTS"),
    ));
    let leads = ws.leads(5);
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "suspended");
    assert!(
        b["last_error"]
            .as_str()
            .expect("error")
            .contains("HOST KEY CHANGED"),
        "{b}"
    );
    assert!(list(&ldir).is_empty());
}

#[test]
fn missing_directories_are_created_and_redelivery_replaces_the_file() {
    let (rdir, ldir) = remote("mkdirs");
    let deep = format!("{rdir}/a/b/c");
    let ws = Workspace::new(&config(&deep, &key_auth(), &good_hosts()));
    let leads = ws.leads(50);
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    let out = ws.json(&["flush", "partner"], 0);
    let id = out["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let target = ldir.join("a/b/c");
    let file = only_file(&target);
    let first = std::fs::read(&file).expect("read");
    // Someone damages the remote file; redelivery replaces it atomically.
    std::fs::write(&file, b"garbage").expect("write");
    let again = ws.json(&["batches", "retry", &id], 0);
    assert_eq!(again["batch"]["state"], "delivered");
    assert_eq!(only_file(&target), file, "same name, no temp file left");
    assert_eq!(std::fs::read(&file).expect("read"), first);
    let show = ws.json(&["batches", "show", &id], 0);
    let attempts = show["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2);
    let events: Vec<&str> = show["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["to"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        events,
        [
            "assembling",
            "ready",
            "delivering",
            "delivered",
            "ready",
            "delivering",
            "delivered"
        ]
    );
}

#[test]
fn wrong_password_suspends_the_delivery_until_resumed() {
    let (rdir, ldir) = remote("wrongpw");
    let ws = Workspace::new(&config(
        &rdir,
        "password = \"not-the-password\"",
        &good_hosts(),
    ));
    let leads = ws.leads(20);
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "suspended");
    let err = b["last_error"].as_str().expect("error");
    assert!(err.contains("authentication failed"), "{err}");
    assert!(!err.contains("not-the-password"), "secret leaked: {err}");
    // A second batch cut while suspended waits too; nothing is dropped.
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    let out = ws.json(&["flush", "partner"], 3);
    assert_eq!(out["batches"][0]["batch"]["state"], "suspended");
    assert!(list(&ldir).is_empty());
    // The operator fixes the password and resumes: both batches go out.
    ws.write_config(&config(
        &rdir,
        "password = \"${env:SFTP_PASSWORD}\"",
        &good_hosts(),
    ));
    let r = ws.json(&["deliveries", "resume", "partner"], 0);
    assert_eq!(r["batches_ready"], 2);
    let list_ready = ws.json(&["batches", "list", "--state", "ready"], 0);
    for b in list_ready["batches"].as_array().expect("list") {
        let id = b["id"].as_str().expect("id");
        assert_eq!(
            ws.json(&["batches", "retry", id], 0)["batch"]["state"],
            "delivered"
        );
    }
    assert_eq!(list(&ldir).len(), 2);
    let total: usize = list(&ldir)
        .iter()
        .map(|f| csv_rows(&gunzip(&ldir.join(f))).len() - 1)
        .sum();
    assert_eq!(total, 40);
}

#[test]
fn sigkill_of_serve_mid_delivery_leaves_exactly_one_complete_file_after_restart() {
    let (rdir, ldir) = remote("sigkill");
    let port = free_port();
    // Uncompressed and large so the upload is still running when we kill it.
    let cfg = config(&rdir, &key_auth(), &good_hosts())
        .replace("compression = \"gzip\"", "compression = \"none\"")
        .replace(".csv.gz", ".csv")
        .replace(
            "[store]",
            &format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[store]"),
        )
        .replace(
            "[delivery.destination]",
            "[delivery.batch]\nmax_records = 1000000\n[delivery.destination]",
        );
    let ws = Workspace::new(&cfg);
    let leads = ws.leads(250_000);
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    ws.ok(&["flush", "partner", "--no-deliver"]);
    let mut serve = ws.serve();
    let saw_partial = wait_for(Duration::from_secs(30), || {
        list(&ldir)
            .iter()
            .any(|f| f.ends_with(".part"))
            .then_some(())
    });
    let _ = serve.kill();
    let _ = serve.wait();
    assert!(
        saw_partial.is_some(),
        "never saw the upload in progress; log:\n{}",
        ws.serve_log()
    );
    let files = list(&ldir);
    assert!(
        files.iter().all(|f| f.ends_with(".part")),
        "killed before the rename: {files:?}"
    );
    let batch = &ws.json(&["batches", "list"], 0)["batches"][0];
    assert_eq!(
        batch["state"], "delivering",
        "the kill left the batch mid-delivery"
    );
    let id = batch["id"].as_str().expect("id").to_string();

    let mut serve = ws.serve();
    let done = wait_for(Duration::from_secs(60), || {
        let b = ws.json(&["batches", "show", &id], 0);
        (b["batch"]["state"] == "delivered").then_some(b)
    });
    let status = terminate(&mut serve);
    let b = done.unwrap_or_else(|| panic!("not delivered after restart; log:\n{}", ws.serve_log()));
    assert!(status.success(), "serve exit {status:?}");
    let file = only_file(&ldir);
    let expected = b["files"][0]["bytes"].as_u64().expect("bytes");
    assert_eq!(std::fs::metadata(&file).expect("stat").len(), expected);
    let rows = csv_rows(&std::fs::read(&file).expect("read"));
    assert_eq!(rows.len(), 250_001);
    let events: Vec<String> = b["events"]
        .as_array()
        .expect("ev")
        .iter()
        .map(|e| e["detail"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        events.iter().any(|d| d.contains("recovered after restart")),
        "{events:?}"
    );
    assert_eq!(
        ws.json(&["status"], 0)["deliveries"][0]["pending"]["count"],
        0
    );
}
