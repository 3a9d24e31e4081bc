//! A file system that forgets what was never synced: the test's stand-in for a power cut.
//!
//! SIGKILL shows crash consistency only: the kernel's page cache outlives the process, so
//! every `write` that returned is on "disk" afterwards. A power cut keeps only what was made
//! durable with `fsync`/`fdatasync`. [`LazyFs`] (the technique of LazyFS, Ramos et al.,
//! EuroSys '24) is a FUSE file system over a real directory that keeps every written page in
//! its own memory until the file is synced; [`LazyFs::power_cut`] unmounts it and throws the
//! unsynced pages away, so what the next mount sees is exactly what a disk that honours fsync
//! would hold after the power came back.
//!
//! What it models, and what it does not:
//! - File data and size are lost unless synced (per file: `fsync` of one file syncs that file).
//! - Directory operations (create, unlink, rename, mkdir) reach the directory at once, as on a
//!   file system that journals metadata synchronously; a file created and never synced comes
//!   back empty, as a delayed-allocation file system leaves it.
//! - A cut can be armed to happen at the n-th write ([`LazyFs::fail_after_writes`]): from then
//!   on every operation fails with EIO (the disk is gone) until the test kills the processes
//!   and calls [`LazyFs::power_cut`]. This lands cuts inside a transaction's writes, between a
//!   write and its fsync, and inside a checkpoint, which a cut at a random instant rarely does.
//! - fsync can be made slow ([`LazyFs::set_fsync_delay`]).
//! - Optionally some unsynced pages reach the disk anyway, as a drive's own write-back may
//!   ([`LazyFs::power_cut`]'s `seed`); pages are 4 KiB and never torn.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};

const PAGE: u64 = 4096;
/// The kernel must ask us about every size and name: our sizes are not the directory's.
const TTL: Duration = Duration::ZERO;

/// A mounted [`LazyFs`]: its files live in `base`, and in memory until synced.
pub struct LazyFs {
    mountpoint: PathBuf,
    base: PathBuf,
    shared: Arc<Shared>,
    session: Option<fuser::BackgroundSession>,
    _dirs: tempfile::TempDir,
}

/// What a power cut threw away.
#[derive(Debug, Default, Clone, Copy)]
pub struct Cut {
    /// Unsynced pages dropped.
    pub pages_lost: u64,
    /// Unsynced pages that reached the disk anyway (the drive's own write-back).
    pub pages_kept: u64,
    /// Files whose unsynced size change was dropped.
    pub files_touched: u64,
}

impl LazyFs {
    /// Mounts a new, empty LazyFs (needs root and `/dev/fuse`).
    pub fn mount() -> LazyFs {
        let dirs = tempfile::tempdir().expect("temp dir");
        let base = dirs.path().join("disk");
        let mountpoint = dirs.path().join("mnt");
        std::fs::create_dir(&base).expect("create the disk directory");
        std::fs::create_dir(&mountpoint).expect("create the mount point");
        let shared = Arc::new(Shared::default());
        let session = spawn(&base, &mountpoint, &shared);
        LazyFs {
            mountpoint,
            base,
            shared,
            session: Some(session),
            _dirs: dirs,
        }
    }

    /// Where the file system is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Writes every unsynced page, as `sync(1)` does: what was set up before the test's
    /// faults begin is on the disk, as it would be on a station that has run a while.
    pub fn sync_all(&self) {
        let mut state = self.shared.lock();
        let inos: Vec<u64> = state.cache.keys().copied().collect();
        for ino in inos {
            state.sync(ino).expect("sync a file to the disk directory");
        }
    }

    /// Makes every fsync take `delay` (other operations go on meanwhile).
    pub fn set_fsync_delay(&self, delay: Duration) {
        self.shared
            .fsync_delay_us
            .store(delay.as_micros() as u64, Ordering::SeqCst);
    }

    /// Arms a cut: after `n` more writes (of any file), every operation fails with EIO.
    pub fn fail_after_writes(&self, n: u64) {
        self.shared.writes_left.store(n.max(1), Ordering::SeqCst);
    }

    /// The power goes now: every operation fails with EIO until [`LazyFs::power_cut`].
    pub fn fail_now(&self) -> SystemTime {
        let mut state = self.shared.lock();
        *state.dead_at.get_or_insert_with(SystemTime::now)
    }

    /// Waits until an armed cut has happened; returns when it did.
    pub fn wait_failed(&self, timeout: Duration) -> SystemTime {
        let state = self.shared.lock();
        let (state, _) = self
            .shared
            .died
            .wait_timeout_while(state, timeout, |s| s.dead_at.is_none())
            .expect("LazyFs state lock");
        state
            .dead_at
            .unwrap_or_else(|| panic!("the armed power cut did not happen within {timeout:?}"))
    }

    /// Unmounts, drops what was never synced (keeping a pseudo-random half of the unsynced
    /// pages when `seed` is given) and mounts again over the same directory: the machine
    /// rebooted. Every process with files open here must have been killed first.
    pub fn power_cut(&mut self, seed: Option<u64>) -> Cut {
        self.shared
            .lock()
            .dead_at
            .get_or_insert_with(SystemTime::now);
        self.unmount();
        let cut = self.shared.lock().drop_unsynced(seed);
        self.shared.writes_left.store(0, Ordering::SeqCst);
        self.session = Some(spawn(&self.base, &self.mountpoint, &self.shared));
        cut
    }
}

impl LazyFs {
    /// Pulls the plug: aborts the FUSE connection (whatever is still open fails with
    /// ENOTCONN, as a dead disk would), detaches the mount and waits for its thread.
    fn unmount(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        if let Some(conn) = connection_of(&self.mountpoint) {
            // fusectl is where the kernel offers the abort; mount it if no one has.
            let abort = format!("/sys/fs/fuse/connections/{conn}/abort");
            if !Path::new(&abort).exists() {
                let _ = std::process::Command::new("mount")
                    .args(["-t", "fusectl", "none", "/sys/fs/fuse/connections"])
                    .status();
            }
            let _ = std::fs::write(&abort, "1");
        }
        let path = std::ffi::CString::new(self.mountpoint.as_os_str().as_encoded_bytes())
            .expect("a mount point without NUL");
        // SAFETY: umount2(2) on a NUL-terminated path.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
        let _ = session.join();
    }
}

/// The FUSE connection number (the mount's minor device number) from /proc/self/mountinfo.
fn connection_of(mountpoint: &Path) -> Option<u32> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.to_str()?;
    info.lines().rev().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(4) == Some(&want))
            .then(|| fields.get(2)?.split(':').nth(1)?.parse().ok())
            .flatten()
    })
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        self.unmount();
    }
}

fn spawn(base: &Path, mountpoint: &Path, shared: &Arc<Shared>) -> fuser::BackgroundSession {
    *shared.lock() = State::new(base);
    let mut config = fuser::Config::default();
    // Several threads, so that a slow fsync does not stall every other operation.
    config.n_threads = Some(4);
    config.mount_options = vec![
        fuser::MountOption::FSName("lazyfs".into()),
        fuser::MountOption::Subtype("trellis-tests".into()),
    ];
    fuser::spawn_mount(
        Fs {
            shared: shared.clone(),
        },
        mountpoint,
        &config,
    )
    .unwrap_or_else(|e| {
        panic!(
            "mount LazyFs on {} (needs root and /dev/fuse): {e}",
            mountpoint.display()
        )
    })
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    died: Condvar,
    /// Writes until an armed cut; 0 when none is armed.
    writes_left: AtomicU64,
    /// What every fsync takes, in microseconds (a slow card, a failing disk).
    fsync_delay_us: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct State {
    base: PathBuf,
    /// Inode numbers of the paths the kernel has looked up (relative to `base`; root is "").
    paths: HashMap<u64, PathBuf>,
    inos: HashMap<PathBuf, u64>,
    next_ino: u64,
    /// Open files in the disk directory, one per inode.
    files: HashMap<u64, File>,
    /// What was written and not synced, per inode.
    cache: HashMap<u64, Dirty>,
    dead_at: Option<SystemTime>,
}

/// A file's unsynced state: its size, and the pages written since the last sync.
struct Dirty {
    size: u64,
    /// Bytes of the disk file at or past this offset are stale (the file was truncated to
    /// here since the last sync) and read as zeros.
    floor: u64,
    pages: BTreeMap<u64, Box<[u8]>>,
}

impl State {
    fn new(base: &Path) -> State {
        let mut state = State {
            base: base.to_path_buf(),
            next_ino: 2,
            ..State::default()
        };
        state.paths.insert(1, PathBuf::new());
        state.inos.insert(PathBuf::new(), 1);
        state
    }

    fn real(&self, ino: u64) -> Result<PathBuf, Errno> {
        let rel = self.paths.get(&ino).ok_or(Errno::ENOENT)?;
        Ok(self.base.join(rel))
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, Errno> {
        Ok(self.paths.get(&parent).ok_or(Errno::ENOENT)?.join(name))
    }

    fn ino_of(&mut self, rel: &Path) -> u64 {
        if let Some(&ino) = self.inos.get(rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inos.insert(rel.to_path_buf(), ino);
        self.paths.insert(ino, rel.to_path_buf());
        ino
    }

    fn forget_path(&mut self, rel: &Path) {
        if let Some(ino) = self.inos.remove(rel) {
            self.paths.remove(&ino);
            self.files.remove(&ino);
            self.cache.remove(&ino);
        }
    }

    fn attr(&mut self, ino: u64) -> Result<FileAttr, Errno> {
        let meta = std::fs::symlink_metadata(self.real(ino)?).map_err(Errno::from)?;
        let size = self.cache.get(&ino).map_or(meta.len(), |d| d.size);
        let kind = if meta.is_dir() {
            FileType::Directory
        } else if meta.file_type().is_symlink() {
            FileType::Symlink
        } else {
            FileType::RegularFile
        };
        let time = |secs: i64, nsecs: i64| {
            SystemTime::UNIX_EPOCH + Duration::new(secs.max(0) as u64, nsecs.max(0) as u32)
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: time(meta.ctime(), meta.ctime_nsec()),
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    fn file(&mut self, ino: u64) -> Result<&File, Errno> {
        if !self.files.contains_key(&ino) {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.real(ino)?)
                .map_err(Errno::from)?;
            self.files.insert(ino, file);
        }
        Ok(&self.files[&ino])
    }

    /// The file's unsynced state, made on first use from the disk file.
    fn dirty(&mut self, ino: u64) -> Result<&mut Dirty, Errno> {
        if !self.cache.contains_key(&ino) {
            let len = self.file(ino)?.metadata().map_err(Errno::from)?.len();
            self.cache.insert(
                ino,
                Dirty {
                    size: len,
                    floor: len,
                    pages: BTreeMap::new(),
                },
            );
        }
        Ok(self.cache.get_mut(&ino).expect("just inserted"))
    }

    /// Page `index` as the file now reads: cached, or from the disk file (zeros past the
    /// floor).
    fn page(&mut self, ino: u64, index: u64) -> Result<Box<[u8]>, Errno> {
        if let Some(page) = self.cache.get(&ino).and_then(|d| d.pages.get(&index)) {
            return Ok(page.clone());
        }
        let floor = self.cache.get(&ino).map_or(u64::MAX, |d| d.floor);
        let mut page = vec![0u8; PAGE as usize].into_boxed_slice();
        let start = index * PAGE;
        if start < floor {
            let want = (floor - start).min(PAGE) as usize;
            let file = self.file(ino)?;
            let mut got = 0;
            while got < want {
                match file.read_at(&mut page[got..want], start + got as u64) {
                    Ok(0) => break,
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Errno::from(e)),
                }
            }
        }
        Ok(page)
    }

    fn read(&mut self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let len = match self.cache.get(&ino) {
            Some(d) => d.size,
            None => self.file(ino)?.metadata().map_err(Errno::from)?.len(),
        };
        let end = (offset + u64::from(size)).min(len);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let page = self.page(ino, at / PAGE)?;
            let from = (at % PAGE) as usize;
            let to = ((end - at) as usize + from).min(PAGE as usize);
            out.extend_from_slice(&page[from..to]);
            at += (to - from) as u64;
        }
        Ok(out)
    }

    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.dirty(ino)?;
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let index = at / PAGE;
            let mut page = self.page(ino, index)?;
            let from = (at % PAGE) as usize;
            let n = rest.len().min(PAGE as usize - from);
            page[from..from + n].copy_from_slice(&rest[..n]);
            let dirty = self.dirty(ino)?;
            dirty.pages.insert(index, page);
            rest = &rest[n..];
            at += n as u64;
        }
        let dirty = self.dirty(ino)?;
        dirty.size = dirty.size.max(offset + data.len() as u64);
        Ok(())
    }

    fn truncate(&mut self, ino: u64, size: u64) -> Result<(), Errno> {
        // The partial page at the new end must read zeros past it if the file grows again.
        let last = size / PAGE;
        let page = (!size.is_multiple_of(PAGE))
            .then(|| self.page(ino, last))
            .transpose()?;
        let dirty = self.dirty(ino)?;
        dirty.pages.retain(|&index, _| index * PAGE < size);
        if let Some(mut page) = page {
            page[(size % PAGE) as usize..].fill(0);
            dirty.pages.insert(last, page);
        }
        dirty.floor = dirty.floor.min(size);
        dirty.size = size;
        Ok(())
    }

    /// Makes the file's unsynced state durable: the disk file becomes what the file reads.
    fn sync(&mut self, ino: u64) -> Result<(), Errno> {
        let Some(dirty) = self.cache.remove(&ino) else {
            return Ok(());
        };
        let result = self.write_through(ino, &dirty);
        if result.is_err() {
            self.cache.insert(ino, dirty);
        }
        result
    }

    /// Writes `dirty` to the disk file: truncated to its floor, its pages, its size.
    fn write_through(&mut self, ino: u64, dirty: &Dirty) -> Result<(), Errno> {
        let file = self.file(ino)?;
        let len = file.metadata().map_err(Errno::from)?.len();
        if dirty.floor < len {
            file.set_len(dirty.floor).map_err(Errno::from)?;
        }
        for (&index, page) in &dirty.pages {
            let start = index * PAGE;
            if start >= dirty.size {
                continue;
            }
            let n = (dirty.size - start).min(PAGE) as usize;
            file.write_all_at(&page[..n], start).map_err(Errno::from)?;
        }
        file.set_len(dirty.size).map_err(Errno::from)?;
        Ok(())
    }

    /// The power cut itself: forgets every unsynced page, or with `seed` writes a
    /// pseudo-random half of them first.
    fn drop_unsynced(&mut self, seed: Option<u64>) -> Cut {
        let mut cut = Cut::default();
        let mut rng = seed.map(|s| s.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        // In inode order, so that a seed always keeps the same pages.
        let mut cache: Vec<(u64, Dirty)> = std::mem::take(&mut self.cache).into_iter().collect();
        cache.sort_by_key(|(ino, _)| *ino);
        for (ino, dirty) in cache {
            cut.files_touched += 1;
            let Some(state) = rng.as_mut() else {
                cut.pages_lost += dirty.pages.len() as u64;
                continue;
            };
            // A drive's write-back reaches some pages and not others, in no order; the
            // file's size reaches the disk only with a sync, so pages past it stay lost.
            let len = self
                .file(ino)
                .and_then(|f| f.metadata().map_err(Errno::from))
                .map_or(0, |m| m.len());
            let kept = Dirty {
                size: len,
                floor: len,
                pages: dirty
                    .pages
                    .into_iter()
                    .filter(|_| {
                        *state ^= *state << 13;
                        *state ^= *state >> 7;
                        *state ^= *state << 17;
                        let keep = *state & 1 == 0;
                        if keep {
                            cut.pages_kept += 1;
                        } else {
                            cut.pages_lost += 1;
                        }
                        keep
                    })
                    .collect(),
            };
            let _ = self.write_through(ino, &kept);
        }
        self.files.clear();
        cut
    }
}

/// The FUSE side: every operation takes the state's lock, so they apply one at a time.
struct Fs {
    shared: Arc<Shared>,
}

impl Fs {
    /// The state, or EIO once the power is gone.
    fn live(&self) -> Result<MutexGuard<'_, State>, Errno> {
        let state = self.shared.lock();
        if state.dead_at.is_some() {
            return Err(Errno::EIO);
        }
        Ok(state)
    }

    /// Counts a write against an armed cut; the write that reaches zero does not happen.
    fn spend_write(&self, state: &mut State) -> Result<(), Errno> {
        let left = self.shared.writes_left.load(Ordering::SeqCst);
        if left == 0 {
            return Ok(());
        }
        if left == 1 {
            self.shared.writes_left.store(0, Ordering::SeqCst);
            state.dead_at = Some(SystemTime::now());
            self.shared.died.notify_all();
            return Err(Errno::EIO);
        }
        self.shared.writes_left.store(left - 1, Ordering::SeqCst);
        Ok(())
    }

    fn entry(&self, parent: INodeNo, name: &OsStr) -> Result<FileAttr, Errno> {
        let mut state = self.live()?;
        let rel = state.child(parent.0, name)?;
        std::fs::symlink_metadata(state.base.join(&rel)).map_err(Errno::from)?;
        let ino = state.ino_of(&rel);
        state.attr(ino)
    }

    fn create_file(&self, parent: INodeNo, name: &OsStr, mode: u32) -> Result<FileAttr, Errno> {
        let mut state = self.live()?;
        let rel = state.child(parent.0, name)?;
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode & 0o7777)
            .open(state.base.join(&rel))
            .map_err(Errno::from)?;
        let ino = state.ino_of(&rel);
        state.attr(ino)
    }
}

impl Filesystem for Fs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.entry(parent, name) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let result = self.live().and_then(|mut s| s.attr(ino.0));
        match result {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let result = self.live().and_then(|mut state| {
            let real = state.real(ino.0)?;
            if let Some(mode) = mode {
                std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(Errno::from)?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::chown(&real, uid, gid).map_err(Errno::from)?;
            }
            if let Some(size) = size {
                self.spend_write(&mut state)?;
                state.truncate(ino.0, size)?;
            }
            state.attr(ino.0)
        });
        match result {
            Ok(a) => reply.attr(&TTL, &a),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        if mode & libc::S_IFMT != libc::S_IFREG {
            return reply.error(Errno::EPERM);
        }
        match self.create_file(parent, name, mode) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let result = self.live().and_then(|mut state| {
            let rel = state.child(parent.0, name)?;
            let real = state.base.join(&rel);
            std::fs::create_dir(&real).map_err(Errno::from)?;
            std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode & 0o7777))
                .map_err(Errno::from)?;
            let ino = state.ino_of(&rel);
            state.attr(ino)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.live().and_then(|mut state| {
            let rel = state.child(parent.0, name)?;
            std::fs::remove_file(state.base.join(&rel)).map_err(Errno::from)?;
            state.forget_path(&rel);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let result = self.live().and_then(|mut state| {
            let rel = state.child(parent.0, name)?;
            std::fs::remove_dir(state.base.join(&rel)).map_err(Errno::from)?;
            state.forget_path(&rel);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let result = self.live().and_then(|mut state| {
            let from = state.child(parent.0, name)?;
            let to = state.child(newparent.0, newname)?;
            std::fs::rename(state.base.join(&from), state.base.join(&to)).map_err(Errno::from)?;
            state.forget_path(&to);
            // Everything under the old path (a directory's children) moves with it.
            let moved: Vec<(PathBuf, u64)> = state
                .inos
                .iter()
                .filter(|(p, _)| p.starts_with(&from))
                .map(|(p, &i)| (p.clone(), i))
                .collect();
            for (old, ino) in moved {
                let new = to.join(old.strip_prefix(&from).expect("under the old path"));
                state.inos.remove(&old);
                state.inos.insert(new.clone(), ino);
                state.paths.insert(ino, new);
            }
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let result = self.live().and_then(|mut s| s.file(ino.0).map(|_| ()));
        match result {
            Ok(()) => reply.opened(FileHandle(0), FopenFlags::empty()),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let result = self.live().and_then(|mut s| s.read(ino.0, offset, size));
        match result {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let result = self.live().and_then(|mut state| {
            self.spend_write(&mut state)?;
            state.write(ino.0, offset, data)
        });
        match result {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // close(2) is not a sync.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let delay = self.shared.fsync_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            // Outside the lock: a slow sync holds up its caller, not the whole disk.
            std::thread::sleep(Duration::from_micros(delay));
        }
        let result = self.live().and_then(|mut s| s.sync(ino.0));
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let result = self.live().and_then(|mut state| {
            let real = state.real(ino.0)?;
            let rel = state.paths[&ino.0].clone();
            let mut entries = vec![
                (ino.0, FileType::Directory, ".".into()),
                (1, FileType::Directory, "..".into()),
            ];
            let mut children: Vec<_> = std::fs::read_dir(&real)
                .map_err(Errno::from)?
                .filter_map(Result::ok)
                .collect();
            children.sort_by_key(|e| e.file_name());
            for child in children {
                let kind = match child.file_type() {
                    Ok(t) if t.is_dir() => FileType::Directory,
                    _ => FileType::RegularFile,
                };
                let name = child.file_name();
                let child_ino = state.ino_of(&rel.join(&name));
                entries.push((child_ino, kind, name));
            }
            Ok(entries)
        });
        match result {
            Ok(entries) => {
                for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize)
                {
                    if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory operations are already on the disk.
        match self.live() {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let base = self.shared.lock().base.clone();
        let Ok(path) = std::ffi::CString::new(base.as_os_str().as_encoded_bytes()) else {
            return reply.error(Errno::EIO);
        };
        // SAFETY: statvfs(3) fills the zeroed struct from a NUL-terminated path.
        let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
        if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
            return reply.error(Errno::from(io::Error::last_os_error()));
        }
        reply.statfs(
            st.f_blocks,
            st.f_bfree,
            st.f_bavail,
            st.f_files,
            st.f_ffree,
            st.f_bsize as u32,
            st.f_namemax as u32,
            st.f_frsize as u32,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: fuser::AccessFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        match self.create_file(parent, name, mode) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn write(path: &Path, data: &[u8], sync: bool) {
        let mut f = File::create(path).expect("create");
        f.write_all(data).expect("write");
        if sync {
            f.sync_all().expect("fsync");
        }
    }

    #[test]
    fn only_synced_data_survives_a_power_cut() {
        let mut fs = LazyFs::mount();
        let synced = fs.path().join("synced");
        let unsynced = fs.path().join("unsynced");
        write(&synced, &[7u8; 10_000], true);
        write(&unsynced, b"gone", false);
        // Reads see what was written, synced or not.
        assert_eq!(std::fs::read(&unsynced).expect("read"), b"gone");
        // Unsynced growth and a truncation that was never synced.
        {
            let f = OpenOptions::new().write(true).open(&synced).expect("open");
            f.write_all_at(&[9u8; 100], 20_000).expect("grow");
            f.set_len(5_000).expect("shrink");
        }
        assert_eq!(std::fs::metadata(&synced).expect("stat").len(), 5_000);

        let cut = fs.power_cut(None);
        assert!(cut.pages_lost >= 1, "{cut:?}");
        assert_eq!(std::fs::read(&synced).expect("read"), vec![7u8; 10_000]);
        assert_eq!(
            std::fs::read(&unsynced).expect("read"),
            b"",
            "created, never synced"
        );
    }

    #[test]
    fn truncating_then_growing_reads_zeros_and_sync_makes_it_so_on_disk() {
        let mut fs = LazyFs::mount();
        let path = fs.path().join("f");
        write(&path, &[1u8; 8192], true);
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        f.set_len(100).expect("shrink");
        f.write_all_at(b"x", 8000).expect("grow");
        let mut expected = vec![1u8; 100];
        expected.resize(8000, 0);
        expected.push(b'x');
        assert_eq!(std::fs::read(&path).expect("read"), expected);
        f.sync_data().expect("fdatasync");
        drop(f);
        fs.power_cut(None);
        assert_eq!(std::fs::read(&path).expect("read"), expected);
    }

    #[test]
    fn an_armed_cut_fails_every_operation_after_the_nth_write() {
        let mut fs = LazyFs::mount();
        let path = fs.path().join("f");
        let mut f = File::create(&path).expect("create");
        f.write_all(b"a").expect("first write");
        f.sync_all().expect("fsync");
        fs.fail_after_writes(2);
        f.write_all(b"b").expect("second write");
        let err = f.write_all(b"c").expect_err("the disk is gone");
        assert_eq!(err.raw_os_error(), Some(libc::EIO));
        fs.wait_failed(Duration::from_secs(5));
        assert!(f.sync_all().is_err(), "no sync after the cut");
        drop(f);
        fs.power_cut(None);
        assert_eq!(std::fs::read(&path).expect("read"), b"a");
    }

    #[test]
    fn sqlite_in_wal_mode_keeps_every_commit_and_opens_clean() {
        let mut fs = LazyFs::mount();
        let db_path = fs.path().join("t.db");
        let mut committed = 0;
        for round in 0..5u64 {
            let db = rusqlite::Connection::open(&db_path).expect("open");
            db.execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
                 CREATE TABLE IF NOT EXISTS t (n INTEGER PRIMARY KEY, v BLOB);",
            )
            .expect("schema");
            for _ in 0..20 {
                committed += 1;
                db.execute(
                    "INSERT INTO t (n, v) VALUES (?1, zeroblob(3000))",
                    [committed],
                )
                .expect("commit");
            }
            // A transaction that never commits, then the power goes mid-write.
            db.execute_batch("BEGIN; INSERT INTO t (v) VALUES (zeroblob(50000));")
                .expect("uncommitted");
            fs.fail_after_writes(1 + round);
            let _ = db.execute_batch("COMMIT");
            drop(db);
            fs.power_cut(Some(round));
            let db = rusqlite::Connection::open(&db_path).expect("reopen");
            let check: String = db
                .query_row("PRAGMA integrity_check", [], |r| r.get(0))
                .expect("integrity_check");
            assert_eq!(check, "ok");
            let rows: u64 = db
                .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                .expect("count");
            assert_eq!(rows, committed, "round {round}: every commit, nothing else");
        }
    }
}
