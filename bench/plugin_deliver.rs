//! P8: delivering one large batch file through destination plugins, against
//! the native `local` destination writing the same file in the same run;
//! and plugin load time, cold (compile) and cached.
//!
//!   plugin_deliver PLUGINS_DIR WORK_DIR [MB]
//!
//! Rows (each the best of 3, alternating):
//! - local: the built-in destination (copy to a temp name, fsync, rename)
//! - native-copy: the native plugin doing the same through the C ABI
//! - wasm, host-streamed: `rest-upload` PUTting 8 MiB chunks whose bodies the
//!   host streams from the file (`body = file-range`) to a loopback HTTP sink
//!   that writes them to disk and fsyncs — the way a WASM destination ships
//!   a big file
//! - wasm, through guest memory: the same with `stream = "guest"` (every byte
//!   is read into the component and handed back to the host)
//! - wasm, read only: the fixture reading every byte through the
//!   `batch-file` resource and hashing it (SHA-256 in WASM), no output

use consign::config::{ByteSize, HumanDuration, LocalConfig, PluginDestConfig, PluginsConfig};
use consign::destination::{
    Destination, LocalDestination, OutgoingFile, PluginDestination, Shipment,
};
use consign::plugin::Plugins;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn settings(plugins: &Path, cache: &Path) -> PluginsConfig {
    PluginsConfig {
        dir: plugins.to_path_buf(),
        cache_dir: cache.to_path_buf(),
        watch: false,
        memory_limit: ByteSize(256 << 20),
        timeout: HumanDuration(Duration::from_secs(600)),
        fuel: None,
        crash_limit: 0,
        ..PluginsConfig::default()
    }
}

/// A minimal HTTP/1.1 sink: every request body is written at its
/// Content-Range offset into WORK/sink/<last path segment>, fsynced when
/// the last byte arrives; replies 200.
fn sink(dir: PathBuf) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut w = conn.try_clone().expect("clone");
                let mut r = BufReader::with_capacity(1 << 20, conn);
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
                    let (mut len, mut offset, mut total) = (0u64, 0u64, 0u64);
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap_or((h, ""));
                        let v = v.trim();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.parse().unwrap_or(0),
                            "content-range" => {
                                // bytes a-b/total
                                let v = v.trim_start_matches("bytes ");
                                let (range, t) = v.split_once('/').unwrap_or((v, "0"));
                                offset = range
                                    .split('-')
                                    .next()
                                    .and_then(|s| s.parse().ok())
                                    .unwrap_or(0);
                                total = t.parse().unwrap_or(0);
                            }
                            _ => {}
                        }
                    }
                    let name = path.rsplit('/').next().unwrap_or("x").to_string();
                    let file = std::fs::OpenOptions::new()
                        .create(true)
                        .write(true)
                        .truncate(false)
                        .open(dir.join(&name))
                        .expect("open");
                    let mut buf = vec![0u8; 1 << 20];
                    let mut left = len;
                    let mut at = offset;
                    while left > 0 {
                        let n = r.read(&mut buf[..left.min(1 << 20) as usize]).unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        std::os::unix::fs::FileExt::write_all_at(&file, &buf[..n], at)
                            .expect("write");
                        at += n as u64;
                        left -= n as u64;
                    }
                    if total == 0 {
                        total = len;
                    }
                    if at == total {
                        file.sync_all().expect("fsync");
                    }
                    let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                }
            });
        }
    });
    port
}

/// The transport floor: plain Rust (reqwest) PUTting the same 8 MiB chunks
/// to the same sink, no plugin involved.
struct RawHttp {
    endpoint: String,
}

impl Destination for RawHttp {
    fn describe(&self) -> String {
        "raw reqwest".into()
    }
    fn check(&self) -> Result<String, consign::destination::DestinationError> {
        Ok(String::new())
    }
    fn deliver(
        &self,
        s: &Shipment,
    ) -> Result<consign::destination::Receipt, consign::destination::DestinationError> {
        let client = reqwest::blocking::Client::new();
        for f in &s.files {
            let file = std::fs::File::open(&f.path).expect("open");
            let chunk = 8u64 << 20;
            let mut at = 0;
            while at < f.bytes {
                let len = chunk.min(f.bytes - at);
                let mut buf = vec![0u8; len as usize];
                std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, at).expect("read");
                client
                    .put(format!("{}/{}/{}", self.endpoint, s.batch_id, f.name))
                    .header(
                        "Content-Range",
                        format!("bytes {}-{}/{}", at, at + len - 1, f.bytes),
                    )
                    .body(buf)
                    .send()
                    .expect("send");
                at += len;
            }
        }
        Ok(consign::destination::Receipt {
            detail: String::new(),
            delivered: Vec::new(),
            reply: None,
        })
    }
}

fn shipment(file: &Path, bytes: u64, sha: &str) -> Shipment<'static> {
    Shipment {
        batch_id: "bench".into(),
        delivery: "bench".into(),
        record_count: 0,
        cut_at: chrono::Utc::now(),
        zone: chrono_tz::UTC,
        files: vec![OutgoingFile {
            part: 1,
            kind: "data".into(),
            records: 0,
            name: "bench.bin".into(),
            path: file.to_path_buf(),
            bytes,
            sha256: sha.to_string(),
        }],
        already: Vec::new(),
        accepted: None,
        component: None,
    }
}

fn plugin_dest(
    plugins: &Arc<Plugins>,
    name: &str,
    config: &str,
    allow: &[String],
) -> PluginDestination {
    PluginDestination::new(
        PluginDestConfig {
            plugin: name.into(),
            config: toml::from_str(config).expect("config"),
            allow_http: allow.to_vec(),
            allow_env: Vec::new(),
            ca_file: None,
            memory_limit: None,
            timeout: None,
            fuel: None,
        },
        plugins.clone(),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let plugins_dir = PathBuf::from(args.get(1).expect("PLUGINS_DIR"));
    let work = PathBuf::from(args.get(2).expect("WORK_DIR"));
    let mb: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    std::fs::create_dir_all(&work).expect("work");

    // Load time: cold (empty cache: compile every component) and cached.
    let cache = work.join("cache");
    let _ = std::fs::remove_dir_all(&cache);
    let t = Instant::now();
    let (cold, errors) = Plugins::load(&settings(&plugins_dir, &cache));
    let cold_s = t.elapsed().as_secs_f64();
    assert!(errors.is_empty(), "{errors:?}");
    let per_plugin: Vec<String> = cold
        .status()
        .iter()
        .filter_map(|s| cold.get(s.name.as_deref()?))
        .map(|p| format!("{} {:.0} ms", p.name(), p.load_time.as_secs_f64() * 1000.0))
        .collect();
    drop(cold);
    let t = Instant::now();
    let (warm, _) = Plugins::load(&settings(&plugins_dir, &cache));
    let warm_s = t.elapsed().as_secs_f64();
    let n = warm.status().len();
    println!(
        "LOAD plugins={n} cold_s={cold_s:.3} cached_s={warm_s:.3} ratio={:.1} ({})",
        cold_s / warm_s,
        per_plugin.join(", ")
    );
    let plugins = Arc::new(warm);

    // The batch file: incompressible-ish bytes, generated once.
    let file = work.join(format!("batch-{mb}mb.bin"));
    let bytes = mb << 20;
    if std::fs::metadata(&file).map(|m| m.len()).ok() != Some(bytes) {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&file).expect("create"));
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut block = vec![0u8; 1 << 20];
        for _ in 0..mb {
            for b in block.chunks_mut(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                b.copy_from_slice(&x.to_le_bytes());
            }
            f.write_all(&block).expect("write");
        }
        f.flush().expect("flush");
    }
    let sha = hex::encode(Sha256::digest(std::fs::read(&file).expect("read")));
    let s = shipment(&file, bytes, &sha);

    let out = work.join("local-out");
    let local = LocalDestination::new(LocalConfig {
        dir: out.clone(),
        create_dirs: true,
    });
    let sink_dir = work.join("sink");
    std::fs::create_dir_all(&sink_dir).expect("sink");
    let port = sink(sink_dir.clone());
    let allow = vec![format!("127.0.0.1:{port}")];
    let endpoint = format!("http://127.0.0.1:{port}/up");
    let native_out = work.join("native-out");
    std::fs::create_dir_all(&native_out).expect("native out");
    let mut rows: Vec<(&str, Box<dyn Destination>)> =
        vec![("local (native, built-in)", Box::new(local))];
    if plugins.get("native-copy").is_some() {
        rows.push((
            "native-copy plugin (C ABI)",
            Box::new(plugin_dest(
                &plugins,
                "native-copy",
                &format!("dir = {:?}", native_out.display().to_string()),
                &[],
            )),
        ));
    }
    rows.push((
        "transport floor: plain reqwest, same 8 MiB chunks -> same sink (no plugin)",
        Box::new(RawHttp {
            endpoint: endpoint.clone(),
        }),
    ));
    rows.push((
        "rest-upload WASM, host-streamed 8 MiB chunks -> loopback HTTP sink",
        Box::new(plugin_dest(
            &plugins,
            "rest-upload",
            &format!("endpoint = {endpoint:?}"),
            &allow,
        )),
    ));
    rows.push((
        "rest-upload WASM, bytes through guest memory -> loopback HTTP sink",
        Box::new(plugin_dest(
            &plugins,
            "rest-upload",
            &format!("endpoint = {endpoint:?}\nstream = \"guest\""),
            &allow,
        )),
    ));
    rows.push((
        "fixture WASM, read every byte via batch-file + SHA-256 in WASM (no output)",
        Box::new(plugin_dest(&plugins, "fixture", "", &[])),
    ));
    let mut best = vec![f64::MAX; rows.len()];
    for _round in 0..3 {
        for (i, (name, d)) in rows.iter().enumerate() {
            let _ = std::fs::remove_dir_all(&out);
            let _ = std::fs::remove_file(sink_dir.join("bench.bin"));
            let t = Instant::now();
            let r = d.deliver(&s);
            let secs = t.elapsed().as_secs_f64();
            if let Err(e) = r {
                panic!("{name}: {e}");
            }
            best[i] = best[i].min(secs);
        }
    }
    // The copies must be the file, byte for byte.
    for (p, what) in [
        (out.join("bench.bin"), "local"),
        (sink_dir.join("bench.bin"), "sink"),
    ] {
        if p.exists() {
            let got = hex::encode(Sha256::digest(std::fs::read(&p).expect("read")));
            assert_eq!(got, sha, "{what} copy differs");
        }
    }
    for (i, (name, _)) in rows.iter().enumerate() {
        println!(
            "DELIVER {name} | {mb} MiB | {:.3} s | {:.0} MiB/s | {:.2}x local",
            best[i],
            mb as f64 / best[i],
            best[i] / best[0]
        );
    }
}
