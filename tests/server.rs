//! The server as a user starts it: health and readiness over HTTP, the
//! binary's flags, and a clean exit on SIGTERM.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use tidemark::api::{router, AppState};
use tidemark::storage::{Db, Options};
use tower::ServiceExt;

async fn get(app: axum::Router, path: &str) -> (StatusCode, String) {
    let resp = app
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn ready_only_after_storage_is_open() {
    let state = AppState::new();
    let app = router(state.clone());
    assert_eq!(get(app.clone(), "/-/healthy").await.0, StatusCode::OK);
    assert_eq!(
        get(app.clone(), "/-/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let dir = tempfile::tempdir().unwrap();
    let db = std::sync::Arc::new(Db::open(dir.path(), Options::default()).unwrap());
    let receiver = std::sync::Arc::new(tidemark::ingest::Receiver::new(
        db.clone(),
        Default::default(),
    ));
    state.set_ready(db, receiver);
    let (status, body) = get(app.clone(), "/-/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("Ready"));
    state.set_not_ready();
    assert_eq!(
        get(app, "/-/ready").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

/// Minimal HTTP/1.1 GET over loopback; returns the status code.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn binary_serves_health_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["--listen", &addr, "--log-level", "warn"])
        .env("TIDEMARK_DATA_DIR", dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(&addr, "/-/ready") != Some(200) {
        assert!(Instant::now() < deadline, "not ready within 30 s");
        assert!(child.try_wait().unwrap().is_none(), "server exited early");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(http_status(&addr, "/-/healthy"), Some(200));
    assert!(
        dir.path().join("data/wal").is_dir(),
        "data dir from TIDEMARK_DATA_DIR"
    );

    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "no exit within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "exit {status}: {err}");
}

#[test]
fn binary_help_documents_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--data-dir",
        "--wal-fsync",
        "--log-level",
        "TIDEMARK_LISTEN",
        "TIDEMARK_DATA_DIR",
        "TIDEMARK_WAL_FSYNC",
        "TIDEMARK_LOG_LEVEL",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}
