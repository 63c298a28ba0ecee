//! OpenPGP: files encrypted by consign open with GnuPG 2.2, for keys made by
//! `gpg --quick-gen-key` and by sequoia (the SEIPD v1 interop trap); bad keys
//! are refused by `consign check` with the key and the reason; signing;
//! verification before delivery decrypts with a configured key.

mod common;

use common::*;
use openpgp::cert::prelude::*;
use openpgp::serialize::SerializeInto;
use sequoia_openpgp as openpgp;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// A private GnuPG home in the workspace.
fn gpg(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new("gpg")
        .env("GNUPGHOME", home)
        .args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .output()
        .expect("run gpg")
}

fn gpg_ok(home: &Path, args: &[&str]) -> std::process::Output {
    let out = gpg(home, args);
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn gnupg_home(ws: &Workspace) -> PathBuf {
    let home = ws.path("gnupg");
    std::fs::create_dir_all(&home).expect("mkdir");
    let _ = Command::new("chmod").arg("700").arg(&home).status();
    home
}

/// A sequoia key: public part and secret part (TSK) written as .asc files.
fn sequoia_key(ws: &Workspace, name: &str, builder: CertBuilder<'_>) -> (PathBuf, PathBuf) {
    let (cert, _rev) = builder
        .add_userid(format!("{name} <{name}@example.com>"))
        .generate()
        .expect("generate");
    let public = ws.path(&format!("{name}.asc"));
    let secret = ws.path(&format!("{name}-secret.asc"));
    std::fs::write(&public, cert.armored().to_vec().expect("armor")).expect("write");
    std::fs::write(&secret, cert.as_tsk().armored().to_vec().expect("armor")).expect("write");
    (public, secret)
}

fn config(recipients: &[&Path], extra: &str) -> String {
    let list: Vec<String> = recipients
        .iter()
        .map(|p| format!("\"{}\"", p.display()))
        .collect();
    format!(
        r#"
[store]
path = "q.db"
[[delivery]]
name = "p"
[delivery.file]
name = "leads_{{batch_id}}.csv.gz.pgp"
compression = "gzip"
[[delivery.field]]
name = "account_id"
source = "Account Id"
[[delivery.field]]
name = "company"
source = "Company"
[delivery.encryption]
recipients = [{}]
{extra}
[delivery.destination]
type = "local"
dir = "out"
"#,
        list.join(", ")
    )
}

fn flush(ws: &Workspace, n: u64) -> PathBuf {
    let leads = ws.leads(n);
    ws.ok(&["enqueue", "--delivery", "p", leads.to_str().expect("utf8")]);
    let out = ws.json(&["flush", "p"], 0);
    assert_eq!(out["batches"][0]["batch"]["state"], "delivered", "{out}");
    ws.path(&format!(
        "out/{}",
        out["batches"][0]["files"][0]["name"]
            .as_str()
            .expect("name")
    ))
}

/// Decrypt with gpg, gunzip, count CSV rows.
fn rows_via_gpg(home: &Path, file: &Path) -> (usize, String) {
    let out = gpg_ok(home, &["--decrypt", file.to_str().expect("utf8")]);
    let plain = std::env::temp_dir().join(format!("consign-pgp-{}.gz", std::process::id()));
    std::fs::write(&plain, &out.stdout).expect("write");
    let rows = csv_rows(&gunzip(&plain));
    let _ = std::fs::remove_file(&plain);
    (rows.len(), String::from_utf8_lossy(&out.stderr).to_string())
}

#[test]
fn gnupg_reads_files_for_a_gpg_made_key_armored() {
    let ws = Workspace::new("");
    let home = gnupg_home(&ws);
    gpg_ok(
        &home,
        &[
            "--quick-gen-key",
            "Partner <partner@example.com>",
            "default",
            "default",
            "never",
        ],
    );
    let public = ws.path("partner.asc");
    let exported = gpg_ok(&home, &["--armor", "--export", "partner@example.com"]);
    std::fs::write(&public, exported.stdout).expect("write");
    ws.write_config(&config(&[&public], "armor = true"));
    let file = flush(&ws, 500);
    let head = std::fs::read_to_string(&file).expect("armored is text");
    assert!(
        head.starts_with("-----BEGIN PGP MESSAGE-----"),
        "{}",
        &head[..40.min(head.len())]
    );
    assert_eq!(rows_via_gpg(&home, &file).0, 501);
}

#[test]
fn gnupg_2_2_reads_files_for_a_sequoia_made_key_and_checks_the_signature() {
    let ws = Workspace::new("");
    let home = gnupg_home(&ws);
    let (public, secret) = sequoia_key(&ws, "seq", CertBuilder::general_purpose(None::<String>));
    let (_, signer) = sequoia_key(&ws, "us", CertBuilder::general_purpose(None::<String>));
    gpg_ok(&home, &["--import", secret.to_str().expect("utf8")]);
    gpg_ok(&home, &["--import", signer.to_str().expect("utf8")]);
    let extra = format!(
        "sign_key = \"{}\"\nverify_key = \"{}\"",
        signer.display(),
        secret.display()
    );
    ws.write_config(&config(&[&public], &extra));
    let leads = ws.leads(300);
    ws.ok(&["enqueue", "--delivery", "p", leads.to_str().expect("utf8")]);
    let cut = ws.json(&["flush", "p", "--no-deliver"], 0);
    let id = cut["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The engine can check the content: decrypt with verify_key, gunzip, parse, count.
    let v = ws.json(&["batches", "verify", &id], 0);
    assert_eq!(v["notes"].as_array().map(|a| a.len()), Some(0), "{v}");
    let done = ws.json(&["batches", "retry", &id], 0);
    assert_eq!(done["batch"]["state"], "delivered");
    let name = cut["batches"][0]["files"][0]["name"]
        .as_str()
        .expect("name");
    let (rows, stderr) = rows_via_gpg(&home, &ws.path(&format!("out/{name}")));
    assert_eq!(rows, 301);
    assert!(stderr.contains("Good signature"), "{stderr}");
}

#[test]
fn every_recipient_can_decrypt() {
    let ws = Workspace::new("");
    let home_a = gnupg_home(&ws);
    let home_b = ws.path("gnupg-b");
    std::fs::create_dir_all(&home_b).expect("mkdir");
    let (pa, sa) = sequoia_key(&ws, "a", CertBuilder::general_purpose(None::<String>));
    let (pb, sb) = sequoia_key(&ws, "b", CertBuilder::general_purpose(None::<String>));
    gpg_ok(&home_a, &["--import", sa.to_str().expect("utf8")]);
    gpg_ok(&home_b, &["--import", sb.to_str().expect("utf8")]);
    ws.write_config(&config(&[&pa, &pb], ""));
    let file = flush(&ws, 50);
    assert_eq!(rows_via_gpg(&home_a, &file).0, 51);
    assert_eq!(rows_via_gpg(&home_b, &file).0, 51);
}

#[test]
fn check_refuses_expired_revoked_and_encryptionless_keys_naming_them() {
    let ws = Workspace::new("");
    let day = Duration::from_secs(86_400);
    let expired = {
        let b = CertBuilder::new()
            .set_creation_time(SystemTime::now() - 3 * day)
            .set_validity_period(day)
            .add_transport_encryption_subkey();
        sequoia_key(&ws, "expired", b).0
    };
    let revoked = {
        let (cert, rev) = CertBuilder::general_purpose(Some("r@example.com"))
            .generate()
            .expect("gen");
        let cert = cert.insert_packets(rev).expect("revoke").0;
        let p = ws.path("revoked.asc");
        std::fs::write(&p, cert.armored().to_vec().expect("armor")).expect("write");
        p
    };
    let signing_only = sequoia_key(&ws, "signonly", CertBuilder::new().add_signing_subkey()).0;
    let missing = ws.path("nope.asc");
    ws.write_config(&config(&[&expired, &revoked, &signing_only, &missing], ""));
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "expired.asc",
        "expired",
        "revoked.asc",
        "is revoked",
        "signonly.asc",
        "no valid encryption subkey",
        "nope.asc",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
}

#[test]
fn a_batch_cut_encrypted_is_never_written_in_clear() {
    let ws = Workspace::new("");
    let (public, _) = sequoia_key(&ws, "k", CertBuilder::general_purpose(None::<String>));
    ws.write_config(&config(&[&public], ""));
    let leads = ws.leads(10);
    ws.ok(&["enqueue", "--delivery", "p", leads.to_str().expect("utf8")]);
    let cut = ws.json(&["flush", "p", "--no-deliver"], 0);
    let id = cut["batches"][0]["batch"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Encryption removed from the config, spool lost: the rebuild must refuse.
    let plain = config(&[&public], "").replace(".csv.gz.pgp", ".csv.gz");
    let plain = plain[..plain.find("[delivery.encryption]").expect("enc")].to_string()
        + "[delivery.destination]\ntype = \"local\"\ndir = \"out\"\n";
    ws.write_config(&plain);
    std::fs::remove_dir_all(ws.path(&format!("spool/p/{id}"))).expect("rm spool");
    let r = ws.json(&["batches", "retry", &id], 3);
    assert_eq!(r["batch"]["state"], "manual");
    assert!(
        r["batch"]["last_error"]
            .as_str()
            .expect("e")
            .contains("refusing to write it in clear"),
        "{r}"
    );
    assert!(list(&ws.path("out")).is_empty());
}

#[test]
fn check_refuses_a_verify_key_that_cannot_decrypt() {
    let ws = Workspace::new("");
    let (public, _) = sequoia_key(&ws, "r", CertBuilder::general_purpose(None::<String>));
    let (_, other) = sequoia_key(&ws, "o", CertBuilder::general_purpose(None::<String>));
    ws.write_config(&config(
        &[&public],
        &format!("verify_key = \"{}\"", other.display()),
    ));
    let out = ws.run(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the secret key of any recipient"));
}
