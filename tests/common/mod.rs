//! Helpers shared by the integration tests: a scratch workspace with a
//! config, running the real `consign` binary (printing command, stdout and
//! stderr on failure), and reading delivered files with independent tools.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A variable from the test servers' env.sh. Tests that need real servers
/// fail (never skip) when the servers are not running.
pub fn server_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real test servers.\n\
             Run `.ci/run`, or `tests/servers/servers.sh start && . /tmp/consign-test-servers/env.sh` first."
        )
    })
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_consign"))
}

pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new(config: &str) -> Workspace {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("consign.toml"), config).expect("write config");
        Workspace { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("consign.toml")
    }

    pub fn write_config(&self, config: &str) {
        std::fs::write(self.config(), config).expect("write config");
    }

    /// Run `consign --config WS/consign.toml ARGS...`.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(bin())
            .arg("--config")
            .arg(self.config())
            .args(args)
            .output()
            .expect("run consign");
        out
    }

    /// Run and require the exit code, printing everything on mismatch.
    pub fn expect(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.code() != Some(code) {
            panic!(
                "consign {} exited {:?}, expected {code}\n--- stdout\n{stdout}\n--- stderr\n{}",
                args.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        stdout
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.expect(args, 0)
    }

    pub fn json(&self, args: &[&str], code: i32) -> serde_json::Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let s = self.expect(&a, code);
        serde_json::from_str(&s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
    }

    /// Start `consign serve` in the background.
    pub fn serve(&self) -> Child {
        Command::new(bin())
            .arg("--config")
            .arg(self.config())
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("serve.log")).expect("log"))
            .spawn()
            .expect("spawn serve")
    }

    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.path("serve.log")).unwrap_or_default()
    }

    /// Generate `n` leads and enqueue them for `delivery`; returns the CSV.
    pub fn enqueue_leads(&self, delivery: &str, n: u64) -> PathBuf {
        let leads = self.leads(n);
        self.ok(&[
            "enqueue",
            "--delivery",
            delivery,
            leads.to_str().expect("utf8"),
        ]);
        leads
    }

    /// Write `n` generated leads as CSV and return the path.
    pub fn leads(&self, n: u64) -> PathBuf {
        let p = self.path(&format!("leads-{n}.csv"));
        let f = std::fs::File::create(&p).expect("create");
        consign::sample::write_csv(std::io::BufWriter::new(f), n, 7).expect("generate");
        p
    }
}

/// Decompress with the system `gzip` (an implementation independent of ours).
pub fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .expect("run gzip");
    assert!(
        out.status.success(),
        "gzip -dc {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Parse CSV bytes into rows of fields.
pub fn csv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(bytes)
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_string).collect())
        .collect()
}

/// Files in a directory (names), sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Files a user would see as delivered in a local outbox: without the
/// `.NAME.ID.part` temp files of uploads in progress (renamed when complete).
pub fn list_complete(dir: &Path) -> Vec<String> {
    list(dir)
        .into_iter()
        .filter(|n| !(n.starts_with('.') && n.ends_with(".part")))
        .collect()
}

/// Poll `f` until it returns Some or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// SIGTERM a child and wait for it.
pub fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    child.wait().expect("wait")
}

/// The field mapping used by the acceptance-style tests (columns of the
/// public leads sample; phone through digits_only).
pub const LEAD_FIELDS: &str = r#"
[[delivery.field]]
name = "account_id"
source = "Account Id"
[[delivery.field]]
name = "first_name"
source = "First Name"
[[delivery.field]]
name = "last_name"
source = "Last Name"
[[delivery.field]]
name = "company"
source = "Company"
[[delivery.field]]
name = "phone"
source = "Phone 1"
transform = ["digits_only"]
[[delivery.field]]
name = "email"
source = "Email 1"
transform = ["lowercase"]
"#;
