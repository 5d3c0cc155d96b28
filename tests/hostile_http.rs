//! Slow, idle and too many clients against the real binary: half-open
//! connections (headers never finished) do not stop `/-/healthy`
//! answering and are closed after `--web.read-header-timeout`; idle
//! keep-alive connections are closed after `--web.read-timeout`; past
//! `--web.max-connections` clients wait to be accepted instead of costing
//! memory; remote writes past `--write.max-concurrency` queue and then get
//! a retryable 503. Peak RSS stays bounded throughout.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::http::get;
use common::proc::{free_port, start_tidemark_with, wait_ready};

/// A fresh tidemark on a free port with `flags`, ready; its data dir is
/// kept alive by the returned guard.
fn start(flags: &[&str]) -> (tempfile::TempDir, String, common::proc::Proc) {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut p = start_tidemark_with(&addr, dir.path(), flags);
    wait_ready(&mut p, &addr, Duration::from_secs(30));
    (dir, addr, p)
}

/// An empty snappy remote write (no series): 204 when a slot is free.
fn empty_write(addr: &str) -> common::http::Response {
    common::http::request_full(
        addr,
        "POST",
        "/api/v1/write",
        &[
            ("Content-Type", "application/x-protobuf"),
            ("Content-Encoding", "snappy"),
        ],
        &snap::raw::Encoder::new().compress_vec(b"").unwrap(),
    )
    .expect("answered")
}

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(5))
        .expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Whether the server closes `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    let started = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
        if started.elapsed() > within {
            return false;
        }
    }
}

#[test]
fn half_open_connections_do_not_block_health_and_are_closed() {
    let (_dir, addr, mut p) = start(&["--web.read-header-timeout", "3s"]);
    let mut conns: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut s = connect(&addr);
            // Half the connections send half a request; half send nothing.
            if i % 2 == 0 {
                s.write_all(b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .unwrap();
            }
            s
        })
        .collect();
    let started = Instant::now();
    assert_eq!(
        get(&addr, "/-/healthy").map(|r| r.0),
        Some(200),
        "healthy answers beside 1000 half-open connections"
    );
    eprintln!(
        "hostile-http: /-/healthy answered in {} ms beside 1000 half-open connections",
        started.elapsed().as_millis()
    );
    // The server closes the ones that sent half a header.
    for s in conns.iter_mut().step_by(2).take(50) {
        assert!(
            closed_within(s, Duration::from_secs(20)),
            "a connection with unfinished headers stays open past the header timeout"
        );
    }
    p.assert_alive(&addr);
    let rss = p.peak_rss_kib().unwrap();
    eprintln!("hostile-http: peak RSS {} MiB", rss / 1024);
    assert!(rss < 512 * 1024, "peak RSS {rss} KiB");
    drop(conns);
    p.terminate(Duration::from_secs(30));
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_read_timeout() {
    let (_dir, addr, mut p) = start(&["--web.read-timeout", "2s"]);
    let mut s = connect(&addr);
    s.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The response arrives and the connection stays open (keep-alive) ...
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // ... until it has been idle for the read timeout.
    assert!(
        closed_within(&mut s, Duration::from_secs(15)),
        "an idle keep-alive connection stays open past --web.read-timeout"
    );
    p.terminate(Duration::from_secs(30));
}

#[test]
fn clients_past_max_connections_wait_their_turn() {
    let (_dir, addr, mut p) = start(&[
        "--web.max-connections",
        "8",
        "--web.read-header-timeout",
        "2s",
    ]);
    // Eight silent clients take every slot ...
    let hogs: Vec<TcpStream> = (0..8).map(|_| connect(&addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    // ... so the next client is not served until their headers time out.
    let started = Instant::now();
    let mut s = connect(&addr);
    s.write_all(b"GET /-/healthy HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{out}"
    );
    let waited = started.elapsed();
    eprintln!(
        "hostile-http: the 9th client was served after {} ms",
        waited.as_millis()
    );
    assert!(
        waited >= Duration::from_millis(1000),
        "served at once although every slot was taken ({waited:?})"
    );
    drop(hogs);
    p.assert_alive(&addr);
    p.terminate(Duration::from_secs(30));
}

#[test]
fn remote_writes_past_their_concurrency_queue_then_get_a_retryable_503() {
    let (_dir, addr, mut p) = start(&[
        "--write.max-concurrency",
        "1",
        "--write.max-queue-duration",
        "1s",
    ]);
    // One write whose body never finishes holds the only slot.
    let mut slow = connect(&addr);
    slow.write_all(
        b"POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n\
          Content-Encoding: snappy\r\nContent-Length: 1000\r\n\r\n\x00\x01",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let r = empty_write(&addr);
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 503, "{body}");
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(body.contains("--write.max-concurrency"), "{body}");
    // Once the slow one goes away, writes go through again.
    drop(slow);
    let mut ok = false;
    for _ in 0..50 {
        if empty_write(&addr).status == 204 {
            ok = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(ok, "writes resume once the slot is free");
    p.terminate(Duration::from_secs(30));
}
