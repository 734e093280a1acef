//! A FUSE file system that can lose power: it keeps whatever was not made durable in memory,
//! and a cut drops that, leaving only what an fsync made durable.
//!
//! The model (what a disk with a volatile write cache under ext4 promises, taken at its word:
//! nothing that was not asked for):
//!
//! - **File data and size.** A write changes what readers of the mount see at once (it is in
//!   the "page cache"), but it becomes durable only when that file is fsync'd or fdatasync'd.
//!   Both make all of the file's data and its size durable (fdatasync leaves out timestamps,
//!   which this model does not keep). `sync_file_range`, `close` and the passing of time make
//!   nothing durable: on FUSE `sync_file_range` never reaches the file system at all, which is
//!   what it amounts to on a real disk (it neither flushes the drive's cache nor writes the
//!   metadata needed to find the data). A truncation is durable with the next fsync too.
//! - **Directory entries.** Creating, linking, renaming or unlinking a name changes the
//!   directory the mount shows, but it becomes durable only when that directory is fsync'd.
//!   fsync of a file does not make its own name durable (fsync(2): "an explicit fsync() on
//!   a file descriptor for the directory is also needed"). A rename between two directories
//!   needs both.
//!   A file whose name is durable but whose data was never fsync'd comes back empty (ext4's
//!   well-known zero-length file after a crash); a file fsync'd under a name that never became
//!   durable is lost with its data.
//! - **The cut** keeps exactly the durable state: every fsync that returned before it, nothing
//!   after it. It is a single point in the order of operations, because one thread serves every
//!   request and the cut takes the same lock. From then on every operation fails with EIO, so
//!   a server still running cannot make anything durable any more (the test kills it right
//!   after).
//!
//! Stricter than a real ext4 in two ways, both allowed by POSIX: ext4's journal commits every
//! ~5 s on its own and an fsync of a new file usually carries the file's name along with it; a
//! program must not count on either. Laxer in one way: a real disk may keep *part* of what was
//! not fsync'd (any subset of the unsynced writes, possibly torn at sector size); this model
//! keeps none of it, so it tests "what was fsync'd survives", not "what survives is
//! self-consistent whatever subset of unsynced writes lands". sled's log carries a checksum per
//! message for that second case.
//!
//! What survives is kept in a backing dir: `objects/<inode>` holds the durable bytes of each
//! file, `namespace.json` every durable directory entry (and modes). Files are written there on
//! fsync, the namespace on a directory fsync. Mounting again reads only that, so a remount
//! after a cut is the reboot.

use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, Session, SessionUnmounter,
    TimeOrNow,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

const PAGE: u64 = 4096;
const ROOT: u64 = 1;
/// Every change goes through the kernel, so what it caches stays true; after a remount it
/// caches nothing.
const TTL: Duration = Duration::from_secs(1);

type Errno = libc::c_int;

/// The durable directory tree, as written to `namespace.json`.
#[derive(Serialize, Deserialize, Default)]
struct Namespace {
    /// Every node a durable entry reaches from the root, by inode number.
    nodes: BTreeMap<u64, DurableNode>,
}

#[derive(Serialize, Deserialize)]
struct DurableNode {
    dir: bool,
    mode: u32,
    /// A directory's entries as of its last fsync.
    entries: BTreeMap<String, u64>,
}

/// A file's content as the mount shows it: the durable bytes (the object file, read up to
/// `kept`) under the pages written since the last fsync.
#[derive(Default)]
struct Pages {
    /// The size readers see.
    size: u64,
    /// The object file's bytes below this are still the file's; past it the file was truncated
    /// since the last fsync and reads zero where no page was written.
    kept: u64,
    /// Pages written since the last fsync, whole: bytes past `size` are zero.
    dirty: BTreeMap<u64, Vec<u8>>,
}

enum Body {
    File(Pages),
    Dir {
        entries: BTreeMap<OsString, u64>,
        /// The entries as of the last fsync of this directory.
        durable: BTreeMap<OsString, u64>,
        parent: u64,
    },
}

struct Inode {
    body: Body,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: SystemTime,
}

/// What a cut dropped.
#[derive(Debug, Default, Clone, Copy)]
pub struct Dropped {
    /// Files with writes or truncations that were not fsync'd.
    pub files: usize,
    /// Bytes in their unsynced pages.
    pub bytes: u64,
    /// Directories whose entries changed since their last fsync.
    pub dirs: usize,
}

struct State {
    backing: PathBuf,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    objects: HashMap<u64, File>,
    powered: bool,
    /// Set at the cut, for whoever must tell an error caused by the cut from any other.
    off: Arc<AtomicBool>,
    /// Cut the power right after this many more writes (`PowerCut::cut_after_writes`).
    writes_left: Option<u64>,
    /// What the cut dropped, once it happened.
    dropped: Option<Dropped>,
    fsyncs: u64,
}

impl State {
    /// Reads what survived in `backing` (nothing, the first time).
    fn load(backing: &Path) -> io::Result<State> {
        std::fs::create_dir_all(backing.join("objects"))?;
        let namespace: Namespace = match std::fs::read(backing.join("namespace.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(io::Error::other)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Namespace::default(),
            Err(e) => return Err(e),
        };
        let now = SystemTime::now();
        let mut inodes = HashMap::new();
        inodes.insert(
            ROOT,
            Inode {
                body: Body::Dir {
                    entries: BTreeMap::new(),
                    durable: BTreeMap::new(),
                    parent: ROOT,
                },
                mode: 0o755,
                uid: 0,
                gid: 0,
                mtime: now,
            },
        );
        let mut parents = HashMap::new();
        for (&ino, node) in &namespace.nodes {
            for &child in node.entries.values() {
                parents.insert(child, ino);
            }
        }
        for (&ino, node) in &namespace.nodes {
            let body = if node.dir {
                let entries: BTreeMap<OsString, u64> = node
                    .entries
                    .iter()
                    .map(|(name, &child)| (OsString::from(name), child))
                    .collect();
                Body::Dir {
                    durable: entries.clone(),
                    entries,
                    parent: parents.get(&ino).copied().unwrap_or(ROOT),
                }
            } else {
                let size = match std::fs::metadata(object_path(backing, ino)) {
                    Ok(metadata) => metadata.len(),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
                    Err(e) => return Err(e),
                };
                Body::File(Pages {
                    size,
                    kept: size,
                    dirty: BTreeMap::new(),
                })
            };
            let inode = Inode {
                body,
                mode: node.mode,
                uid: 0,
                gid: 0,
                mtime: now,
            };
            inodes.insert(ino, inode);
        }
        // Objects no durable name reaches are gone for good (a file fsync'd whose name never
        // was): drop them so their numbers are not mistaken for a later file's.
        let mut next_ino = ROOT + 1;
        for entry in std::fs::read_dir(backing.join("objects"))? {
            let entry = entry?;
            let ino = entry.file_name().to_string_lossy().parse::<u64>().ok();
            match ino {
                Some(ino) if inodes.contains_key(&ino) => {}
                _ => std::fs::remove_file(entry.path())?,
            }
        }
        if let Some(&highest) = inodes.keys().max() {
            next_ino = next_ino.max(highest + 1);
        }
        Ok(State {
            backing: backing.to_owned(),
            inodes,
            next_ino,
            objects: HashMap::new(),
            powered: true,
            off: Arc::new(AtomicBool::new(false)),
            writes_left: None,
            dropped: None,
            fsyncs: 0,
        })
    }

    fn inode(&self, ino: u64) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(libc::ENOENT)
    }

    fn inode_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(libc::ENOENT)
    }

    fn entries(&self, dir: u64) -> Result<&BTreeMap<OsString, u64>, Errno> {
        match &self.inode(dir)?.body {
            Body::Dir { entries, .. } => Ok(entries),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut BTreeMap<OsString, u64>, Errno> {
        match &mut self.inode_mut(dir)?.body {
            Body::Dir { entries, .. } => Ok(entries),
            Body::File(_) => Err(libc::ENOTDIR),
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let inode = self.inode(ino)?;
        let (kind, size, nlink) = match &inode.body {
            Body::File(pages) => (FileType::RegularFile, pages.size, 1),
            Body::Dir { .. } => (FileType::Directory, 0, 2),
        };
        Ok(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: inode.mtime,
            mtime: inode.mtime,
            ctime: inode.mtime,
            crtime: inode.mtime,
            kind,
            perm: (inode.mode & 0o7777) as u16,
            nlink,
            uid: inode.uid,
            gid: inode.gid,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    /// The object file holding `ino`'s durable bytes, opened once (None: it has none yet).
    fn object(&mut self, ino: u64, create: bool) -> Result<Option<&File>, Errno> {
        if !self.objects.contains_key(&ino) {
            let path = object_path(&self.backing, ino);
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .truncate(false)
                .open(path);
            match opened {
                Ok(file) => {
                    self.objects.insert(ino, file);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(errno(&e)),
            }
        }
        Ok(self.objects.get(&ino))
    }

    fn new_inode(&mut self, req: &Request<'_>, body: Body, mode: u32) -> u64 {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(
            ino,
            Inode {
                body,
                mode,
                uid: req.uid(),
                gid: req.gid(),
                mtime: SystemTime::now(),
            },
        );
        ino
    }

    fn add_entry(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        body: Body,
        mode: u32,
    ) -> Result<u64, Errno> {
        name.to_str().ok_or(libc::EINVAL)?;
        if self.entries(parent)?.contains_key(name) {
            return Err(libc::EEXIST);
        }
        let ino = self.new_inode(req, body, mode);
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        Ok(ino)
    }

    fn read(&mut self, ino: u64, offset: u64, len: u64) -> Result<Vec<u8>, Errno> {
        let (size, kept) = match &self.inode(ino)?.body {
            Body::File(pages) => (pages.size, pages.kept),
            Body::Dir { .. } => return Err(libc::EISDIR),
        };
        let end = offset.saturating_add(len).min(size);
        if offset >= end {
            return Ok(Vec::new());
        }
        let mut out = vec![0u8; (end - offset) as usize];
        let base_end = end.min(kept);
        if offset < base_end {
            if let Some(object) = self.object(ino, false)? {
                object
                    .read_exact_at(&mut out[..(base_end - offset) as usize], offset)
                    .map_err(|e| errno(&e))?;
            }
        }
        let Body::File(pages) = &self.inode(ino)?.body else {
            return Err(libc::EISDIR);
        };
        for (&page, bytes) in pages.dirty.range(offset / PAGE..=(end - 1) / PAGE) {
            let start = page * PAGE;
            let from = offset.max(start);
            let to = end.min(start + PAGE);
            out[(from - offset) as usize..(to - offset) as usize]
                .copy_from_slice(&bytes[(from - start) as usize..(to - start) as usize]);
        }
        Ok(out)
    }

    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if data.is_empty() {
            return Ok(());
        }
        let end = offset + data.len() as u64;
        for page in offset / PAGE..=(end - 1) / PAGE {
            let start = page * PAGE;
            let missing = match &self.inode(ino)?.body {
                Body::File(pages) => !pages.dirty.contains_key(&page),
                Body::Dir { .. } => return Err(libc::EISDIR),
            };
            if missing {
                let mut base = self.read(ino, start, PAGE)?;
                base.resize(PAGE as usize, 0);
                if let Body::File(pages) = &mut self.inode_mut(ino)?.body {
                    pages.dirty.insert(page, base);
                }
            }
            let inode = self.inode_mut(ino)?;
            inode.mtime = SystemTime::now();
            let Body::File(pages) = &mut inode.body else {
                return Err(libc::EISDIR);
            };
            let from = offset.max(start);
            let to = end.min(start + PAGE);
            if let Some(bytes) = pages.dirty.get_mut(&page) {
                bytes[(from - start) as usize..(to - start) as usize]
                    .copy_from_slice(&data[(from - offset) as usize..(to - offset) as usize]);
            }
            pages.size = pages.size.max(end);
        }
        Ok(())
    }

    fn truncate(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        let inode = self.inode_mut(ino)?;
        inode.mtime = SystemTime::now();
        let Body::File(pages) = &mut inode.body else {
            return Err(libc::EISDIR);
        };
        if size < pages.size {
            pages.dirty.retain(|&page, _| page * PAGE < size);
            if let Some(bytes) = pages.dirty.get_mut(&(size / PAGE)) {
                bytes[(size % PAGE) as usize..].fill(0);
            }
            pages.kept = pages.kept.min(size);
        }
        pages.size = size;
        Ok(())
    }

    /// fsync and fdatasync of a file: its bytes and size become durable.
    fn sync_file(&mut self, ino: u64) -> Result<(), Errno> {
        let (size, kept, dirty) = match &mut self.inode_mut(ino)?.body {
            Body::File(pages) => (pages.size, pages.kept, std::mem::take(&mut pages.dirty)),
            Body::Dir { .. } => return self.sync_dir(ino),
        };
        let object = self
            .object(ino, true)?
            .ok_or(libc::EIO)?
            .try_clone()
            .map_err(|e| errno(&e))?;
        object.set_len(kept).map_err(|e| errno(&e))?;
        for (page, bytes) in &dirty {
            let start = page * PAGE;
            if start < size {
                let len = (size - start).min(PAGE) as usize;
                object
                    .write_all_at(&bytes[..len], start)
                    .map_err(|e| errno(&e))?;
            }
        }
        object.set_len(size).map_err(|e| errno(&e))?;
        if let Body::File(pages) = &mut self.inode_mut(ino)?.body {
            pages.kept = size;
        }
        self.fsyncs += 1;
        Ok(())
    }

    /// fsync of a directory: its entries as they are now become durable.
    fn sync_dir(&mut self, ino: u64) -> Result<(), Errno> {
        match &mut self.inode_mut(ino)?.body {
            Body::Dir {
                entries, durable, ..
            } => *durable = entries.clone(),
            Body::File(_) => return Err(libc::ENOTDIR),
        }
        self.fsyncs += 1;
        self.write_namespace().map_err(|e| errno(&e))
    }

    /// Writes every durable entry reachable from the root to `namespace.json`.
    fn write_namespace(&self) -> io::Result<()> {
        let mut namespace = Namespace::default();
        let mut todo = vec![ROOT];
        let mut seen = HashSet::new();
        while let Some(ino) = todo.pop() {
            if !seen.insert(ino) {
                continue;
            }
            let Some(inode) = self.inodes.get(&ino) else {
                continue;
            };
            let node = match &inode.body {
                Body::Dir { durable, .. } => {
                    todo.extend(durable.values().copied());
                    DurableNode {
                        dir: true,
                        mode: inode.mode,
                        entries: durable
                            .iter()
                            .map(|(name, &child)| (name.to_string_lossy().into_owned(), child))
                            .collect(),
                    }
                }
                Body::File(_) => DurableNode {
                    dir: false,
                    mode: inode.mode,
                    entries: BTreeMap::new(),
                },
            };
            namespace.nodes.insert(ino, node);
        }
        let temporary = self.backing.join("namespace.json.new");
        std::fs::write(&temporary, serde_json::to_vec(&namespace)?)?;
        std::fs::rename(temporary, self.backing.join("namespace.json"))
    }

    /// Everything not durable is lost from here on; every later operation fails.
    fn cut(&mut self) -> Dropped {
        if self.powered {
            self.powered = false;
            self.off.store(true, Ordering::SeqCst);
            self.dropped = Some(self.dropped());
        }
        self.dropped.unwrap_or_default()
    }

    fn dropped(&self) -> Dropped {
        let mut dropped = Dropped::default();
        for inode in self.inodes.values() {
            match &inode.body {
                Body::File(pages) => {
                    if !pages.dirty.is_empty() || pages.kept < pages.size {
                        dropped.files += 1;
                        dropped.bytes += pages.dirty.len() as u64 * PAGE;
                    }
                }
                Body::Dir {
                    entries, durable, ..
                } => dropped.dirs += usize::from(entries != durable),
            }
        }
        dropped
    }

    fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        new_name.to_str().ok_or(libc::EINVAL)?;
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(libc::EINVAL);
        }
        let moved = *self.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
        let moved_is_dir = matches!(self.inode(moved)?.body, Body::Dir { .. });
        if let Some(&target) = self.entries(new_parent)?.get(new_name) {
            if target == moved {
                return Ok(());
            }
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(libc::EEXIST);
            }
            match (&self.inode(target)?.body, moved_is_dir) {
                (Body::Dir { entries, .. }, true) if !entries.is_empty() => {
                    return Err(libc::ENOTEMPTY)
                }
                (Body::Dir { .. }, false) => return Err(libc::EISDIR),
                (Body::File(_), true) => return Err(libc::ENOTDIR),
                _ => {}
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?
            .insert(new_name.to_owned(), moved);
        if let Body::Dir { parent, .. } = &mut self.inode_mut(moved)?.body {
            *parent = new_parent;
        }
        Ok(())
    }
}

fn object_path(backing: &Path, ino: u64) -> PathBuf {
    backing.join("objects").join(ino.to_string())
}

fn errno(e: &io::Error) -> Errno {
    e.raw_os_error().unwrap_or(libc::EIO)
}

/// The fuser face of [`State`]: every request takes the lock, and answers EIO once the power
/// is cut.
struct PowerCutFs {
    state: Arc<Mutex<State>>,
}

impl PowerCutFs {
    fn powered(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.powered {
            Ok(state)
        } else {
            Err(libc::EIO)
        }
    }
}

/// Runs `op` with the state, powered.
macro_rules! with_state {
    ($fs:expr, $reply:expr, |$state:ident| $body:expr) => {
        match $fs.powered().and_then(|guard| {
            #[allow(unused_mut)]
            let mut $state = guard;
            $body
        }) {
            Ok(value) => value,
            Err(code) => return $reply.error(code),
        }
    };
}

impl Filesystem for PowerCutFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let attr = with_state!(self, reply, |state| {
            let ino = *state.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
            state.attr(ino)
        });
        reply.entry(&TTL, &attr, 0);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let attr = with_state!(self, reply, |state| state.attr(ino));
        reply.attr(&TTL, &attr);
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let attr = with_state!(self, reply, |state| {
            if let Some(size) = size {
                state.truncate(ino, size)?;
            }
            let inode = state.inode_mut(ino)?;
            if let Some(mode) = mode {
                inode.mode = mode & 0o7777;
            }
            if let Some(uid) = uid {
                inode.uid = uid;
            }
            if let Some(gid) = gid {
                inode.gid = gid;
            }
            match mtime {
                Some(TimeOrNow::SpecificTime(time)) => inode.mtime = time,
                Some(TimeOrNow::Now) => inode.mtime = SystemTime::now(),
                None => {}
            }
            state.attr(ino)
        });
        reply.attr(&TTL, &attr);
    }

    fn mknod(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let attr = with_state!(self, reply, |state| {
            if mode & libc::S_IFMT != libc::S_IFREG {
                return Err(libc::EPERM);
            }
            let body = Body::File(Pages::default());
            let ino = state.add_entry(req, parent, name, body, mode & !umask & 0o7777)?;
            state.attr(ino)
        });
        reply.entry(&TTL, &attr, 0);
    }

    fn mkdir(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let attr = with_state!(self, reply, |state| {
            let body = Body::Dir {
                entries: BTreeMap::new(),
                durable: BTreeMap::new(),
                parent,
            };
            let ino = state.add_entry(req, parent, name, body, mode & !umask & 0o7777)?;
            state.attr(ino)
        });
        reply.entry(&TTL, &attr, 0);
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        with_state!(self, reply, |state| {
            let ino = *state.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
            if matches!(state.inode(ino)?.body, Body::Dir { .. }) {
                return Err(libc::EISDIR);
            }
            // The inode stays: an open handle may still use it, and a durable entry may still
            // name it until the directory is fsync'd.
            state.entries_mut(parent)?.remove(name);
            Ok(())
        });
        reply.ok();
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        with_state!(self, reply, |state| {
            let ino = *state.entries(parent)?.get(name).ok_or(libc::ENOENT)?;
            if !state.entries(ino)?.is_empty() {
                return Err(libc::ENOTEMPTY);
            }
            state.entries_mut(parent)?.remove(name);
            Ok(())
        });
        reply.ok();
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
        with_state!(self, reply, |state| state
            .rename(parent, name, newparent, newname, flags));
        reply.ok();
    }

    fn link(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let attr = with_state!(self, reply, |state| {
            newname.to_str().ok_or(libc::EINVAL)?;
            if matches!(state.inode(ino)?.body, Body::Dir { .. }) {
                return Err(libc::EPERM);
            }
            if state.entries(newparent)?.contains_key(newname) {
                return Err(libc::EEXIST);
            }
            // A second name for the same inode: durable with its directory's next fsync.
            state
                .entries_mut(newparent)?
                .insert(newname.to_owned(), ino);
            state.attr(ino)
        });
        reply.entry(&TTL, &attr, 0);
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        with_state!(self, reply, |state| state.inode(ino).map(|_| ()));
        reply.opened(0, 0);
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
        let offset = u64::try_from(offset).unwrap_or(0);
        let data = with_state!(self, reply, |state| state.read(
            ino,
            offset,
            u64::from(size)
        ));
        reply.data(&data);
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let offset = u64::try_from(offset).unwrap_or(0);
        with_state!(self, reply, |state| {
            state.write(ino, offset, data)?;
            // The write reached the page cache, then the power went: the writer sees it
            // succeed, nothing after it does.
            if let Some(left) = state.writes_left.as_mut() {
                *left = left.saturating_sub(1);
                if *left == 0 {
                    state.cut();
                }
            }
            Ok(())
        });
        reply.written(data.len() as u32);
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _owner: u64, reply: ReplyEmpty) {
        // close(2) makes nothing durable.
        with_state!(self, reply, |_state| Ok(()));
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        with_state!(self, reply, |state| state.sync_file(ino));
        reply.ok();
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        with_state!(self, reply, |state| state.entries(ino).map(|_| ()));
        reply.opened(0, 0);
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let listing = with_state!(self, reply, |state| {
            let parent = match &state.inode(ino)?.body {
                Body::Dir { parent, .. } => *parent,
                Body::File(_) => return Err(libc::ENOTDIR),
            };
            let mut listing = vec![
                (ino, FileType::Directory, OsString::from(".")),
                (parent, FileType::Directory, OsString::from("..")),
            ];
            for (name, &child) in state.entries(ino)? {
                let kind = match state.inode(child)?.body {
                    Body::Dir { .. } => FileType::Directory,
                    Body::File(_) => FileType::RegularFile,
                };
                listing.push((child, kind, name.clone()));
            }
            Ok(listing)
        });
        let skip = usize::try_from(offset).unwrap_or(0);
        for (index, (child, kind, name)) in listing.into_iter().enumerate().skip(skip) {
            if reply.add(child, (index + 1) as i64, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        with_state!(self, reply, |state| state.sync_dir(ino));
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        with_state!(self, reply, |_state| Ok(()));
        // Plenty of room: this file system tests power, not space.
        reply.statfs(
            1 << 24,
            1 << 23,
            1 << 23,
            1 << 20,
            1 << 19,
            PAGE as u32,
            255,
            PAGE as u32,
        );
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, _mask: i32, reply: ReplyEmpty) {
        with_state!(self, reply, |state| state.inode(ino).map(|_| ()));
        reply.ok();
    }

    fn create(
        &mut self,
        req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let attr = with_state!(self, reply, |state| {
            let body = Body::File(Pages::default());
            let ino = state.add_entry(req, parent, name, body, mode & !umask & 0o7777)?;
            state.attr(ino)
        });
        reply.created(&TTL, &attr, 0, 0, 0);
    }
}

/// A mounted [`PowerCutFs`].
pub struct PowerCut {
    state: Arc<Mutex<State>>,
    session: Option<Served>,
}

/// The session loop on its own thread and what unmounts it. fuser's `BackgroundSession` would
/// do, but its `join` unwraps the loop's result, and the kernel ends a session read with
/// ECONNABORTED as well as ENODEV depending on how the unmount races the loop: both are the end
/// of a session, not a failure.
struct Served {
    unmounter: SessionUnmounter,
    thread: std::thread::JoinHandle<io::Result<()>>,
}

impl PowerCut {
    /// Mounts at `mountpoint` what survived in `backing` (an empty file system the first
    /// time). Fails with what to install when FUSE is not there.
    pub fn mount(backing: &Path, mountpoint: &Path) -> PowerCut {
        let state = State::load(backing)
            .unwrap_or_else(|e| panic!("cannot read the backing dir {}: {e}", backing.display()));
        let state = Arc::new(Mutex::new(state));
        let fs = PowerCutFs {
            state: state.clone(),
        };
        let options = [MountOption::FSName("registrar-power-cut".into())];
        let mut session = Session::new(fs, mountpoint, &options).unwrap_or_else(|e| {
            panic!(
                "cannot mount the power-cut file system at {} ({e}): it needs /dev/fuse and \
                 either root or fusermount3; install it with `apt-get install fuse3`",
                mountpoint.display()
            )
        });
        let unmounter = session.unmount_callable();
        let thread = std::thread::spawn(move || session.run());
        PowerCut {
            state,
            session: Some(Served { unmounter, thread }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cuts the power now: from now on nothing becomes durable and every operation fails.
    /// Returns what was dropped.
    pub fn cut(&self) -> Dropped {
        self.lock().cut()
    }

    /// Cuts the power right after the `writes`-th write from now has been served: the cut
    /// lands where a program has written but not yet fsync'd, the moment a power cut can
    /// hurt. Cuts at once after `patience` if the writes do not come; returns what was
    /// dropped.
    pub async fn cut_after_writes(&self, writes: u64, patience: Duration) -> Dropped {
        self.lock().writes_left = Some(writes.max(1));
        let deadline = std::time::Instant::now() + patience;
        while std::time::Instant::now() < deadline {
            if let Some(dropped) = self.lock().dropped {
                return dropped;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.cut()
    }

    /// True from the cut on.
    pub fn off(&self) -> Arc<AtomicBool> {
        self.lock().off.clone()
    }

    /// How many fsyncs (of files and directories) the mount has served.
    pub fn fsyncs(&self) -> u64 {
        self.lock().fsyncs
    }

    /// Unmounts and waits for the session to end.
    pub fn unmount(mut self) {
        if let Some(mut served) = self.session.take() {
            served.unmounter.unmount().expect("unmount");
            let ended = served.thread.join().expect("the session thread panicked");
            if let Err(e) = ended {
                assert_eq!(
                    e.raw_os_error(),
                    Some(libc::ECONNABORTED),
                    "the session ended with {e}"
                );
            }
        }
    }
}

impl Drop for PowerCut {
    fn drop(&mut self) {
        // On a panic: the power goes and the mount with it, without waiting.
        self.lock().cut();
        if let Some(mut served) = self.session.take() {
            let _ = served.unmounter.unmount();
        }
    }
}
