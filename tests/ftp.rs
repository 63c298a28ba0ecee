//! FTP / FTPS delivery against real vsftpd servers (tests/servers/servers.sh):
//! `ftp` requires TLS session reuse on data connections (require_ssl_reuse=YES),
//! `ftpnat` answers PASV with a private address it is not reachable at.

mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// A directory unique to one test: (remote path, host-side path).
fn remote(server_dir_var: &str, test: &str) -> (String, PathBuf) {
    let sub = format!("{test}-{}", std::process::id());
    (
        format!("/{sub}"),
        PathBuf::from(server_env(server_dir_var)).join(sub),
    )
}

fn config(port_var: &str, remote_dir: &str, extra: &str) -> String {
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
type = "ftp"
host = "{host}"
port = {port}
username = "{user}"
password = "${{env:FTP_PASSWORD}}"
remote_dir = "{remote_dir}"
connect_timeout = "5s"
io_timeout = "20s"
{extra}
[delivery.retry]
max_attempts = 3
initial_delay = "1s"
"#,
        host = server_env("FTP_HOST"),
        port = server_env(port_var),
        user = server_env("FTP_USER"),
    )
}

fn trusted() -> String {
    format!("ca_file = \"{}\"", server_env("TEST_CA_CERT"))
}

fn only_file(dir: &std::path::Path) -> PathBuf {
    let files = list(dir);
    assert_eq!(
        files.len(),
        1,
        "expected one file in {}: {files:?}",
        dir.display()
    );
    dir.join(&files[0])
}

#[test]
fn ftps_with_session_reuse_delivers_ten_thousand_rows_into_new_nested_dirs() {
    let (rdir, ldir) = remote("FTP_LOCAL_DIR", "ftps");
    let nested = format!("{rdir}/in/daily");
    let ws = Workspace::new(&config("FTP_PORT", &nested, &trusted()));
    let check = ws.json(&["check", "--connect"], 0);
    let msg = check["results"][0]["message"].as_str().expect("message");
    assert!(msg.contains("TLS verified"), "{check}");
    // TLS 1.3 tickets are single-use: this server refuses a later data
    // connection, and the check must find that out (not only deliveries).
    let tls13 = Workspace::new(&config(
        "FTP_PORT",
        &nested,
        &format!("{}\ntls_max = \"1.3\"", trusted()),
    ));
    let check = tls13.json(&["check", "--connect"], 4);
    assert!(check.to_string().contains("upload 3 of 4"), "{check}");
    let leads = ws.enqueue_leads("partner", 10_000);
    let out = ws.json(&["flush", "partner"], 0);
    let batch = &out["batches"][0]["batch"];
    assert_eq!(batch["state"], "delivered", "{out}");
    let file = only_file(&ldir.join("in/daily"));
    assert_eq!(
        std::fs::metadata(&file).expect("stat").len(),
        out["batches"][0]["files"][0]["bytes"]
            .as_u64()
            .expect("bytes")
    );
    // Binary mode: the gzip bytes are intact (ASCII mode would corrupt them).
    let rows = csv_rows(&gunzip(&file));
    assert_eq!(rows.len(), 10_001);
    let source = csv_rows(&std::fs::read(&leads).expect("read"));
    for (src, got) in source[1..].iter().zip(&rows[1..]) {
        assert_eq!(src[5], got[3], "company changed");
    }
    // No temp file is left behind; the check probe was removed.
    assert_eq!(list(&ldir.join("in/daily")).len(), 1);
    assert!(!ldir.join("in/daily/.consign-check").exists());

    // Redelivery of the same batch replaces the file under the same name.
    let id = batch["id"].as_str().expect("id");
    std::fs::write(&file, b"stale").expect("write");
    ws.ok(&["batches", "retry", id]);
    ws.ok(&["flush", "partner"]);
    assert_eq!(csv_rows(&gunzip(&file)).len(), 10_001);
}

#[test]
fn ftps_session_reuse_holds_for_many_files_in_one_session() {
    // Split parts plus sidecars: many data connections, each must resume
    // the control connection's TLS session (vsftpd require_ssl_reuse=YES).
    let (rdir, ldir) = remote("FTP_LOCAL_DIR", "manyfiles");
    let cfg = config("FTP_PORT", &rdir, &trusted()).replace(
        "compression = \"gzip\"",
        "compression = \"gzip\"\nsplit_records = 100",
    ).replace("leads_{date}_{batch_id}.csv.gz", "leads_{batch_id}_{part}.csv.gz")
        + "[delivery.manifest]\nsha256_sidecar = true\njson = \"{batch_id}.manifest.json\"\ndone = \"{batch_id}.done\"\n";
    let ws = Workspace::new(&cfg);
    ws.enqueue_leads("partner", 500);
    let out = ws.json(&["flush", "partner"], 0);
    assert_eq!(out["batches"][0]["batch"]["state"], "delivered", "{out}");
    let files = list(&ldir);
    assert_eq!(files.len(), 5 + 5 + 2, "{files:?}");
    assert!(!files.iter().any(|f| f.ends_with(".part")), "{files:?}");
}

#[test]
fn pasv_reply_with_a_private_address_is_answered_at_the_server_address() {
    // ftpnat replies `227 Entering Passive Mode (10,254,254,254,…)`.
    for (extra, name) in [
        ("passive = \"pasv\"\ntls = \"none\"".to_string(), "natplain"),
        (format!("passive = \"pasv\"\n{}", trusted()), "natftps"),
    ] {
        let (rdir, ldir) = remote("FTPNAT_LOCAL_DIR", name);
        let ws = Workspace::new(&config("FTPNAT_PORT", &rdir, &extra));
        ws.enqueue_leads("partner", 50);
        let out = ws.json(&["flush", "partner"], 0);
        assert_eq!(out["batches"][0]["batch"]["state"], "delivered", "{out}");
        assert_eq!(csv_rows(&gunzip(&only_file(&ldir))).len(), 51);
    }
}

#[test]
fn untrusted_certificate_suspends_unless_verification_is_turned_off() {
    let (rdir, ldir) = remote("FTP_LOCAL_DIR", "untrusted");
    // No ca_file: the private test CA is not trusted.
    let ws = Workspace::new(&config("FTP_PORT", &rdir, ""));
    ws.enqueue_leads("partner", 5);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "suspended", "{out}");
    assert!(
        b["last_error"]
            .as_str()
            .expect("err")
            .contains("certificate"),
        "{b}"
    );
    let id = b["id"].as_str().expect("id").to_string();
    assert!(list(&ldir).is_empty());
    let check = ws.json(&["check", "--connect"], 4);
    assert_eq!(check["results"][0]["class"], "host_key");

    // The operator turns verification off for this one destination.
    ws.write_config(&config(
        "FTP_PORT",
        &rdir,
        "insecure_skip_tls_verify = true",
    ));
    ws.ok(&["deliveries", "resume", "partner"]);
    let out = ws.json(&["batches", "retry", &id], 0);
    assert_eq!(out["batch"]["state"], "delivered", "{out}");
    assert_eq!(list(&ldir).len(), 1);
}

#[test]
fn wrong_password_suspends_the_delivery() {
    let (rdir, _) = remote("FTP_LOCAL_DIR", "badpw");
    let cfg =
        config("FTP_PORT", &rdir, &trusted()).replace("${env:FTP_PASSWORD}", "not-the-password");
    let ws = Workspace::new(&cfg);
    ws.enqueue_leads("partner", 5);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "suspended", "{out}");
    assert!(
        b["last_error"].as_str().expect("err").contains("530"),
        "{b}"
    );
    assert!(!b["last_error"]
        .as_str()
        .expect("err")
        .contains("not-the-password"));
    let st = ws.json(&["status"], 0);
    assert_eq!(st["deliveries"][0]["state"], "suspended");
}

#[test]
fn unwritable_directory_goes_to_the_manual_queue_after_one_attempt() {
    let (rdir, ldir) = remote("FTP_LOCAL_DIR", "readonly");
    std::fs::create_dir_all(&ldir).expect("mkdir");
    // Owned by root, not writable by the FTP user.
    std::fs::set_permissions(&ldir, std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let ws = Workspace::new(&config("FTP_PORT", &rdir, &trusted()));
    ws.enqueue_leads("partner", 5);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "manual", "{out}");
    let id = b["id"].as_str().expect("id");
    let show = ws.json(&["batches", "show", id], 0);
    assert_eq!(
        show["attempts"].as_array().expect("attempts").len(),
        1,
        "{show}"
    );
    assert_eq!(show["attempts"][0]["outcome"], "permission", "{show}");
    assert!(list(&ldir).is_empty());
}

#[test]
fn server_not_listening_means_retry() {
    let (rdir, _) = remote("FTP_LOCAL_DIR", "down");
    let port = free_port();
    let cfg = config("FTP_PORT", &rdir, &trusted()).replace(
        &format!("port = {}", server_env("FTP_PORT")),
        &format!("port = {port}"),
    );
    let ws = Workspace::new(&cfg);
    ws.enqueue_leads("partner", 5);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "retry_wait", "{out}");
    let id = b["id"].as_str().expect("id");
    let show = ws.json(&["batches", "show", id], 0);
    assert_eq!(show["attempts"][0]["outcome"], "connect", "{show}");
}

#[test]
fn server_without_epsv_gets_pasv_under_auto() {
    // ftpold answers EPSV and SIZE with `502 Command not implemented`.
    let (rdir, ldir) = remote("FTPOLD_LOCAL_DIR", "noepsv");
    let ws = Workspace::new(&config("FTPOLD_PORT", &rdir, "tls = \"none\""));
    ws.enqueue_leads("partner", 40);
    let out = ws.json(&["flush", "partner"], 0);
    assert_eq!(out["batches"][0]["batch"]["state"], "delivered", "{out}");
    assert_eq!(csv_rows(&gunzip(&only_file(&ldir))).len(), 41);

    // Forcing EPSV on that server fails for good (no retry storm).
    let (rdir, ldir) = remote("FTPOLD_LOCAL_DIR", "epsvonly");
    let ws = Workspace::new(&config(
        "FTPOLD_PORT",
        &rdir,
        "tls = \"none\"\npassive = \"epsv\"",
    ));
    ws.enqueue_leads("partner", 4);
    let out = ws.json(&["flush", "partner"], 3);
    let b = &out["batches"][0]["batch"];
    assert_eq!(b["state"], "manual", "{out}");
    assert!(
        b["last_error"].as_str().expect("err").contains("502"),
        "{b}"
    );
    assert!(list(&ldir).is_empty());
}
