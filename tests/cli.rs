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
        err.contains("record 21 (line ") && err.contains("3 fields"),
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

#[test]
fn names_without_batch_id_are_refused_unless_fixed_names_are_wanted() {
    let base = "[[delivery]]\nname = \"d\"\n[delivery.destination]\ntype = \"local\"\ndir = \"out\"\n[delivery.file]\nname = \"daily.csv\"\n";
    let ws = Workspace::new(base);
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("delivery[d].file.name")
            && err.contains("{batch_id}")
            && err.contains("unique_names"),
        "{err}"
    );
    ws.write_config(&format!("{base}unique_names = false\n"));
    ws.ok(&["check"]);
}

#[test]
fn a_purged_batch_is_not_rebuilt_into_an_empty_file() {
    let ws = Workspace::new(
        "[store]\nretention = \"1ms\"\n[[delivery]]\nname = \"d\"\n[delivery.file]\nname = \"f_{batch_id}.csv\"\n[delivery.destination]\ntype = \"local\"\ndir = \"out\"\n",
    );
    let leads = ws.leads(5);
    ws.ok(&["enqueue", "--delivery", "d", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "d"], 0);
    let id = out["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let name = out["batches"][0]["files"][0]["name"]
        .as_str()
        .expect("name")
        .to_string();
    let delivered = std::fs::read(ws.path(&format!("out/{name}"))).expect("read");
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(ws.ok(&["purge"]).contains("purged 5 record(s)"));
    // Delivery removed the spool copy; the records are gone: nothing to rebuild from.
    let again = ws.json(&["batches", "retry", &id], 3);
    assert_eq!(again["batch"]["state"], "manual");
    assert!(
        again["batch"]["last_error"]
            .as_str()
            .expect("err")
            .contains("only 0 of its 5 records"),
        "{again}"
    );
    assert_eq!(
        std::fs::read(ws.path(&format!("out/{name}"))).expect("read"),
        delivered,
        "the partner's file is untouched"
    );
    let out = ws.run(&["batches", "regenerate", "no-such-batch"]);
    assert_eq!(out.status.code(), Some(2), "unknown batch is bad input");
}
