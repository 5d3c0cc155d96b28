//! Server processes on loopback for the comparison and the end-to-end
//! tests: a child killed on drop, bounded readiness and stop waits, and the
//! process's CPU time and memory high-water mark from `/proc` (free ports
//! and installed-binary lookup come from `tidemark-testkit`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::error::{Error, Result};
use super::http::{Client, Url};

pub use tidemark_testkit::{find_bin, free_port};

/// A running server: the child (killed on drop) and its HTTP address.
#[derive(Debug)]
pub struct Server {
    child: Child,
    name: String,
    url: Url,
}

impl Server {
    /// Starts `cmd` (stdout discarded, stderr to `log` when given) as
    /// server `name` listening on `addr` (`host:port`).
    ///
    /// # Errors
    /// [`Error::Spawn`] or [`Error::File`] (log file).
    pub fn spawn(name: &str, mut cmd: Command, addr: &str, log: Option<&Path>) -> Result<Self> {
        let stderr = match log {
            Some(p) => Stdio::from(std::fs::File::create(p).map_err(|source| Error::File {
                what: "create log",
                path: p.to_path_buf(),
                source,
            })?),
            None => Stdio::null(),
        };
        let bin = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|source| Error::Spawn { bin, source })?;
        Ok(Self {
            child,
            name: name.to_string(),
            url: Url::parse(&format!("http://{addr}/"))?,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's base URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Polls `GET path` every 5 ms until it answers 200; returns how long
    /// that took (to within the poll: restart times are tens of ms, so a
    /// coarser poll would round them to its step).
    ///
    /// # Errors
    /// [`Error::Exited`] if the process ends, [`Error::NotReady`] after `within`.
    pub fn wait_ready(&mut self, path: &str, within: Duration) -> Result<Duration> {
        let start = Instant::now();
        let mut client = Client::new(&self.url, Duration::from_secs(5));
        loop {
            if client.get(path).is_ok_and(|r| r.status == 200) {
                return Ok(start.elapsed());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(Error::Exited {
                    system: self.name.clone(),
                    status,
                });
            }
            if start.elapsed() > within {
                return Err(Error::NotReady {
                    system: self.name.clone(),
                    within,
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM and waits for the exit; returns how long it took.
    /// Kills it after `within`.
    ///
    /// # Errors
    /// [`Error::NotReady`] when it had to be killed.
    pub fn terminate(&mut self, within: Duration) -> Result<Duration> {
        let start = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        while start.elapsed() < within {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Err(Error::NotReady {
            system: format!("{} (stopping)", self.name),
            within,
        })
    }

    /// Sends SIGKILL (no chance to flush or close anything, as in a
    /// crash or an OOM kill) and waits for the exit.
    ///
    /// # Errors
    /// [`Error::Kill`] when the signal cannot be sent or the wait fails.
    pub fn kill(&mut self) -> Result<()> {
        self.child
            .kill()
            .and_then(|()| self.child.wait().map(drop))
            .map_err(|source| Error::Kill {
                system: self.name.clone(),
                source,
            })
    }

    /// CPU time and memory of the process from `/proc`.
    pub fn stat(&self) -> Option<ProcStat> {
        ProcStat::read(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One reading of `/proc/<pid>/{stat,status}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStat {
    /// User + system CPU seconds of all threads so far.
    pub cpu_seconds: f64,
    /// Peak resident set size (`VmHWM`), bytes.
    pub hwm_bytes: u64,
    /// Current resident set size (`VmRSS`), bytes.
    pub rss_bytes: u64,
}

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`;
/// 100 on every Linux we know of, used when `getconf` is missing).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

impl ProcStat {
    /// Reads the figures of process `pid`; `None` when it is gone.
    pub fn read(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Self::parse(&stat, &status, clock_ticks())
    }

    /// Parses the two files' text (`ticks` clock ticks per second).
    pub fn parse(stat: &str, status: &str, ticks: f64) -> Option<Self> {
        // Fields after the command name (which may hold spaces): state is
        // field 3, utime 14, stime 15 (proc(5)).
        let rest = &stat[stat.rfind(')')? + 1..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = f.get(11)?.parse().ok()?;
        let stime: f64 = f.get(12)?.parse().ok()?;
        let kib = |key: &str| -> Option<u64> {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|k| k * 1024)
        };
        Some(Self {
            cpu_seconds: (utime + stime) / ticks,
            hwm_bytes: kib("VmHWM:")?,
            rss_bytes: kib("VmRSS:")?,
        })
    }
}

/// Total size of the regular files under `path` (0 when missing).
pub fn dir_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| dir_bytes(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_parse_reads_cpu_and_memory() {
        let stat = "1234 (my (odd) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 8 0 100 1000 200";
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        let s = ProcStat::parse(stat, status, 100.0).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.hwm_bytes, 2048 * 1024);
        assert_eq!(s.rss_bytes, 1024 * 1024);
    }

    #[test]
    fn proc_stat_read_self_is_sane() {
        let s = ProcStat::read(std::process::id()).unwrap();
        assert!(s.hwm_bytes >= s.rss_bytes && s.rss_bytes > 0);
    }
}
