//! Background filler for a Paillier [`RandomnessPool`]: a thread that keeps the pool of
//! precomputed `r^N mod N²` topped up so that encryption on the hot path is one multiplication.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use caucus::paillier::RandomnessPool;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// A running filler thread; stopped and joined on drop.
pub struct PoolFiller {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl PoolFiller {
    /// Starts a thread filling `pool` whenever it is not full (seeded from the OS rng).
    pub fn spawn(pool: Arc<RandomnessPool>) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("rn-pool".into())
            .spawn(move || {
                let mut rng = ChaCha20Rng::from_rng(&mut rand::rng());
                while !flag.load(Ordering::Relaxed) {
                    if !pool.fill_one(&mut rng) {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                }
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

impl Drop for PoolFiller {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use caucus::paillier::Keypair;
    use num_bigint::BigUint;

    #[test]
    fn filler_tops_up_the_pool_and_stops() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let kp = Keypair::generate(256, &mut rng).expect("kp");
        let pool = Arc::new(RandomnessPool::new(kp.public(), 8));
        let filler = PoolFiller::spawn(pool.clone()).expect("spawn");
        let start = std::time::Instant::now();
        while !pool.is_full() && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(pool.is_full());
        let c = kp
            .public()
            .encrypt_pooled(&BigUint::from(3u8), &pool, &mut rng)
            .expect("enc");
        assert_eq!(kp.decrypt(&c).expect("dec"), BigUint::from(3u8));
        filler.stop();
    }
}
