//! The command line as a user meets it: demo, check, enqueue errors.

mod common;

use common::*;

#[test]
fn demo_runs_the_main_job_and_delivers_a_gzip_csv() {
    let ws = Workspace::new("");
    let dir = ws.path("demo");
    let out = std::process::Command::new(bin())
        .args(["--json", "demo", "--records", "3000", "--dir"])
        .arg(&dir)
        .output()
        .expect("run demo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["queued"], 3000);
    let file = std::path::PathBuf::from(v["files"][0]["file"].as_str().expect("file"));
    let rows = csv_rows(&gunzip(&file));
    assert_eq!(rows.len(), 3001);
    assert_eq!(
        rows[0],
        [
            "lead_id",
            "first_name",
            "last_name",
            "company",
            "phone",
            "email",
            "source"
        ]
    );
    assert!(rows[1..]
        .iter()
        .all(|r| r[4].bytes().all(|b| b.is_ascii_digit())));
}

#[test]
fn check_reports_every_error_with_line_and_exits_2() {
    let ws = Workspace::new(
        r#"[store]
path = "q.db"
colour = "red"

[[delivery]]
name = "a"
timezone = "EST"
[delivery.trigger]
cron = "0 25 * * *"
[delivery.file]
name = "../../etc/{batch_id}.csv"
[delivery.destination]
type = "sftp"
host = "h"
username = "u"
password = "${env:CONSIGN_SURELY_UNSET_VAR}"
"#,
    );
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "line 3: store",
        "line 7: delivery[a].timezone",
        "America/New_York",
        "delivery[a].trigger.cron",
        "hour",
        "line 11: delivery[a].file",
        "escape",
        "CONSIGN_SURELY_UNSET_VAR",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn enqueue_of_a_bad_file_names_the_line_and_queues_nothing() {
    let ws = Workspace::new(
        "[[delivery]]\nname = \"d\"\n[delivery.destination]\ntype = \"local\"\ndir = \"out\"\n",
    );
    let good = ws.leads(20);
    let bad = ws.path("bad.csv");
    let mut text = std::fs::read_to_string(&good).expect("read");
    text.push_str("21,only,three\n");
    std::fs::write(&bad, text).expect("write");
    let out = ws.run(&["enqueue", "--delivery", "d", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("record 20 (line ") && err.contains("3 fields"),
        "{err}"
    );
    assert!(err.contains("nothing from"), "{err}");
    let st = ws.json(&["status"], 0);
    assert_eq!(st["deliveries"][0]["pending"]["count"], 0);
    ws.ok(&["enqueue", "--delivery", "d", good.to_str().expect("utf8")]);
    assert_eq!(
        ws.json(&["status"], 0)["deliveries"][0]["pending"]["count"],
        20
    );
    let out = ws.run(&[
        "enqueue",
        "--delivery",
        "nope",
        good.to_str().expect("utf8"),
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown delivery \"nope\""));
}
