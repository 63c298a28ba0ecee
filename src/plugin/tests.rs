//! Host tests against the first-party fixture component (`plugins/fixture`,
//! built from source by `plugins/build.sh`, committed so `cargo test` needs
//! no wasm toolchain).

use super::*;
use crate::config::{ByteSize, HumanDuration};
use std::path::Path;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Copy the plugin package at `src` into `plugins/<folder>` under `root`.
fn install(root: &Path, folder: &str, src: &Path) {
    let dst = root.join("plugins").join(folder);
    std::fs::create_dir_all(&dst).expect("mkdir");
    for e in std::fs::read_dir(src).expect("package") {
        let p = e.expect("entry").path();
        if p.is_file() {
            std::fs::copy(&p, dst.join(p.file_name().expect("name"))).expect("copy");
        }
    }
}

fn settings(root: &Path) -> PluginsConfig {
    PluginsConfig {
        dir: root.join("plugins"),
        cache_dir: root.join("cache"),
        watch: false,
        memory_limit: ByteSize(32 << 20),
        timeout: HumanDuration(Duration::from_millis(500)),
        fuel: None,
        crash_limit: 2,
        ..PluginsConfig::default()
    }
}

fn with_fixture() -> (tempfile::TempDir, Plugins) {
    let root = tempfile::tempdir().expect("tmp");
    install(root.path(), "fixture", &repo("plugins/fixture"));
    let (p, errors) = Plugins::load(&settings(root.path()));
    assert!(errors.is_empty(), "{errors:?}");
    (root, p)
}

fn input(config: serde_json::Value, allow_http: &[&str], files: Vec<FileInput>) -> CallInput {
    let serde_json::Value::Object(config) = config else {
        panic!("config must be an object")
    };
    let manifest = Manifest::read(&repo("plugins/fixture")).expect("manifest");
    CallInput {
        plugin: "fixture".into(),
        delivery: "d".into(),
        secrets: Vec::new(),
        config,
        grants: Grants::new(
            "fixture",
            &manifest.capabilities,
            &allow_http.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            &["CONSIGN_FIXTURE_VAR".to_string()],
        ),
        ca_file: None,
        batch: Some(BatchInput {
            id: "b-1".into(),
            delivery: "d".into(),
            record_count: 3,
            cut_at: "2026-12-04T10:00:00Z".into(),
            zone: "UTC".into(),
            files,
            already: Vec::new(),
        }),
    }
}

fn file(dir: &Path, part: u32, bytes: &[u8]) -> FileInput {
    let path = dir.join(format!("f{part}"));
    std::fs::write(&path, bytes).expect("write");
    FileInput {
        part,
        kind: "data".into(),
        name: format!("f{part}.csv"),
        path,
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(bytes)),
        records: 3,
    }
}

fn call(p: &Plugins, i: &CallInput) -> Result<Outcome, CallError> {
    let loaded = p.get("fixture").expect("loaded");
    loaded.call(i, &p.limits(None, None, None), p.config().crash_limit, None)
}

#[test]
fn delivers_reading_every_byte_through_the_file_resource() {
    let (root, p) = with_fixture();
    // 300 KiB + a few: several 64 KiB reads, last one short.
    let big: Vec<u8> = (0..300_003u32).map(|i| (i % 251) as u8).collect();
    let files = vec![
        file(root.path(), 1, &big),
        file(root.path(), 2, b"a,b\n1,2\n"),
    ];
    let out = call(
        &p,
        &input(serde_json::json!({"behaviour": "ok"}), &[], files),
    )
    .expect("ok");
    assert!(
        out.message
            .contains("fixture 1.0.0: 2 files, 300011 bytes, sha256 verified"),
        "{out:?}"
    );
    let status = p.status();
    assert_eq!(status[0].name.as_deref(), Some("fixture"));
    assert_eq!(status[0].sha256.as_ref().map(|s| s.len()), Some(64));
}

#[test]
fn a_wrong_checksum_is_the_plugins_permanent_error() {
    let (root, p) = with_fixture();
    let mut f = file(root.path(), 1, b"abc");
    f.sha256 = "00".repeat(32);
    let e = call(&p, &input(serde_json::json!({}), &[], vec![f])).unwrap_err();
    assert!(
        matches!(&e, CallError::Plugin(Failure::Permanent(m)) if m.contains("sha256")),
        "{e:?}"
    );
}

#[test]
fn an_infinite_loop_is_stopped_by_the_deadline() {
    let (_root, p) = with_fixture();
    let t = Instant::now();
    let e = call(
        &p,
        &input(serde_json::json!({"behaviour": "loop"}), &[], vec![]),
    )
    .unwrap_err();
    assert!(
        matches!(&e, CallError::Deadline(m) if m.contains("500ms")),
        "{e:?}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
    // The engine keeps serving: the next call works.
    let ok = call(
        &p,
        &input(serde_json::json!({"behaviour": "ok"}), &[], vec![]),
    );
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn a_memory_hog_is_stopped_by_the_limit() {
    let (_root, p) = with_fixture();
    let e = call(
        &p,
        &input(serde_json::json!({"behaviour": "hog"}), &[], vec![]),
    )
    .unwrap_err();
    assert!(
        matches!(&e, CallError::Memory(m) if m.contains("memory limit of 33554432 bytes exceeded")),
        "{e:?}"
    );
}

#[test]
fn fuel_limits_a_loop_when_configured() {
    let root = tempfile::tempdir().expect("tmp");
    install(root.path(), "fixture", &repo("plugins/fixture"));
    let mut cfg = settings(root.path());
    cfg.fuel = Some(50_000_000);
    cfg.timeout = HumanDuration(Duration::from_secs(60));
    let (p, errors) = Plugins::load(&cfg);
    assert!(errors.is_empty(), "{errors:?}");
    let e = call(
        &p,
        &input(serde_json::json!({"behaviour": "loop"}), &[], vec![]),
    )
    .unwrap_err();
    assert!(
        matches!(&e, CallError::Deadline(m) if m.contains("fuel")),
        "{e:?}"
    );
}

#[test]
fn traps_count_until_the_crash_loop_limit_then_reload_resets() {
    let (_root, p) = with_fixture();
    let trap = input(serde_json::json!({"behaviour": "trap"}), &[], vec![]);
    for _ in 0..2 {
        let e = call(&p, &trap).unwrap_err();
        assert!(matches!(&e, CallError::Trap(_)), "{e:?}");
    }
    let e = call(&p, &trap).unwrap_err();
    assert!(
        matches!(&e, CallError::CrashLoop(m) if m.contains("suspended for delivery d after 2 crashes")),
        "{e:?}"
    );
    // Not even a good call gets through until the operator reloads.
    let good = input(serde_json::json!({}), &[], vec![]);
    assert!(matches!(call(&p, &good), Err(CallError::CrashLoop(_))));
    // Another delivery on the same plugin is not affected.
    let mut other = good.clone();
    other.delivery = "other".into();
    assert!(call(&p, &other).is_ok());
    let r = p.reload();
    assert_eq!(r.unchanged, vec!["fixture 1.0.0".to_string()]);
    assert!(call(&p, &good).is_ok());
}

#[test]
fn a_broken_manifest_keeps_the_running_version_and_shows_why() {
    let (root, p) = with_fixture();
    let m = root.path().join("plugins/fixture/plugin.toml");
    let good = std::fs::read_to_string(&m).expect("read");
    for (bad, why) in [
        (format!("{good}\nthis is = = broken\n"), "plugin.toml"),
        (good.replace("sdk = \"1.0\"", "sdk = \"2.0\""), "SDK 2.0"),
        (
            good.replace("name = \"fixture\"", "name = \"fixturex\""),
            "says it is fixture 1.0.0",
        ),
    ] {
        std::fs::write(&m, &bad).expect("write");
        let r = p.reload();
        assert!(r.removed.is_empty(), "{r:?}");
        assert_eq!(r.failed.len(), 1, "{r:?}");
        assert!(r.failed[0].1.contains(why), "{r:?}");
        assert_eq!(
            p.get("fixture").expect("still active").manifest.version,
            "1.0.0"
        );
        let st = p.status();
        assert_eq!(st.len(), 1, "{st:?}");
        assert_eq!(st[0].name.as_deref(), Some("fixture"));
        assert!(
            st[0].error.as_deref().is_some_and(|e| e.contains(why)),
            "{st:?}"
        );
    }
    std::fs::write(&m, &good).expect("write");
    let r = p.reload();
    assert!(r.failed.is_empty(), "{r:?}");
    assert!(p.status()[0].error.is_none());
}

#[test]
fn a_copy_of_a_plugin_folder_does_not_take_over() {
    let (root, p) = with_fixture();
    install(root.path(), "0-backup", &repo("plugins/fixture"));
    let r = p.reload();
    assert_eq!(r.unchanged, vec!["fixture 1.0.0".to_string()], "{r:?}");
    assert!(
        r.failed
            .iter()
            .any(|(f, e)| f == "0-backup" && e.contains("also in folder fixture")),
        "{r:?}"
    );
    assert!(p
        .get("fixture")
        .expect("active")
        .dir
        .ends_with("plugins/fixture"));
    assert!(p
        .status()
        .iter()
        .any(|s| s.folder == "0-backup" && s.error.is_some()));
    // A new version in the real folder is still picked up.
    install(root.path(), "fixture", &repo("plugins/fixture/v2"));
    let r = p.reload();
    assert_eq!(r.loaded, vec!["fixture 2.0.0".to_string()], "{r:?}");
}

#[test]
fn a_manifest_only_change_is_reloaded() {
    let (root, p) = with_fixture();
    let m = root.path().join("plugins/fixture/plugin.toml");
    let text = std::fs::read_to_string(&m).expect("read");
    std::fs::write(
        &m,
        text.replace("http = [\"*\"]", "http = [\"example.com\"]"),
    )
    .expect("write");
    let r = p.reload();
    assert_eq!(r.loaded, vec!["fixture 1.0.0".to_string()], "{r:?}");
    assert_eq!(
        p.get("fixture").expect("active").manifest.capabilities.http,
        vec!["example.com".to_string()]
    );
    let mut i = input(
        serde_json::json!({"behaviour": "http", "url": "http://127.0.0.1:9/x"}),
        &["*"],
        vec![],
    );
    // As the destination does: the grants come from the active version's manifest.
    let loaded = p.get("fixture").expect("active");
    i.grants = Grants::new(
        "fixture",
        &loaded.manifest.capabilities,
        &["*".to_string()],
        &[],
    );
    let e = call(&p, &i).unwrap_err();
    assert!(
        matches!(&e, CallError::Plugin(Failure::Permanent(m)) if m.contains("manifest")),
        "{e:?}"
    );
}

#[test]
fn plugin_text_is_tidied() {
    let t = tidy(
        "token SECRET-1234 leaked\n\u{1b}[31mFAKE",
        &["SECRET-1234".to_string()],
    );
    assert_eq!(t, "token *** leaked  [31mFAKE");
    let long = tidy(&"E".repeat(20_000), &[]);
    assert!(
        long.len() < 2100 && long.ends_with("more bytes)"),
        "{}",
        long.len()
    );
}

#[test]
fn http_to_a_host_not_granted_is_refused_naming_the_capability() {
    let (_root, p) = with_fixture();
    let i = input(
        serde_json::json!({"behaviour": "http", "url": "http://127.0.0.1:9/x"}),
        &["127.0.0.1:8085"],
        vec![],
    );
    let e = call(&p, &i).unwrap_err();
    assert!(
        matches!(&e, CallError::Plugin(Failure::Permanent(m))
            if m.contains("capability http:127.0.0.1:9 denied") && m.contains("allow_http")),
        "{e:?}"
    );
}

#[test]
fn env_capability_needs_manifest_and_operator() {
    let (_root, p) = with_fixture();
    std::env::set_var("CONSIGN_FIXTURE_VAR", "secret-value");
    let ok = call(
        &p,
        &input(serde_json::json!({"behaviour": "env"}), &[], vec![]),
    )
    .expect("granted");
    assert!(ok.message.contains("12"), "{ok:?}");
    let e = call(
        &p,
        &input(
            serde_json::json!({"behaviour": "env", "var": "HOME"}),
            &[],
            vec![],
        ),
    )
    .unwrap_err();
    assert!(
        matches!(&e, CallError::Plugin(Failure::Permanent(m)) if m.contains("capability env:HOME denied")),
        "{e:?}"
    );
}

#[test]
fn a_plugin_for_another_sdk_major_is_refused_before_compiling() {
    let root = tempfile::tempdir().expect("tmp");
    install(root.path(), "fixture", &repo("plugins/fixture"));
    let m = root.path().join("plugins/fixture/plugin.toml");
    let text = std::fs::read_to_string(&m).expect("read");
    std::fs::write(&m, text.replace("sdk = \"1.0\"", "sdk = \"2.0\"")).expect("write");
    let (p, errors) = Plugins::load(&settings(root.path()));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("built with SDK 2.0") && errors[0].contains("upgrade consign"),
        "{errors:?}"
    );
    assert!(p.get("fixture").is_none());
    assert!(!root.path().join("cache").exists(), "nothing was compiled");
    assert!(p.why_missing("fixture").contains("SDK 2.0"));
}

#[test]
fn a_manifest_that_disagrees_with_the_component_is_refused() {
    let root = tempfile::tempdir().expect("tmp");
    install(root.path(), "fixture", &repo("plugins/fixture"));
    let m = root.path().join("plugins/fixture/plugin.toml");
    let text = std::fs::read_to_string(&m).expect("read");
    std::fs::write(
        &m,
        text.replace("version = \"1.0.0\"", "version = \"1.0.1\""),
    )
    .expect("write");
    let (_p, errors) = Plugins::load(&settings(root.path()));
    assert!(errors[0].contains("says it is fixture 1.0.0"), "{errors:?}");
}

#[test]
fn garbage_instead_of_a_component_is_a_clear_error() {
    let root = tempfile::tempdir().expect("tmp");
    install(root.path(), "fixture", &repo("plugins/fixture"));
    std::fs::write(
        root.path().join("plugins/fixture/fixture.wasm"),
        b"not wasm",
    )
    .expect("write");
    let (_p, errors) = Plugins::load(&settings(root.path()));
    assert!(
        errors[0].contains("not a valid WebAssembly component"),
        "{errors:?}"
    );
}

#[test]
fn hot_swap_keeps_the_old_version_for_calls_that_hold_it() {
    let (root, p) = with_fixture();
    let old = p.get("fixture").expect("v1");
    install(root.path(), "fixture", &repo("plugins/fixture/v2"));
    let r = p.reload();
    assert_eq!(r.loaded, vec!["fixture 2.0.0".to_string()], "{r:?}");
    let new = p.get("fixture").expect("v2");
    assert_eq!(new.manifest.version, "2.0.0");
    assert_ne!(new.sha256, old.sha256);
    let i = input(serde_json::json!({}), &[], vec![]);
    let limits = p.limits(None, None, None);
    assert!(old
        .call(&i, &limits, 3, None)
        .expect("v1")
        .message
        .starts_with("fixture 1.0.0"));
    assert!(new
        .call(&i, &limits, 3, None)
        .expect("v2")
        .message
        .starts_with("fixture 2.0.0"));
    // A broken replacement keeps the last good version active.
    std::fs::write(
        root.path().join("plugins/fixture/fixture.wasm"),
        b"\0asm broken",
    )
    .expect("write");
    let r = p.reload();
    assert_eq!(r.failed.len(), 1, "{r:?}");
    assert_eq!(
        p.get("fixture").expect("still v2").manifest.version,
        "2.0.0"
    );
    assert!(p.status()[0].error.is_some());
}

#[test]
fn the_compiled_component_is_cached_for_the_next_start() {
    let (root, p) = with_fixture();
    assert!(!p.get("fixture").expect("loaded").cached);
    drop(p);
    let (p, errors) = Plugins::load(&settings(root.path()));
    assert!(errors.is_empty(), "{errors:?}");
    let again = p.get("fixture").expect("loaded");
    assert!(again.cached, "second start used the cache");
    drop((again, p));
    // A corrupt cache entry is recompiled, not fatal. (Replaced, not
    // overwritten in place: a loaded artefact is memory-mapped.)
    for e in std::fs::read_dir(root.path().join("cache")).expect("cache") {
        let path = e.expect("entry").path();
        let tmp = path.with_extension("junk");
        std::fs::write(&tmp, b"junk").expect("write");
        std::fs::rename(&tmp, &path).expect("rename");
    }
    let (p, errors) = Plugins::load(&settings(root.path()));
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!p.get("fixture").expect("loaded").cached);
}
