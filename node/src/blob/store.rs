//! The node's blob store: the receiver's inbox (partial and received blobs, the redb index) and
//! the sender's outbox (each blob encrypted once, then streamed from disk to every recipient).
//!
//! Layout under `<node dir>/blobs/`:
//! - `partial/<id>.enc`: ciphertext chunks of a transfer in progress, appended as they are checked;
//! - `<id>.enc` + `<id>.json`: a received blob (ciphertext, header), moved there only after the
//!   final chunk, the chunk count and the plaintext SHA-256 were checked and the file fsynced;
//! - `outbox/<id>.enc` + `outbox/<id>.json`: blobs this node sends;
//! - `index.redb`: table `received` (listed blobs) and table `partial` (durable progress of each
//!   partial: chunks fsynced, last update). A blob is received exactly when its `received` entry
//!   is committed; partials are never listed or readable.
//!
//! The index is opened per operation (and closed after), so `caucus blob list` / `get` can read it
//! while `caucus serve` runs; redb's file lock makes the two take turns.
//!
//! At rest every blob stays encrypted; [`BlobStore::get`] decrypts with the node's own key,
//! streaming, into a temporary file renamed over the output only after the SHA-256 check.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use caucus::blob::stream::TAG_LEN;
use caucus::blob::transfer::Receipt;
use caucus::blob::{
    BlobError, BlobHeader, BlobId, BlobLimits, DecryptingReader, FileKey, StreamKey,
};
use caucus::pki::{PartyId, PrivateKey, PublicKey};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::direct::{ALIGN, AlignedBuf, AppendFile};

const RECEIVED: TableDefinition<&str, &[u8]> = TableDefinition::new("received");
const PARTIAL: TableDefinition<&str, &[u8]> = TableDefinition::new("partial");

/// Default largest blob accepted: 8 GiB.
pub const DEFAULT_MAX_BLOB: u64 = 8 << 30;
/// Default inbox capacity (received + partial ciphertext): 32 GiB.
pub const DEFAULT_MAX_INBOX: u64 = 32 << 30;
/// Default age after which an untouched partial is deleted: 24 h.
pub const DEFAULT_PARTIAL_TTL_MS: i64 = 24 * 3600 * 1000;
/// Default ciphertext bytes between two durable checkpoints of a transfer: 64 MiB (each costs an
/// fdatasync and an index commit, both off the chunk path; a resume re-sends at most this much).
pub const DEFAULT_SYNC_EVERY: u64 = 64 << 20;

/// Receiver limits and durability settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Largest plaintext size accepted.
    pub max_blob_bytes: u64,
    /// Most ciphertext bytes held (received and partial together).
    pub max_inbox_bytes: u64,
    /// Partials untouched for longer than this are deleted (milliseconds).
    pub partial_ttl_ms: i64,
    /// A transfer fsyncs and records its progress after this many ciphertext bytes.
    pub sync_every_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_blob_bytes: DEFAULT_MAX_BLOB,
            max_inbox_bytes: DEFAULT_MAX_INBOX,
            partial_ttl_ms: DEFAULT_PARTIAL_TTL_MS,
            sync_every_bytes: DEFAULT_SYNC_EVERY,
        }
    }
}

/// Blob store errors. [`StoreError::code`] is what a refused sender is told.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The header, a chunk or the content failed a format check.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Accepting the blob would exceed the inbox capacity.
    #[error("inbox full: {need} bytes needed, {free} free")]
    InboxFull {
        /// ciphertext bytes the blob needs
        need: u64,
        /// bytes left in the inbox
        free: u64,
    },
    /// A transfer of this blob is already running.
    #[error("blob {0} is being received on another connection")]
    Busy(BlobId),
    /// The blob id is already used by a different blob or sender.
    #[error("blob id {0} is already used by another blob")]
    Conflict(BlobId),
    /// A chunk arrived out of sequence.
    #[error("chunk {got} arrived, expected chunk {expected}")]
    OutOfOrder {
        /// next chunk index expected
        expected: u64,
        /// index received
        got: u64,
    },
    /// A chunk frame names another blob.
    #[error("chunk frame for another blob")]
    WrongBlob,
    /// No such received (or outgoing) blob.
    #[error("no blob {0}")]
    NotFound(String),
    /// A file operation failed.
    #[error("{path}: {message}")]
    Io {
        /// the file
        path: PathBuf,
        /// what failed
        message: String,
    },
    /// The redb index failed.
    #[error("blob index: {0}")]
    Index(String),
}

impl StoreError {
    /// A stable snake_case code (sent to a refused sender; `internal` for local failures).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Blob(e) => e.code(),
            Self::InboxFull { .. } => "inbox_full",
            Self::Busy(_) => "busy",
            Self::Conflict(_) => "conflict",
            Self::OutOfOrder { .. } => "out_of_order",
            Self::WrongBlob => "wrong_blob",
            Self::NotFound(_) => "not_found",
            Self::Io { .. } | Self::Index(_) => "internal",
        }
    }

    /// Whether the sender caused it (a bad chunk or content): the partial is then discarded.
    fn is_integrity(&self) -> bool {
        matches!(
            self,
            Self::Blob(_) | Self::OutOfOrder { .. } | Self::WrongBlob
        )
    }
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |e| StoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn idx<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Index(e.to_string())
}

/// An index entry of a received blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceivedEntry {
    /// The header as received (wrapped keys included, so the blob can be decrypted).
    pub header: BlobHeader,
    /// The sender's roster name when it was received.
    pub sender_name: String,
    /// When it became durable (unix ms).
    pub received_ms: i64,
}

impl ReceivedEntry {
    /// The receipt for this blob.
    pub fn receipt(&self) -> Receipt {
        Receipt::new(
            self.header.blob_id,
            self.header.sha256,
            self.header.size,
            self.received_ms,
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialEntry {
    header: BlobHeader,
    sender_name: String,
    durable_chunks: u64,
    updated_ms: i64,
}

/// A blob prepared for sending: header and the path of its ciphertext.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The header (file key wrapped for each recipient).
    pub header: BlobHeader,
    /// `outbox/<id>.enc`: all ciphertext chunks, concatenated.
    pub path: PathBuf,
}

/// What [`BlobStore::begin`] decided.
#[derive(Debug)]
pub enum Begin {
    /// Receive chunks from [`Incoming::resume_from`].
    Receive(Box<Incoming>),
    /// The blob was already received: here is its receipt again.
    AlreadyReceived(Receipt),
}

/// Byte offset of chunk `n` in the concatenated ciphertext (the total length for n ≥ count).
pub fn chunk_offset(h: &BlobHeader, n: u64) -> u64 {
    let count = h.layout().count();
    if n >= count {
        h.ciphertext_len()
    } else {
        n * (u64::from(h.chunk_size) + TAG_LEN as u64)
    }
}

/// The current time, unix milliseconds (the runtime reads the clock).
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The blob store of one node directory.
#[derive(Debug)]
pub struct BlobStore {
    root: PathBuf,
    cfg: StoreConfig,
    /// Serialises this process's index opens.
    index_lock: Mutex<()>,
    /// Blobs being received right now.
    active: Mutex<HashSet<BlobId>>,
}

impl BlobStore {
    /// Opens (creating if needed) the store in `<node dir>/blobs` and creates the index tables.
    /// Several handles (and processes) may open the same store; only the serving node runs
    /// [`BlobStore::cleanup`].
    pub fn open(node_dir: &Path, cfg: StoreConfig) -> Result<Arc<Self>, StoreError> {
        let root = node_dir.join("blobs");
        for d in [root.clone(), root.join("partial"), root.join("outbox")] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(io_at(&d))?;
        }
        let store = Arc::new(Self {
            root,
            cfg,
            index_lock: Mutex::new(()),
            active: Mutex::new(HashSet::new()),
        });
        store.with_index(|db| {
            let tx = db.begin_write().map_err(idx)?;
            tx.open_table(RECEIVED).map_err(idx)?;
            tx.open_table(PARTIAL).map_err(idx)?;
            tx.commit().map_err(idx)
        })?;
        Ok(store)
    }

    /// The store's directory (`<node dir>/blobs`).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The limits in force.
    pub fn config(&self) -> &StoreConfig {
        &self.cfg
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.redb")
    }

    fn partial_path(&self, id: &BlobId) -> PathBuf {
        self.root.join("partial").join(format!("{id}.enc"))
    }

    fn blob_path(&self, id: &BlobId) -> PathBuf {
        self.root.join(format!("{id}.enc"))
    }

    /// Runs `f` on the index, opened for the call. Waits (up to 10 s) while another process
    /// holds it.
    fn with_index<T>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _g = self
            .index_lock
            .lock()
            .map_err(|_| StoreError::Index("index lock poisoned".into()))?;
        let path = self.index_path();
        let mut waited = Duration::ZERO;
        let db = loop {
            match Database::create(&path) {
                Ok(db) => break db,
                Err(redb::DatabaseError::DatabaseAlreadyOpen)
                    if waited < Duration::from_secs(10) =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                    waited += Duration::from_millis(5);
                }
                Err(e) => return Err(idx(e)),
            }
        };
        f(&db)
    }

    fn get_entry<T: for<'de> Deserialize<'de>>(
        db: &Database,
        table: TableDefinition<&str, &[u8]>,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = db.begin_read().map_err(idx)?;
        let t = tx.open_table(table).map_err(idx)?;
        match t.get(key).map_err(idx)? {
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|e| StoreError::Index(format!("corrupt entry {key}: {e}"))),
            None => Ok(None),
        }
    }

    fn all<T: for<'de> Deserialize<'de>>(
        db: &Database,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let tx = db.begin_read().map_err(idx)?;
        let t = tx.open_table(table).map_err(idx)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(idx)? {
            let (k, v) = item.map_err(idx)?;
            let e = serde_json::from_slice(v.value())
                .map_err(|e| StoreError::Index(format!("corrupt entry {}: {e}", k.value())))?;
            out.push((k.value().to_string(), e));
        }
        Ok(out)
    }

    fn put_partial(&self, id: &BlobId, e: &PartialEntry) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(e).map_err(idx)?;
        self.with_index(|db| {
            let tx = db.begin_write().map_err(idx)?;
            {
                let mut t = tx.open_table(PARTIAL).map_err(idx)?;
                t.insert(id.to_hex().as_str(), bytes.as_slice())
                    .map_err(idx)?;
            }
            tx.commit().map_err(idx)
        })
    }

    fn remove_partial(&self, id: &BlobId) {
        let path = self.partial_path(id);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "removing a partial blob failed");
        }
        let r = self.with_index(|db| {
            let tx = db.begin_write().map_err(idx)?;
            {
                let mut t = tx.open_table(PARTIAL).map_err(idx)?;
                t.remove(id.to_hex().as_str()).map_err(idx)?;
            }
            tx.commit().map_err(idx)
        });
        if let Err(e) = r {
            tracing::warn!(blob = %id, error = %e, "removing a partial index entry failed");
        }
    }

    fn release(&self, id: &BlobId) {
        if let Ok(mut a) = self.active.lock() {
            a.remove(id);
        }
    }

    /// Received blobs, oldest first.
    pub fn list(&self) -> Result<Vec<ReceivedEntry>, StoreError> {
        let mut v: Vec<ReceivedEntry> = self
            .with_index(|db| Self::all(db, RECEIVED))?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        v.sort_by_key(|e| (e.received_ms, e.header.blob_id));
        Ok(v)
    }

    /// The entry of a received blob.
    pub fn entry(&self, id: &BlobId) -> Result<ReceivedEntry, StoreError> {
        self.with_index(|db| Self::get_entry(db, RECEIVED, &id.to_hex()))?
            .ok_or_else(|| StoreError::NotFound(id.to_hex()))
    }

    /// Ids of partial (in progress or interrupted) transfers and their durable chunk counts.
    pub fn partials(&self) -> Result<Vec<(BlobId, u64)>, StoreError> {
        let all: Vec<(String, PartialEntry)> = self.with_index(|db| Self::all(db, PARTIAL))?;
        Ok(all
            .into_iter()
            .map(|(_, e)| (e.header.blob_id, e.durable_chunks))
            .collect())
    }

    /// Ciphertext bytes held, received and partial, not counting blob `except`.
    fn inbox_used(&self, except: &BlobId) -> Result<u64, StoreError> {
        let (received, partial) = self.with_index(|db| {
            Ok((
                Self::all::<ReceivedEntry>(db, RECEIVED)?,
                Self::all::<PartialEntry>(db, PARTIAL)?,
            ))
        })?;
        let r: u64 = received
            .iter()
            .map(|(_, e)| e.header.ciphertext_len())
            .fold(0, u64::saturating_add);
        let p: u64 = partial
            .iter()
            .filter(|(_, e)| &e.header.blob_id != except)
            .map(|(_, e)| e.header.ciphertext_len())
            .fold(0, u64::saturating_add);
        Ok(r.saturating_add(p))
    }

    /// Checks a header against this store's limits (size) and format rules.
    pub fn check_header(&self, header: &BlobHeader) -> Result<(), StoreError> {
        header.validate(&BlobLimits {
            max_size: self.cfg.max_blob_bytes,
        })?;
        Ok(())
    }

    /// Starts (or resumes) receiving the blob `header` from `sender_name` (the header's sender
    /// must already be checked to be the authenticated peer). Checks, in order: size limit and
    /// header, that `me` is a recipient and can unwrap the file key, that no other transfer of it
    /// runs, whether it was already received, inbox capacity. A resumed transfer re-reads and
    /// re-checks its durable chunks (to restore the running SHA-256) and drops anything after them.
    pub fn begin(
        self: &Arc<Self>,
        header: BlobHeader,
        me: &PrivateKey,
        sender_name: &str,
        now: i64,
    ) -> Result<Begin, StoreError> {
        self.check_header(&header)?;
        let file_key = header.unwrap_key(me)?;
        let key = StreamKey::new(&file_key, &header)?;
        let id = header.blob_id;
        {
            let mut a = self
                .active
                .lock()
                .map_err(|_| StoreError::Index("active set poisoned".into()))?;
            if !a.insert(id) {
                return Err(StoreError::Busy(id));
            }
        }
        // From here on the id is ours; `Incoming`'s Drop or `release` frees it.
        let r = self.begin_locked(header, key, sender_name, now);
        if !matches!(r, Ok(Begin::Receive(_))) {
            self.release(&id);
        }
        r
    }

    fn begin_locked(
        self: &Arc<Self>,
        header: BlobHeader,
        key: StreamKey,
        sender_name: &str,
        now: i64,
    ) -> Result<Begin, StoreError> {
        let id = header.blob_id;
        let hex = id.to_hex();
        let (received, partial) = self.with_index(|db| {
            Ok((
                Self::get_entry::<ReceivedEntry>(db, RECEIVED, &hex)?,
                Self::get_entry::<PartialEntry>(db, PARTIAL, &hex)?,
            ))
        })?;
        if let Some(r) = received {
            if r.header.sender == header.sender && r.header.aad() == header.aad() {
                return Ok(Begin::AlreadyReceived(r.receipt()));
            }
            return Err(StoreError::Conflict(id));
        }
        let mut durable = 0;
        if let Some(p) = &partial {
            if p.header.sender != header.sender {
                return Err(StoreError::Conflict(id));
            }
            if p.header.aad() == header.aad() {
                durable = p.durable_chunks;
            } else {
                // The same sender re-posted this id with other content: start over.
                self.remove_partial(&id);
            }
        }
        let used = self.inbox_used(&id)?;
        let need = header.ciphertext_len();
        let free = self.cfg.max_inbox_bytes.saturating_sub(used);
        if need > free {
            return Err(StoreError::InboxFull { need, free });
        }
        let path = self.partial_path(&id);
        let entry = PartialEntry {
            header: header.clone(),
            sender_name: sender_name.to_string(),
            durable_chunks: durable,
            updated_ms: now,
        };
        // Index entry first, so a crash never leaves an unaccounted file (open() deletes those).
        self.put_partial(&id, &entry)?;
        let mut hasher = digest::Context::new(&digest::SHA256);
        let mut pt = Zeroizing::new(Vec::new());
        let good = restore(&path, &header, &key, durable, &mut hasher, &mut pt)?;
        let file =
            AppendFile::resume(&path, 0o600, chunk_offset(&header, good)).map_err(io_at(&path))?;
        Ok(Begin::Receive(Box::new(Incoming {
            store: self.clone(),
            header,
            sender_name: sender_name.to_string(),
            key,
            file,
            path,
            next: good,
            hasher,
            unsynced: 0,
            syncing: None,
            pt,
            finished: false,
        })))
    }

    /// Deletes partials not updated since `now - partial_ttl` (and not being received), and
    /// partial files with no index entry. Returns how many partials were deleted.
    pub fn cleanup(&self, now: i64) -> Result<usize, StoreError> {
        let partials: Vec<(String, PartialEntry)> = self.with_index(|db| Self::all(db, PARTIAL))?;
        let active: HashSet<BlobId> = self
            .active
            .lock()
            .map_err(|_| StoreError::Index("active set poisoned".into()))?
            .clone();
        let mut n = 0;
        let mut known = HashSet::new();
        for (_, p) in &partials {
            let id = p.header.blob_id;
            known.insert(format!("{id}.enc"));
            if !active.contains(&id) && now.saturating_sub(p.updated_ms) > self.cfg.partial_ttl_ms {
                self.remove_partial(&id);
                n += 1;
            }
        }
        let dir = self.root.join("partial");
        for ent in fs::read_dir(&dir).map_err(io_at(&dir))? {
            let ent = ent.map_err(io_at(&dir))?;
            let name = ent.file_name().to_string_lossy().to_string();
            let is_active = name
                .strip_suffix(".enc")
                .and_then(|s| s.parse::<BlobId>().ok())
                .is_some_and(|id| active.contains(&id));
            if !known.contains(&name) && !is_active {
                let _ = fs::remove_file(ent.path());
                n += 1;
            }
        }
        Ok(n)
    }

    /// Decrypts received blob `id` with this node's key into `out`, streaming, checking every
    /// chunk and the SHA-256. Writes a temporary file next to `out` and renames it only when every
    /// check passed, so a failure leaves no output.
    pub fn get(
        &self,
        id: &BlobId,
        me: &PrivateKey,
        out: &Path,
    ) -> Result<ReceivedEntry, StoreError> {
        let entry = self.entry(id)?;
        let key: FileKey = entry.header.unwrap_key(me)?;
        let path = self.blob_path(id);
        let f = File::open(&path).map_err(io_at(&path))?;
        let mut reader =
            DecryptingReader::new(BufReader::with_capacity(1 << 20, f), &key, &entry.header)?;
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io_at(&dir))?;
        {
            let mut w = BufWriter::with_capacity(1 << 20, tmp.as_file());
            let mut buf = Zeroizing::new(vec![0u8; 1 << 16]);
            loop {
                let n = match reader.read(&mut buf[..]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) => {
                        return Err(match BlobError::from_io(&e) {
                            Some(b) => StoreError::Blob(b.clone()),
                            None => io_at(&path)(e),
                        });
                    }
                };
                w.write_all(&buf[..n]).map_err(io_at(out))?;
            }
            w.flush().map_err(io_at(out))?;
        }
        tmp.as_file().sync_all().map_err(io_at(out))?;
        tmp.persist(out).map_err(|e| io_at(out)(e.error))?;
        Ok(entry)
    }

    // ---- outbox (sender side) ----

    fn outbox_paths(&self, id: &BlobId) -> (PathBuf, PathBuf) {
        let d = self.root.join("outbox");
        (d.join(format!("{id}.enc")), d.join(format!("{id}.json")))
    }

    /// Encrypts `input` once for `recipients` into `outbox/<id>.enc` (+ header in
    /// `outbox/<id>.json`): a first pass hashes the file (the SHA-256 is in the header and bound
    /// to every chunk), the second seals it in batches of chunks, in place, on up to four threads,
    /// with one reused batch buffer.
    #[allow(clippy::too_many_arguments)]
    pub fn encrypt_to_outbox(
        &self,
        input: &Path,
        name: &str,
        sender: PartyId,
        recipients: &[PublicKey],
        chunk_size: u32,
        now: i64,
        rng: &mut impl rand::CryptoRng,
    ) -> Result<Outgoing, StoreError> {
        // Pass 1: size and SHA-256.
        let mut f = File::open(input).map_err(io_at(input))?;
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(io_at(input))?;
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
            size += n as u64;
        }
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(ctx.finish().as_ref());
        let (header, file_key) =
            BlobHeader::build(name, size, sha256, sender, recipients, chunk_size, now, rng)?;
        let key = StreamKey::new(&file_key, &header)?;
        drop(file_key);
        // Pass 2: encrypt.
        let (enc_path, json_path) = self.outbox_paths(&header.blob_id);
        f.seek(SeekFrom::Start(0)).map_err(io_at(input))?;
        let mut out = AppendFile::create_new_cached(&enc_path, 0o600).map_err(io_at(&enc_path))?;
        let result = (|| {
            // Batches of chunks laid out as they go to disk (plaintext, then room for the tag),
            // read in order, sealed where they lie on several threads (chunks are independent),
            // appended in order.
            let layout = header.layout();
            let count = layout.count();
            let slot = chunk_size as usize + TAG_LEN;
            let per_batch = (SEAL_BATCH_BYTES / slot).max(1) as u64;
            let mut batch = Zeroizing::new(vec![0u8; per_batch as usize * slot]);
            // Asked once: on Linux the answer reads cgroup files.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
            let mut first = 0u64;
            while first < count {
                let end = (first + per_batch).min(count);
                let mut used = 0usize;
                for i in first..end {
                    let len = layout.plain_len(i).unwrap_or(0);
                    f.read_exact(&mut batch[used..used + len]).map_err(|_| {
                        StoreError::Blob(BlobError::SizeMismatch {
                            expected: size,
                            got: 0,
                        })
                    })?;
                    used += len + TAG_LEN;
                }
                seal_batch(&key, first..end, &mut batch[..used], threads)?;
                out.write_all(&batch[..used]).map_err(io_at(&enc_path))?;
                first = end;
            }
            // The file must not have grown between the passes.
            if f.read(&mut buf[..1]).map_err(io_at(input))? != 0 {
                return Err(StoreError::Blob(BlobError::SizeMismatch {
                    expected: size,
                    got: size + 1,
                }));
            }
            out.finish().map_err(io_at(&enc_path))?;
            write_atomic(&json_path, &header.to_vec())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&enc_path);
            return Err(e);
        }
        Ok(Outgoing {
            header,
            path: enc_path,
        })
    }

    /// A blob in the outbox.
    pub fn outgoing(&self, id: &BlobId) -> Result<Outgoing, StoreError> {
        let (enc, json) = self.outbox_paths(id);
        let bytes = fs::read(&json).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(id.to_hex()),
            _ => io_at(&json)(e),
        })?;
        let header = BlobHeader::from_slice(&bytes, &BlobLimits::unbounded())?;
        Ok(Outgoing { header, path: enc })
    }

    /// Removes a blob from the outbox (after every recipient sent a receipt).
    pub fn remove_outgoing(&self, id: &BlobId) -> Result<(), StoreError> {
        let (enc, json) = self.outbox_paths(id);
        for p in [json, enc] {
            match fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_at(&p)(e)),
            }
        }
        Ok(())
    }
}

/// Plaintext per batch the sender seals at once ([`BlobStore::encrypt_to_outbox`]).
const SEAL_BATCH_BYTES: usize = 2 << 20;

/// Seals chunks `indices` of a blob, laid out back to back in `buf` (each its plaintext
/// followed by [`TAG_LEN`] bytes of room), in place: on `threads` threads (the caller's among
/// them) when there are several chunks, one contiguous run of chunks each.
fn seal_batch(
    key: &StreamKey,
    indices: std::ops::Range<u64>,
    buf: &mut [u8],
    threads: usize,
) -> Result<(), BlobError> {
    let layout = key.layout();
    let seal_run = |run: std::ops::Range<u64>, mut buf: &mut [u8]| -> Result<(), BlobError> {
        for i in run {
            let n = layout.cipher_len(i).ok_or(BlobError::TrailingData)?;
            let (chunk, rest) = std::mem::take(&mut buf).split_at_mut(n);
            key.encrypt_chunk_in_place(i, layout.is_last(i), chunk)?;
            buf = rest;
        }
        Ok(())
    };
    let chunks = indices.end - indices.start;
    let threads = threads as u64;
    if chunks < 2 || threads < 2 {
        return seal_run(indices, buf);
    }
    let per = chunks.div_ceil(threads);
    std::thread::scope(|s| {
        let mut handles: Vec<std::thread::ScopedJoinHandle<'_, Result<(), BlobError>>> = Vec::new();
        let mut rest = buf;
        let mut start = indices.start;
        while start < indices.end {
            let end = (start + per).min(indices.end);
            let bytes: usize = (start..end)
                .map(|i| layout.cipher_len(i).unwrap_or(0))
                .sum();
            let (mine, tail) = std::mem::take(&mut rest).split_at_mut(bytes);
            rest = tail;
            let run = start..end;
            if end == indices.end {
                // The calling thread seals the last run itself.
                let r = seal_run(run, mine);
                for h in handles {
                    h.join().map_err(|_| BlobError::Crypto)??;
                }
                return r;
            }
            handles.push(s.spawn(move || seal_run(run, mine)));
            start = end;
        }
        Ok(())
    })
}

/// Writes `bytes` to `path` atomically and durably (0600): [`crate::config::write_atomic`].
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::config::write_atomic(path, bytes, 0o600).map_err(|e| match e {
        crate::config::ConfigError::Io { path, source } => StoreError::Io {
            path,
            message: source.to_string(),
        },
        other => StoreError::Io {
            path: path.to_path_buf(),
            message: other.to_string(),
        },
    })
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    if let Some(d) = path.parent() {
        File::open(d).and_then(|f| f.sync_all()).map_err(io_at(d))?;
    }
    Ok(())
}

/// Re-reads and re-checks the first `durable` chunks of the partial file at `path`, if any
/// (restoring the running SHA-256 in `hasher`), and returns how many passed: the transfer resumes
/// after them and the file is cut there. Chunks that fail are dropped with what follows them.
fn restore(
    path: &Path,
    header: &BlobHeader,
    key: &StreamKey,
    durable: u64,
    hasher: &mut digest::Context,
    pt: &mut Vec<u8>,
) -> Result<u64, StoreError> {
    if durable == 0 {
        return Ok(0);
    }
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_at(path)(e)),
    };
    let len = f.metadata().map_err(io_at(path))?.len();
    let mut r = BufReader::with_capacity(1 << 20, f);
    let layout = header.layout();
    let mut ct = Vec::new();
    let mut good = 0;
    while good < durable.min(layout.count()) {
        let n = layout.cipher_len(good).unwrap_or(0);
        if chunk_offset(header, good) + n as u64 > len {
            break;
        }
        ct.resize(n, 0);
        r.read_exact(&mut ct).map_err(io_at(path))?;
        if key.open_chunk_into(good, &ct, pt).is_err() {
            break;
        }
        hasher.update(pt);
        good += 1;
    }
    Ok(good)
}

/// One chunk of a [`ChunkBatch`]: the frame's blob id and index, and its ciphertext length.
#[derive(Debug, Clone, Copy)]
pub struct ChunkRef {
    /// the blob id the chunk frame named
    pub blob: BlobId,
    /// the chunk index the frame named
    pub index: u64,
    /// ciphertext bytes
    pub len: usize,
}

/// Chunk ciphertexts a network reader placed back to back in a file buffer, in the layout of
/// the partial file: the buffer's first byte stands for file offset `at` ([`ALIGN`]-aligned) and
/// the first chunk starts at `skip`, so that [`Incoming::push_batch`] can write the buffer
/// as it is. Built with [`ChunkBatch::start`] / [`ChunkBatch::room`] / [`ChunkBatch::filled`].
#[derive(Debug)]
pub struct ChunkBatch {
    buf: AlignedBuf,
    at: u64,
    skip: usize,
    /// Where the next chunk goes: `skip` plus the chunks' lengths.
    end: usize,
    chunks: Vec<ChunkRef>,
}

impl ChunkBatch {
    /// An empty batch in `buf` continuing the file at `offset` ([`Incoming::append_offset`]).
    pub fn start(buf: AlignedBuf, offset: u64) -> Self {
        let skip = (offset % ALIGN as u64) as usize;
        Self {
            buf,
            at: offset - skip as u64,
            skip,
            end: skip,
            chunks: Vec::new(),
        }
    }

    /// The file offset after the last chunk (where the next batch continues).
    pub fn end_offset(&self) -> u64 {
        self.at + self.end as u64
    }

    /// Whether the batch holds no chunk.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Room for the next chunk's `len` ciphertext bytes, or `None` when the buffer is too full
    /// (send this batch and start another). Fill it all, then call [`ChunkBatch::filled`].
    pub fn room(&mut self, len: usize) -> Option<&mut [u8]> {
        let end = self.end;
        self.buf.bytes_mut().get_mut(end..end.checked_add(len)?)
    }

    /// Records the chunk just written into [`ChunkBatch::room`].
    pub fn filled(&mut self, chunk: ChunkRef) {
        self.end += chunk.len;
        self.chunks.push(chunk);
    }
}

/// One transfer being received: checks each chunk as it arrives and appends its ciphertext to the
/// partial file, with periodic durable checkpoints. Dropping it without [`Incoming::finish`] /
/// [`Incoming::suspend`] / [`Incoming::abort`] keeps the partial at its last checkpoint.
pub struct Incoming {
    store: Arc<BlobStore>,
    header: BlobHeader,
    sender_name: String,
    key: StreamKey,
    file: AppendFile,
    path: PathBuf,
    next: u64,
    hasher: digest::Context,
    unsynced: u64,
    /// A background checkpoint: an fsync, then the index record of the chunk count it made
    /// durable.
    syncing: Option<std::thread::JoinHandle<Result<(), StoreError>>>,
    pt: Zeroizing<Vec<u8>>,
    finished: bool,
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming")
            .field("blob", &self.header.blob_id)
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    /// The header being received.
    pub fn header(&self) -> &BlobHeader {
        &self.header
    }

    /// The first chunk the sender must send (the chunks before it are durable).
    pub fn resume_from(&self) -> u64 {
        self.next
    }

    /// The file offset the next chunk's ciphertext goes to (where a [`ChunkBatch`] continues).
    pub fn append_offset(&self) -> u64 {
        chunk_offset(&self.header, self.next)
    }

    /// Checks that `ciphertext` is chunk `expected` (its position, length and tag) and adds its
    /// plaintext to the running SHA-256.
    fn check_chunk(
        &mut self,
        expected: u64,
        index: u64,
        ciphertext: &[u8],
    ) -> Result<(), StoreError> {
        let count = self.header.layout().count();
        if index >= count {
            return Err(BlobError::TrailingData.into());
        }
        if index != expected {
            return Err(StoreError::OutOfOrder {
                expected,
                got: index,
            });
        }
        self.key.open_chunk_into(index, ciphertext, &mut self.pt)?;
        self.hasher.update(&self.pt);
        Ok(())
    }

    /// Counts `chunks` chunks of `bytes` ciphertext bytes as appended; checkpoints in the
    /// background every [`StoreConfig::sync_every_bytes`].
    fn appended(&mut self, chunks: u64, bytes: u64) -> Result<(), StoreError> {
        self.next += chunks;
        self.unsynced += bytes;
        if self.unsynced >= self.store.cfg.sync_every_bytes {
            self.background_checkpoint()?;
        }
        Ok(())
    }

    /// Checks chunk `index` (its position, length and tag) and appends it. Any error means the
    /// transfer must stop (the caller then calls [`Incoming::abort`] or [`Incoming::fail`]).
    pub fn push_chunk(&mut self, index: u64, ciphertext: &[u8]) -> Result<(), StoreError> {
        self.check_chunk(self.next, index, ciphertext)?;
        self.file.write_all(ciphertext).map_err(io_at(&self.path))?;
        self.appended(1, ciphertext.len() as u64)
    }

    /// Checks every chunk of `batch` in order, then appends them all, handing the batch's
    /// buffer itself to the file writer where it lines up (no copy); returns a buffer for the
    /// next batch. At the first bad chunk nothing of the batch is appended, and the transfer
    /// must stop as with [`Incoming::push_chunk`].
    pub fn push_batch(&mut self, batch: ChunkBatch) -> Result<AlignedBuf, StoreError> {
        let ChunkBatch {
            buf,
            at,
            skip,
            chunks,
            ..
        } = batch;
        let mut pos = skip;
        for (i, c) in chunks.iter().enumerate() {
            if c.blob != self.header.blob_id {
                return Err(StoreError::WrongBlob);
            }
            let ct = buf
                .bytes()
                .get(pos..pos + c.len)
                .ok_or_else(|| BlobError::Malformed("chunk batch overruns its buffer".into()))?;
            self.check_chunk(self.next + i as u64, c.index, ct)?;
            pos += c.len;
        }
        let back = self
            .file
            .append_filled(buf, at, skip, pos)
            .map_err(io_at(&self.path))?;
        self.appended(chunks.len() as u64, (pos - skip) as u64)?;
        Ok(back)
    }

    /// Starts a checkpoint on a helper thread: an fsync of what was written so far, then the
    /// index record of the chunk count it made durable, so neither the disk flush nor the index
    /// commit holds up the chunks still arriving. While one is still running no other starts.
    fn background_checkpoint(&mut self) -> Result<(), StoreError> {
        if self.syncing.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(());
        }
        self.collect_sync()?;
        let pending = self.file.start_sync().map_err(io_at(&self.path))?;
        self.unsynced = 0;
        // Only whole chunks are ever appended, so a sync of everything appended covers `next`.
        debug_assert_eq!(pending.target(), chunk_offset(&self.header, self.next));
        let record = self.partial_entry(self.next, now_ms());
        let store = self.store.clone();
        let id = self.header.blob_id;
        let path = self.path.clone();
        self.syncing = Some(std::thread::spawn(move || {
            pending.wait().map_err(io_at(&path))?;
            store.put_partial(&id, &record)
        }));
        Ok(())
    }

    /// Waits for the background checkpoint, if any, and returns its outcome.
    fn collect_sync(&mut self) -> Result<(), StoreError> {
        match self.syncing.take() {
            Some(h) => h.join().map_err(|_| StoreError::Io {
                path: self.path.clone(),
                message: "checkpoint thread panicked".into(),
            })?,
            None => Ok(()),
        }
    }

    fn partial_entry(&self, durable_chunks: u64, now: i64) -> PartialEntry {
        PartialEntry {
            header: self.header.clone(),
            sender_name: self.sender_name.clone(),
            durable_chunks,
            updated_ms: now,
        }
    }

    fn record(&self, durable_chunks: u64, now: i64) -> Result<(), StoreError> {
        self.store.put_partial(
            &self.header.blob_id,
            &self.partial_entry(durable_chunks, now),
        )
    }

    /// Checks a chunk frame body (blob id, index, ciphertext) and appends it.
    pub fn push_frame(&mut self, body: &[u8]) -> Result<(), StoreError> {
        let (id, index, ct) = caucus::blob::transfer::parse_chunk(body)?;
        if id != self.header.blob_id {
            return Err(StoreError::WrongBlob);
        }
        self.push_chunk(index, ct)
    }

    /// Makes the chunks so far durable: fsync, then record the count in the index.
    pub fn checkpoint(&mut self, now: i64) -> Result<(), StoreError> {
        self.collect_sync()?;
        let durable = self.file.sync().map_err(io_at(&self.path))?;
        debug_assert_eq!(durable, chunk_offset(&self.header, self.next));
        self.unsynced = 0;
        self.record(self.next, now)
    }

    /// The end of the stream: checks every chunk arrived and the SHA-256, then makes the blob
    /// durable (file fsynced and moved, header written, index entry committed) and returns the
    /// receipt. On a check failure the partial is deleted.
    pub fn finish(mut self, now: i64) -> Result<Receipt, StoreError> {
        let r = self.finish_inner(now);
        if let Err(e) = &r
            && e.is_integrity()
        {
            self.discard();
        }
        r
    }

    fn finish_inner(&mut self, now: i64) -> Result<Receipt, StoreError> {
        if self.next < self.header.layout().count() {
            return Err(BlobError::Truncated.into());
        }
        let ctx = std::mem::replace(&mut self.hasher, digest::Context::new(&digest::SHA256));
        if ctx.finish().as_ref() != self.header.sha256 {
            return Err(BlobError::DigestMismatch.into());
        }
        self.collect_sync()?;
        self.file.finish().map_err(io_at(&self.path))?;
        let id = self.header.blob_id;
        let dest = self.store.blob_path(&id);
        let json = self.store.root.join(format!("{id}.json"));
        write_atomic(&json, &self.header.to_vec())?;
        fs::rename(&self.path, &dest).map_err(io_at(&dest))?;
        sync_dir(&dest)?;
        let entry = ReceivedEntry {
            header: self.header.clone(),
            sender_name: self.sender_name.clone(),
            received_ms: now,
        };
        let bytes = serde_json::to_vec(&entry).map_err(idx)?;
        let hex = id.to_hex();
        self.store.with_index(|db| {
            let tx = db.begin_write().map_err(idx)?;
            {
                let mut p = tx.open_table(PARTIAL).map_err(idx)?;
                p.remove(hex.as_str()).map_err(idx)?;
                let mut r = tx.open_table(RECEIVED).map_err(idx)?;
                r.insert(hex.as_str(), bytes.as_slice()).map_err(idx)?;
            }
            tx.commit().map_err(idx)
        })?;
        self.finished = true;
        Ok(entry.receipt())
    }

    /// The connection ended early: keep what arrived (fsync + record it) for a resume.
    pub fn suspend(mut self, now: i64) -> Result<u64, StoreError> {
        self.checkpoint(now)?;
        Ok(self.next)
    }

    /// Stops after `error`: a sender fault (bad chunk, content) discards the partial; a local
    /// failure keeps it at its last checkpoint.
    pub fn fail(mut self, error: &StoreError) {
        if error.is_integrity() {
            self.discard();
        }
    }

    /// Deletes the partial.
    pub fn abort(mut self) {
        self.discard();
    }

    fn discard(&mut self) {
        // A checkpoint still running would record the partial again after its removal.
        let _ = self.collect_sync();
        self.finished = true;
        self.store.remove_partial(&self.header.blob_id);
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // A running checkpoint finishes (and records) before another transfer may begin.
        let _ = self.collect_sync();
        self.store.release(&self.header.blob_id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use caucus::blob::transfer::encode_chunk_header;
    use rand::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::super::direct::BUF_LEN;
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn keys() -> &'static [PrivateKey; 3] {
        static K: OnceLock<[PrivateKey; 3]> = OnceLock::new();
        K.get_or_init(|| {
            [
                include_str!("../../../tests/vectors/test_key_a.pem"),
                include_str!("../../../tests/vectors/test_key_b.pem"),
                include_str!("../../../tests/vectors/test_key_c.pem"),
            ]
            .map(|p| PrivateKey::from_pkcs8_pem(p).expect("key"))
        })
    }

    fn content(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 131 % 251) as u8).collect()
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        sender: Arc<BlobStore>,
        receiver: Arc<BlobStore>,
        rdir: PathBuf,
        work: PathBuf,
    }

    fn fixture(cfg: StoreConfig) -> Fixture {
        let dir = tempfile::tempdir().expect("tmp");
        let sdir = dir.path().join("a");
        let rdir = dir.path().join("b");
        let work = dir.path().join("work");
        fs::create_dir_all(&work).expect("mkdir");
        Fixture {
            sender: BlobStore::open(&sdir, StoreConfig::default()).expect("open a"),
            receiver: BlobStore::open(&rdir, cfg).expect("open b"),
            rdir,
            work,
            _dir: dir,
        }
    }

    /// Encrypts `data` from a to [b, c] and returns the outbox entry and its chunks.
    fn outgoing(fx: &Fixture, data: &[u8], cs: u32, seed: u64) -> (Outgoing, Vec<Vec<u8>>) {
        let [a, b, c] = keys();
        let input = fx.work.join(format!("in{seed}"));
        fs::write(&input, data).expect("write");
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let out = fx
            .sender
            .encrypt_to_outbox(
                &input,
                "data.bin",
                a.public_key().party_id(),
                &[b.public_key().clone(), c.public_key().clone()],
                cs,
                NOW,
                &mut rng,
            )
            .expect("encrypt");
        let all = fs::read(&out.path).expect("read");
        assert_eq!(all.len() as u64, out.header.ciphertext_len());
        let layout = out.header.layout();
        let mut chunks = Vec::new();
        for i in 0..layout.count() {
            let off = chunk_offset(&out.header, i) as usize;
            chunks.push(all[off..off + layout.cipher_len(i).expect("len")].to_vec());
        }
        (out, chunks)
    }

    fn receive(fx: &Fixture, h: &BlobHeader) -> Box<Incoming> {
        match fx
            .receiver
            .begin(h.clone(), &keys()[1], "a", NOW)
            .expect("begin")
        {
            Begin::Receive(i) => i,
            Begin::AlreadyReceived(_) => panic!("already received"),
        }
    }

    #[test]
    fn seal_batch_on_any_thread_count_matches_chunk_by_chunk_sealing() {
        let [a, b, _] = keys();
        let mut rng = ChaCha20Rng::seed_from_u64(31);
        let cs = 1024u32;
        // 7 chunks, the last one short.
        let data = content(6 * cs as usize + 123);
        let mut sha = [0u8; 32];
        sha.copy_from_slice(digest::digest(&digest::SHA256, &data).as_ref());
        let (header, file_key) = BlobHeader::build(
            "x",
            data.len() as u64,
            sha,
            a.public_key().party_id(),
            &[b.public_key().clone()],
            cs,
            NOW,
            &mut rng,
        )
        .expect("header");
        let key = StreamKey::new(&file_key, &header).expect("key");
        let layout = header.layout();
        let count = layout.count();
        assert_eq!(count, 7);
        let mut want = Vec::new();
        let mut laid_out = Vec::new();
        for (i, piece) in data.chunks(cs as usize).enumerate() {
            let i = i as u64;
            want.extend(
                key.encrypt_chunk(i, layout.is_last(i), piece)
                    .expect("seal"),
            );
            laid_out.extend_from_slice(piece);
            laid_out.extend_from_slice(&[0u8; TAG_LEN]);
        }
        for threads in [1, 2, 3, 4, 9] {
            let mut buf = laid_out.clone();
            seal_batch(&key, 0..count, &mut buf, threads).expect("seal batch");
            assert_eq!(buf, want, "{threads} threads");
        }
        // A batch from the middle of the blob seals with its own indices.
        let (c0, c1) = (
            chunk_offset(&header, 2) as usize,
            chunk_offset(&header, 5) as usize,
        );
        let mut mid = laid_out[c0..c1].to_vec();
        seal_batch(&key, 2..5, &mut mid, 2).expect("seal batch");
        assert_eq!(mid, &want[c0..c1]);
    }

    #[test]
    fn round_trip_sizes_and_get() {
        let fx = fixture(StoreConfig::default());
        for (seed, len) in [(1u64, 0usize), (2, 1), (3, 4096), (4, 4097), (5, 20_000)] {
            let data = content(len);
            let (out, chunks) = outgoing(&fx, &data, 1024, seed);
            let mut inc = receive(&fx, &out.header);
            assert_eq!(inc.resume_from(), 0);
            for (i, c) in chunks.iter().enumerate() {
                let mut body = encode_chunk_header(&out.header.blob_id, i as u64).to_vec();
                body.extend_from_slice(c);
                inc.push_frame(&body).expect("chunk");
            }
            let receipt = inc.finish(NOW + 1).expect("finish");
            assert!(receipt.matches(&out.header));
            let dest = fx.work.join(format!("out{seed}"));
            fx.receiver
                .get(&out.header.blob_id, &keys()[1], &dest)
                .expect("get");
            assert_eq!(fs::read(&dest).expect("read"), data, "{len}");
            // The other recipient's key decrypts the same ciphertext; the sender's does not.
            assert!(matches!(
                fx.receiver.get(&out.header.blob_id, &keys()[0], &dest),
                Err(StoreError::Blob(BlobError::NotARecipient))
            ));
            // Posting it again answers with the same receipt.
            match fx
                .receiver
                .begin(out.header.clone(), &keys()[1], "a", NOW + 5)
            {
                Ok(Begin::AlreadyReceived(r)) => assert_eq!(r, receipt),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(fx.receiver.list().expect("list").len(), 5);
        // At rest the blob is ciphertext.
        let e = &fx.receiver.list().expect("list")[4];
        let at_rest = fs::read(fx.rdir.join(format!("blobs/{}.enc", e.header.blob_id))).expect("r");
        assert_eq!(at_rest.len() as u64, e.header.ciphertext_len());
        assert_ne!(&at_rest[..100], &content(20_000)[..100]);
    }

    #[test]
    fn interrupted_transfer_resumes_from_last_checkpoint() {
        let cfg = StoreConfig {
            sync_every_bytes: 3 * 1040,
            ..StoreConfig::default()
        };
        let fx = fixture(cfg);
        let data = content(10_000);
        let (out, chunks) = outgoing(&fx, &data, 1024, 7);
        assert_eq!(chunks.len(), 10);
        let mut inc = receive(&fx, &out.header);
        for (i, c) in chunks.iter().enumerate().take(5) {
            inc.push_chunk(i as u64, c).expect("chunk");
        }
        // Chunks 0..3 were checkpointed in the background after chunk 2 (fsync, then the index
        // record); chunk 4 is written but not yet durable.
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(
            fx.receiver.partials().expect("p"),
            vec![(out.header.blob_id, 3)]
        );
        // Dropped without suspend (the connection task died): the last checkpoint stands, and
        // chunk 4, never checkpointed, is sent again.
        drop(inc);
        assert!(fx.receiver.list().expect("list").is_empty());
        assert_eq!(
            fx.receiver.partials().expect("p"),
            vec![(out.header.blob_id, 3)]
        );
        let mut inc = receive(&fx, &out.header);
        assert_eq!(inc.resume_from(), 3);
        // A concurrent second transfer of the same blob is refused.
        assert!(matches!(
            fx.receiver.begin(out.header.clone(), &keys()[1], "a", NOW),
            Err(StoreError::Busy(_))
        ));
        for i in 3..7 {
            inc.push_chunk(i, &chunks[i as usize]).expect("chunk");
        }
        // A clean disconnect: everything received is kept.
        assert_eq!(inc.suspend(NOW).expect("suspend"), 7);
        let mut inc = receive(&fx, &out.header);
        assert_eq!(inc.resume_from(), 7);
        for i in 7..10 {
            inc.push_chunk(i, &chunks[i as usize]).expect("chunk");
        }
        inc.finish(NOW).expect("finish");
        assert!(fx.receiver.partials().expect("p").is_empty());
        let dest = fx.work.join("out");
        fx.receiver
            .get(&out.header.blob_id, &keys()[1], &dest)
            .expect("get");
        assert_eq!(fs::read(&dest).expect("read"), data);
    }

    /// Receives chunks `from..to` the way the network loop does: ciphertexts placed back to
    /// back in file buffers, each full buffer pushed as one batch. Returns the batch error, if any.
    fn push_batched(
        inc: &mut Incoming,
        chunks: &[(BlobId, u64, Vec<u8>)],
        mut buf: AlignedBuf,
    ) -> Result<AlignedBuf, StoreError> {
        let mut batch = ChunkBatch::start(buf, inc.append_offset());
        for (blob, index, ct) in chunks {
            if batch.room(ct.len()).is_none() {
                let next = batch.end_offset();
                buf = inc.push_batch(batch)?;
                batch = ChunkBatch::start(buf, next);
            }
            batch.room(ct.len()).expect("room").copy_from_slice(ct);
            batch.filled(ChunkRef {
                blob: *blob,
                index: *index,
                len: ct.len(),
            });
        }
        inc.push_batch(batch)
    }

    #[test]
    fn batched_chunks_resume_mid_buffer_and_come_out_byte_identical() {
        let cfg = StoreConfig {
            sync_every_bytes: 3 << 20,
            ..StoreConfig::default()
        };
        let fx = fixture(cfg);
        let cs = 65_536u32;
        let data = content(9 * (1 << 20) + 12_345);
        let (out, chunks) = outgoing(&fx, &data, cs, 21);
        let id = out.header.blob_id;
        let all: Vec<_> = (0u64..)
            .zip(&chunks)
            .map(|(i, c)| (id, i, c.clone()))
            .collect();
        // 100 of 145 chunks in batches, then a clean disconnect: resumed at an offset inside a
        // block, the rest arrive in batches too.
        let mut inc = receive(&fx, &out.header);
        let buf = push_batched(&mut inc, &all[..100], AlignedBuf::new(BUF_LEN)).expect("batches");
        assert_eq!(inc.suspend(NOW).expect("suspend"), 100);
        let mut inc = receive(&fx, &out.header);
        assert_eq!(inc.resume_from(), 100);
        assert_ne!(inc.append_offset() % ALIGN as u64, 0);
        push_batched(&mut inc, &all[100..], buf).expect("batches");
        inc.finish(NOW).expect("finish");
        let dest = fx.work.join("out");
        fx.receiver.get(&id, &keys()[1], &dest).expect("get");
        assert_eq!(fs::read(&dest).expect("read"), data);
    }

    #[test]
    fn a_bad_chunk_in_a_batch_stops_the_transfer_with_its_error() {
        let fx = fixture(StoreConfig::default());
        let (out, chunks) = outgoing(&fx, &content(5000), 1024, 22);
        let id = out.header.blob_id;
        let good = |i: usize| (id, i as u64, chunks[i].clone());
        let mut tampered = good(2);
        tampered.2[7] ^= 1;
        let cases = [
            ("decryption_failed", vec![good(0), good(1), tampered]),
            ("out_of_order", vec![good(0), good(2)]),
            (
                "wrong_blob",
                vec![good(0), (BlobId([9; 16]), 1, chunks[1].clone())],
            ),
            (
                "bad_chunk_size",
                vec![good(0), (id, 1, chunks[1][..50].to_vec())],
            ),
            (
                "trailing_data",
                vec![
                    good(0),
                    good(1),
                    good(2),
                    good(3),
                    good(4),
                    (id, 5, chunks[0].clone()),
                ],
            ),
        ];
        for (code, batch) in cases {
            let mut inc = receive(&fx, &out.header);
            let e = push_batched(&mut inc, &batch, AlignedBuf::new(BUF_LEN)).expect_err(code);
            assert_eq!(e.code(), code);
            inc.fail(&e);
            assert!(fx.receiver.partials().expect("p").is_empty(), "{code}");
        }
        assert!(fx.receiver.list().expect("list").is_empty());
    }

    #[test]
    fn corrupted_partial_is_cut_at_the_first_bad_chunk() {
        let cfg = StoreConfig {
            sync_every_bytes: 1,
            ..StoreConfig::default()
        };
        let fx = fixture(cfg);
        let (out, chunks) = outgoing(&fx, &content(5000), 1024, 8);
        let mut inc = receive(&fx, &out.header);
        for i in 0..4 {
            inc.push_chunk(i, &chunks[i as usize]).expect("chunk");
        }
        assert_eq!(inc.suspend(NOW).expect("suspend"), 4);
        let p = fx
            .rdir
            .join(format!("blobs/partial/{}.enc", out.header.blob_id));
        let mut bytes = fs::read(&p).expect("read");
        bytes[1040 * 2 + 5] ^= 1;
        fs::write(&p, &bytes).expect("write");
        let inc = receive(&fx, &out.header);
        assert_eq!(inc.resume_from(), 2);
    }

    #[test]
    fn bad_chunks_stop_the_transfer_and_leave_nothing() {
        let fx = fixture(StoreConfig::default());
        let (out, chunks) = outgoing(&fx, &content(3000), 1024, 9);
        let h = &out.header;
        type Case = (
            &'static str,
            Box<dyn Fn(&mut Incoming) -> Result<(), StoreError>>,
        );
        let c = chunks.clone();
        let cases: Vec<Case> = vec![
            ("decryption_failed", {
                let c = c.clone();
                Box::new(move |inc| {
                    let mut x = c[0].clone();
                    x[3] ^= 1;
                    inc.push_chunk(0, &x)
                })
            }),
            ("decryption_failed", {
                let c = c.clone();
                Box::new(move |inc| inc.push_chunk(0, &c[1]))
            }),
            ("out_of_order", {
                let c = c.clone();
                Box::new(move |inc| inc.push_chunk(1, &c[1]))
            }),
            ("bad_chunk_size", {
                let c = c.clone();
                Box::new(move |inc| inc.push_chunk(0, &c[0][..100]))
            }),
            ("trailing_data", {
                let c = c.clone();
                Box::new(move |inc| inc.push_chunk(3, &c[0]))
            }),
            ("wrong_blob", {
                let c = c.clone();
                Box::new(move |inc| {
                    let mut body = encode_chunk_header(&BlobId([9; 16]), 0).to_vec();
                    body.extend_from_slice(&c[0]);
                    inc.push_frame(&body)
                })
            }),
            ("truncated", {
                let c = c.clone();
                Box::new(move |inc| {
                    inc.push_chunk(0, &c[0])?;
                    Err(StoreError::Blob(BlobError::Truncated))
                })
            }),
        ];
        for (code, f) in cases {
            let mut inc = receive(&fx, h);
            let e = f(&mut inc).expect_err(code);
            assert_eq!(e.code(), code);
            inc.fail(&e);
            assert!(fx.receiver.partials().expect("p").is_empty(), "{code}");
        }
        // Truncation detected by finish.
        let mut inc = receive(&fx, h);
        inc.push_chunk(0, &chunks[0]).expect("0");
        assert_eq!(inc.finish(NOW).expect_err("trunc").code(), "truncated");
        assert!(fx.receiver.partials().expect("p").is_empty());
        assert!(fx.receiver.list().expect("list").is_empty());
        assert_eq!(
            fs::read_dir(fx.rdir.join("blobs/partial"))
                .expect("dir")
                .count(),
            0
        );
    }

    #[test]
    fn refusals_before_any_chunk() {
        let cfg = StoreConfig {
            max_blob_bytes: 4096,
            max_inbox_bytes: 6000,
            ..StoreConfig::default()
        };
        let fx = fixture(cfg);
        let (big, _) = outgoing(&fx, &content(4097), 1024, 10);
        let e = fx
            .receiver
            .begin(big.header.clone(), &keys()[1], "a", NOW)
            .expect_err("too large");
        assert_eq!(e.code(), "too_large");
        let (ok, chunks) = outgoing(&fx, &content(4000), 1024, 11);
        let mut inc = receive(&fx, &ok.header);
        for (i, c) in chunks.iter().enumerate() {
            inc.push_chunk(i as u64, c).expect("chunk");
        }
        inc.finish(NOW).expect("finish");
        let (more, _) = outgoing(&fx, &content(3000), 1024, 12);
        let e = fx
            .receiver
            .begin(more.header.clone(), &keys()[1], "a", NOW)
            .expect_err("full");
        assert!(matches!(e, StoreError::InboxFull { .. }), "{e}");
        // Not a recipient: the sender's own key.
        let (x, _) = outgoing(&fx, &content(10), 1024, 13);
        let e = fx
            .receiver
            .begin(x.header.clone(), &keys()[0], "a", NOW)
            .expect_err("not recipient");
        assert_eq!(e.code(), "not_a_recipient");
        // Another sender reusing a received id.
        let mut forged = ok.header.clone();
        forged.sender = keys()[2].public_key().party_id();
        let e = fx
            .receiver
            .begin(forged, &keys()[1], "c", NOW)
            .expect_err("conflict");
        assert_eq!(e.code(), "conflict");
        assert!(fx.receiver.partials().expect("p").is_empty());
        assert_eq!(fx.receiver.list().expect("list").len(), 1);
    }

    #[test]
    fn cleanup_deletes_old_partials_and_orphans() {
        let fx = fixture(StoreConfig::default());
        let (out, chunks) = outgoing(&fx, &content(3000), 1024, 14);
        let mut inc = receive(&fx, &out.header);
        inc.push_chunk(0, &chunks[0]).expect("0");
        inc.suspend(NOW).expect("suspend");
        let orphan = fx
            .rdir
            .join("blobs/partial/0123456789abcdef0123456789abcdef.enc");
        fs::write(&orphan, b"x").expect("w");
        assert_eq!(fx.receiver.cleanup(NOW + 1000).expect("cleanup"), 1);
        assert!(!orphan.exists());
        assert_eq!(fx.receiver.partials().expect("p").len(), 1);
        let later = NOW + DEFAULT_PARTIAL_TTL_MS + 1;
        assert_eq!(fx.receiver.cleanup(later).expect("cleanup"), 1);
        assert!(fx.receiver.partials().expect("p").is_empty());
        assert_eq!(
            fs::read_dir(fx.rdir.join("blobs/partial"))
                .expect("dir")
                .count(),
            0
        );
    }

    #[test]
    fn get_failure_leaves_no_output_and_restart_keeps_blobs() {
        let fx = fixture(StoreConfig::default());
        let data = content(5000);
        let (out, chunks) = outgoing(&fx, &data, 1024, 15);
        let mut inc = receive(&fx, &out.header);
        for (i, c) in chunks.iter().enumerate() {
            inc.push_chunk(i as u64, c).expect("chunk");
        }
        inc.finish(NOW).expect("finish");
        // Reopen (a restarted node): still listed and readable.
        let again = BlobStore::open(&fx.rdir, StoreConfig::default()).expect("reopen");
        let list = again.list().expect("list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].sender_name, "a");
        let dest = fx.work.join("got");
        again
            .get(&out.header.blob_id, &keys()[1], &dest)
            .expect("get");
        assert_eq!(fs::read(&dest).expect("r"), data);
        // Corrupt the stored ciphertext: get fails and writes nothing.
        let p = fx.rdir.join(format!("blobs/{}.enc", out.header.blob_id));
        let mut bytes = fs::read(&p).expect("r");
        bytes[3000] ^= 1;
        fs::write(&p, &bytes).expect("w");
        let dest2 = fx.work.join("bad");
        let e = again
            .get(&out.header.blob_id, &keys()[1], &dest2)
            .expect_err("corrupt");
        assert_eq!(e.code(), "decryption_failed");
        assert!(!dest2.exists());
        assert_eq!(
            fs::read_dir(&fx.work).expect("d").count(),
            2,
            "only the input and the good output"
        );
        assert!(matches!(
            again.get(&BlobId([0; 16]), &keys()[1], &dest2),
            Err(StoreError::NotFound(_))
        ));
    }
}
