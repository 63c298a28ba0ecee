//! Benchmark P5: upload one file with consign's SFTP destination.
//!
//! usage: sftp_upload FILE REMOTE_DIR  (server from the SFTP_* variables of tests/servers env.sh)

use consign::config::{Expanded, HumanDuration, SftpConfig};
use consign::destination::{Destination, OutgoingFile, SftpDestination, Shipment};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn env(n: &str) -> String {
    std::env::var(n).unwrap_or_else(|_| panic!("{n} not set: source the test servers' env.sh"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let file = PathBuf::from(&args[1]);
    let bytes = std::fs::metadata(&file).expect("stat").len();
    let cfg = SftpConfig {
        host: Expanded(env("SFTP_HOST")),
        port: env("SFTP_PORT").parse().expect("port"),
        username: Expanded(env("SFTP_USER")),
        password: None,
        private_key: Some(PathBuf::from(env("SFTP_KEY"))),
        passphrase: None,
        known_hosts: Some(PathBuf::from(env("SFTP_KNOWN_HOSTS"))),
        insecure_accept_any_host_key: false,
        remote_dir: args[2].clone(),
        create_dirs: true,
        temp_suffix: ".part".into(),
        connect_timeout: HumanDuration(Duration::from_secs(10)),
        io_timeout: HumanDuration(Duration::from_secs(300)),
    };
    let dest = SftpDestination::new(cfg);
    let start = Instant::now();
    dest.deliver(&Shipment {
        batch_id: "bench".into(),
        delivery: "bench".into(),
        record_count: 0,
        cut_at: chrono::Utc::now(),
        zone: chrono_tz::UTC,
        already: Vec::new(),
        accepted: None,
        component: None,
        files: vec![OutgoingFile {
            part: 1,
            kind: "data".into(),
            records: 0,
            name: "bench-consign.bin".into(),
            path: file,
            bytes,
            sha256: String::new(),
        }],
    })
    .expect("upload");
    println!("{:.3}", start.elapsed().as_secs_f64());
}
