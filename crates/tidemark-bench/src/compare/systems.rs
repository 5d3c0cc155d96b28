//! The three systems under comparison: how each is started on loopback
//! with a fresh data directory, how its readiness is seen, and how its
//! data is persisted and measured on disk (Prometheus and Tidemark: an
//! admin snapshot, `index` files vs `chunks/`; VictoriaMetrics:
//! `force_flush` + `force_merge`, `indexdb/` vs `data/`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::Client;
use crate::process::{dir_bytes, find_bin, Server};

/// A system under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum System {
    /// Debian's Prometheus (2.42), remote-write receiver on.
    Prometheus,
    /// Debian's VictoriaMetrics single-node (1.79).
    Victoriametrics,
    /// This project's release binary.
    Tidemark,
}

/// Where each system's binary is.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `prometheus`.
    pub prometheus: Option<String>,
    /// `victoria-metrics`.
    pub victoriametrics: Option<String>,
    /// `tidemark`.
    pub tidemark: Option<String>,
}

impl Binaries {
    /// Installed Debian binaries, and `tidemark` beside the running
    /// executable.
    pub fn discover() -> Self {
        let beside = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("tidemark")))
            .filter(|p| p.exists())
            .map(|p| p.display().to_string());
        Self {
            prometheus: find_bin("prometheus"),
            victoriametrics: find_bin("victoria-metrics"),
            tidemark: beside,
        }
    }

    /// The binary of `system`.
    pub fn of(&self, system: System) -> Option<&str> {
        match system {
            System::Prometheus => self.prometheus.as_deref(),
            System::Victoriametrics => self.victoriametrics.as_deref(),
            System::Tidemark => self.tidemark.as_deref(),
        }
    }
}

/// What a persist step measured.
#[derive(Debug, Clone)]
pub struct Persisted {
    /// Bytes of index files.
    pub index_bytes: u64,
    /// Bytes of chunk (sample) files.
    pub chunk_bytes: u64,
    /// How long the persist calls took.
    pub elapsed: Duration,
}

impl System {
    /// Column title.
    pub fn title(self) -> &'static str {
        match self {
            Self::Prometheus => "Prometheus",
            Self::Victoriametrics => "VictoriaMetrics",
            Self::Tidemark => "Tidemark",
        }
    }

    /// The readiness path (200 when queries and writes are served).
    pub fn ready_path(self) -> &'static str {
        match self {
            Self::Victoriametrics => "/health",
            _ => "/-/ready",
        }
    }

    /// The remote-write path.
    pub fn write_path(self) -> &'static str {
        "/api/v1/write"
    }

    /// The version line of `bin`.
    pub fn version(self, bin: &str) -> String {
        let flag = match self {
            Self::Victoriametrics => "-version",
            _ => "--version",
        };
        Command::new(bin)
            .arg(flag)
            .output()
            .ok()
            .map(|o| {
                let text = if o.stdout.is_empty() {
                    o.stderr
                } else {
                    o.stdout
                };
                String::from_utf8_lossy(&text)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .filter(|s| !s.is_empty())
            // Debian's victoria-metrics is built without version stamps:
            // ask dpkg which package version the binary came from.
            .or_else(|| {
                let pkg = Command::new("dpkg-query").args(["-S", bin]).output().ok()?;
                let name = String::from_utf8_lossy(&pkg.stdout)
                    .split(':')
                    .next()?
                    .trim()
                    .to_string();
                let v = Command::new("dpkg-query")
                    .args(["-W", "-f=${Version}", &name])
                    .output()
                    .ok()?;
                Some(format!(
                    "{name} {} (Debian package)",
                    String::from_utf8_lossy(&v.stdout).trim()
                ))
            })
            .unwrap_or_else(|| "unknown version".to_string())
    }

    /// The command that starts it on `addr` with data in `dir/data`
    /// (created by the system itself).
    pub fn command(self, bin: &str, addr: &str, dir: &Path) -> Command {
        let data = dir.join("data");
        let mut c = Command::new(bin);
        match self {
            Self::Prometheus => {
                // No scrape configs: only remote-written series.
                let _ = std::fs::write(
                    dir.join("prometheus.yml"),
                    "global:\n  scrape_interval: 1h\n",
                );
                c.arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address={addr}"))
                .args([
                    "--web.enable-remote-write-receiver",
                    "--web.enable-admin-api",
                    "--log.level=warn",
                ]);
            }
            Self::Victoriametrics => {
                // The response cache off (the others have none) and no
                // latency offset (the others show the newest samples).
                c.arg(format!("-storageDataPath={}", data.display()))
                    .arg(format!("-httpListenAddr={addr}"))
                    .args([
                        "-retentionPeriod=100y",
                        "-search.disableCache",
                        "-search.latencyOffset=0s",
                        "-loggerLevel=ERROR",
                    ]);
            }
            Self::Tidemark => {
                // Group commit (fsync before acknowledging) is the default
                // and stays on.
                c.args([
                    "--listen",
                    addr,
                    "--wal-fsync",
                    "batch",
                    "--enable-admin-api",
                    "--log-level",
                    "warn",
                ])
                .arg("--data-dir")
                .arg(&data);
            }
        }
        c
    }

    /// Persists everything the server holds and measures it on disk.
    ///
    /// # Errors
    /// A short reason (`snapshot failed: 503`) for the report.
    pub fn persist(self, server: &Server, dir: &Path) -> Result<Persisted, String> {
        let start = Instant::now();
        let mut client = Client::new(server.url(), Duration::from_secs(600));
        let data = dir.join("data");
        match self {
            Self::Prometheus | Self::Tidemark => {
                let r = client
                    .request("POST", "/api/v1/admin/tsdb/snapshot", &[], b"")
                    .map_err(|e| format!("snapshot failed: {e}"))?;
                if r.status != 200 {
                    return Err(format!("snapshot failed: {}", r.status));
                }
                let v: Value = serde_json::from_slice(&r.body)
                    .map_err(|_| "snapshot failed: answer not JSON".to_string())?;
                let name = v["data"]["name"]
                    .as_str()
                    .ok_or("snapshot failed: no data.name")?;
                let snap = data.join("snapshots").join(name);
                let (index_bytes, chunk_bytes) = block_bytes(&snap);
                if index_bytes + chunk_bytes == 0 {
                    return Err(format!("snapshot failed: {} is empty", snap.display()));
                }
                Ok(Persisted {
                    index_bytes,
                    chunk_bytes,
                    elapsed: start.elapsed(),
                })
            }
            Self::Victoriametrics => {
                for path in ["/internal/force_flush", "/internal/force_merge"] {
                    let r = client
                        .get(path)
                        .map_err(|e| format!("{path} failed: {e}"))?;
                    if r.status != 200 {
                        return Err(format!("{path} failed: {}", r.status));
                    }
                }
                // force_merge runs in the background: wait until no merge
                // is active and the size holds still for a second.
                let deadline = Instant::now() + Duration::from_secs(600);
                let mut last = u64::MAX;
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    let active = client
                        .get("/metrics")
                        .ok()
                        .and_then(|r| {
                            r.text()
                                .lines()
                                .find_map(|l| l.strip_prefix("vm_active_force_merges "))
                                .and_then(|v| v.trim().parse::<f64>().ok())
                        })
                        .unwrap_or(0.0);
                    let size = dir_bytes(&data.join("data")) + dir_bytes(&data.join("indexdb"));
                    if (active == 0.0 && size == last) || Instant::now() > deadline {
                        break;
                    }
                    last = size;
                }
                Ok(Persisted {
                    index_bytes: dir_bytes(&data.join("indexdb")),
                    chunk_bytes: dir_bytes(&data.join("data")),
                    elapsed: start.elapsed(),
                })
            }
        }
    }
}

/// `(index, chunks)` bytes of the blocks under a snapshot directory.
fn block_bytes(snapshot: &Path) -> (u64, u64) {
    let blocks: Vec<PathBuf> = std::fs::read_dir(snapshot)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    blocks.iter().fold((0, 0), |(i, c), b| {
        (
            i + dir_bytes(&b.join("index")),
            c + dir_bytes(&b.join("chunks")),
        )
    })
}
