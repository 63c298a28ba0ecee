//! Versioned schema migrations. Each entry runs once, in order, inside a
//! transaction; `PRAGMA user_version` records the last one applied.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: queue, batches, files, attempts, events, suspensions.
    //
    // Records are never rewritten when a batch is cut: ids only grow
    // (AUTOINCREMENT, one writer at a time), so a batch owns the records of
    // its delivery with ids in first_record..=last_record, and
    // cursors.last_id marks where the pending records of a delivery start.
    r#"
CREATE TABLE records (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery    TEXT    NOT NULL,
    received_at INTEGER NOT NULL,          -- unix millis
    bytes       INTEGER NOT NULL,
    payload     TEXT    NOT NULL           -- JSON object
);
CREATE INDEX records_delivery ON records(delivery, id, bytes, received_at);

CREATE TABLE cursors (
    delivery TEXT PRIMARY KEY,
    last_id  INTEGER NOT NULL              -- highest record id already in a batch
);

CREATE TABLE batches (
    rowid           INTEGER PRIMARY KEY,
    id              TEXT    NOT NULL UNIQUE,
    delivery        TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    trigger         TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    record_count    INTEGER NOT NULL,
    bytes           INTEGER NOT NULL,
    first_record    INTEGER,                -- records of `delivery` with ids in
    last_record     INTEGER,                -- first_record..=last_record
    layout          TEXT,                   -- JSON snapshot of the file layout at cut
    attempts        INTEGER NOT NULL DEFAULT 0,
    attempt_base    INTEGER NOT NULL DEFAULT 0, -- attempts before the last operator retry
    next_attempt_at INTEGER,
    last_error      TEXT,
    receipt         TEXT,
    delivered_at    INTEGER,
    purged          INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX batches_state ON batches(state, next_attempt_at);
CREATE INDEX batches_delivery ON batches(delivery, rowid);

CREATE TABLE batch_files (
    batch        INTEGER NOT NULL REFERENCES batches(rowid),
    part         INTEGER NOT NULL,
    name         TEXT    NOT NULL,
    kind         TEXT    NOT NULL DEFAULT 'data',   -- data | sha256 | md5 | manifest | done
    bytes        INTEGER,
    sha256       TEXT,
    md5          TEXT,
    records      INTEGER,
    first_record INTEGER,
    last_record  INTEGER,
    PRIMARY KEY (batch, part)
);

CREATE TABLE attempts (
    batch      INTEGER NOT NULL REFERENCES batches(rowid),
    number     INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    outcome    TEXT,
    error      TEXT,
    PRIMARY KEY (batch, number)
);

CREATE TABLE batch_events (
    id     INTEGER PRIMARY KEY,
    batch  INTEGER NOT NULL REFERENCES batches(rowid),
    at     INTEGER NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX batch_events_batch ON batch_events(batch, id);

CREATE TABLE delivered_parts (           -- files accepted by a file-by-file destination (HTTP chunks)
    batch INTEGER NOT NULL REFERENCES batches(rowid),
    part  INTEGER NOT NULL,
    at    INTEGER NOT NULL,
    PRIMARY KEY (batch, part)
);

CREATE TABLE rejections (
    batch  INTEGER NOT NULL REFERENCES batches(rowid),
    record INTEGER NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (batch, record)
);

CREATE TABLE suspensions (
    delivery TEXT PRIMARY KEY,
    since    INTEGER NOT NULL,
    reason   TEXT NOT NULL
);
"#,
    // 2: provenance — the hash of every script and plugin that produced or
    // delivered a batch (Lua transforms, response handlers, WASM/native
    // destination plugins).
    r#"
CREATE TABLE batch_components (
    batch  INTEGER NOT NULL REFERENCES batches(rowid) ON DELETE CASCADE,
    kind   TEXT    NOT NULL,               -- 'script' | 'plugin' | ...
    name   TEXT    NOT NULL,               -- script path / plugin name@version
    sha256 TEXT    NOT NULL,
    PRIMARY KEY (batch, kind, name, sha256)
);
"#,
];

/// Bring the database up to the newest schema.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version <= current {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}

/// Newest schema version this build knows.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}
