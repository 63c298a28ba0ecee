//! HTTP intake load generator for benchmark P3: C concurrent clients post
//! either bulk NDJSON bodies or single-record JSON bodies for D seconds.
//!
//! usage: http_load URL bulk|single CLIENTS SECONDS [RECORDS_PER_BULK]
//! prints: requests, records, seconds, requests/s, records/s (one JSON line)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: http_load URL bulk|single CLIENTS SECONDS [RECORDS_PER_BULK]");
        std::process::exit(2);
    }
    let url = args[1].clone();
    let bulk = args[2] == "bulk";
    let clients: usize = args[3].parse().unwrap_or(64);
    let secs: u64 = args[4].parse().unwrap_or(10);
    let per: usize = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let lead = |i: usize| {
        format!(
            r#"{{"Account Id":"A{i:014}","First Name":"Jaime","Last Name":"Hayes","Company":"Mays, Inc","Phone 1":"001-307-937-7505x54026","Email 1":"jaime{i}@example.com","Source":"Web Form"}}"#
        )
    };
    let body: Arc<String> = Arc::new(if bulk {
        (0..per).map(lead).collect::<Vec<_>>().join("\n")
    } else {
        lead(1)
    });
    let records_per = if bulk { per as u64 } else { 1 };
    let reqs = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let client = reqwest::Client::new();
        let (url, body, reqs, errors) = (url.clone(), body.clone(), reqs.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let r = client
                    .post(&url)
                    .header(
                        "content-type",
                        if bulk {
                            "application/x-ndjson"
                        } else {
                            "application/json"
                        },
                    )
                    .body(body.as_str().to_owned())
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().as_u16() == 201 => {
                        let _ = resp.bytes().await;
                        reqs.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let el = start.elapsed().as_secs_f64();
    let n = reqs.load(Ordering::Relaxed);
    println!(
        "{{\"requests\":{n},\"errors\":{},\"records\":{},\"seconds\":{el:.3},\"requests_per_s\":{:.0},\"records_per_s\":{:.0}}}",
        errors.load(Ordering::Relaxed),
        n * records_per,
        n as f64 / el,
        (n * records_per) as f64 / el
    );
}
