//! Child processes for loopback end-to-end tests: the `tidemark` binary and
//! Debian's Prometheus, killed on drop, with bounded readiness waits.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;

// Not every test binary uses both.
#[allow(unused_imports)]
pub(crate) use tidemark_testkit::{find_bin, free_port};

/// The `tidemark` server binary: Cargo's own path in the server's tests,
/// the workspace build's in the bench tools' tests (which share this
/// module); `TIDEMARK_TEST_BIN` overrides both (e.g. a release build for
/// the figures some tests print).
pub(crate) fn tidemark_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("TIDEMARK_TEST_BIN") {
        return p.into();
    }
    match option_env!("CARGO_BIN_EXE_tidemark") {
        Some(path) => path.into(),
        None => tidemark_testkit::workspace_bin("tidemark"),
    }
}

/// Kills the child on drop so a failing test leaves nothing running.
pub(crate) struct Proc(pub(crate) Child, pub(crate) &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// Sends SIGTERM and waits (bounded) for a successful exit.
    pub(crate) fn terminate(&mut self, within: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.0.try_wait() {
                assert!(st.success(), "{} exited with {st}", self.1);
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("{} did not exit within {within:?} of SIGTERM", self.1);
    }
}

/// Polls `f` every 100 ms until it holds; panics after `timeout`.
pub(crate) fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until `GET /-/ready` answers 200, failing early if the child exits.
pub(crate) fn wait_ready(p: &mut Proc, addr: &str, timeout: Duration) {
    let what = p.1;
    let deadline = Instant::now() + timeout;
    while http::get(addr, "/-/ready").map(|r| r.0) != Some(200) {
        assert!(
            Instant::now() < deadline,
            "{what} not ready within {timeout:?}"
        );
        if let Ok(Some(st)) = p.0.try_wait() {
            panic!("{what} exited early with {st}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the `tidemark` binary on `addr` with data in `data_dir` (WAL
/// fsync off: these tests never crash it).
pub(crate) fn start_tidemark(addr: &str, data_dir: &Path) -> Proc {
    start_tidemark_with(addr, data_dir, &[])
}

/// As [`start_tidemark`], with `extra` flags.
pub(crate) fn start_tidemark_with(addr: &str, data_dir: &Path, extra: &[&str]) -> Proc {
    let child = Command::new(tidemark_bin())
        .args([
            "--listen",
            addr,
            "--log-level",
            "warn",
            "--wal-fsync",
            "none",
        ])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child, "tidemark")
}

/// Starts `tidemark <role>` (`store`, `query`, ...) on `addr` with `extra`
/// flags.
pub(crate) fn start_role(role: &'static str, addr: &str, extra: &[String]) -> Proc {
    let child = Command::new(tidemark_bin())
        .arg(role)
        .args(["--listen", addr, "--log-level", "warn"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Proc(child, role)
}

/// Starts Debian's Prometheus on `addr` with the remote-write receiver on
/// and no scrape targets, its TSDB in `dir/prom`.
pub(crate) fn start_prometheus(bin: &str, addr: &str, dir: &Path) -> Proc {
    start_prometheus_with(
        bin,
        addr,
        dir,
        "global:\n  scrape_interval: 1h\n",
        &["--web.enable-remote-write-receiver"],
    )
}

/// Starts Debian's Prometheus on `addr` with `config` as its YAML and
/// `extra` flags, its config and TSDB under `dir`.
pub(crate) fn start_prometheus_with(
    bin: &str,
    addr: &str,
    dir: &Path,
    config: &str,
    extra: &[&str],
) -> Proc {
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("prom").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Proc(child, "prometheus")
}

impl Proc {
    /// Peak resident set size of the child so far (`VmHWM` from
    /// `/proc/<pid>/status`), in KiB; `None` once it has exited.
    pub(crate) fn peak_rss_kib(&self) -> Option<u64> {
        peak_rss_kib(self.0.id())
    }

    /// Panics unless the child is still running and `/-/healthy` answers 200.
    pub(crate) fn assert_alive(&mut self, addr: &str) {
        if let Ok(Some(st)) = self.0.try_wait() {
            panic!("{} exited with {st}", self.1);
        }
        let status = http::get(addr, "/-/healthy").map(|r| r.0);
        assert_eq!(status, Some(200), "{} no longer answers /-/healthy", self.1);
    }
}

/// `VmHWM` of process `pid` in KiB.
pub(crate) fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
