//! Blob ciphertext files: an append-only writer ([`AppendFile`], inbox partials and outbox files).
//!
//! Writing a gigabyte through the page cache costs a fresh page per 4 KiB (allocation, memory
//! accounting, a copy into memory the machine has not touched yet) and then writeback of all of
//! it at the next fsync: on the project's virtual machines that ran at a third of what the disk
//! takes with direct I/O (`dd ... oflag=direct`: 1.0 GB/s against 350–560 MB/s buffered). So the
//! receiver's [`AppendFile`] gathers appends into aligned 4 MiB buffers and writes each with
//! `O_DIRECT` from a dedicated I/O thread, while the caller goes on filling the next buffer. A
//! file system that refuses `O_DIRECT` (at open, or with `EINVAL` on the first write)
//! gets the same I/O through the page cache instead; nothing else changes.
//!
//! The sender's outbox is the exception ([`AppendFile::create_new_cached`]): it is written just
//! before it is sent, so writing it through the page cache (and fsyncing it) leaves it in memory
//! for the transfer that follows, which reads each chunk straight into its frame with one `pread`
//! (the kernel's read-ahead covers a file that is no longer cached) and does not compete with the
//! receiver for the disk. On one virtual disk a direct read of 1 GiB
//! beside a direct write of 1 GiB left each at 184–215 MB/s.
//!
//! Durability is the caller's: [`AppendFile::sync`] waits for the queued writes and fdatasyncs,
//! and returns how many bytes from the start of the file are now durable;
//! [`AppendFile::start_sync`] does the same on another thread ([`PendingSync::wait`]) while
//! appending goes on.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Alignment of direct writes: buffer address, file offset and length (covers 512-byte and
/// 4 KiB logical blocks).
pub const ALIGN: usize = 4096;

/// Bytes per write (and per [`AppendFile`] buffer). Large writes keep a busy virtual disk
/// streaming: on the project's machines 4 MiB writes took a gigabyte 10–20 % faster than 1 MiB
/// writes while both CPUs were loaded.
pub const BUF_LEN: usize = 4 << 20;

/// Buffers per file: one being filled, the others queued for or in the I/O thread.
const BUFFERS: usize = 3;

/// A heap buffer of `len` bytes (a multiple of [`ALIGN`]) whose start is [`ALIGN`]-aligned
/// (found inside a slightly larger allocation, so no unsafe code is needed). A caller that
/// fills one itself hands it to [`AppendFile::append_filled`].
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes.
    pub fn new(len: usize) -> Self {
        let raw = vec![0u8; len + ALIGN];
        let start = raw.as_ptr().align_offset(ALIGN);
        Self { raw, start, len }
    }

    /// The buffer's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }

    /// The buffer's bytes, to fill.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.len]
    }
}

/// A write for the I/O thread: `len` bytes of `buf` at file offset `at`; once done, the first
/// `end` bytes of the file hold appended data (less than `at + len` for a padded block).
struct Job {
    buf: AlignedBuf,
    len: usize,
    at: u64,
    end: u64,
}

/// How far the I/O thread got, shared with pending background syncs.
#[derive(Default)]
struct Progress {
    state: Mutex<ProgressState>,
    changed: Condvar,
}

#[derive(Default)]
struct ProgressState {
    /// The file's first `written` bytes hold what was appended (their writes completed).
    written: u64,
    /// The thread stopped (an error, or the writer was dropped): nothing more will complete.
    stopped: bool,
}

impl Progress {
    fn update(&self, f: impl FnOnce(&mut ProgressState)) {
        if let Ok(mut st) = self.state.lock() {
            f(&mut st);
        }
        self.changed.notify_all();
    }

    /// Blocks until the first `target` bytes are written; an error if the thread stopped first.
    fn wait_for(&self, target: u64) -> io::Result<()> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        while st.written < target {
            if st.stopped {
                return Err(io::Error::other(
                    "the blob I/O thread stopped before the sync",
                ));
            }
            st = self
                .changed
                .wait(st)
                .map_err(|_| io::Error::other("poisoned"))?;
        }
        Ok(())
    }
}

/// The I/O thread's side: writes jobs in order, returns each buffer, stops at the first error.
fn io_loop(
    mut file: Arc<File>,
    path: PathBuf,
    mut direct: bool,
    jobs: Receiver<Job>,
    done: SyncSender<io::Result<AlignedBuf>>,
    progress: Arc<Progress>,
) {
    io_jobs(&mut file, &path, &mut direct, jobs, done, &progress);
    progress.update(|st| st.stopped = true);
}

fn io_jobs(
    file: &mut Arc<File>,
    path: &Path,
    direct: &mut bool,
    jobs: Receiver<Job>,
    done: SyncSender<io::Result<AlignedBuf>>,
    progress: &Progress,
) {
    for job in jobs {
        let mut r = file.write_all_at(&job.buf.bytes()[..job.len], job.at);
        if *direct && matches!(&r, Err(e) if e.raw_os_error() == Some(EINVAL)) {
            // The file system took O_DIRECT at open but not these writes: go buffered.
            r = OpenOptions::new().write(true).open(path).and_then(|f| {
                f.write_all_at(&job.buf.bytes()[..job.len], job.at)?;
                *file = Arc::new(f);
                *direct = false;
                Ok(())
            });
        }
        let r = r.map(|()| {
            progress.update(|st| st.written = st.written.max(job.end));
            job.buf
        });
        let failed = r.is_err();
        if done.send(r).is_err() || failed {
            return;
        }
    }
}

const EINVAL: i32 = libc::EINVAL;

/// Appends to a file with aligned direct writes on an I/O thread (or buffered writes where the
/// file system does not support direct I/O). Dropping it without [`AppendFile::finish`] waits
/// for the queued writes and leaves the file as they made it: a prefix of what was appended,
/// possibly followed by the zero padding of a synced partial block (a reader of an unfinished
/// file must know its length from elsewhere, as the blob index does).
pub struct AppendFile {
    path: PathBuf,
    file: Arc<File>,
    direct: bool,
    /// The buffer being filled; `None` only while waiting for one back from the I/O thread.
    buf: Option<AlignedBuf>,
    fill: usize,
    /// File offset of the buffer's first byte (aligned in direct mode).
    base: u64,
    free: Vec<AlignedBuf>,
    in_flight: usize,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<io::Result<AlignedBuf>>,
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
    failed: Option<io::Error>,
}

impl std::fmt::Debug for AppendFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendFile")
            .field("path", &self.path)
            .field("direct", &self.direct)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

fn open(path: &Path, create_new: bool, mode: u32, direct: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(true).mode(mode);
    if create_new {
        o.create_new(true);
    } else {
        o.create(true).truncate(false);
    }
    if direct {
        o.custom_flags(libc::O_DIRECT);
    }
    o.open(path)
}

impl AppendFile {
    /// Creates `path` (which must not exist) with `mode`.
    pub fn create_new(path: &Path, mode: u32) -> io::Result<Self> {
        Self::open_at(path, true, mode, 0, true)
    }

    /// Like [`AppendFile::create_new`] but through the page cache, for a file about to be read
    /// back (the outbox): what [`AppendFile::finish`] fsyncs stays cached.
    pub fn create_new_cached(path: &Path, mode: u32) -> io::Result<Self> {
        Self::open_at(path, true, mode, 0, false)
    }

    /// Opens (or creates) `path` with `mode`, cuts it to `offset` bytes and appends from there.
    /// `offset` must not exceed the file's length.
    pub fn resume(path: &Path, mode: u32, offset: u64) -> io::Result<Self> {
        Self::open_at(path, false, mode, offset, true)
    }

    fn open_at(
        path: &Path,
        create_new: bool,
        mode: u32,
        offset: u64,
        try_direct: bool,
    ) -> io::Result<Self> {
        let (file, direct) = match open(path, create_new, mode, try_direct) {
            Ok(f) => (f, try_direct),
            Err(e) if e.raw_os_error() == Some(EINVAL) => {
                (open(path, create_new, mode, false)?, false)
            }
            Err(e) => return Err(e),
        };
        if file.metadata()?.len() < offset {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "resume offset beyond the end of the file",
            ));
        }
        file.set_len(offset)?;
        let mut buf = AlignedBuf::new(BUF_LEN);
        let (base, fill) = if direct {
            // Rewrite the partial block before `offset` with the first aligned write.
            let base = offset - offset % ALIGN as u64;
            let fill = (offset - base) as usize;
            if fill > 0 {
                let mut r = File::open(path)?;
                r.seek(SeekFrom::Start(base))?;
                r.read_exact(&mut buf.bytes_mut()[..fill])?;
            }
            (base, fill)
        } else {
            (offset, 0)
        };
        let file = Arc::new(file);
        let (jobs, job_rx) = sync_channel::<Job>(BUFFERS);
        let (done_tx, done) = sync_channel(BUFFERS);
        let progress = Arc::new(Progress::default());
        progress.update(|st| st.written = offset);
        let thread = {
            let (file, path, progress) = (file.clone(), path.to_path_buf(), progress.clone());
            std::thread::Builder::new()
                .name("blob-io".into())
                .spawn(move || io_loop(file, path, direct, job_rx, done_tx, progress))?
        };
        Ok(Self {
            path: path.to_path_buf(),
            file,
            direct,
            buf: Some(buf),
            fill,
            base,
            free: (1..BUFFERS).map(|_| AlignedBuf::new(BUF_LEN)).collect(),
            in_flight: 0,
            jobs: Some(jobs),
            done,
            progress,
            thread: Some(thread),
            failed: None,
        })
    }

    /// Whether writes bypass the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// Bytes appended so far (from the start of the file).
    pub fn len(&self) -> u64 {
        self.base + self.fill as u64
    }

    /// Whether nothing was appended and the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn error(&self) -> io::Error {
        match &self.failed {
            Some(e) => io::Error::new(e.kind(), e.to_string()),
            None => io::Error::other("blob I/O thread stopped"),
        }
    }

    /// Takes one finished job's result back from the I/O thread (blocking).
    fn reap(&mut self) -> io::Result<()> {
        match self.done.recv() {
            Ok(Ok(b)) => {
                self.in_flight -= 1;
                self.free.push(b);
                Ok(())
            }
            Ok(Err(e)) => {
                self.in_flight -= 1;
                let copy = io::Error::new(e.kind(), e.to_string());
                self.failed = Some(e);
                Err(copy)
            }
            Err(_) => Err(self.error()),
        }
    }

    fn send(&mut self, job: Job) -> io::Result<()> {
        if self.failed.is_some() {
            return Err(self.error());
        }
        let jobs = self
            .jobs
            .as_ref()
            .ok_or_else(|| io::Error::other("closed"))?;
        if jobs.send(job).is_err() {
            return Err(self.error());
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Queues the current buffer (`len` bytes of it, of which the first `fill` are data) at
    /// `base` and moves on to a free one.
    fn submit(&mut self, len: usize) -> io::Result<()> {
        let buf = self
            .buf
            .take()
            .ok_or_else(|| io::Error::other("no buffer"))?;
        let at = self.base;
        let end = at + len.min(self.fill) as u64;
        self.send(Job { buf, len, at, end })?;
        while self.free.is_empty() {
            self.reap()?;
        }
        self.buf = self.free.pop();
        self.base += len as u64;
        self.fill = 0;
        Ok(())
    }

    /// Appends `data`.
    pub fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let buf = self
                .buf
                .as_mut()
                .ok_or_else(|| io::Error::other("no buffer"))?;
            let n = data.len().min(BUF_LEN - self.fill);
            buf.bytes_mut()[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == BUF_LEN {
                self.submit(BUF_LEN)?;
            }
        }
        Ok(())
    }

    /// Appends `buf[skip..len]`, data the caller wrote straight into a [`BUF_LEN`] buffer, and
    /// returns a buffer (of [`BUF_LEN`]) for the caller to fill next. `at` is the
    /// [`ALIGN`]-aligned file offset the caller placed the buffer's first byte at: its data
    /// starts at `at + skip`, the current [`AppendFile::len`], and `buf[..skip]` is left for the
    /// writer, which copies its unwritten tail (the last partial block) there. When the buffer
    /// lines up with the file that way (direct mode, no unaligned write before) the buffer
    /// itself is queued for writing, without copying its data; otherwise its data is appended
    /// by [`AppendFile::write_all`] and the same buffer comes back. Waits for a buffer the I/O
    /// thread has written when none is free.
    pub fn append_filled(
        &mut self,
        mut buf: AlignedBuf,
        at: u64,
        skip: usize,
        len: usize,
    ) -> io::Result<AlignedBuf> {
        if skip > len || len > buf.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "filled range outside the buffer",
            ));
        }
        let lined_up = self.direct
            && buf.len == BUF_LEN
            && at == self.base
            && skip == self.fill
            && self.buf.is_some();
        if !lined_up {
            self.write_all(&buf.bytes()[skip..len])?;
            return Ok(buf);
        }
        if let Some(old) = self.buf.take() {
            buf.bytes_mut()[..skip].copy_from_slice(&old.bytes()[..skip]);
            self.free.push(old);
        }
        self.buf = Some(buf);
        self.fill = len;
        if self.fill == BUF_LEN {
            self.submit(BUF_LEN)?;
        } else {
            self.submit_whole_blocks()?;
        }
        while self.free.is_empty() {
            self.reap()?;
        }
        self.free.pop().ok_or_else(|| io::Error::other("no buffer"))
    }

    /// Queues the whole blocks of the current buffer (everything, in buffered mode) and keeps
    /// the unaligned tail at the front of the next buffer; returns the tail's length.
    fn submit_whole_blocks(&mut self) -> io::Result<usize> {
        let whole = if self.direct {
            self.fill - self.fill % ALIGN
        } else {
            self.fill
        };
        let tail_len = self.fill - whole;
        if whole > 0 {
            // Keep the unaligned tail: copy it to the front of the next buffer.
            let mut tail = [0u8; ALIGN];
            if let Some(b) = &self.buf {
                tail[..tail_len].copy_from_slice(&b.bytes()[whole..self.fill]);
            }
            self.submit(whole)?;
            if let Some(b) = self.buf.as_mut() {
                b.bytes_mut()[..tail_len].copy_from_slice(&tail[..tail_len]);
            }
            self.fill = tail_len;
        }
        Ok(tail_len)
    }

    /// Waits until every queued write has completed.
    fn drain(&mut self) -> io::Result<()> {
        while self.in_flight > 0 {
            self.reap()?;
        }
        match self.failed {
            Some(_) => Err(self.error()),
            None => Ok(()),
        }
    }

    /// Queues writes of everything appended so far and returns [`AppendFile::len`]. In direct
    /// mode a last, partial block is written padded with zeros; it stays buffered and is
    /// rewritten, with what follows, by the next write.
    fn submit_all(&mut self) -> io::Result<u64> {
        let len = self.len();
        let tail_len = self.submit_whole_blocks()?;
        if tail_len > 0 {
            while self.free.is_empty() {
                self.reap()?;
            }
            let mut block = self
                .free
                .pop()
                .ok_or_else(|| io::Error::other("no buffer"))?;
            if let Some(b) = &self.buf {
                block.bytes_mut()[..tail_len].copy_from_slice(&b.bytes()[..tail_len]);
            }
            block.bytes_mut()[tail_len..ALIGN].fill(0);
            self.send(Job {
                buf: block,
                len: ALIGN,
                at: self.base,
                end: len,
            })?;
        }
        Ok(len)
    }

    /// Makes everything appended so far durable (writes, then fdatasync) and returns
    /// [`AppendFile::len`].
    pub fn sync(&mut self) -> io::Result<u64> {
        let len = self.submit_all()?;
        self.drain()?;
        self.file.sync_data()?;
        Ok(len)
    }

    /// Like [`AppendFile::sync`] but without waiting: queues the writes and returns a
    /// [`PendingSync`] to run (on another thread) while appending goes on.
    pub fn start_sync(&mut self) -> io::Result<PendingSync> {
        let target = self.submit_all()?;
        Ok(PendingSync {
            file: self.file.try_clone()?,
            progress: self.progress.clone(),
            target,
        })
    }

    /// Writes the rest, sets the file's exact length and fsyncs (data and metadata). Nothing
    /// may be appended after it.
    pub fn finish(&mut self) -> io::Result<()> {
        let len = self.len();
        if self.fill > 0 {
            let padded = if self.direct {
                self.fill.div_ceil(ALIGN) * ALIGN
            } else {
                self.fill
            };
            if let Some(b) = self.buf.as_mut() {
                b.bytes_mut()[self.fill..padded].fill(0);
            }
            self.submit(padded)?;
        }
        self.drain()?;
        self.file.set_len(len)?;
        self.file.sync_all()
    }
}

impl Drop for AppendFile {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A sync started by [`AppendFile::start_sync`].
pub struct PendingSync {
    file: File,
    progress: Arc<Progress>,
    target: u64,
}

impl std::fmt::Debug for PendingSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSync")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl PendingSync {
    /// The bytes from the start of the file this sync makes durable.
    pub fn target(&self) -> u64 {
        self.target
    }

    /// Waits for the queued writes, fdatasyncs, and returns [`PendingSync::target`]. An error if
    /// a write failed (or the writer was dropped before they were done).
    pub fn wait(self) -> io::Result<u64> {
        self.progress.wait_for(self.target)?;
        self.file.sync_data()?;
        Ok(self.target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// Every test runs twice: direct I/O where the test directory's file system has it, and
    /// the buffered fallback.
    const MODES: [bool; 2] = [true, false];

    fn create(p: &Path, direct: bool) -> AppendFile {
        AppendFile::open_at(p, true, 0o600, 0, direct).expect("create")
    }

    fn resume(p: &Path, offset: u64, direct: bool) -> io::Result<AppendFile> {
        AppendFile::open_at(p, false, 0o600, offset, direct)
    }

    #[test]
    fn appends_of_any_size_come_out_byte_identical() {
        for direct in MODES {
            appends_of_any_size(direct);
        }
    }

    fn appends_of_any_size(direct: bool) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        let mut f = create(&p, direct);
        let mut want = Vec::new();
        for (i, n) in [0, 1, 65_552, 4095, 4096, BUF_LEN, 3 * BUF_LEN + 7, 13]
            .into_iter()
            .enumerate()
        {
            let d = pattern(n, i as u8);
            f.write_all(&d).expect("write");
            want.extend_from_slice(&d);
        }
        assert_eq!(f.len(), want.len() as u64);
        f.finish().expect("finish");
        assert_eq!(std::fs::read(&p).expect("read"), want);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn sync_reports_durable_bytes_and_keeps_the_tail() {
        for direct in MODES {
            sync_keeps_the_tail(direct);
        }
    }

    fn sync_keeps_the_tail(direct: bool) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        let mut f = create(&p, direct);
        let a = pattern(10_000, 1);
        f.write_all(&a).expect("write");
        assert_eq!(f.sync().expect("sync"), 10_000);
        let on_disk = std::fs::read(&p).expect("read");
        assert_eq!(on_disk[..10_000], a[..]);
        // Direct mode wrote the last block padded; buffered mode wrote exactly the bytes.
        let padded = if f.is_direct() { 12_288 } else { 10_000 };
        assert_eq!(on_disk.len(), padded);
        if direct && std::env::var_os("CAUCUS_TEST_EXPECT_DIRECT_IO").is_some() {
            assert!(f.is_direct(), "this file system should take O_DIRECT");
        }
        assert!(
            on_disk[10_000..].iter().all(|&b| b == 0),
            "only padding after it"
        );
        // Twice in a row, and in the background: the padded block is rewritten, not appended.
        assert_eq!(f.sync().expect("sync"), 10_000);
        let pending = f.start_sync().expect("start");
        assert_eq!(pending.wait().expect("wait"), 10_000);
        assert_eq!(std::fs::read(&p).expect("read")[..10_000], a[..]);
        let b = pattern(5_000, 2);
        f.write_all(&b).expect("write");
        f.finish().expect("finish");
        let mut want = a;
        want.extend_from_slice(&b);
        assert_eq!(std::fs::read(&p).expect("read"), want);
    }

    #[test]
    fn resume_cuts_at_an_unaligned_offset_and_rewrites_its_block() {
        for direct in MODES {
            resume_unaligned(direct);
        }
    }

    fn resume_unaligned(direct: bool) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        let a = pattern(3 * BUF_LEN + 1234, 3);
        std::fs::write(&p, &a).expect("write");
        let cut = 2 * 65_552 + 17;
        let mut f = resume(&p, cut as u64, direct).expect("resume");
        assert_eq!(f.len(), cut as u64);
        let b = pattern(BUF_LEN + 99, 4);
        f.write_all(&b).expect("write");
        f.finish().expect("finish");
        let mut want = a[..cut].to_vec();
        want.extend_from_slice(&b);
        assert_eq!(std::fs::read(&p).expect("read"), want);
    }

    #[test]
    fn resume_beyond_the_end_is_refused_and_create_new_refuses_an_existing_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").expect("write");
        assert!(resume(&p, 4, true).is_err());
        assert!(resume(&p, 4, false).is_err());
        assert_eq!(
            AppendFile::create_new(&p, 0o600)
                .expect_err("exists")
                .kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    /// Queues a write every file system refuses: it would end past the largest file offset
    /// (i64::MAX), whatever the file system's own size limit.
    fn inject_failing_write(f: &mut AppendFile) {
        let at = (i64::MAX as u64) - 100;
        let job = Job {
            buf: AlignedBuf::new(BUF_LEN),
            len: ALIGN,
            at,
            end: at + ALIGN as u64,
        };
        f.send(job).expect("queued");
    }

    #[test]
    fn a_failed_write_surfaces_as_an_error_and_never_hangs_a_sync() {
        for direct in MODES {
            let dir = tempfile::tempdir().expect("tmp");
            let p = dir.path().join("f");
            let mut f = create(&p, direct);
            f.write_all(&pattern(10_000, 7)).expect("write");
            // A sync queued before the failure completes.
            let before = f.start_sync().expect("start");
            inject_failing_write(&mut f);
            assert_eq!(before.wait().expect("earlier sync"), 10_000);
            // Everything after it fails with an error (the I/O thread stopped), and a pending
            // sync returns instead of waiting forever.
            f.write_all(&pattern(100, 8)).expect("buffered only");
            assert!(f.start_sync().and_then(PendingSync::wait).is_err());
            assert!(f.sync().is_err());
            assert!(f.write_all(&pattern(2 * BUF_LEN, 9)).is_err());
            assert!(f.finish().is_err());
        }
    }

    #[test]
    fn dropped_without_finish_keeps_only_appended_bytes() {
        for direct in MODES {
            let dir = tempfile::tempdir().expect("tmp");
            let p = dir.path().join("f");
            let a = pattern(2 * BUF_LEN + 500, 5);
            {
                let mut f = create(&p, direct);
                f.write_all(&a).expect("write");
            }
            let got = std::fs::read(&p).expect("read");
            // The two whole buffers were queued, and the drop waited for them.
            assert_eq!(got.len(), 2 * BUF_LEN);
            assert_eq!(got, a[..got.len()]);
        }
    }

    #[test]
    fn the_cached_outbox_is_private_goes_through_the_page_cache_and_reads_back_at_any_offset() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("outbox");
        let a = pattern(2 * BUF_LEN + 65_552 + 3, 8);
        let mut f = AppendFile::create_new_cached(&p, 0o600).expect("create");
        assert!(!f.is_direct());
        f.write_all(&a).expect("write");
        f.finish().expect("finish");
        drop(f);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let file = File::open(&p).expect("open");
        for from in [0usize, 1, 65_552, BUF_LEN + 7, a.len() - 65_552] {
            let mut got = vec![0u8; 65_552.min(a.len() - from)];
            file.read_exact_at(&mut got, from as u64).expect("read");
            assert_eq!(got, &a[from..from + got.len()], "from {from}");
        }
    }

    /// Fills `buf` the way a network reader does: `data` placed at `skip`, where the file's
    /// current length falls in its first block.
    fn fill_at(f: &AppendFile, mut buf: AlignedBuf, data: &[u8]) -> (AlignedBuf, u64, usize) {
        let len = f.len();
        let skip = (len % ALIGN as u64) as usize;
        buf.bytes_mut()[skip..skip + data.len()].copy_from_slice(data);
        (buf, len - skip as u64, skip)
    }

    #[test]
    fn filled_buffers_are_written_as_they_are_and_come_out_byte_identical() {
        for direct in MODES {
            filled_buffers(direct);
        }
    }

    fn filled_buffers(direct: bool) {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("f");
        let a = pattern(3 * 65_552 + 5, 10);
        std::fs::write(&p, &a).expect("write");
        // Resumed at an unaligned offset, then filled buffers (a full one, partial ones, one
        // after a sync, one after a plain append) mixed with plain appends.
        let cut = 2 * 65_552 + 9;
        let mut f = resume(&p, cut as u64, direct).expect("resume");
        let mut want = a[..cut].to_vec();
        let mut buf = AlignedBuf::new(BUF_LEN);
        for (i, n) in [63 * 65_552, BUF_LEN, 4096, 1, 65_552, 0, 63 * 65_552]
            .into_iter()
            .enumerate()
        {
            let skip = (f.len() % ALIGN as u64) as usize;
            let n = n.min(BUF_LEN - skip);
            let d = pattern(n, 20 + i as u8);
            let (filled, at, skip) = fill_at(&f, buf, &d);
            buf = f.append_filled(filled, at, skip, skip + n).expect("append");
            assert_eq!(buf.len(), BUF_LEN);
            if i == 0 {
                // Direct mode kept the filled buffer (another comes back); buffered mode
                // copied it and gave the same one back.
                let same = buf.bytes()[skip..skip + n] == d[..];
                assert_eq!(same, !f.is_direct());
            }
            want.extend_from_slice(&d);
            assert_eq!(f.len(), want.len() as u64);
            match i {
                2 => assert_eq!(f.sync().expect("sync"), want.len() as u64),
                4 => {
                    let d = pattern(777, 40);
                    f.write_all(&d).expect("write");
                    want.extend_from_slice(&d);
                }
                _ => {}
            }
        }
        f.finish().expect("finish");
        assert_eq!(std::fs::read(&p).expect("read"), want);
    }

    #[test]
    fn a_filled_buffer_that_does_not_line_up_is_appended_by_copy() {
        for direct in MODES {
            let dir = tempfile::tempdir().expect("tmp");
            let p = dir.path().join("f");
            let mut f = create(&p, direct);
            f.write_all(&pattern(5000, 1)).expect("write");
            // A buffer placed as if the file were at offset 0, and a short one: both are
            // copied in, and the caller gets the same buffer back.
            let mut want = pattern(5000, 1);
            let mut odd = AlignedBuf::new(BUF_LEN);
            let d = pattern(3000, 2);
            odd.bytes_mut()[..3000].copy_from_slice(&d);
            let back = f.append_filled(odd, 0, 0, 3000).expect("append");
            assert_eq!(back.bytes()[..3000], d[..], "the same buffer comes back");
            want.extend_from_slice(&d);
            let mut short = AlignedBuf::new(2 * ALIGN);
            let d = pattern(100, 3);
            short.bytes_mut()[..100].copy_from_slice(&d);
            assert_eq!(
                f.append_filled(short, 8192, 0, 100).expect("a").len(),
                2 * ALIGN
            );
            want.extend_from_slice(&d);
            // A range outside the buffer is refused and appends nothing.
            let e = f
                .append_filled(AlignedBuf::new(ALIGN), 8192, 10, ALIGN + 1)
                .expect_err("outside");
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            f.finish().expect("finish");
            assert_eq!(std::fs::read(&p).expect("read"), want);
        }
    }
}
