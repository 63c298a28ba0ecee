//! P7: the Lua transform step against the same transform done by the
//! built-in field mapping, on one core, same records, same output.
//!
//!   lua_transform LEADS.csv [RECORDS] [BATCH_SIZE] [record|columns]
//!
//! `record` runs `transform(r)` per record (the packed lane); `columns`
//! runs the same transform as `transform_columns(cols, n)`.
//!
//! The transform: phone → digits only, deal stage → upper case, add
//! `source_tag = "acme"`. Both sides start from the stored JSON text of
//! each record and end with the mapped record as JSON text (what the
//! encoder reads), so the ratio is the cost of going through Lua.

use consign::assemble::mapping::{Column, JsonValue, RawRecord, Transform};
use consign::assemble::RecordSource;
use consign::config::{DeliveryScripts, ScriptLimits, TransformMode};
use consign::script::transform::{TransformStep, Transformed};
use consign::script::Script;
use std::sync::Arc;
use std::time::Instant;

const SCRIPT: &str = r#"
function transform(r)
  r.phone = consign.digits_only(r.phone)
  r.stage = string.upper(r.stage)
  r.source_tag = "acme"
  return r
end
"#;

const COLUMNS_SCRIPT: &str = r#"
function transform_columns(cols, n)
  local phone, stage = cols.phone, cols.stage
  local digits, upper = consign.digits_only, string.upper
  for i = 1, n do
    local p, s = phone[i], stage[i]
    if p then phone[i] = digits(p) end
    if s then stage[i] = upper(s) end
  end
  cols.source_tag = "acme"
end
"#;

fn columns(builtin: bool) -> Vec<Column> {
    let t = |v: Vec<Transform>| if builtin { v } else { vec![] };
    let mut c = vec![
        Column::new("account_id", Some("Account Id"), vec![]),
        Column::new("first_name", Some("First Name"), vec![]),
        Column::new("last_name", Some("Last Name"), vec![]),
        Column::new("company", Some("Company"), vec![]),
        Column::new("phone", Some("Phone 1"), t(vec![Transform::DigitsOnly])),
        Column::new("email", Some("Email 1"), vec![]),
        Column::new("stage", Some("Deal Stage"), t(vec![Transform::Uppercase])),
    ];
    if builtin {
        c.push(Column::new(
            "source_tag",
            Some("(none)"),
            vec![Transform::Default("acme".into())],
        ));
    }
    c
}

/// The built-in mapping step: raw JSON → mapped record JSON.
fn builtin(records: &[String], cols: &[Column]) -> (usize, usize) {
    let mut out = String::with_capacity(512);
    let (mut n, mut bytes) = (0, 0);
    for r in records {
        let rec = RawRecord::parse(r).expect("json");
        out.clear();
        out.push('{');
        for (i, c) in cols.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            consign::script::value::push_json_string(&mut out, &c.name);
            out.push(':');
            match c.json_value(&rec) {
                JsonValue::Raw(v) => out.push_str(v.get()),
                JsonValue::Text(t) => consign::script::value::push_json_string(&mut out, &t),
                JsonValue::Missing => out.push_str("null"),
            }
        }
        out.push('}');
        n += 1;
        bytes += out.len();
    }
    (n, bytes)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: lua_transform LEADS.csv [RECORDS] [BATCH_SIZE]");
    let want: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let batch_size: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1024);
    let lane = args.get(4).map_or("record", String::as_str);
    let script_text = match lane {
        "record" => SCRIPT,
        "columns" => COLUMNS_SCRIPT,
        other => panic!("lane must be record or columns, not {other:?}"),
    };
    // Records as the store holds them (JSON object text), from the CSV.
    let mut base: Vec<String> = Vec::new();
    consign::intake::read_file(
        std::path::Path::new(path),
        consign::intake::Format::Csv,
        1 << 20,
        10_000,
        &mut |chunk, _| {
            base.extend(chunk);
            Ok(())
        },
    )
    .expect("read leads");
    let records: Vec<String> = base.iter().cycle().take(want).cloned().collect();

    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(dir.path().join("t.lua"), script_text).expect("write");
    let script =
        Arc::new(Script::compile(dir.path(), "t.lua", &["transform"], 1).expect("compile"));
    let cfg = DeliveryScripts {
        transform: Some("t.lua".into()),
        mode: TransformMode::AfterMapping,
        batch_size,
        ..Default::default()
    };
    let step = TransformStep::new(
        script,
        &cfg,
        ScriptLimits::default(),
        columns(false),
        "acme",
        "B",
    );
    let builtin_cols = columns(true);

    // Warm-up, then best of 3 for each.
    let mut best_b = f64::MAX;
    let mut best_l = f64::MAX;
    let mut out_b = (0, 0);
    let mut out_l = (0usize, 0usize);
    for round in 0..4 {
        let t0 = Instant::now();
        out_b = builtin(&records, &builtin_cols);
        let tb = t0.elapsed().as_secs_f64();
        let source = &records;
        let transformed = Transformed::new(source as &dyn RecordSource, &step);
        let t0 = Instant::now();
        let mut n = 0usize;
        let mut bytes = 0usize;
        transformed
            .each(&mut |_, json| {
                n += 1;
                bytes += json.len();
                Ok(())
            })
            .expect("transform");
        let tl = t0.elapsed().as_secs_f64();
        assert!(transformed.rejected().is_empty());
        out_l = (n, bytes);
        if round > 0 {
            best_b = best_b.min(tb);
            best_l = best_l.min(tl);
        }
    }
    assert_eq!(out_b.0, out_l.0, "both sides see every record");
    println!(
        "records={} lane={lane} batch_size={batch_size} builtin_s={best_b:.3} builtin_rps={:.0} lua_s={best_l:.3} lua_rps={:.0} lua/builtin={:.2} bytes_builtin={} bytes_lua={}",
        out_b.0,
        out_b.0 as f64 / best_b,
        out_l.0 as f64 / best_l,
        best_l / best_b,
        out_b.1,
        out_l.1
    );
}
