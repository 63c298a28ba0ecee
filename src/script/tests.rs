//! Tests of the Lua host: hooks, exact digits, the sandbox and its limits.

use super::response::{self, Action};
use super::schedule::{self, Verdict};
use super::transform::{try_records, TransformStep};
use super::*;
use crate::assemble::mapping::{Column, Transform};
use crate::config::{ByteSize, DeliveryScripts, HumanDuration, OnError, TransformMode};
use std::time::Duration;

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }
    dir
}

fn compile(dir: &tempfile::TempDir, path: &str, role: &str) -> Arc<Script> {
    Arc::new(Script::compile(dir.path(), path, &[role], 1).expect("compiles"))
}

fn step(script: Arc<Script>, cfg: DeliveryScripts, columns: Vec<Column>) -> TransformStep {
    let limits = cfg.limits.unwrap_or_default();
    TransformStep::new(script, &cfg, limits, columns, "acme", "B1")
}

fn cfg() -> DeliveryScripts {
    DeliveryScripts {
        transform: Some("t.lua".into()),
        mode: TransformMode::InsteadOfMapping,
        batch_size: 1024,
        ..Default::default()
    }
}

fn small_limits() -> ScriptLimits {
    ScriptLimits {
        memory: ByteSize(8 << 20),
        instructions: 5_000_000,
        timeout: HumanDuration(Duration::from_secs(2)),
    }
}

const TYPICAL: &str = r#"
function transform(r, ctx)
  r.phone = consign.digits_only(r.phone)
  r.state = string.upper(r.state or "")
  r.source = ctx.delivery
  return r
end
"#;

#[test]
fn per_record_transform_changes_adds_and_keeps_order() {
    let dir = dir_with(&[("t.lua", TYPICAL)]);
    let st = step(compile(&dir, "t.lua", "transform"), cfg(), vec![]);
    let out = try_records(
        &st,
        &[r#"{"name":"Ann","phone":"(555) 123-4567","state":"ny","zip":"01234"}"#.into()],
    );
    assert_eq!(
        out,
        vec![Ok(
            r#"{"name":"Ann","phone":"5551234567","state":"NY","zip":"01234","source":"acme"}"#
                .to_string()
        )]
    );
}

#[test]
fn identifiers_keep_their_exact_digits() {
    let dir = dir_with(&[(
        "t.lua",
        r#"
        function transform(r)
          r.copy = r.phone           -- an integer stays an integer
          r.doubled = r.id * 2        -- arithmetic on a 15-digit id is exact
          r.float_whole = 5551234567.0
          r.list = { 1, nil, 3 }      -- a nil hole is written as null
          return r
        end"#,
    )]);
    let st = step(compile(&dir, "t.lua", "transform"), cfg(), vec![]);
    let out = try_records(
        &st,
        &[r#"{"phone":5551234567,"id":123456789012345,"price":12.50,"big":123456789012345678901,"n":null,"arr":[1,null,2]}"#
            .into()],
    );
    assert_eq!(
        out,
        vec![Ok(r#"{"phone":5551234567,"id":123456789012345,"price":12.50,"big":123456789012345678901,"n":null,"arr":[1,null,2],"copy":5551234567,"doubled":246913578024690,"float_whole":5551234567,"list":[1,null,3]}"#.to_string())]
    );
}

#[test]
fn after_mapping_sees_output_columns() {
    let dir = dir_with(&[(
        "t.lua",
        r#"function transform(r) r.tel = r.tel .. "!" return r end"#,
    )]);
    let mut c = cfg();
    c.mode = TransformMode::AfterMapping;
    let columns = vec![
        Column::new("tel", Some("Phone 1"), vec![Transform::DigitsOnly]),
        Column::new("who", Some("First Name"), vec![]),
    ];
    let st = step(compile(&dir, "t.lua", "transform"), c, columns);
    let out = try_records(
        &st,
        &[r#"{"First Name":"Bo","Phone 1":"555-000-1111","other":1}"#.into()],
    );
    assert_eq!(
        out,
        vec![Ok(r#"{"tel":"5550001111!","who":"Bo"}"#.to_string())]
    );
}

#[test]
fn drops_and_errors_are_rejected_with_reason_and_line() {
    let dir = dir_with(&[(
        "t.lua",
        "function transform(r)\n  if r.skip then return nil, 'test lead' end\n  if r.bad then error('no phone for ' .. r.name) end\n  return r\nend\n",
    )]);
    let st = step(compile(&dir, "t.lua", "transform"), cfg(), vec![]);
    let out = try_records(
        &st,
        &[
            r#"{"name":"a"}"#.into(),
            r#"{"name":"b","skip":true}"#.into(),
            r#"{"name":"c","bad":true}"#.into(),
        ],
    );
    assert_eq!(out[0], Ok(r#"{"name":"a"}"#.into()));
    assert_eq!(out[1], Err("dropped by transform: test lead".into()));
    let e = out[2].clone().expect_err("error");
    assert!(
        e.contains("t.lua:3:") && e.contains("no phone for c"),
        "{e}"
    );

    // fail_batch: the first error fails the whole call.
    let mut c = cfg();
    c.on_error = OnError::FailBatch;
    let st = step(compile(&dir, "t.lua", "transform"), c, vec![]);
    let out = try_records(&st, &[r#"{"name":"c","bad":true}"#.into()]);
    assert!(out[0]
        .as_ref()
        .expect_err("fails")
        .contains("record 1: transform failed"));
}

#[test]
fn batch_mode_gets_many_records_per_call() {
    let dir = dir_with(&[(
        "t.lua",
        r#"
        calls = 0
        function transform_batch(records, ctx)
          calls = calls + 1
          for i, r in ipairs(records) do
            r.n = #records
            r.call = calls
            if r.drop then records[i] = nil; ctx.reasons[i] = "dup in batch" end
          end
        end"#,
    )]);
    let mut c = cfg();
    c.batch_size = 3;
    let st = step(compile(&dir, "t.lua", "transform"), c, vec![]);
    let recs: Vec<String> = (0..4)
        .map(|i| {
            format!(
                r#"{{"i":{i}{}}}"#,
                if i == 1 { r#","drop":true"# } else { "" }
            )
        })
        .collect();
    let out = try_records(&st, &recs);
    assert_eq!(out[0], Ok(r#"{"i":0,"call":1,"n":3}"#.into()));
    assert_eq!(out[1], Err("dropped by transform: dup in batch".into()));
    assert_eq!(out[3], Ok(r#"{"i":3,"call":2,"n":1}"#.into()));
}

#[test]
fn sandbox_has_no_io_os_debug_or_bytecode() {
    let dir = dir_with(&[
        (
            "t.lua",
            r#"
            function transform(r)
              r.io = type(io); r.debug = type(debug); r.dofile = type(dofile)
              r.execute = type(os.execute); r.getenv = type(os.getenv); r.time = type(os.time)
              r.dump = type(string.dump)
              local f, err = load("\27Lua fake bytecode")
              r.bytecode = err
              local ok, e = pcall(require, "../secret")
              r.escape = ok and "escaped" or "refused"
              r.mod = require("lib.util").twice(21)
              return r
            end"#,
        ),
        (
            "lib/util.lua",
            "return { twice = function(x) return x * 2 end }",
        ),
    ]);
    let script = compile(&dir, "t.lua", "transform");
    let st = step(script.clone(), cfg(), vec![]);
    let out = try_records(&st, &[r#"{}"#.into()]);
    let rec: serde_json::Value = serde_json::from_str(out[0].as_ref().expect("ok")).expect("json");
    assert_eq!(rec["io"], "nil");
    assert_eq!(rec["debug"], "nil");
    assert_eq!(rec["dofile"], "nil");
    assert_eq!(rec["execute"], "nil");
    assert_eq!(rec["getenv"], "nil");
    assert_eq!(rec["time"], "function");
    assert_eq!(rec["dump"], "nil");
    assert!(rec["bytecode"].as_str().expect("msg").contains("bytecode"));
    assert_eq!(rec["escape"], "refused");
    assert_eq!(rec["mod"].to_string(), "42");
    // The required module is part of the script's provenance.
    let comps = script.components();
    assert!(comps.iter().any(|c| c.name == "lib/util.lua"), "{comps:?}");
}

#[test]
fn limits_stop_bombs_loops_and_patterns_and_the_engine_goes_on() {
    let dir = dir_with(&[(
        "t.lua",
        r#"
        function transform(r)
          if r.kind == "memory" then local s = string.rep("x", 64 * 1024 * 1024) r.len = #s end
          if r.kind == "loop" then while true do end end
          if r.kind == "pattern" then r.m = string.find(string.rep("a", 5000), "(.-)(.-)(.-)(.-)b") end
          r.ok = true
          return r
        end"#,
    )]);
    let mut c = cfg();
    c.limits = Some(small_limits());
    let st = step(compile(&dir, "t.lua", "transform"), c, vec![]);
    let out = try_records(
        &st,
        &[
            r#"{"kind":"memory"}"#.into(),
            r#"{"kind":"loop"}"#.into(),
            r#"{"kind":"pattern"}"#.into(),
            r#"{"kind":"fine"}"#.into(),
        ],
    );
    let memory = out[0].clone().expect_err("memory");
    assert!(memory.contains("memory"), "{memory}");
    let lp = out[1].clone().expect_err("loop");
    assert!(
        lp.contains("instruction budget") || lp.contains("time budget"),
        "{lp}"
    );
    let pat = out[2].clone().expect_err("pattern");
    assert!(pat.contains("too costly"), "{pat}");
    assert_eq!(out[3], Ok(r#"{"kind":"fine","ok":true}"#.into()));
}

#[test]
fn timeout_stops_a_slow_call() {
    let dir = dir_with(&[("t.lua", "function transform(r) while true do end end")]);
    let mut c = cfg();
    c.limits = Some(ScriptLimits {
        instructions: u64::MAX / 2,
        timeout: HumanDuration(Duration::from_millis(200)),
        ..small_limits()
    });
    let st = step(compile(&dir, "t.lua", "transform"), c, vec![]);
    let t0 = std::time::Instant::now();
    let out = try_records(&st, &[r#"{}"#.into()]);
    assert!(out[0]
        .clone()
        .expect_err("times out")
        .contains("time budget"));
    assert!(t0.elapsed() < Duration::from_secs(5));
}

#[test]
fn compile_errors_name_the_file_and_line_and_required_functions() {
    let dir = dir_with(&[
        ("bad.lua", "function transform(r)\n  return r +\nend\n"),
        ("none.lua", "x = 1"),
    ]);
    let e = Script::compile(dir.path(), "bad.lua", &["transform"], 1).expect_err("syntax");
    assert!(e.to_string().contains("bad.lua:3:"), "{e}");
    let e = Script::compile(dir.path(), "none.lua", &["transform"], 1).expect_err("no fn");
    assert!(
        e.to_string().contains("defines no function transform"),
        "{e}"
    );
    let dir = dir_with(&[(
        "st.lua",
        "function transform(r) return r end\nfunction self_test() assert(1 == 2, 'self test says no') end",
    )]);
    let e = Script::compile(dir.path(), "st.lua", &["transform"], 1).expect_err("self test");
    assert!(e.to_string().contains("self test says no"), "{e}");
}

#[test]
fn reload_swaps_good_versions_and_keeps_the_last_good_one() {
    let dir = dir_with(&[("t.lua", "function transform(r) r.v = 1 return r end")]);
    let text = format!(
        "[scripts]\ndir = {:?}\n[[delivery]]\nname = \"a\"\n[delivery.script]\ntransform = \"t.lua\"\n[delivery.destination]\ntype = \"local\"\ndir = \"out\"\n",
        dir.path().display().to_string()
    );
    let config = crate::config::load_str(&text, Path::new("c.toml"), dir.path()).expect("config");
    let (scripts, errors) = Scripts::load(&config);
    assert!(errors.is_empty(), "{errors:?}");
    let v1 = scripts.get("t.lua").expect("v1");

    std::fs::write(
        dir.path().join("t.lua"),
        "function transform(r) r.v = 2 return r end",
    )
    .expect("write");
    let r = scripts.reload();
    assert_eq!(r.reloaded, vec!["t.lua".to_string()]);
    let v2 = scripts.get("t.lua").expect("v2");
    assert_ne!(v1.sha256, v2.sha256);
    // A batch holding v1 still runs v1.
    let st = step(v1, cfg(), vec![]);
    assert_eq!(
        try_records(&st, &["{}".into()]),
        vec![Ok(r#"{"v":1}"#.into())]
    );

    std::fs::write(dir.path().join("t.lua"), "function transform(r) return r +").expect("write");
    let r = scripts.reload();
    assert_eq!(r.failed.len(), 1);
    assert_eq!(scripts.get("t.lua").expect("still v2").sha256, v2.sha256);
    let status = scripts.status();
    assert!(
        status[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("t.lua:1:")),
        "{status:?}"
    );
    assert_eq!(scripts.reload().failed.len(), 1, "a broken file stays out");
}

fn outcome<'a>(
    reply: Option<&'a crate::destination::Reply>,
    class: Option<&'a str>,
) -> response::Outcome<'a> {
    response::Outcome {
        ok: class.is_none(),
        class,
        message: "m",
        reply,
        attempt: 1,
        batch_id: "B1",
        delivery: "acme",
        record_count: 3,
        destination: "https://partner",
        zone: "America/New_York".parse().expect("tz"),
        now: chrono::DateTime::parse_from_rfc3339("2026-12-04T15:00:00Z")
            .expect("t")
            .with_timezone(&chrono::Utc),
    }
}

#[test]
fn response_handler_maps_partner_replies_to_actions() {
    let dir = dir_with(&[(
        "r.lua",
        r#"
        function on_response(o, ctx)
          if o.ok then return "success" end
          if o.status == 429 and o.json and o.json.error == "quota" then
            return { action = "delay_until", ["until"] = ctx.next_local("00:00") }
          end
          if o.status == 409 then return "skip", "duplicate batch" end
          if o.status == 422 then return { action = "partial", ids = o.json.failed } end
          if o.status == 400 then return "reformat", o.body end
          if o.status == 503 then return "retry", "90s" end
          if o.class == "auth" then return "suspend" end
          return nil
        end"#,
    )]);
    let s = compile(&dir, "r.lua", "response");
    let limits = ScriptLimits::default();
    let reply = |code, body: &str| crate::destination::Reply {
        code: Some(code),
        message: "x".into(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: Some(body.into()),
    };
    assert_eq!(
        response::handle(&s, &limits, &outcome(None, None)),
        Ok(Action::Success)
    );
    let q = reply(429, r#"{"error":"quota"}"#);
    // Midnight in New York after 10:00 local on Dec 4 is 05:00 UTC on Dec 5.
    let midnight = chrono::DateTime::parse_from_rfc3339("2026-12-05T05:00:00Z")
        .expect("t")
        .with_timezone(&chrono::Utc);
    assert_eq!(
        response::handle(&s, &limits, &outcome(Some(&q), Some("transient"))),
        Ok(Action::DelayUntil(midnight))
    );
    let d = reply(409, "{}");
    assert_eq!(
        response::handle(&s, &limits, &outcome(Some(&d), Some("permanent"))),
        Ok(Action::Skip("duplicate batch".into()))
    );
    let p = reply(422, r#"{"failed":[7,9]}"#);
    assert_eq!(
        response::handle(&s, &limits, &outcome(Some(&p), Some("permanent"))),
        Ok(Action::Partial {
            failed: vec![7, 9],
            reason: "refused by the partner".into()
        })
    );
    let f = reply(400, "bad column count");
    assert_eq!(
        response::handle(&s, &limits, &outcome(Some(&f), Some("permanent"))),
        Ok(Action::Reformat("bad column count".into()))
    );
    let r = reply(503, "");
    assert_eq!(
        response::handle(&s, &limits, &outcome(Some(&r), Some("transient"))),
        Ok(Action::Retry(Some(Duration::from_secs(90))))
    );
    assert!(matches!(
        response::handle(&s, &limits, &outcome(None, Some("auth"))),
        Ok(Action::Suspend(_))
    ));
    assert_eq!(
        response::handle(&s, &limits, &outcome(None, Some("connect"))),
        Ok(Action::Default)
    );
}

#[test]
fn schedule_hook_answers_now_later_or_a_local_time() {
    let dir = dir_with(&[(
        "s.lua",
        r#"
        function next_batch(m)
          if m.pending >= 100 then return "now" end
          if m.local_hour < 9 then return { at = "09:00" } end
          return 600
        end"#,
    )]);
    let s = compile(&dir, "s.lua", "schedule");
    let ny: chrono_tz::Tz = "America/New_York".parse().expect("tz");
    let stats = |count| crate::store::PendingStats {
        count,
        bytes: 0,
        oldest: None,
    };
    let at = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .expect("t")
            .with_timezone(&chrono::Utc)
    };
    let l = ScriptLimits::default();
    assert_eq!(
        schedule::ask(&s, &l, "a", &stats(100), ny, at("2026-12-04T15:00:00Z")),
        Ok(Verdict::Now)
    );
    assert_eq!(
        schedule::ask(&s, &l, "a", &stats(1), ny, at("2026-12-04T15:00:00Z")),
        Ok(Verdict::At(at("2026-12-04T15:10:00Z")))
    );
    // 06:00 in New York: wait for 09:00 local.
    assert_eq!(
        schedule::ask(&s, &l, "a", &stats(1), ny, at("2026-12-04T11:00:00Z")),
        Ok(Verdict::At(at("2026-12-04T14:00:00Z")))
    );
}

#[test]
fn pcall_cannot_swallow_a_broken_budget_and_finalizers_are_refused() {
    let dir = dir_with(&[(
        "t.lua",
        r#"
        function transform(r)
          if r.kind == "pcall" then
            while true do pcall(function() while true do end end) end
          end
          if r.kind == "xpcall" then
            while true do xpcall(function() while true do end end, function(e) return e end) end
          end
          if r.kind == "coroutine" then
            while true do coroutine.resume(coroutine.create(function() while true do end end)) end
          end
          if r.kind == "gc" then setmetatable({}, { __gc = function() while true do end end }) end
          if r.kind == "caught" then
            -- An ordinary error is still the script's to catch.
            local ok = pcall(error, "mine")
            r.caught = not ok
          end
          return r
        end"#,
    )]);
    let mut c = cfg();
    c.batch_size = 1;
    c.limits = Some(ScriptLimits {
        instructions: u64::MAX / 2,
        timeout: HumanDuration(Duration::from_millis(300)),
        ..small_limits()
    });
    let st = step(compile(&dir, "t.lua", "transform"), c, vec![]);
    let t0 = std::time::Instant::now();
    let out = try_records(
        &st,
        &[
            r#"{"kind":"pcall"}"#.into(),
            r#"{"kind":"xpcall"}"#.into(),
            r#"{"kind":"coroutine"}"#.into(),
            r#"{"kind":"gc"}"#.into(),
            r#"{"kind":"caught"}"#.into(),
        ],
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    for (i, kind) in ["pcall", "xpcall", "coroutine"].iter().enumerate() {
        let e = out[i].clone().expect_err(kind);
        assert!(e.contains("time budget"), "{kind}: {e}");
    }
    let gc = out[3].clone().expect_err("gc");
    assert!(gc.contains("__gc finalizers are not allowed"), "{gc}");
    assert_eq!(out[4], Ok(r#"{"kind":"caught","caught":true}"#.into()));
}

#[test]
fn patterns_with_one_repetition_on_long_subjects_are_refused() {
    let dir = dir_with(&[(
        "t.lua",
        r#"
        function transform(r)
          local s = string.rep("a", r.n)
          if r.p == "find" then r.m = string.find(s, "a*b") end
          if r.p == "gsub" then r.m = (string.gsub(s, "a-b", "")) end
          if r.p == "optional" then r.m = string.find(string.rep("a", 40), string.rep("a?", 20) .. "b") end
          if r.p == "balanced" then r.m = string.find(string.rep("(", r.n), "%b()") end
          if r.p == "literal" then r.m = string.find(string.rep("a", r.n), string.rep("a", 40000) .. "b", 1, true) end
          if r.p == "short" then r.m = string.find("555-123-4567", "%d+") end
          if r.p == "anchored" then r.m = string.match(s, "^%s*(.-)%s*$") ~= nil end
          return r
        end"#,
    )]);
    let mut c = cfg();
    c.batch_size = 1;
    c.limits = Some(small_limits());
    let st = step(compile(&dir, "t.lua", "transform"), c, vec![]);
    let t0 = std::time::Instant::now();
    let out = try_records(
        &st,
        &[
            r#"{"p":"find","n":200000}"#.into(),
            r#"{"p":"gsub","n":300000}"#.into(),
            r#"{"p":"optional","n":1}"#.into(),
            r#"{"p":"balanced","n":600000}"#.into(),
            r#"{"p":"literal","n":100000}"#.into(),
            r#"{"p":"short","n":1}"#.into(),
            r#"{"p":"anchored","n":500}"#.into(),
        ],
    );
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    for (i, what) in ["find", "gsub", "optional", "balanced", "literal"]
        .iter()
        .enumerate()
    {
        let e = out[i].clone().expect_err(what);
        assert!(e.contains("too costly"), "{what}: {e}");
    }
    assert!(
        out[5].as_ref().is_ok_and(|j| j.contains(r#""m":1"#)),
        "{:?}",
        out[5]
    );
    assert!(
        out[6].as_ref().is_ok_and(|j| j.contains(r#""m":true"#)),
        "{:?}",
        out[6]
    );
}

#[test]
fn transform_batch_results_are_matched_by_position_or_refused() {
    let dir = dir_with(&[(
        "t.lua",
        r#"
        function transform_batch(records, ctx)
          local mode = records[1].mode
          if mode == "longer" then
            local out = {}
            for i = 1, #records * 2 do out[i] = records[(i - 1) % #records + 1] end
            return out
          end
          if mode == "moved" then return { records[#records] } end
          if mode == "string" then return "nope" end
          for i = 1, #records do records[i].seen = true end
        end"#,
    )]);
    let st = step(compile(&dir, "t.lua", "transform"), cfg(), vec![]);
    for mode in ["longer", "moved", "string"] {
        let out = try_records(
            &st,
            &[
                format!(r#"{{"mode":"{mode}","i":1}}"#),
                r#"{"i":2}"#.into(),
                r#"{"i":3}"#.into(),
            ],
        );
        assert_eq!(out.len(), 3, "{mode}: {out:?}");
        for o in &out {
            let e = o.clone().expect_err(mode);
            assert!(e.contains("transform_batch"), "{mode}: {e}");
        }
    }
    let out = try_records(&st, &[r#"{"mode":"in_place"}"#.into(), r#"{"i":2}"#.into()]);
    assert_eq!(
        out,
        vec![
            Ok(r#"{"mode":"in_place","seen":true}"#.into()),
            Ok(r#"{"i":2,"seen":true}"#.into())
        ]
    );
}

#[test]
fn waits_longer_than_a_year_are_refused_not_a_crash() {
    let dir = dir_with(&[
        ("r.lua", "function on_response(o) return 'retry', 1e13 end"),
        ("s.lua", "function next_batch(m) return 1e300 end"),
    ]);
    let r = compile(&dir, "r.lua", "response");
    let got = response::handle(
        &r,
        &ScriptLimits::default(),
        &outcome(None, Some("transient")),
    );
    assert!(matches!(&got, Err(e) if e.contains("more than")), "{got:?}");
    let s = compile(&dir, "s.lua", "schedule");
    let stats = crate::store::PendingStats {
        count: 1,
        bytes: 0,
        oldest: None,
    };
    let got = schedule::ask(
        &s,
        &ScriptLimits::default(),
        "a",
        &stats,
        "UTC".parse().expect("tz"),
        chrono::Utc::now(),
    );
    assert!(matches!(&got, Err(e) if e.contains("more than")), "{got:?}");
}

#[test]
fn require_does_not_follow_a_symlink_out_of_the_scripts_folder() {
    let outside = tempfile::tempdir().expect("tmp");
    std::fs::write(outside.path().join("evil.lua"), "return { x = 1 }").expect("write");
    let dir = dir_with(&[(
        "t.lua",
        "function transform(r) local m = require('lib.evil') r.x = m.x return r end",
    )]);
    std::fs::create_dir_all(dir.path().join("lib")).expect("mkdir");
    std::os::unix::fs::symlink(
        outside.path().join("evil.lua"),
        dir.path().join("lib/evil.lua"),
    )
    .expect("symlink");
    let st = step(compile(&dir, "t.lua", "transform"), cfg(), vec![]);
    let out = try_records(&st, &[r#"{}"#.into()]);
    let e = out[0].clone().expect_err("refused");
    assert!(e.contains("outside the scripts folder"), "{e}");
}

#[test]
fn nested_values_the_script_left_alone_keep_their_text() {
    let dir = dir_with(&[(
        "t.lua",
        r#"
        function transform(r)
          r.x = 1
          if r.change then r.nested.m = 13 end
          return r
        end"#,
    )]);
    let st = step(compile(&dir, "t.lua", "transform"), cfg(), vec![]);
    let nested = r#"{"big":123456789012345678901,"m":12.50,"s":1E5,"f":2.0,"list":[1,null,"a"]}"#;
    let out = try_records(
        &st,
        &[
            format!(r#"{{"nested":{nested}}}"#),
            format!(r#"{{"change":true,"nested":{nested}}}"#),
        ],
    );
    assert_eq!(out[0], Ok(format!(r#"{{"nested":{nested},"x":1}}"#)));
    let changed = out[1].clone().expect("kept");
    // Only `m` changed: its siblings keep their spelling and order.
    assert_eq!(
        changed,
        r#"{"change":true,"nested":{"big":123456789012345678901,"m":13,"s":1E5,"f":2.0,"list":[1,null,"a"]},"x":1}"#
    );
}

#[test]
fn a_changed_nested_array_keeps_its_untouched_elements() {
    let dir = dir_with(&[(
        "t.lua",
        r#"
        function transform(r)
          r.arr[2].y = 1
          r.obj.new = "n"
          return r
        end"#,
    )]);
    let st = step(compile(&dir, "t.lua", "transform"), cfg(), vec![]);
    let out = try_records(
        &st,
        &[r#"{"arr":[-0.0,{"x":1.10},"é"],"obj":{"z":1.50,"a":[1E5,2.000]}}"#.into()],
    );
    assert_eq!(
        out[0],
        Ok(
            r#"{"arr":[-0.0,{"x":1.10,"y":1},"é"],"obj":{"z":1.50,"a":[1E5,2.000],"new":"n"}}"#
                .into()
        )
    );
}
