//! A FUSE file system that forgets, on a power cut, everything that was not
//! made durable: the power-cut model of `tests/powercut.rs`, in the spirit
//! of LazyFS (Jepsen) and dm-log-writes (xfstests).
//!
//! The whole tree lives in memory. Each inode has two states:
//!
//! - **live**: what the running process sees: a file's bytes, a directory's
//!   entries. Every `write`, `create`, `mkdir`, `rename`, `unlink`, `link`
//!   and truncation changes only this.
//! - **durable**: what survives a power cut. `fsync`/`fdatasync` of a file
//!   copies its live bytes to its durable bytes; `fsync` of a directory
//!   copies its live entry set (names → inodes) to its durable entry set.
//!   Nothing else makes anything durable.
//!
//! [`PowerCut::materialize`] writes the durable tree to a real directory:
//! from the root's durable entries, each name leads to an inode; a file
//! gets its durable bytes (empty if it was never fsynced: its name was made
//! durable, its data was not), a directory its durable entries, recursively.
//! So a file whose data was fsynced but whose directory was not may be gone,
//! a rename is undone unless the directory (each one, across directories)
//! was fsynced, and a directory created by `create_dir_all` disappears with
//! everything in it unless its parent was fsynced. A renamed directory is
//! kept in one place only: the durable entry set last fsynced that holds it
//! (a rename is one journal transaction on real file systems).
//!
//! Torn writes: when asked, each file keeps, beyond its durable bytes, a
//! random prefix (cut at any byte) of the bytes appended since its last
//! fsync, as a disk that wrote some of the dirty pages in order would.
//!
//! What it does not model: reordering of unsynced writes inside a file
//! (only prefixes are kept), lost or corrupted *synced* data (bit rot),
//! metadata other than names and sizes (permissions, times), extended
//! attributes, and the opposite leniency of real file systems (ext4 commits
//! every pending metadata change at any fsync, so a missing directory fsync
//! is often hidden there: here it never is). flock is left to the kernel,
//! which handles it locally for a FUSE file system that does not claim it.
//!
//! A [`Lose`] mutation makes one kind of fsync a no-op, to prove the test
//! catches "the binary lost that fsync".

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

const ENOENT: i32 = 2;
const EIO: i32 = 5;
const EEXIST: i32 = 17;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const EINVAL: i32 = 22;
const ENOTEMPTY: i32 = 39;
const O_APPEND: i32 = 0o2000;
const O_TRUNC: i32 = 0o1000;
/// `RENAME_NOREPLACE`; other rename flags (exchange, whiteout) are refused.
const RENAME_NOREPLACE: u32 = 1;

/// Attribute and entry cache time: zero, so the kernel asks every time
/// (sizes change under it only through it, but this keeps it simple).
const TTL: Duration = Duration::ZERO;
const ROOT: u64 = 1;

/// A deliberately lost kind of fsync (the mutation test).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lose {
    /// Every fsync does what it should.
    Nothing,
    /// `fsync` of a directory is a no-op: created, renamed and removed
    /// entries never become durable.
    DirFsyncs,
    /// `fsync` of the WAL directory (named `wal`) is a no-op: new segments
    /// and checkpoints, and removals in it, never become durable.
    WalDirFsyncs,
    /// `fsync`/`fdatasync` of WAL segment files (`wal/NNNNNNNN`, not the
    /// files of checkpoints) is a no-op.
    WalSegmentFsyncs,
}

enum Kind {
    File {
        data: Vec<u8>,
        durable: Option<Vec<u8>>,
    },
    Dir {
        entries: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
}

struct Node {
    kind: Kind,
    perm: u16,
    mtime: SystemTime,
    /// Live links (names in live directories).
    nlink: u32,
    /// The name it was last given (for the [`Lose`] mutations).
    name: OsString,
}

/// Counts of what the binary asked for, for the summary.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct Counts {
    pub(crate) file_fsyncs: u64,
    pub(crate) dir_fsyncs: u64,
    pub(crate) writes: u64,
    /// Renames into place, by what they finish: blocks written
    /// (`*.tmp-for-creation`), blocks deleted (to `*.tmp-for-deletion`),
    /// WAL checkpoints, tombstones rewritten, the head's state at clean
    /// shutdowns (`head_metadata` after the head was persisted to blocks,
    /// or `head_snapshot` without `--storage.persist-head-on-shutdown`).
    pub(crate) blocks: u64,
    pub(crate) block_deletions: u64,
    pub(crate) checkpoints: u64,
    pub(crate) tombstones: u64,
    pub(crate) head_snapshots: u64,
}

impl Counts {
    pub(crate) fn add(&mut self, o: &Counts) {
        self.file_fsyncs += o.file_fsyncs;
        self.dir_fsyncs += o.dir_fsyncs;
        self.writes += o.writes;
        self.blocks += o.blocks;
        self.block_deletions += o.block_deletions;
        self.checkpoints += o.checkpoints;
        self.tombstones += o.tombstones;
        self.head_snapshots += o.head_snapshots;
    }

    fn count_rename(&mut self, from: &OsStr, to: &OsStr) {
        let (from, to) = (from.to_string_lossy(), to.to_string_lossy());
        if from.ends_with(".tmp-for-creation") {
            self.blocks += 1;
        } else if to.ends_with(".tmp-for-deletion") {
            self.block_deletions += 1;
        } else if to.starts_with("checkpoint.") {
            self.checkpoints += 1;
        } else if to == "tombstones" {
            self.tombstones += 1;
        } else if to == "head_snapshot" || to == "head_metadata" {
            self.head_snapshots += 1;
        }
    }
}

struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    lose: Lose,
    uid: u32,
    gid: u32,
    counts: Counts,
    /// Set at the cut: from then on every operation fails with EIO, as a
    /// machine without power answers nothing.
    dead: bool,
}

impl State {
    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let n = self.nodes.get(&ino)?;
        let (kind, size) = match &n.kind {
            Kind::File { data, .. } => (FileType::RegularFile, data.len() as u64),
            Kind::Dir { entries, .. } => (FileType::Directory, entries.len() as u64),
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: n.mtime,
            mtime: n.mtime,
            ctime: n.mtime,
            crtime: n.mtime,
            kind,
            perm: n.perm,
            nlink: n.nlink.max(1),
            uid: self.uid,
            gid: self.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    fn entries(&self, ino: u64) -> Result<&BTreeMap<OsString, u64>, i32> {
        match self.nodes.get(&ino).map(|n| &n.kind) {
            Some(Kind::Dir { entries, .. }) => Ok(entries),
            Some(_) => Err(ENOTDIR),
            None => Err(ENOENT),
        }
    }

    fn entries_mut(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, i32> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            Some(Kind::Dir { entries, .. }) => Ok(entries),
            Some(_) => Err(ENOTDIR),
            None => Err(ENOENT),
        }
    }

    fn lookup(&self, parent: u64, name: &OsStr) -> Result<u64, i32> {
        self.entries(parent)?.get(name).copied().ok_or(ENOENT)
    }

    fn new_node(&mut self, parent: u64, name: &OsStr, kind: Kind, perm: u16) -> Result<u64, i32> {
        if self.entries(parent)?.contains_key(name) {
            return Err(EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                kind,
                perm,
                mtime: SystemTime::now(),
                nlink: 1,
                name: name.to_os_string(),
            },
        );
        self.entries_mut(parent)?.insert(name.to_os_string(), ino);
        Ok(ino)
    }

    fn unlink_name(&mut self, parent: u64, name: &OsStr) -> Result<(), i32> {
        let ino = self.entries_mut(parent)?.remove(name).ok_or(ENOENT)?;
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.nlink = n.nlink.saturating_sub(1);
        }
        Ok(())
    }

    fn write(&mut self, ino: u64, offset: u64, buf: &[u8], append: bool) -> Result<u32, i32> {
        let n = self.nodes.get_mut(&ino).ok_or(ENOENT)?;
        let Kind::File { data, .. } = &mut n.kind else {
            return Err(EISDIR);
        };
        let off = if append { data.len() } else { offset as usize };
        if data.len() < off + buf.len() {
            data.resize(off + buf.len(), 0);
        }
        data[off..off + buf.len()].copy_from_slice(buf);
        n.mtime = SystemTime::now();
        self.counts.writes += 1;
        Ok(buf.len() as u32)
    }

    fn fsync_file(&mut self, ino: u64) -> Result<(), i32> {
        let lose = self.lose;
        let is_segment = lose == Lose::WalSegmentFsyncs && self.is_wal_segment(ino);
        let n = self.nodes.get_mut(&ino).ok_or(ENOENT)?;
        match &mut n.kind {
            Kind::File { data, durable } => {
                self.counts.file_fsyncs += 1;
                if !is_segment {
                    *durable = Some(data.clone());
                }
            }
            // fsync of a directory opened as a file (File::open(dir)).
            Kind::Dir { .. } => return self.fsync_dir(ino),
        }
        Ok(())
    }

    /// A file named by 8 digits directly in a directory named `wal`.
    fn is_wal_segment(&self, ino: u64) -> bool {
        let Some(n) = self.nodes.get(&ino) else {
            return false;
        };
        let name = n.name.to_string_lossy();
        name.len() == 8
            && name.bytes().all(|b| b.is_ascii_digit())
            && self.nodes.values().any(|d| {
                d.name == "wal"
                    && matches!(&d.kind, Kind::Dir { entries, .. } if entries.get(&n.name) == Some(&ino))
            })
    }

    fn fsync_dir(&mut self, ino: u64) -> Result<(), i32> {
        self.counts.dir_fsyncs += 1;
        let is_wal = self.nodes.get(&ino).is_some_and(|n| n.name == "wal");
        if self.lose == Lose::DirFsyncs || (self.lose == Lose::WalDirFsyncs && is_wal) {
            return Ok(());
        }
        let live = self.entries(ino)?.clone();
        // A directory moved here is no longer durable where it was.
        let moved: HashSet<u64> = live
            .values()
            .copied()
            .filter(|i| matches!(self.nodes.get(i).map(|n| &n.kind), Some(Kind::Dir { .. })))
            .collect();
        for (&other, n) in self.nodes.iter_mut() {
            if other == ino {
                continue;
            }
            if let Kind::Dir { durable, .. } = &mut n.kind {
                durable.retain(|_, i| !moved.contains(i));
            }
        }
        if let Some(Kind::Dir { durable, .. }) = self.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            *durable = live;
        }
        Ok(())
    }
}

/// The file system handed to FUSE, sharing its state with [`PowerCut`].
struct Fs(Arc<Mutex<State>>);

/// The handle the test keeps: mount, cut, materialize the durable tree.
pub(crate) struct PowerCut {
    state: Arc<Mutex<State>>,
    session: Option<fuser::BackgroundSession>,
    mountpoint: std::path::PathBuf,
}

impl PowerCut {
    /// Mounts a power-cut file system on `mountpoint` (an existing empty
    /// directory), holding a durable copy of the tree at `from` if given
    /// (what survived an earlier cut), else empty. Fails where FUSE is not
    /// available.
    pub(crate) fn mount(
        mountpoint: &Path,
        from: Option<&Path>,
        lose: Lose,
    ) -> std::io::Result<PowerCut> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(mountpoint)?;
        let mut st = State {
            nodes: HashMap::new(),
            next_ino: ROOT + 1,
            lose,
            uid: meta.uid(),
            gid: meta.gid(),
            counts: Counts::default(),
            dead: false,
        };
        st.nodes.insert(
            ROOT,
            Node {
                kind: Kind::Dir {
                    entries: BTreeMap::new(),
                    durable: BTreeMap::new(),
                },
                perm: 0o755,
                mtime: SystemTime::now(),
                nlink: 2,
                name: OsString::new(),
            },
        );
        if let Some(from) = from {
            load(&mut st, ROOT, from)?;
        }
        let state = Arc::new(Mutex::new(st));
        let session = fuser::spawn_mount2(
            Fs(state.clone()),
            mountpoint,
            &[MountOption::FSName("powercut".into()), MountOption::RW],
        )?;
        Ok(PowerCut {
            state,
            session: Some(session),
            mountpoint: mountpoint.to_path_buf(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power: every later operation fails with EIO and nothing
    /// more becomes durable. The test then kills the process using it.
    pub(crate) fn cut(&self) {
        self.lock().dead = true;
    }

    /// Unmounts (also done on drop).
    pub(crate) fn unmount(self) {}

    pub(crate) fn counts(&self) -> Counts {
        self.lock().counts
    }

    /// Writes the durable tree into `dst` (an existing empty directory).
    /// With `tear`, each file also keeps a prefix of its unsynced appends
    /// whose length `tear(unsynced_len)` picks.
    pub(crate) fn materialize(&self, dst: &Path, tear: &mut dyn FnMut(usize) -> usize) {
        let st = self.lock();
        let mut seen = HashSet::new();
        materialize_dir(&st, ROOT, dst, tear, &mut seen);
    }
}

/// Copies the tree at `src` into directory `ino`, all of it durable.
fn load(st: &mut State, ino: u64, src: &Path) -> std::io::Result<()> {
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let kind = if e.file_type()?.is_dir() {
            Kind::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            }
        } else {
            let data = std::fs::read(e.path())?;
            Kind::File {
                durable: Some(data.clone()),
                data,
            }
        };
        let is_dir = matches!(kind, Kind::Dir { .. });
        let name = e.file_name();
        let child = st
            .new_node(ino, &name, kind, if is_dir { 0o755 } else { 0o644 })
            .map_err(std::io::Error::from_raw_os_error)?;
        if let Some(Kind::Dir { entries, durable }) = st.nodes.get_mut(&ino).map(|n| &mut n.kind) {
            *durable = entries.clone();
        }
        if is_dir {
            load(st, child, &e.path())?;
        }
    }
    Ok(())
}

fn materialize_dir(
    st: &State,
    ino: u64,
    dst: &Path,
    tear: &mut dyn FnMut(usize) -> usize,
    seen: &mut HashSet<u64>,
) {
    if !seen.insert(ino) {
        return;
    }
    let Some(Kind::Dir { durable, .. }) = st.nodes.get(&ino).map(|n| &n.kind) else {
        return;
    };
    for (name, &child) in durable {
        let path = dst.join(name);
        match st.nodes.get(&child).map(|n| &n.kind) {
            Some(Kind::File { data, durable }) => {
                let mut bytes = durable.clone().unwrap_or_default();
                if data.len() > bytes.len() && data.starts_with(&bytes) {
                    let extra = tear(data.len() - bytes.len());
                    bytes.extend_from_slice(&data[bytes.len()..bytes.len() + extra]);
                }
                std::fs::write(&path, bytes).unwrap();
            }
            Some(Kind::Dir { .. }) => {
                if seen.contains(&child) {
                    continue;
                }
                std::fs::create_dir(&path).unwrap();
                materialize_dir(st, child, &path, tear, seen);
            }
            None => {}
        }
    }
}

impl Drop for PowerCut {
    fn drop(&mut self) {
        self.lock().dead = true;
        // A lazy unmount first: the session thread then sees the device
        // closed and ends, so joining it (dropping the session) cannot hang.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .stderr(std::process::Stdio::null())
            .status();
        drop(self.session.take());
    }
}

impl Fs {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T, i32>) -> Result<T, i32> {
        let mut st = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if st.dead {
            return Err(EIO);
        }
        f(&mut st)
    }
}

/// File handles: bit 0 says the file was opened with `O_APPEND`.
fn fh(flags: i32) -> u64 {
    u64::from(flags & O_APPEND != 0)
}

impl Filesystem for Fs {
    fn init(&mut self, _req: &Request<'_>, _config: &mut KernelConfig) -> Result<(), i32> {
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        match self.with(|st| {
            let ino = st.lookup(parent, name)?;
            st.attr(ino).ok_or(ENOENT)
        }) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.with(|st| st.attr(ino).ok_or(ENOENT)) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        match self.with(|st| {
            let n = st.nodes.get_mut(&ino).ok_or(ENOENT)?;
            if let Some(m) = mode {
                n.perm = (m & 0o7777) as u16;
            }
            if let Some(size) = size {
                let Kind::File { data, .. } = &mut n.kind else {
                    return Err(EISDIR);
                };
                data.resize(size as usize, 0);
                n.mtime = SystemTime::now();
            }
            st.attr(ino).ok_or(ENOENT)
        }) {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        match self.with(|st| {
            let kind = Kind::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
            };
            let ino = st.new_node(parent, name, kind, (mode & 0o7777) as u16)?;
            st.attr(ino).ok_or(ENOENT)
        }) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        match self.with(|st| {
            let kind = Kind::File {
                data: Vec::new(),
                durable: None,
            };
            let ino = st.new_node(parent, name, kind, (mode & 0o7777) as u16)?;
            st.attr(ino).ok_or(ENOENT)
        }) {
            Ok(a) => reply.created(&TTL, &a, 0, fh(flags), 0),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|st| {
            let ino = st.lookup(parent, name)?;
            if matches!(st.nodes[&ino].kind, Kind::Dir { .. }) {
                return Err(EISDIR);
            }
            st.unlink_name(parent, name)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        match self.with(|st| {
            let ino = st.lookup(parent, name)?;
            if !st.entries(ino)?.is_empty() {
                return Err(ENOTEMPTY);
            }
            st.unlink_name(parent, name)
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        match self.with(|st| {
            if flags & !RENAME_NOREPLACE != 0 {
                return Err(EINVAL);
            }
            let ino = st.lookup(parent, name)?;
            if let Ok(old) = st.lookup(newparent, newname) {
                if old == ino {
                    return Ok(());
                }
                if flags & RENAME_NOREPLACE != 0 {
                    return Err(EEXIST);
                }
                let old_is_dir = matches!(st.nodes[&old].kind, Kind::Dir { .. });
                let new_is_dir = matches!(st.nodes[&ino].kind, Kind::Dir { .. });
                if old_is_dir != new_is_dir {
                    return Err(if old_is_dir { EISDIR } else { ENOTDIR });
                }
                if old_is_dir && !st.entries(old)?.is_empty() {
                    return Err(ENOTEMPTY);
                }
                st.unlink_name(newparent, newname)?;
            }
            st.counts.count_rename(name, newname);
            st.entries_mut(parent)?.remove(name);
            st.entries_mut(newparent)?
                .insert(newname.to_os_string(), ino);
            if let Some(n) = st.nodes.get_mut(&ino) {
                n.name = newname.to_os_string();
            }
            Ok(())
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        match self.with(|st| {
            if st.entries(newparent)?.contains_key(newname) {
                return Err(EEXIST);
            }
            st.entries_mut(newparent)?
                .insert(newname.to_os_string(), ino);
            let n = st.nodes.get_mut(&ino).ok_or(ENOENT)?;
            n.nlink += 1;
            st.attr(ino).ok_or(ENOENT)
        }) {
            Ok(a) => reply.entry(&TTL, &a, 0),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        match self.with(|st| {
            let n = st.nodes.get_mut(&ino).ok_or(ENOENT)?;
            if flags & O_TRUNC != 0 {
                if let Kind::File { data, .. } = &mut n.kind {
                    data.clear();
                }
            }
            Ok(())
        }) {
            Ok(()) => reply.opened(fh(flags), 0),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let r = self.with(|st| match st.nodes.get(&ino).map(|n| &n.kind) {
            Some(Kind::File { data, .. }) => {
                let start = (offset as usize).min(data.len());
                let end = (start + size as usize).min(data.len());
                Ok(data[start..end].to_vec())
            }
            Some(Kind::Dir { .. }) => Err(EISDIR),
            None => Err(ENOENT),
        });
        match r {
            Ok(d) => reply.data(&d),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self.with(|st| st.write(ino, offset as u64, data, fh & 1 == 1)) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _lo: u64, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        match self.with(|st| st.fsync_file(ino)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        match self.with(|st| st.entries(ino).map(|_| ())) {
            Ok(()) => reply.opened(0, 0),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let r = self.with(|st| {
            let mut out = vec![
                (ino, FileType::Directory, OsString::from(".")),
                (ino, FileType::Directory, OsString::from("..")),
            ];
            for (name, &child) in st.entries(ino)? {
                let kind = match st.nodes.get(&child).map(|n| &n.kind) {
                    Some(Kind::Dir { .. }) => FileType::Directory,
                    _ => FileType::RegularFile,
                };
                out.push((child, kind, name.clone()));
            }
            Ok(out)
        });
        match r {
            Ok(list) => {
                for (i, (ino, kind, name)) in list.into_iter().enumerate().skip(offset as usize) {
                    if reply.add(ino, (i + 1) as i64, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        match self.with(|st| st.fsync_dir(ino)) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        // 16 GiB free in 4 KiB blocks: the store never sees a full disk.
        reply.statfs(4 << 20, 4 << 20, 4 << 20, 1 << 20, 1 << 20, 4096, 255, 4096);
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.with(|st| {
            let n = st.nodes.get_mut(&ino).ok_or(ENOENT)?;
            // FALLOC_FL_KEEP_SIZE reserves space only.
            if let (Kind::File { data, .. }, 0) = (&mut n.kind, mode & 1) {
                let end = (offset + length) as usize;
                if data.len() < end {
                    data.resize(end, 0);
                }
            }
            Ok(())
        }) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
