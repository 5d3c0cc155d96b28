//! The size of a system's data directory (issue 21's disk figures): one
//! walk summing file lengths and allocated blocks, with named top-level
//! entries left out (`snapshots/`, which the persist step writes beside
//! the system's own data), and a background sampler that keeps the
//! largest size seen while ingest runs. Reads the directory only; never
//! writes or removes anything.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Top-level entries of a data directory that are not the system's own
/// data: the admin snapshots of the persist step (Prometheus, Tidemark;
/// VictoriaMetrics keeps its snapshots there too, unused here).
pub const EXCLUDED: &[&str] = &["snapshots"];

/// How often [`PeakSampler`] walks the directory.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// The size of a directory tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirSize {
    /// Sum of the regular files' lengths (`du --apparent-size -b`).
    pub bytes: u64,
    /// Sum of the blocks allocated to them (`du -B1`: holes not counted,
    /// preallocated space counted).
    pub allocated: u64,
}

impl DirSize {
    /// The larger of each field (for a peak over samples).
    pub fn max(self, other: Self) -> Self {
        Self {
            bytes: self.bytes.max(other.bytes),
            allocated: self.allocated.max(other.allocated),
        }
    }
}

/// The size of the tree under `path`, leaving out the top-level entries
/// named in `exclude`. Symbolic links are not followed; files that vanish
/// during the walk (a WAL segment deleted by a checkpoint, a merged part)
/// count as zero. A missing `path` is size zero.
pub fn dir_size(path: &Path, exclude: &[&str]) -> DirSize {
    let Ok(rd) = std::fs::read_dir(path) else {
        return file_size(path);
    };
    rd.filter_map(|e| e.ok())
        .filter(|e| !exclude.iter().any(|x| e.file_name() == *x))
        .map(|e| walk(&e.path()))
        .fold(DirSize::default(), |a, b| DirSize {
            bytes: a.bytes.saturating_add(b.bytes),
            allocated: a.allocated.saturating_add(b.allocated),
        })
}

fn file_size(path: &Path) -> DirSize {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => DirSize {
            bytes: m.len(),
            allocated: m.blocks().saturating_mul(512),
        },
        _ => DirSize::default(),
    }
}

fn walk(path: &Path) -> DirSize {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => dir_size(path, &[]),
        _ => file_size(path),
    }
}

/// The data directory at each stage of a system's run (issue 21's (a) to
/// (e)), without the [`EXCLUDED`] entries; `None` where the run did not
/// get that far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stages {
    /// (a) The largest size sampled during ingest and its settling.
    pub ingest_peak: Option<DirSize>,
    /// (b) At the end of ingest, before the persist step.
    pub ingest_end: Option<DirSize>,
    /// (c) After the persist step.
    pub persisted: Option<DirSize>,
    /// The `snapshots/` directory after the persist step (the admin
    /// snapshot of Prometheus and Tidemark; not part of (c)).
    pub snapshots: Option<DirSize>,
    /// (d) After SIGTERM, the process exited.
    pub stopped: Option<DirSize>,
    /// (e) After SIGKILL of the restarted (ready, queried) process.
    pub killed: Option<DirSize>,
}

impl Stages {
    /// (a) to (e) in order.
    pub fn in_order(&self) -> [Option<DirSize>; 5] {
        [
            self.ingest_peak,
            self.ingest_end,
            self.persisted,
            self.stopped,
            self.killed,
        ]
    }
}

/// Walks a directory every [`SAMPLE_EVERY`] on its own thread and keeps
/// the largest size seen, until [`PeakSampler::finish`] (or drop, which
/// stops the thread without waiting for it).
#[derive(Debug)]
pub struct PeakSampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<DirSize>>,
}

impl PeakSampler {
    /// Starts sampling `path` (without the [`EXCLUDED`] entries).
    pub fn start(path: &Path) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let path = path.to_path_buf();
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = DirSize::default();
            loop {
                peak = peak.max(dir_size(&path, EXCLUDED));
                if flag.load(Ordering::Relaxed) {
                    return peak;
                }
                std::thread::sleep(SAMPLE_EVERY);
            }
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops sampling (after one last walk) and returns the peak; `None`
    /// if the sampling thread panicked.
    pub fn finish(mut self) -> Option<DirSize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take()?.join().ok()
    }
}

impl Drop for PeakSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, len: usize) {
        std::fs::create_dir_all(path.parent().expect("test paths have a parent")).unwrap();
        std::fs::write(path, vec![7u8; len]).unwrap();
    }

    #[test]
    fn dir_size_sums_nested_files_and_leaves_out_excluded_top_level_entries() {
        let d = tempfile::tempdir().unwrap();
        write(&d.path().join("wal/00000000"), 1000);
        write(&d.path().join("wal/checkpoint.1/00000000"), 234);
        write(&d.path().join("01ABC/index"), 4096);
        write(&d.path().join("lock"), 0);
        write(&d.path().join("snapshots/2026/01ABC/index"), 50_000);
        // Only a top-level `snapshots` is left out.
        write(&d.path().join("01ABC/snapshots"), 10);
        let s = dir_size(d.path(), EXCLUDED);
        assert_eq!(s.bytes, 1000 + 234 + 4096 + 10);
        assert!(s.allocated >= 4096, "{s:?}");
        assert_eq!(
            dir_size(d.path(), &[]).bytes,
            1000 + 234 + 4096 + 10 + 50_000
        );
        assert_eq!(
            dir_size(&d.path().join("wal/00000000"), EXCLUDED).bytes,
            1000
        );
    }

    #[test]
    fn dir_size_of_a_missing_path_is_zero_and_links_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(
            dir_size(&d.path().join("nope"), EXCLUDED),
            DirSize::default()
        );
        write(&d.path().join("elsewhere/big"), 9999);
        std::fs::create_dir(d.path().join("data")).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), d.path().join("data/link")).unwrap();
        assert_eq!(dir_size(&d.path().join("data"), EXCLUDED).bytes, 0);
    }

    #[test]
    fn dir_size_counts_holes_in_length_but_not_in_allocation() {
        let d = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(d.path().join("sparse")).unwrap();
        f.set_len(64 << 20).unwrap();
        let s = dir_size(d.path(), EXCLUDED);
        assert_eq!(s.bytes, 64 << 20);
        assert!(s.allocated < 1 << 20, "{s:?}");
    }

    #[test]
    fn peak_sampler_keeps_the_largest_size_seen() {
        let d = tempfile::tempdir().unwrap();
        let sampler = PeakSampler::start(d.path());
        write(&d.path().join("big"), 100_000);
        std::thread::sleep(SAMPLE_EVERY * 3);
        std::fs::remove_file(d.path().join("big")).unwrap();
        write(&d.path().join("small"), 10);
        let peak = sampler.finish().unwrap();
        assert_eq!(peak.bytes, 100_000);
    }
}
