//! SQLite store: WAL, `synchronous=FULL`, versioned migrations.
//!
//! Intake is group-committed: [`SqliteStore::enqueue`] hands its records to a
//! committer thread which takes everything queued meanwhile, writes it in one
//! transaction and answers each caller after the commit. If that transaction
//! fails, every caller in it gets the error and nothing of theirs is stored.

use super::schema;
use super::*;
use chrono::TimeZone;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::Duration;

/// Most records written in one group commit.
const GROUP_LIMIT: usize = 100_000;

struct IntakeJob {
    delivery: String,
    records: Vec<String>,
    reply: mpsc::SyncSender<std::result::Result<Vec<i64>, String>>,
}

pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
    intake: Mutex<Option<mpsc::Sender<IntakeJob>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

impl SqliteStore {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Other(format!("cannot create {}: {e}", dir.display()))
                })?;
            }
        }
        let mut conn = open(path)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > schema::latest() {
            return Err(StoreError::Other(format!(
                "{} has schema version {version}, newer than this consign understands ({}); upgrade consign",
                path.display(),
                schema::latest()
            )));
        }
        schema::migrate(&mut conn)?;
        let writer = open(path)?;
        let (tx, rx) = mpsc::channel::<IntakeJob>();
        let committer = std::thread::Builder::new()
            .name("consign-intake-commit".into())
            .spawn(move || commit_loop(writer, rx))
            .map_err(|e| StoreError::Other(format!("cannot start committer thread: {e}")))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            intake: Mutex::new(Some(tx)),
            committer: Mutex::new(Some(committer)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::Other("store lock poisoned".into()))?;
        f(&mut guard)
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Ok(mut s) = self.intake.lock() {
            s.take();
        }
        if let Ok(mut c) = self.committer.lock() {
            if let Some(h) = c.take() {
                let _ = h.join();
            }
        }
    }
}

fn commit_loop(mut conn: Connection, rx: mpsc::Receiver<IntakeJob>) {
    while let Ok(first) = rx.recv() {
        let mut n = first.records.len();
        let mut jobs = vec![first];
        while n < GROUP_LIMIT {
            match rx.try_recv() {
                Ok(job) => {
                    n += job.records.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let result = write_group(&mut conn, &jobs);
        match result {
            Ok(ids) => {
                for (job, ids) in jobs.into_iter().zip(ids) {
                    let _ = job.reply.send(Ok(ids));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(msg.clone()));
                }
            }
        }
    }
}

fn write_group(conn: &mut Connection, jobs: &[IntakeJob]) -> rusqlite::Result<Vec<Vec<i64>>> {
    let now = millis(Utc::now());
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut out = Vec::with_capacity(jobs.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO records (delivery, received_at, bytes, payload) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for job in jobs {
            let mut ids = Vec::with_capacity(job.records.len());
            for r in &job.records {
                stmt.execute(params![job.delivery, now, r.len() as i64, r])?;
                ids.push(tx.last_insert_rowid());
            }
            out.push(ids);
        }
    }
    tx.commit()?;
    Ok(out)
}

const BATCH_COLS: &str = "rowid, id, delivery, state, trigger, created_at, updated_at, record_count, bytes, attempts, next_attempt_at, last_error, receipt, layout, attempt_base";

fn row_to_batch(r: &Row<'_>) -> rusqlite::Result<Batch> {
    let state: String = r.get(3)?;
    Ok(Batch {
        rowid: r.get(0)?,
        id: r.get(1)?,
        delivery: r.get(2)?,
        state: BatchState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown batch state {state:?}").into(),
            )
        })?,
        trigger: r.get(4)?,
        created_at: from_millis(r.get(5)?),
        updated_at: from_millis(r.get(6)?),
        record_count: r.get::<_, i64>(7)? as u64,
        bytes: r.get::<_, i64>(8)? as u64,
        attempts: r.get::<_, i64>(9)? as u32,
        next_attempt_at: r.get::<_, Option<i64>>(10)?.map(from_millis),
        last_error: r.get(11)?,
        receipt: r.get(12)?,
        layout: r.get(13)?,
        attempt_base: r.get::<_, i64>(14)? as u32,
    })
}

fn load_batch(conn: &Connection, rowid: i64) -> Result<Batch> {
    Ok(conn.query_row(
        &format!("SELECT {BATCH_COLS} FROM batches WHERE rowid = ?1"),
        [rowid],
        row_to_batch,
    )?)
}

impl Store for SqliteStore {
    fn enqueue(&self, delivery: &str, records: Vec<String>) -> Result<Vec<i64>> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        let sender = {
            let guard = self.intake.lock().map_err(|_| StoreError::Closed)?;
            guard.clone().ok_or(StoreError::Closed)?
        };
        let (reply, answer) = mpsc::sync_channel(1);
        sender
            .send(IntakeJob {
                delivery: delivery.to_string(),
                records,
                reply,
            })
            .map_err(|_| StoreError::Closed)?;
        match answer.recv() {
            Ok(Ok(ids)) => Ok(ids),
            Ok(Err(msg)) => Err(StoreError::Other(format!(
                "intake commit failed, nothing stored: {msg}"
            ))),
            Err(_) => Err(StoreError::Closed),
        }
    }

    fn import(&self, delivery: &str, feed: Feed<'_>) -> Result<(u64, Option<i64>, Option<i64>)> {
        let mut conn = open(&self.path)?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let now = millis(Utc::now());
        let (mut n, mut first, mut last) = (0u64, None, None);
        {
            let mut stmt = tx.prepare("INSERT INTO records (delivery, received_at, bytes, payload) VALUES (?1, ?2, ?3, ?4)")?;
            feed(&mut |chunk: Vec<String>| {
                for r in &chunk {
                    stmt.execute(params![delivery, now, r.len() as i64, r])
                        .map_err(|e| e.to_string())?;
                    let id = tx.last_insert_rowid();
                    first.get_or_insert(id);
                    last = Some(id);
                    n += 1;
                }
                Ok(())
            })
            .map_err(|e| StoreError::Other(format!("nothing stored: {e}")))?;
        }
        tx.commit()?;
        Ok((n, first, last))
    }

    fn pending(&self, delivery: &str) -> Result<PendingStats> {
        self.with(|c| {
            let (count, bytes, oldest): (i64, i64, Option<i64>) = c.query_row(
                "SELECT count(*), coalesce(sum(bytes), 0), min(received_at) FROM records
                 WHERE delivery = ?1 AND id > coalesce((SELECT last_id FROM cursors WHERE delivery = ?1), 0)",
                [delivery],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?;
            Ok(PendingStats {
                count: count as u64,
                bytes: bytes as u64,
                oldest: oldest.map(from_millis),
            })
        })
    }

    fn cut(&self, req: &CutRequest<'_>) -> Result<Option<Batch>> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let limit = req.max_records.min(i64::MAX as u64) as i64;
            let after: i64 = tx
                .query_row("SELECT last_id FROM cursors WHERE delivery = ?1", [req.delivery], |r| r.get(0))
                .optional()?
                .unwrap_or(0);
            let (count, bytes, first, last): (i64, i64, Option<i64>, Option<i64>) = tx.query_row(
                "SELECT count(*), coalesce(sum(bytes), 0), min(id), max(id) FROM
                 (SELECT id, bytes FROM records WHERE delivery = ?1 AND id > ?2 ORDER BY id LIMIT ?3)",
                params![req.delivery, after, limit],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )?;
            if count == 0 && !req.allow_empty {
                return Ok(None);
            }
            let now = millis(req.now);
            tx.execute(
                "INSERT INTO batches (id, delivery, state, trigger, created_at, updated_at, record_count, bytes, first_record, last_record, layout)
                 VALUES (?1, ?2, 'assembling', ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![format!("tmp-{now}-{}", req.delivery), req.delivery, req.trigger, now, count, bytes, first, last, req.layout],
            )?;
            let rowid = tx.last_insert_rowid();
            let public = format!("{}-{:06}", req.now.format("%Y%m%d-%H%M%S"), rowid);
            tx.execute("UPDATE batches SET id = ?1 WHERE rowid = ?2", params![public, rowid])?;
            if let Some(last) = last {
                tx.execute(
                    "INSERT INTO cursors (delivery, last_id) VALUES (?1, ?2)
                     ON CONFLICT(delivery) DO UPDATE SET last_id = excluded.last_id",
                    params![req.delivery, last],
                )?;
            }
            tx.execute(
                "INSERT INTO batch_events (batch, at, from_state, to_state, detail) VALUES (?1, ?2, NULL, 'assembling', ?3)",
                params![rowid, now, format!("cut by {} trigger: {count} records, {bytes} bytes", req.trigger)],
            )?;
            let batch = load_batch(&tx, rowid)?;
            tx.commit()?;
            Ok(Some(batch))
        })
    }

    fn for_each_record(
        &self,
        batch: &Batch,
        f: &mut dyn FnMut(i64, &str) -> std::result::Result<(), String>,
    ) -> Result<()> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // Map the file instead of copying every page through read(2):
        // assembly streams whole batches.
        conn.pragma_update(None, "mmap_size", 1i64 << 32)?;
        let (first, last): (Option<i64>, Option<i64>) = conn.query_row(
            "SELECT first_record, last_record FROM batches WHERE rowid = ?1",
            [batch.rowid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (Some(first), Some(last)) = (first, last) else {
            return Ok(()); // an empty batch
        };
        let mut stmt = conn.prepare(
            "SELECT id, payload FROM records WHERE delivery = ?1 AND id BETWEEN ?2 AND ?3 ORDER BY id",
        )?;
        let mut rows = stmt.query(params![batch.delivery, first, last])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let payload = row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            f(id, payload).map_err(StoreError::Other)?;
        }
        Ok(())
    }

    fn set_files(&self, batch: &Batch, files: &[BatchFile], rejected: &[Rejection]) -> Result<()> {
        self.with(|c| {
            // Immediate: a deferred transaction that reads first cannot wait for
            // the write lock (SQLITE_BUSY at once while intake commits).
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Parts a partner already accepted stay accepted when the rebuilt
            // files are identical (same names and bytes); otherwise start over.
            let before: Vec<(String, String)> = {
                let mut stmt = tx.prepare("SELECT name, coalesce(sha256, '') FROM batch_files WHERE batch = ?1 ORDER BY part")?;
                let rows = stmt.query_map([batch.rowid], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<Vec<_>>>()?
            };
            let after: Vec<(String, String)> = files.iter().map(|f| (f.name.clone(), f.sha256.clone())).collect();
            if before != after {
                tx.execute("DELETE FROM delivered_parts WHERE batch = ?1", [batch.rowid])?;
            }
            tx.execute("DELETE FROM batch_files WHERE batch = ?1", [batch.rowid])?;
            tx.execute("DELETE FROM rejections WHERE batch = ?1", [batch.rowid])?;
            for f in files {
                tx.execute(
                    "INSERT INTO batch_files (batch, part, name, kind, bytes, sha256, md5, records, first_record, last_record)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![batch.rowid, f.part, f.name, f.kind, f.bytes as i64, f.sha256, f.md5, f.records as i64, f.first_record, f.last_record],
                )?;
            }
            for r in rejected {
                tx.execute(
                    "INSERT OR REPLACE INTO rejections (batch, record, reason) VALUES (?1, ?2, ?3)",
                    params![batch.rowid, r.record, r.reason],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn rejections(&self, batch: &Batch) -> Result<Vec<Rejection>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT record, reason FROM rejections WHERE batch = ?1 ORDER BY record",
            )?;
            let rows = stmt.query_map([batch.rowid], |r| {
                Ok(Rejection {
                    record: r.get(0)?,
                    reason: r.get(1)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn mark_parts_delivered(&self, batch: &Batch, parts: &[u32]) -> Result<()> {
        self.with(|c| {
            // Immediate: a deferred transaction that reads first cannot wait for
            // the write lock (SQLITE_BUSY at once while intake commits).
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for p in parts {
                tx.execute(
                    "INSERT OR IGNORE INTO delivered_parts (batch, part, at) VALUES (?1, ?2, ?3)",
                    params![batch.rowid, p, millis(Utc::now())],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn clear_delivered_parts(&self, batch: &Batch) -> Result<()> {
        self.with(|c| {
            c.execute(
                "DELETE FROM delivered_parts WHERE batch = ?1",
                [batch.rowid],
            )?;
            Ok(())
        })
    }

    fn delivered_parts(&self, batch: &Batch) -> Result<Vec<u32>> {
        self.with(|c| {
            let mut stmt =
                c.prepare("SELECT part FROM delivered_parts WHERE batch = ?1 ORDER BY part")?;
            let rows = stmt.query_map([batch.rowid], |r| r.get::<_, u32>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn record_components(&self, batch: &Batch, components: &[Component]) -> Result<()> {
        self.with(|c| {
            // Immediate: a deferred transaction that reads first cannot wait for
            // the write lock (SQLITE_BUSY at once while intake commits).
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for comp in components {
                tx.execute(
                    "INSERT OR IGNORE INTO batch_components (batch, kind, name, sha256) VALUES (?1, ?2, ?3, ?4)",
                    params![batch.rowid, comp.kind, comp.name, comp.sha256],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn components(&self, batch: &Batch) -> Result<Vec<Component>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT kind, name, sha256 FROM batch_components WHERE batch = ?1 ORDER BY kind, name",
            )?;
            let rows = stmt.query_map([batch.rowid], |r| {
                Ok(Component {
                    kind: r.get(0)?,
                    name: r.get(1)?,
                    sha256: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn files(&self, batch: &Batch) -> Result<Vec<BatchFile>> {
        self.with(|c| {
            let mut stmt = c.prepare(
                "SELECT part, name, kind, coalesce(bytes, 0), coalesce(sha256, ''), md5, coalesce(records, 0), first_record, last_record
                 FROM batch_files WHERE batch = ?1 ORDER BY part",
            )?;
            let rows = stmt.query_map([batch.rowid], |r| {
                Ok(BatchFile {
                    part: r.get(0)?,
                    name: r.get(1)?,
                    kind: r.get(2)?,
                    bytes: r.get::<_, i64>(3)? as u64,
                    sha256: r.get(4)?,
                    md5: r.get(5)?,
                    records: r.get::<_, i64>(6)? as u64,
                    first_record: r.get(7)?,
                    last_record: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn transition(
        &self,
        batch: &Batch,
        to: BatchState,
        detail: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<Batch> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let current = load_batch(&tx, batch.rowid)?;
            if !current.state.can_become(to) {
                return Err(StoreError::BadTransition {
                    id: current.id,
                    from: current.state,
                    to,
                });
            }
            let now = millis(Utc::now());
            let error = match to {
                BatchState::RetryWait
                | BatchState::Delayed
                | BatchState::Manual
                | BatchState::Failed
                | BatchState::Skipped
                | BatchState::Suspended => Some(detail),
                BatchState::Delivered => None,
                _ => current.last_error.as_deref(),
            };
            tx.execute(
                "UPDATE batches SET state = ?1, updated_at = ?2, next_attempt_at = ?3, last_error = ?4,
                 delivered_at = CASE WHEN ?1 = 'delivered' THEN ?2 ELSE delivered_at END WHERE rowid = ?5",
                params![to.as_str(), now, next_attempt_at.map(millis), error, batch.rowid],
            )?;
            tx.execute(
                "INSERT INTO batch_events (batch, at, from_state, to_state, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![batch.rowid, now, current.state.as_str(), to.as_str(), detail],
            )?;
            let updated = load_batch(&tx, batch.rowid)?;
            tx.commit()?;
            Ok(updated)
        })
    }

    fn start_attempt(&self, batch: &Batch) -> Result<u32> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n: i64 = tx.query_row(
                "SELECT attempts + 1 FROM batches WHERE rowid = ?1",
                [batch.rowid],
                |r| r.get(0),
            )?;
            tx.execute(
                "UPDATE batches SET attempts = ?1 WHERE rowid = ?2",
                params![n, batch.rowid],
            )?;
            tx.execute(
                "INSERT INTO attempts (batch, number, started_at) VALUES (?1, ?2, ?3)",
                params![batch.rowid, n, millis(Utc::now())],
            )?;
            tx.commit()?;
            Ok(n as u32)
        })
    }

    fn reset_attempt_budget(&self, batch: &Batch) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE batches SET attempt_base = attempts WHERE rowid = ?1",
                [batch.rowid],
            )?;
            Ok(())
        })
    }

    fn finish_attempt(
        &self,
        batch: &Batch,
        number: u32,
        outcome: &str,
        error: Option<&str>,
        receipt: Option<&str>,
    ) -> Result<()> {
        self.with(|c| {
            c.execute(
                "UPDATE attempts SET ended_at = ?1, outcome = ?2, error = ?3 WHERE batch = ?4 AND number = ?5",
                params![millis(Utc::now()), outcome, error, batch.rowid, number],
            )?;
            if let Some(r) = receipt {
                c.execute("UPDATE batches SET receipt = ?1 WHERE rowid = ?2", params![r, batch.rowid])?;
            }
            Ok(())
        })
    }

    fn attempts(&self, batch: &Batch) -> Result<Vec<Attempt>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT number, started_at, ended_at, outcome, error FROM attempts WHERE batch = ?1 ORDER BY number")?;
            let rows = stmt.query_map([batch.rowid], |r| {
                Ok(Attempt {
                    number: r.get::<_, i64>(0)? as u32,
                    started_at: from_millis(r.get(1)?),
                    ended_at: r.get::<_, Option<i64>>(2)?.map(from_millis),
                    outcome: r.get(3)?,
                    error: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn events(&self, batch: &Batch) -> Result<Vec<BatchEvent>> {
        self.with(|c| {
            let mut stmt = c.prepare("SELECT at, from_state, to_state, detail FROM batch_events WHERE batch = ?1 ORDER BY id")?;
            let rows = stmt.query_map([batch.rowid], |r| {
                Ok(BatchEvent {
                    at: from_millis(r.get(0)?),
                    from: r.get(1)?,
                    to: r.get(2)?,
                    detail: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn batch(&self, id: &str) -> Result<Option<Batch>> {
        self.with(|c| {
            Ok(c.query_row(
                &format!("SELECT {BATCH_COLS} FROM batches WHERE id = ?1"),
                [id],
                row_to_batch,
            )
            .optional()?)
        })
    }

    fn list_batches(
        &self,
        delivery: Option<&str>,
        state: Option<BatchState>,
        limit: u32,
    ) -> Result<Vec<Batch>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {BATCH_COLS} FROM batches WHERE (?1 IS NULL OR delivery = ?1) AND (?2 IS NULL OR state = ?2) ORDER BY rowid DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![delivery, state.map(|s| s.as_str()), limit], row_to_batch)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn batches_in(&self, states: &[BatchState]) -> Result<Vec<Batch>> {
        let mut all = Vec::new();
        for s in states {
            self.with(|c| {
                let mut stmt = c.prepare(&format!(
                    "SELECT {BATCH_COLS} FROM batches WHERE state = ?1 ORDER BY rowid"
                ))?;
                let rows = stmt.query_map([s.as_str()], row_to_batch)?;
                all.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
                Ok(())
            })?;
        }
        all.sort_by_key(|b| b.rowid);
        Ok(all)
    }

    fn due(&self, now: DateTime<Utc>) -> Result<Vec<Batch>> {
        self.with(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {BATCH_COLS} FROM batches WHERE state = 'ready' OR (state IN ('retry_wait', 'delayed') AND next_attempt_at <= ?1) ORDER BY rowid"
            ))?;
            let rows = stmt.query_map([millis(now)], row_to_batch)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn next_retry_at(&self) -> Result<Option<DateTime<Utc>>> {
        self.with(|c| {
            let t: Option<i64> = c.query_row(
                "SELECT min(next_attempt_at) FROM batches WHERE state IN ('retry_wait', 'delayed')",
                [],
                |r| r.get(0),
            )?;
            Ok(t.map(from_millis))
        })
    }

    fn suspend(&self, delivery: &str, reason: &str, now: DateTime<Utc>) -> Result<()> {
        self.with(|c| {
            c.execute(
                "INSERT INTO suspensions (delivery, since, reason) VALUES (?1, ?2, ?3)
                 ON CONFLICT(delivery) DO UPDATE SET reason = excluded.reason",
                params![delivery, millis(now), reason],
            )?;
            Ok(())
        })
    }

    fn resume(&self, delivery: &str) -> Result<u64> {
        let suspended: Vec<Batch> = self
            .batches_in(&[BatchState::Suspended])?
            .into_iter()
            .filter(|b| b.delivery == delivery)
            .collect();
        self.with(|c| {
            c.execute("DELETE FROM suspensions WHERE delivery = ?1", [delivery])?;
            Ok(())
        })?;
        for b in &suspended {
            self.reset_attempt_budget(b)?;
            self.transition(b, BatchState::Ready, "delivery resumed by operator", None)?;
        }
        Ok(suspended.len() as u64)
    }

    fn suspension(&self, delivery: &str) -> Result<Option<Suspension>> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT delivery, since, reason FROM suspensions WHERE delivery = ?1",
                [delivery],
                |r| {
                    Ok(Suspension {
                        delivery: r.get(0)?,
                        since: from_millis(r.get(1)?),
                        reason: r.get(2)?,
                    })
                },
            )
            .optional()?)
        })
    }

    fn purge(&self, before: DateTime<Utc>) -> Result<u64> {
        self.with(|c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "DELETE FROM records WHERE id IN (
                   SELECT r.id FROM batches b JOIN records r
                     ON r.delivery = b.delivery AND r.id BETWEEN b.first_record AND b.last_record
                   WHERE b.state = 'delivered' AND b.purged = 0 AND b.delivered_at < ?1)",
                [millis(before)],
            )?;
            tx.execute(
                "UPDATE batches SET purged = 1 WHERE state = 'delivered' AND purged = 0 AND delivered_at < ?1",
                [millis(before)],
            )?;
            tx.commit()?;
            Ok(n as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = SqliteStore::open(&dir.path().join("q.db")).expect("open");
        (dir, s)
    }

    fn cut(s: &SqliteStore, max: u64) -> Option<Batch> {
        s.cut(&CutRequest {
            delivery: "d",
            max_records: max,
            trigger: "manual",
            now: Utc::now(),
            allow_empty: false,
            layout: "{}",
        })
        .expect("cut")
    }

    #[test]
    fn concurrent_enqueue_is_group_committed_and_complete() {
        let (_d, s) = store();
        let s = Arc::new(s);
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let s = s.clone();
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..50 {
                        ids.extend(
                            s.enqueue("d", vec![format!("{{\"t\":{t},\"i\":{i}}}")])
                                .expect("enqueue"),
                        );
                    }
                    ids
                })
            })
            .collect();
        let mut all: Vec<i64> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("join"))
            .collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 800);
        assert_eq!(s.pending("d").expect("pending").count, 800);
    }

    #[test]
    fn cut_takes_arrival_order_up_to_max_and_audits() {
        let (_d, s) = store();
        s.enqueue("d", (0..5).map(|i| format!("{{\"i\":{i}}}")).collect())
            .expect("enqueue");
        s.enqueue("other", vec!["{}".into()]).expect("enqueue");
        let b = cut(&s, 3).expect("batch");
        assert_eq!(b.record_count, 3);
        assert_eq!(b.state, BatchState::Assembling);
        let mut seen = Vec::new();
        s.for_each_record(&b, &mut |_, p| {
            seen.push(p.to_string());
            Ok(())
        })
        .expect("iterate");
        assert_eq!(seen, vec!["{\"i\":0}", "{\"i\":1}", "{\"i\":2}"]);
        assert_eq!(s.pending("d").expect("p").count, 2);
        assert_eq!(b.layout.as_deref(), Some("{}"));
        let b2 = cut(&s, 10).expect("second");
        assert_eq!(b2.record_count, 2);
        assert!(cut(&s, 10).is_none());
        let ev = s.events(&b).expect("events");
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].to, "assembling");
    }

    #[test]
    fn state_machine_is_enforced() {
        let (_d, s) = store();
        s.enqueue("d", vec!["{}".into()]).expect("enqueue");
        let b = cut(&s, 10).expect("batch");
        let err = s
            .transition(&b, BatchState::Delivering, "x", None)
            .unwrap_err();
        assert!(matches!(err, StoreError::BadTransition { .. }), "{err}");
        let b = s
            .transition(&b, BatchState::Ready, "assembled", None)
            .expect("ready");
        let b = s
            .transition(&b, BatchState::Delivering, "go", None)
            .expect("delivering");
        let b = s
            .transition(&b, BatchState::Delivered, "ok", None)
            .expect("delivered");
        assert_eq!(b.state, BatchState::Delivered);
        let names: Vec<String> = s
            .events(&b)
            .expect("ev")
            .into_iter()
            .map(|e| e.to)
            .collect();
        assert_eq!(names, ["assembling", "ready", "delivering", "delivered"]);
        assert_eq!(
            s.purge(Utc::now() + chrono::Duration::seconds(1))
                .expect("purge"),
            1
        );
    }

    #[test]
    fn import_is_all_or_nothing() {
        let (_d, s) = store();
        let err = s
            .import("d", &mut |push| {
                push(vec!["{\"a\":1}".into(), "{\"a\":2}".into()])?;
                push(vec!["{\"a\":3}".into()])?;
                Err("line 9: broken".into())
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("nothing stored: line 9: broken"),
            "{err}"
        );
        assert_eq!(s.pending("d").expect("p").count, 0);
        let (n, first, last) = s
            .import("d", &mut |push| {
                push((0..3).map(|i| format!("{{\"i\":{i}}}")).collect())
            })
            .expect("import");
        assert_eq!(n, 3);
        assert_eq!(last.zip(first).map(|(l, f)| l - f), Some(2));
        assert_eq!(s.pending("d").expect("p").count, 3);
    }

    #[test]
    fn reopen_keeps_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("q.db");
        {
            let s = SqliteStore::open(&p).expect("open");
            s.enqueue("d", vec!["{\"a\":1}".into(), "{\"a\":2}".into()])
                .expect("enqueue");
        }
        let s = SqliteStore::open(&p).expect("reopen");
        assert_eq!(s.pending("d").expect("p").count, 2);
    }
}
