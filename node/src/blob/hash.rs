//! The receiver's SHA-256 of a blob's plaintext, on a thread of its own.
//!
//! Checking a chunk costs about as much in SHA-256 as in AES-GCM (on the project's machines
//! 0.6 s per GiB each), so hashing on the chunk worker made one thread do both, in turn. Here
//! the worker opens chunks straight into the [`HashThread::buffer`], a batch of about 1 MiB of
//! plaintext; each full batch goes to the hashing thread in order and an empty one comes back,
//! so the two threads meet once per megabyte, not once per chunk, and at most three batches
//! exist. Batches never grow past the capacity they were made with (no reallocation leaves
//! plaintext behind) and are zeroized when dropped.

use std::io;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

use aws_lc_rs::digest;
use zeroize::Zeroizing;

/// Plaintext bytes per batch handed to the hashing thread (a batch holds at least one chunk).
pub const BATCH_BYTES: usize = 1 << 20;

/// Batches per stream: one being filled, one being hashed, one queued.
const BATCHES: usize = 3;

type Batch = Zeroizing<Vec<u8>>;

/// A SHA-256 computed on a background thread from batches of plaintext, in order.
pub struct HashThread {
    current: Batch,
    capacity: usize,
    /// Batches not made yet.
    unmade: usize,
    full: Option<SyncSender<Batch>>,
    empty: Receiver<Batch>,
    thread: Option<JoinHandle<digest::Context>>,
}

impl std::fmt::Debug for HashThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashThread")
            .field("buffered", &self.current.len())
            .finish_non_exhaustive()
    }
}

fn gone() -> io::Error {
    io::Error::other("the hashing thread stopped")
}

impl HashThread {
    /// Starts a thread that goes on from `ctx` (the hash of what came before), taking pieces of
    /// up to `max_piece` bytes (the blob's chunk size).
    pub fn start(ctx: digest::Context, max_piece: usize) -> io::Result<Self> {
        let capacity = BATCH_BYTES.max(max_piece);
        let (full, full_rx) = sync_channel::<Batch>(BATCHES);
        let (empty_tx, empty) = sync_channel::<Batch>(BATCHES);
        let thread = std::thread::Builder::new()
            .name("blob-hash".into())
            .spawn(move || {
                let mut ctx = ctx;
                for mut batch in full_rx {
                    ctx.update(&batch);
                    batch.clear();
                    // Never blocks: the channel holds every batch there is.
                    let _ = empty_tx.send(batch);
                }
                ctx
            })?;
        Ok(Self {
            current: Zeroizing::new(Vec::with_capacity(capacity)),
            capacity,
            unmade: BATCHES - 1,
            full: Some(full),
            empty,
            thread: Some(thread),
        })
    }

    /// The batch to append the next `room` bytes of plaintext to (at most `max_piece`): the
    /// current one, or a fresh one if they would not fit.
    pub fn buffer(&mut self, room: usize) -> io::Result<&mut Vec<u8>> {
        if room > self.capacity {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "piece larger than the chunk size",
            ));
        }
        if self.current.len() + room > self.capacity {
            self.flush()?;
        }
        Ok(&mut self.current)
    }

    /// Hands the current batch to the thread and takes an empty one.
    fn flush(&mut self) -> io::Result<()> {
        if self.current.is_empty() {
            return Ok(());
        }
        let next = if self.unmade > 0 {
            self.unmade -= 1;
            Zeroizing::new(Vec::with_capacity(self.capacity))
        } else {
            self.empty.recv().map_err(|_| gone())?
        };
        let batch = std::mem::replace(&mut self.current, next);
        self.full
            .as_ref()
            .ok_or_else(gone)?
            .send(batch)
            .map_err(|_| gone())
    }

    /// Hashes what is left and returns the SHA-256 of everything (the thread ends).
    pub fn finish(&mut self) -> io::Result<[u8; 32]> {
        self.flush()?;
        drop(self.full.take());
        let ctx = self
            .thread
            .take()
            .ok_or_else(gone)?
            .join()
            .map_err(|_| gone())?;
        let d = ctx.finish();
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Ok(out)
    }
}

impl Drop for HashThread {
    fn drop(&mut self) {
        drop(self.full.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(parts: &[&[u8]]) -> [u8; 32] {
        let mut c = digest::Context::new(&digest::SHA256);
        for p in parts {
            c.update(p);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(c.finish().as_ref());
        out
    }

    #[test]
    fn pieces_of_any_size_hash_as_one_stream_in_order() {
        let data: Vec<u8> = (0..5 * BATCH_BYTES + 777)
            .map(|i| (i as u8).wrapping_mul(13) ^ (i >> 11) as u8)
            .collect();
        for piece in [1usize, 1000, 65_536, BATCH_BYTES - 1, BATCH_BYTES] {
            let mut h =
                HashThread::start(digest::Context::new(&digest::SHA256), piece).expect("start");
            for p in data.chunks(piece) {
                h.buffer(p.len()).expect("buffer").extend_from_slice(p);
            }
            assert_eq!(
                h.finish().expect("finish"),
                sha256(&[&data]),
                "piece {piece}"
            );
        }
    }

    #[test]
    fn it_goes_on_from_a_prefix_and_never_grows_a_batch() {
        let (prefix, rest) = (b"resumed prefix".as_slice(), vec![7u8; 3 * BATCH_BYTES]);
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(prefix);
        let piece = BATCH_BYTES + 5; // a chunk size above the batch size
        let mut h = HashThread::start(ctx, piece).expect("start");
        for p in rest.chunks(piece) {
            let b = h.buffer(p.len()).expect("buffer");
            let cap = b.capacity();
            b.extend_from_slice(p);
            assert_eq!(b.capacity(), cap, "no reallocation");
        }
        assert!(h.buffer(piece + 1).is_err(), "a piece over the chunk size");
        assert_eq!(h.finish().expect("finish"), sha256(&[prefix, &rest]));
        assert!(h.finish().is_err(), "finished once");
    }

    #[test]
    fn debug_shows_how_much_is_buffered_never_the_plaintext() {
        let mut h = HashThread::start(digest::Context::new(&digest::SHA256), 10).expect("start");
        h.buffer(10)
            .expect("buffer")
            .extend_from_slice(b"SECRETDATA");
        let shown = format!("{h:?}");
        assert!(shown.contains("buffered: 10"), "{shown}");
        assert!(
            !shown.contains("SECRETDATA") && !shown.contains("83, 69"),
            "{shown}"
        );
    }
}
