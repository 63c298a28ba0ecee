//! File formats and the file pipeline: golden files per format and option,
//! round trips through independent parsers (Python csv/json, xmllint, jq,
//! gzip, gpg), splitting, OpenPGP, manifests, verification, snapshots.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// `consign preview` of the edge-value sample for one delivery of formats.toml.
fn preview(delivery: &str) -> Vec<u8> {
    let ws =
        Workspace::new(&std::fs::read_to_string(fixtures().join("formats.toml")).expect("fixture"));
    let out = Command::new(bin())
        .arg("--config")
        .arg(ws.config())
        .args(["preview", delivery, "--records", "100", "--sample"])
        .arg(fixtures().join("edge.ndjson"))
        .output()
        .expect("run preview");
    assert!(
        out.status.success(),
        "preview {delivery}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The JSON envelope's `created` changes every run.
fn normalize(bytes: Vec<u8>) -> Vec<u8> {
    let text = String::from_utf8_lossy(&bytes).to_string();
    match text.find("\"created\":\"") {
        Some(i) => {
            let start = i + "\"created\":\"".len();
            let end = start + text[start..].find('"').unwrap_or(0);
            format!("{}<created>{}", &text[..start], &text[end..]).into_bytes()
        }
        None => bytes,
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn python(script: &str, file: &Path) -> String {
    run(Command::new("python3").arg("-c").arg(script).arg(file))
        .trim()
        .to_string()
}

#[test]
fn golden_files_per_format_and_option() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for d in [
        "csv_protect",
        "csv_always",
        "xml",
        "json",
        "ndjson",
        "fixed_latin1",
        "fixed_reject",
    ] {
        let got = normalize(preview(d));
        let path = golden.join(format!("{d}.out"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).expect("write golden");
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        assert!(
            got == want,
            "{d} differs from {}:\n--- got\n{}\n--- want\n{}",
            path.display(),
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want)
        );
    }
}

#[test]
fn independent_parsers_read_every_format_with_exact_values() {
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, bytes: Vec<u8>| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).expect("write");
        p
    };
    let csv = write("a.csv", preview("csv_protect"));
    let got = python(
        "import csv,sys; r=list(csv.reader(open(sys.argv[1],newline='',encoding='utf-8'))); print(len(r)); print(r[1][0]); print(r[1][1]); print(r[1][4]); print(r[1][5]); print(repr(r[3][4]))",
        &csv,
    );
    assert_eq!(
        got,
        "4\n123456789012345678901\n02138\n'=SUM(A1)\n-12.50\n'multi\\nline'"
    );

    let tsv = write("a.tsv", preview("csv_always"));
    let got = python(
        "import csv,sys; f=open(sys.argv[1],newline='',encoding='utf-8-sig'); r=list(csv.reader(f, delimiter='\\t', escapechar='\\\\', doublequote=False)); print(r[2][3]); print(r[1][2])",
        &tsv,
    );
    assert_eq!(got, "@cmd\\path\nAnn & <Bob> \"Q\"");

    let xml = write("a.xml", preview("xml"));
    run(Command::new("xmllint").arg("--noout").arg(&xml));
    let n = run(Command::new("xmllint")
        .args(["--xpath", "count(/leads/lead)"])
        .arg(&xml));
    assert_eq!(n.trim(), "3");
    let name = run(Command::new("xmllint")
        .args(["--xpath", "string(/leads/lead[1]/contact/name)"])
        .arg(&xml));
    assert_eq!(name.trim(), "Ann & <Bob> \"Q\"");
    let id = run(Command::new("xmllint")
        .args(["--xpath", "string(/leads/lead[1]/@id)"])
        .arg(&xml));
    assert_eq!(id.trim(), "123456789012345678901");

    let json = write("a.json", preview("json"));
    assert_eq!(
        run(Command::new("jq").args([".records | length"]).arg(&json)).trim(),
        "3"
    );
    let exact = python("import json,sys; d=json.load(open(sys.argv[1])); r=d['records']; print(r[0]['id'], r[0]['zip'], r[1]['phone'], d['batch']['record_count'], r[0]['metadata']['quality_score'])", &json);
    assert_eq!(exact, "123456789012345678901 02138 5551234567 3 85");

    let nd = write("a.ndjson", preview("ndjson"));
    assert_eq!(
        run(Command::new("jq").args(["-c", ".zip"]).arg(&nd)),
        "\"02138\"\n\"00501\"\nnull\n"
    );

    let fixed = preview("fixed_latin1");
    let lines: Vec<&[u8]> = fixed
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines.iter().all(|l| l.len() == 29 && l.ends_with(b"\r")),
        "{lines:?}"
    );
    // Latin-1 bytes: ü is 0xFC, transliterated 北京 is "Bei Ji".
    assert!(lines[0].windows(1).any(|w| w == [0xFC]));
    assert!(lines[2].windows(6).any(|w| w == b"Bei Ji"));
    assert_eq!(&lines[1][16..22], b"+00042");
}

fn outbox_config(layout: &str) -> String {
    format!(
        r#"
[store]
path = "q.db"
[[delivery]]
name = "p"
timezone = "America/New_York"
[delivery.batch]
max_records = 1000000
{layout}
[delivery.destination]
type = "local"
dir = "out"
"#
    )
}

const LEAD_MAP: &str = r#"
[[delivery.field]]
name = "account_id"
source = "Account Id"
[[delivery.field]]
name = "first_name"
source = "First Name"
[[delivery.field]]
name = "company"
source = "Company"
[[delivery.field]]
name = "phone"
source = "Phone 1"
transform = ["digits_only"]
"#;

/// Enqueue `n` leads and flush; returns the workspace and the flush JSON.
fn deliver(layout: &str, n: u64) -> (Workspace, serde_json::Value) {
    let ws = Workspace::new(&outbox_config(layout));
    let leads = ws.leads(n);
    ws.ok(&["enqueue", "--delivery", "p", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "p"], 0);
    (ws, out)
}

#[test]
fn each_format_gzipped_opens_in_its_standard_tool() {
    for (format, ext, check) in [
        (
            "csv",
            "csv",
            "import csv,sys; print(len(list(csv.reader(open(sys.argv[1],newline=''))))-1)",
        ),
        (
            "json",
            "json",
            "import json,sys; print(len(json.load(open(sys.argv[1]))['leads']))",
        ),
        (
            "ndjson",
            "ndjson",
            "import json,sys; print(sum(1 for l in open(sys.argv[1]) if json.loads(l)))",
        ),
        (
            "xml",
            "xml",
            "import xml.etree.ElementTree as E,sys; print(len(E.parse(sys.argv[1]).getroot()))",
        ),
    ] {
        let layout = format!("[delivery.file]\nname = \"leads_{{batch_id}}.{ext}.gz\"\nformat = \"{format}\"\ncompression = \"gzip\"\n{LEAD_MAP}");
        let (ws, out) = deliver(&layout, 1500);
        let name = out["batches"][0]["files"][0]["name"]
            .as_str()
            .expect("name")
            .to_string();
        let plain = ws.path("plain");
        std::fs::write(&plain, gunzip(&ws.path(&format!("out/{name}")))).expect("write");
        assert_eq!(python(check, &plain), "1500", "{format}");
        if format == "xml" {
            run(Command::new("xmllint").arg("--noout").arg(&plain));
        }
        if format == "json" {
            assert_eq!(
                run(Command::new("jq").args([".leads | length"]).arg(&plain)).trim(),
                "1500"
            );
        }
    }
}

#[test]
fn split_by_records_gives_complete_parts_that_add_up_exactly() {
    let layout = format!("[delivery.file]\nname = \"leads_{{batch_id}}_{{part}}of{{parts}}.csv\"\nsplit_records = 1000\n{LEAD_MAP}");
    let (ws, out) = deliver(&layout, 2500);
    let files = out["batches"][0]["files"]
        .as_array()
        .expect("files")
        .clone();
    assert_eq!(files.len(), 3);
    let mut seen = std::collections::HashSet::new();
    for (i, f) in files.iter().enumerate() {
        let name = f["name"].as_str().expect("name");
        assert!(name.ends_with(&format!("_{}of3.csv", i + 1)), "{name}");
        let rows = csv_rows(&std::fs::read(ws.path(&format!("out/{name}"))).expect("read"));
        assert_eq!(rows[0], ["account_id", "first_name", "company", "phone"]);
        assert_eq!(
            rows.len() as u64 - 1,
            f["records"].as_u64().expect("records")
        );
        for r in &rows[1..] {
            assert!(seen.insert(r[0].clone()), "record {} twice", r[0]);
        }
    }
    assert_eq!(seen.len(), 2500);
}

#[test]
fn split_by_final_size_keeps_every_gzip_part_under_the_limit() {
    for (format, ext) in [("csv", "csv"), ("xml", "xml")] {
        let layout = format!(
            "[delivery.file]\nname = \"leads_{{batch_id}}_{{part}}.{ext}.gz\"\nformat = \"{format}\"\ncompression = \"gzip\"\nsplit_bytes = \"32KiB\"\n{LEAD_MAP}"
        );
        let (ws, out) = deliver(&layout, 6000);
        let files = out["batches"][0]["files"]
            .as_array()
            .expect("files")
            .clone();
        assert!(
            files.len() >= 3,
            "{format}: expected several parts, got {}",
            files.len()
        );
        let mut total = 0;
        for f in &files {
            let path = ws.path(&format!("out/{}", f["name"].as_str().expect("name")));
            let size = std::fs::metadata(&path).expect("stat").len();
            assert!(
                size <= 32 * 1024,
                "{format}: {} is {size} bytes",
                path.display()
            );
            assert!(
                size > 8 * 1024,
                "{format}: parts should be reasonably full, {} is {size}",
                path.display()
            );
            let plain = gunzip(&path);
            let n = f["records"].as_u64().expect("records");
            if format == "xml" {
                let text = String::from_utf8(plain).expect("utf8");
                assert!(
                    text.contains(&format!("count=\"{n}\"")),
                    "header count of the part"
                );
                assert_eq!(text.matches("<lead>").count() as u64, n);
            } else {
                assert_eq!(csv_rows(&plain).len() as u64 - 1, n);
            }
            total += n;
        }
        assert_eq!(total, 6000);
    }
}

#[test]
fn manifest_sidecars_checksums_and_done_marker_last() {
    let layout = format!(
        "[delivery.file]\nname = \"leads_{{batch_id}}_{{part}}.csv\"\nsplit_records = 400\n[delivery.manifest]\nsha256_sidecar = true\nmd5 = true\njson = \"{{batch_id}}.manifest.json\"\ndone = \"{{batch_id}}.done\"\n{LEAD_MAP}"
    );
    let (ws, out) = deliver(&layout, 1000);
    let files = out["batches"][0]["files"]
        .as_array()
        .expect("files")
        .clone();
    let kinds: Vec<&str> = files
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "data", "data", "data", "sha256", "md5", "sha256", "md5", "sha256", "md5", "manifest",
            "done"
        ]
    );
    let outdir = ws.path("out");
    for f in files.iter().filter(|f| f["kind"] == "sha256") {
        run(Command::new("sha256sum")
            .arg("-c")
            .arg(f["name"].as_str().expect("n"))
            .current_dir(&outdir));
    }
    for f in files.iter().filter(|f| f["kind"] == "md5") {
        run(Command::new("md5sum")
            .arg("-c")
            .arg(f["name"].as_str().expect("n"))
            .current_dir(&outdir));
    }
    let id = out["batches"][0]["batch"]["id"].as_str().expect("id");
    let manifest = outdir.join(format!("{id}.manifest.json"));
    assert_eq!(
        run(Command::new("jq")
            .args(["[.files[].records] | add"])
            .arg(&manifest))
        .trim(),
        "1000"
    );
    assert_eq!(
        run(Command::new("jq")
            .args(["-r", ".files[0].sha256"])
            .arg(&manifest))
        .trim(),
        files[0]["sha256"].as_str().expect("sha")
    );
    // The receipt lists files in upload order: the done marker is last.
    let receipt = out["batches"][0]["batch"]["receipt"]
        .as_str()
        .expect("receipt");
    assert!(
        receipt.trim_end().ends_with(&format!("{id}.done")),
        "{receipt}"
    );
    assert_eq!(
        std::fs::read_to_string(outdir.join(format!("{id}.done"))).expect("done"),
        format!("batch_id={id}\nfiles=3\nrecords=1000\n")
    );
}

#[test]
fn verify_detects_a_changed_spool_file_and_delivery_rebuilds_it() {
    let layout = format!(
        "[delivery.file]\nname = \"leads_{{batch_id}}.csv.gz\"\ncompression = \"gzip\"\n{LEAD_MAP}"
    );
    let ws = Workspace::new(&outbox_config(&layout));
    let leads = ws.leads(300);
    ws.ok(&["enqueue", "--delivery", "p", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "p", "--no-deliver"], 0);
    let id = out["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(ws.json(&["batches", "verify", &id], 0)["ok"], true);
    let spool = ws.path(&format!("spool/p/{id}/file-1"));
    let mut bytes = std::fs::read(&spool).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&spool, &bytes).expect("write");
    let v = ws.json(&["batches", "verify", &id], 5);
    assert!(
        v["problem"].as_str().expect("problem").contains("sha256"),
        "{v}"
    );
    // Delivery notices, rebuilds from the stored records, verifies and delivers.
    let r = ws.json(&["batches", "retry", &id], 0);
    assert_eq!(r["batch"]["state"], "delivered");
    let name = ws.json(&["batches", "show", &id], 0)["files"][0]["name"]
        .as_str()
        .expect("n")
        .to_string();
    assert_eq!(
        csv_rows(&gunzip(&ws.path(&format!("out/{name}")))).len(),
        301
    );
}

#[test]
fn regenerate_uses_the_layout_snapshotted_at_cut() {
    let layout = format!("[delivery.file]\nname = \"leads_{{batch_id}}.csv\"\n{LEAD_MAP}");
    let ws = Workspace::new(&outbox_config(&layout));
    let leads = ws.leads(50);
    ws.ok(&["enqueue", "--delivery", "p", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "p", "--no-deliver"], 0);
    let id = out["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let before = out["batches"][0]["files"][0].clone();
    // The partner's columns change in the config while the batch is pending.
    let changed = outbox_config("[delivery.file]\nname = \"other_{batch_id}.csv\"\n[[delivery.field]]\nname = \"email\"\nsource = \"Email 1\"");
    ws.write_config(&changed);
    let regen = ws.json(&["batches", "regenerate", &id], 0);
    let after = &regen["files"][0];
    assert_eq!(after["name"], before["name"]);
    assert_eq!(
        after["sha256"], before["sha256"],
        "identical bytes from the snapshot"
    );
    assert_eq!(
        ws.json(&["batches", "retry", &id], 0)["batch"]["state"],
        "delivered"
    );
    let rows = csv_rows(
        &std::fs::read(ws.path(&format!("out/{}", before["name"].as_str().expect("n"))))
            .expect("read"),
    );
    assert_eq!(rows[0], ["account_id", "first_name", "company", "phone"]);
}

#[test]
fn fixed_width_rejections_are_listed_with_the_batch() {
    let layout = r#"
[delivery.file]
name = "f_{batch_id}.txt"
format = "fixed_width"
[delivery.fixed_width]
overflow = "reject"
[[delivery.field]]
name = "company"
source = "Company"
length = 12
"#;
    let (ws, out) = deliver(layout, 200);
    let b = &out["batches"][0];
    let id = b["batch"]["id"].as_str().expect("id");
    let written = b["files"][0]["records"].as_u64().expect("records");
    let show = ws.json(&["batches", "show", id], 0);
    let rejected = show["rejected"].as_array().expect("rejected");
    assert!(!rejected.is_empty() && written > 0);
    assert_eq!(written + rejected.len() as u64, 200);
    assert!(rejected[0]["reason"]
        .as_str()
        .expect("reason")
        .contains("longer than 12 bytes"));
    let text = std::fs::read(ws.path(&format!(
        "out/{}",
        b["files"][0]["name"].as_str().expect("n")
    )))
    .expect("read");
    assert!(text
        .split(|c| *c == b'\n')
        .filter(|l| !l.is_empty())
        .all(|l| l.len() == 12));
}

#[test]
fn an_empty_batch_is_a_valid_gzip_with_only_the_header() {
    let layout = format!("[delivery.file]\nname = \"leads_{{batch_id}}.csv.gz\"\ncompression = \"gzip\"\n[delivery.batch]\nempty = \"deliver\"\n{LEAD_MAP}")
        .replace("[delivery.batch]\nempty", "[delivery.batch]\nmax_records = 10\nempty");
    let ws = Workspace::new(
        &outbox_config(&layout).replace("[delivery.batch]\nmax_records = 1000000\n", ""),
    );
    let out = ws.json(&["flush", "p"], 0);
    let b = &out["batches"][0];
    assert_eq!(b["batch"]["record_count"], 0);
    assert_eq!(b["batch"]["state"], "delivered");
    let file = ws.path(&format!(
        "out/{}",
        b["files"][0]["name"].as_str().expect("name")
    ));
    assert_eq!(gunzip(&file), b"account_id,first_name,company,phone\r\n");
}

#[test]
fn a_delivered_batch_regenerated_for_inspection_is_not_sent_again() {
    let layout = format!("[delivery.file]\nname = \"leads_{{batch_id}}.csv\"\n{LEAD_MAP}");
    let (ws, out) = deliver(&layout, 20);
    let id = out["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let v = ws.json(&["batches", "verify", &id], 0);
    assert!(
        v["notes"][0]
            .as_str()
            .expect("note")
            .contains("spool copy was removed"),
        "{v}"
    );
    let r = ws.json(&["batches", "regenerate", &id], 0);
    assert_eq!(r["batch"]["state"], "delivered", "{r}");
    assert_eq!(ws.json(&["batches", "verify", &id], 0)["ok"], true);
}

#[test]
fn a_manifest_name_that_collides_with_a_data_part_fails_the_batch_loudly() {
    let layout = format!(
        "[delivery.file]\nname = \"x_{{batch_id}}_{{part}}.csv\"\nsplit_records = 10\n[delivery.manifest]\ndone = \"x_{{batch_id}}_1.csv\"\n{LEAD_MAP}"
    );
    let ws = Workspace::new(&outbox_config(&layout));
    let leads = ws.leads(25);
    ws.ok(&["enqueue", "--delivery", "p", leads.to_str().expect("utf8")]);
    let out = ws.run(&["flush", "p"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("would both be named"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(list(&ws.path("out")).is_empty(), "nothing delivered");
}
