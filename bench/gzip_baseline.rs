//! Benchmark baseline (b): gzip a file with the same library and level the
//! engine uses (flate2, zlib-rs backend), nothing else.
//!
//! usage: gzip_baseline INPUT OUTPUT [LEVEL]

use flate2::write::GzEncoder;
use std::io::{BufReader, BufWriter, Read, Write};

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: gzip_baseline INPUT OUTPUT [LEVEL]");
        std::process::exit(2);
    }
    let level: u32 = args.get(3).and_then(|l| l.parse().ok()).unwrap_or(6);
    let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(&args[1])?);
    let out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&args[2])?);
    let mut gz = GzEncoder::new(out, flate2::Compression::new(level));
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            break;
        }
        gz.write_all(&buf[..n])?;
    }
    let mut out = gz.finish()?;
    out.flush()?;
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}
