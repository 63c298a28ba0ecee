//! SFTP server down → the attempt is retried with backoff by `consign serve`
//! once the server is back. Its own test binary: it stops the shared sshd.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn ctl(action: &str) {
    let st = Command::new("bash")
        .arg(server_env("CONSIGN_TEST_SERVERS_CTL"))
        .arg(action)
        .arg("sftp")
        .status()
        .expect("servers.sh");
    assert!(st.success(), "servers.sh {action} sftp failed");
}

#[test]
fn server_down_means_retry_then_delivered_when_it_is_back() {
    let sub = format!("down-{}", std::process::id());
    let ldir = PathBuf::from(server_env("SFTP_LOCAL_DIR")).join(&sub);
    let port = free_port();
    let cfg = format!(
        r#"
[server]
listen = "127.0.0.1:{port}"
[[delivery]]
name = "partner"
[delivery.file]
name = "leads_{{batch_id}}.csv"
[delivery.destination]
type = "sftp"
host = "{host}"
port = {sport}
username = "{user}"
private_key = "{key}"
known_hosts = "{kh}"
remote_dir = "{rdir}/{sub}"
connect_timeout = "2s"
[delivery.retry]
max_attempts = 4
initial_delay = "2s"
multiplier = 1.0
jitter = 0.0
"#,
        host = server_env("SFTP_HOST"),
        sport = server_env("SFTP_PORT"),
        user = server_env("SFTP_USER"),
        key = server_env("SFTP_KEY"),
        kh = server_env("SFTP_KNOWN_HOSTS"),
        rdir = server_env("SFTP_REMOTE_DIR"),
    );
    let ws = Workspace::new(&cfg);
    let leads = ws.leads(100);
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    ctl("stop-one");
    let out = ws.json(&["flush", "partner"], 3);
    ctl("start-one");
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "retry_wait", "{b}");
    assert!(b["next_attempt_at"].is_string());
    let id = b["id"].as_str().expect("id").to_string();
    let show = ws.json(&["batches", "show", &id], 0);
    assert_eq!(show["attempts"][0]["outcome"], "connect");
    // serve's worker picks the batch up when its retry time comes.
    let mut serve = ws.serve();
    let done = wait_for(Duration::from_secs(30), || {
        let s = ws.json(&["batches", "show", &id], 0);
        (s["batch"]["state"] == "delivered").then_some(s)
    });
    terminate(&mut serve);
    let s = done.unwrap_or_else(|| panic!("not delivered; log:\n{}", ws.serve_log()));
    assert_eq!(s["attempts"].as_array().expect("attempts").len(), 2);
    let files = list(&ldir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        csv_rows(&std::fs::read(ldir.join(&files[0])).expect("read")).len(),
        101
    );
}

#[test]
fn retries_exhausted_go_to_the_manual_queue() {
    // Nothing listens on this port: every attempt is refused.
    let port = free_port();
    let cfg = format!(
        r#"
[[delivery]]
name = "partner"
[delivery.destination]
type = "sftp"
host = "127.0.0.1"
port = {port}
username = "x"
password = "y"
insecure_accept_any_host_key = true
[delivery.retry]
max_attempts = 2
initial_delay = "1ms"
jitter = 0.0
"#
    );
    let ws = Workspace::new(&cfg);
    let leads = ws.leads(3);
    ws.ok(&[
        "enqueue",
        "--delivery",
        "partner",
        leads.to_str().expect("utf8"),
    ]);
    let out = ws.json(&["flush", "partner"], 3);
    let id = out["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(out["batches"][0]["batch"]["state"], "retry_wait");
    std::thread::sleep(Duration::from_millis(20));
    let again = ws.json(&["batches", "retry", &id], 3);
    assert_eq!(again["batch"]["state"], "manual");
    assert!(again["batch"]["last_error"]
        .as_str()
        .expect("err")
        .contains("retries exhausted after 2 attempts"));
}
