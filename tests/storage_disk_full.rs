//! A full disk, for real: a small tmpfs mounted by the test holds the data
//! directory, a filler file takes the rest of its space, and the store must
//! refuse writes with a retryable error (503 over HTTP), keep serving
//! queries, resume writes by itself within seconds once space is freed, and
//! lose nothing it acknowledged, across a restart too. Starting on a full
//! disk serves reads instead of exiting.
//!
//! Mounting needs root (CI runs as root); where `mount` is not permitted the
//! tests fail, unless `TIDEMARK_SKIP_MOUNT=1` says to skip them.

mod common;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::http::{encode, get, metric, request_full};
use common::proc::{free_port, wait_ready, wait_until, Proc};
use common::*;
use prost::Message;
use tidemark::ingest::proto::prometheus as v1;
use tidemark::model::Sample;
use tidemark::storage::wal::{FsyncPolicy, WalOptions};
use tidemark::storage::{Db, Options};

/// A tmpfs of `size_mib` mounted on a fresh temporary directory, unmounted
/// on drop. Holds a process-wide lock meanwhile: a child forked by another
/// test (mount, the server) inherits every descriptor until it execs, which
/// would keep a removed file's space or a closed store's lock alive for a
/// moment; these tests count on both going at once.
struct Tmpfs {
    dir: tempfile::TempDir,
    _serial: std::sync::MutexGuard<'static, ()>,
}

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A tmpfs that cannot be mounted fails the test, unless
/// `TIDEMARK_SKIP_MOUNT=1` says to skip it (said on stderr).
fn skipped(why: &str) -> Option<Tmpfs> {
    let why = format!(
        "cannot mount a tmpfs ({}); the disk-full tests need root",
        why.trim()
    );
    assert!(
        std::env::var("TIDEMARK_SKIP_MOUNT").as_deref() == Ok("1"),
        "{why}; set TIDEMARK_SKIP_MOUNT=1 to skip"
    );
    eprintln!("SKIPPED (TIDEMARK_SKIP_MOUNT=1): {why}");
    None
}

impl Tmpfs {
    fn mount(size_mib: u32) -> Option<Tmpfs> {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs {
                dir,
                _serial: serial,
            }),
            Ok(o) => skipped(&String::from_utf8_lossy(&o.stderr)),
            Err(e) => skipped(&e.to_string()),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file that takes every free byte; returns its path.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = fs::File::create(&path).unwrap();
        let chunk = vec![0xA5u8; 64 << 10];
        let mut small = false;
        loop {
            let r = if small {
                f.write(&chunk[..512])
            } else {
                f.write(&chunk)
            };
            match r {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => {
                    if small {
                        break;
                    }
                    small = true;
                }
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Retries recovery as the server does (every second here, every 100 ms)
/// until the store takes writes again; panics after 10 s.
fn recovers(db: &Db) {
    wait_until(
        "the store to take writes again",
        Duration::from_secs(10),
        || db.recover_writes(),
    );
}

fn opts() -> Options {
    Options {
        wal: WalOptions {
            segment_size: 256 << 10,
            fsync: FsyncPolicy::Batch,
            compression: true,
        },
        ..options(FsyncPolicy::Batch)
    }
}

/// One sample for each of 20 series at `t`.
fn batch(t: i64) -> Vec<tidemark::storage::SeriesSamples> {
    (0..20)
        .map(|s| one(series_labels("full", s), vec![Sample::new(t, t as f64)]))
        .collect()
}

#[test]
fn wal_refuses_on_full_disk_and_resumes_when_space_returns() {
    let Some(fs_) = Tmpfs::mount(8) else { return };
    let data = fs_.path().join("data");
    let db = Db::open(&data, opts()).unwrap();
    let mut acked = Vec::new();
    for t in 0..50 {
        db.append(&batch(t * 1000)).unwrap();
        acked.push(t * 1000);
    }
    let filler = fs_.fill();
    // Writes fail (whole segments are preallocated by nothing: the next
    // write hits ENOSPC) and keep failing; nothing is acknowledged.
    let mut t = 50;
    let mut failed = false;
    for _ in 0..10_000 {
        match db.append(&batch(t * 1000)) {
            Ok(_) => acked.push(t * 1000),
            Err(_) => {
                failed = true;
                break;
            }
        }
        t += 1;
    }
    assert!(failed, "a full disk must fail a write");
    assert!(!db.is_writable());
    assert!(
        db.append(&batch(t * 1000)).is_err(),
        "refused until recovery"
    );
    assert!(!db.recover_writes(), "no space yet: still refused");
    // Reads go on.
    assert_eq!(dump(&db).len(), 20);

    fs::remove_file(&filler).unwrap();
    recovers(&db);
    assert!(db.is_writable());
    // The batch that failed is accepted on resend (as a sender retries).
    db.append(&batch(t * 1000)).unwrap();
    acked.push(t * 1000);
    for k in 1..20 {
        db.append(&batch((t + k) * 1000)).unwrap();
        acked.push((t + k) * 1000);
    }
    db.close().unwrap();
    drop(db);

    let db = Db::open(&data, opts()).unwrap();
    assert!(
        db.open_report().wal.damage.is_none(),
        "nothing half written was replayed"
    );
    for (series, samples) in dump(&db) {
        let ts: Vec<i64> = samples.iter().map(|s| s.0).collect();
        for a in &acked {
            assert!(ts.contains(a), "{series}: acknowledged sample at {a} lost");
        }
    }
}

#[test]
fn store_opens_read_only_on_a_full_disk() {
    let Some(fs_) = Tmpfs::mount(8) else { return };
    let data = fs_.path().join("data");
    {
        let db = Db::open(
            &data,
            Options {
                head_snapshot_on_close: false,
                ..opts()
            },
        )
        .unwrap();
        for t in 0..10 {
            db.append(&batch(t * 1000)).unwrap();
        }
        db.close().unwrap();
    }
    let filler = fs_.fill();
    let db = Db::open(&data, opts()).expect("a full disk must not stop the store from opening");
    assert!(!db.is_writable());
    assert_eq!(dump(&db).len(), 20, "reads are served");
    assert!(db.append(&batch(99_000)).is_err());
    fs::remove_file(&filler).unwrap();
    recovers(&db);
    db.append(&batch(99_000)).unwrap();
    db.close().unwrap();
    drop(db);
    let db = Db::open(&data, opts()).unwrap();
    assert!(dump(&db).values().all(|v| v.len() == 11));
}

fn write_body(t: i64) -> Vec<u8> {
    let req = v1::WriteRequest {
        timeseries: (0..20)
            .map(|n| v1::TimeSeries {
                labels: [("__name__", "disk_full"), ("i", &n.to_string())]
                    .iter()
                    .map(|(k, v)| v1::Label {
                        name: Bytes::copy_from_slice(k.as_bytes()),
                        value: Bytes::copy_from_slice(v.as_bytes()),
                    })
                    .collect(),
                samples: vec![v1::Sample {
                    value: t as f64,
                    timestamp: t,
                }],
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .unwrap()
}

/// Status and `Retry-After` of one remote write.
fn write(addr: &str, t: i64) -> (u16, Option<String>, String) {
    let r = request_full(
        addr,
        "POST",
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
            ("X-Prometheus-Remote-Write-Version", "0.1.0"),
        ],
        &write_body(t),
    )
    .expect("remote write reaches the server");
    (
        r.status,
        r.header("retry-after").map(str::to_string),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

/// Status, `Retry-After` and body of one OTLP/HTTP JSON export of a gauge
/// `disk_full_otlp` at `t` (ms).
fn otlp_write(addr: &str, t: i64) -> (u16, Option<String>, String) {
    let nanos = i128::from(t) * 1_000_000;
    let json = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[
            {{"key":"service.name","value":{{"stringValue":"disk"}}}}]}},
          "scopeMetrics":[{{"metrics":[
            {{"name":"disk_full_otlp","gauge":{{"dataPoints":[
              {{"timeUnixNano":"{nanos}","asDouble":1.5}}]}}}}]}}]}}]}}"#
    );
    let r = request_full(
        addr,
        "POST",
        "/api/v1/otlp/v1/metrics",
        &[("Content-Type", "application/json")],
        json.as_bytes(),
    )
    .expect("OTLP export reaches the server");
    (
        r.status,
        r.header("retry-after").map(str::to_string),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

/// Timestamps stored per series of `disk_full`.
fn stored(addr: &str, end_s: i64) -> Vec<Vec<i64>> {
    stored_of(addr, "disk_full", end_s)
}

/// Timestamps stored per series of `metric` in the hour before `end_s`.
fn stored_of(addr: &str, metric: &str, end_s: i64) -> Vec<Vec<i64>> {
    let (status, body) = get(
        addr,
        &format!(
            "/api/v1/query?query={}&time={end_s}",
            encode(&format!("{metric}[1h]"))
        ),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
                .collect()
        })
        .collect()
}

/// The binary with `--wal-fsync batch` (the default, which the shared
/// helper turns off) and small WAL segments.
fn start_durable(addr: &str, data: &Path) -> Proc {
    let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--listen", addr, "--log-level", "warn"])
        .args(["--wal-fsync", "batch", "--wal-segment-size", "262144"])
        .arg("--data-dir")
        .arg(data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child, "tidemark")
}

#[test]
fn server_answers_503_on_full_disk_and_resumes_by_itself() {
    let Some(fs_) = Tmpfs::mount(8) else { return };
    let data = fs_.path().join("data");
    let addr = format!("127.0.0.1:{}", free_port());
    let mut p = start_durable(&addr, &data);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    // Recent timestamps: the future limit is relative to the wall clock.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 600_000;
    let mut acked = Vec::new();
    for k in 0..20 {
        let t = base + k * 1000;
        assert_eq!(write(&addr, t).0, 204);
        acked.push(t);
    }
    let filler = fs_.fill();
    let mut k = 20;
    let mut refused = None;
    for _ in 0..20_000 {
        let t = base + k * 1000;
        let (status, retry, body) = write(&addr, t);
        match status {
            204 => acked.push(t),
            503 => {
                refused = Some((retry, body));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
        k += 1;
    }
    let (retry, body) = refused.expect("a full disk must answer 503");
    assert_eq!(retry.as_deref(), Some("1"), "503 carries Retry-After");
    assert!(body.contains("storage"), "says why: {body}");
    assert_eq!(metric(&addr, "tidemark_storage_writable"), Some(0.0));
    // Queries go on, and the node stays ready (it can serve them).
    let end_s = (base + k * 1000) / 1000 + 1;
    assert_eq!(stored(&addr, end_s).len(), 20);
    assert_eq!(get(&addr, "/-/ready").map(|r| r.0), Some(200));
    assert_eq!(
        write(&addr, base + k * 1000).0,
        503,
        "still refused while full"
    );
    let (status, retry, body) = otlp_write(&addr, base + k * 1000);
    assert_eq!(status, 503, "OTLP refused while full: {body}");
    assert_eq!(retry.as_deref(), Some("1"), "OTLP 503 carries Retry-After");

    fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    let t = base + k * 1000;
    wait_until("writes to resume", Duration::from_secs(30), || {
        write(&addr, t).0 == 204
    });
    eprintln!(
        "disk-full: writes resumed {} ms after space was freed",
        freed.elapsed().as_millis()
    );
    acked.push(t);
    assert_eq!(metric(&addr, "tidemark_storage_writable"), Some(1.0));
    let (status, _, body) = otlp_write(&addr, t);
    assert_eq!(status, 200, "OTLP resumes too: {body}");
    p.terminate(Duration::from_secs(30));

    let mut p = start_durable(&addr, &data);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    for series in stored(&addr, end_s + 1) {
        for a in &acked {
            assert!(series.contains(a), "acknowledged sample at {a} lost");
        }
    }
    assert_eq!(
        stored_of(&addr, "disk_full_otlp", end_s + 1),
        vec![vec![t]],
        "the acknowledged OTLP point survives the restart"
    );
    p.terminate(Duration::from_secs(30));
}

/// On a full disk head compaction cannot write its block; time retention
/// must still delete the blocks past it, since that is what frees space.
#[test]
fn retention_runs_when_head_compaction_fails_on_a_full_disk() {
    const HOUR: i64 = 3_600_000;
    const T0: i64 = 1_699_920_000_000;
    let Some(fs_) = Tmpfs::mount(8) else { return };
    let data = fs_.path().join("data");
    let db = Db::open(
        &data,
        Options {
            retention_ms: 6 * HOUR,
            ..opts()
        },
    )
    .unwrap();
    let write = |from: i64, to: i64| {
        let mut t = from;
        while t < to {
            let batch: Vec<_> = (0..5)
                .map(|s| one(series_labels("ret", s), vec![Sample::new(t, 1.0)]))
                .collect();
            db.append(&batch).unwrap();
            t += 60_000;
        }
    };
    write(T0, T0 + 8 * HOUR);
    db.compact().unwrap();
    let before = db.blocks();
    assert!(!before.is_empty(), "history was persisted");
    write(T0 + 8 * HOUR, T0 + 11 * HOUR);
    let _filler = fs_.fill();
    let deleted_before = db.storage_stats().retention_deleted_blocks;
    assert!(
        db.compact().is_err(),
        "writing the head block must fail on a full disk"
    );
    let after = db.blocks();
    assert!(
        db.storage_stats().retention_deleted_blocks > deleted_before,
        "retention deleted nothing: {before:?} -> {after:?}"
    );
    assert!(after
        .iter()
        .all(|m| T0 + 11 * HOUR - 60_000 - m.max_time < 6 * HOUR));
}

/// Stopping while the disk is still full is clean: every acknowledged write
/// was durable before its acknowledgement, so close reports no error (the
/// server then exits 0) and the next start serves all of it.
#[test]
fn closing_while_unwritable_is_clean_and_loses_nothing_acknowledged() {
    let Some(fs_) = Tmpfs::mount(8) else { return };
    let data = fs_.path().join("data");
    let db = Db::open(&data, opts()).unwrap();
    for t in 0..10 {
        db.append(&batch(t * 1000)).unwrap();
    }
    let filler = fs_.fill();
    let mut t = 10;
    while db.append(&batch(t * 1000)).is_ok() {
        t += 1;
        assert!(t < 100_000, "the disk never filled");
    }
    let acked = t;
    db.close()
        .expect("close on an unwritable WAL is not an error");
    drop(db);
    fs::remove_file(&filler).unwrap();
    let db = Db::open(&data, opts()).unwrap();
    for (series, samples) in dump(&db) {
        assert!(
            (0..acked).all(|k| samples.iter().any(|s| s.0 == k * 1000)),
            "{series}: acknowledged samples lost"
        );
    }
}
