//! The sans-IO key-generation state machine [`Keygen`].
//!
//! Every step, each party sends exactly one message to every other party (a [`Outgoing::Direct`]
//! with per-recipient content or a [`Outgoing::Broadcast`]) and advances once it holds one message
//! of the current step from every other party. Messages for the next step that arrive early are
//! buffered (at most one per sender); messages for past steps, for steps further ahead, of another
//! run, batch or phase, duplicated, of the wrong length or with out-of-range values are refused
//! with an error naming the sender, before any big-number work. An error ends the run (the state
//! is consumed).
//!
//! All randomness comes from a ChaCha20 stream seeded from the caller's rng at [`Keygen::start`]
//! and is drawn in a fixed order, so a run is deterministic for a given seed whatever the message
//! arrival order.

use std::collections::BTreeMap;

use num_bigint::{BigInt, BigRng010, BigUint, Sign};
use num_traits::Zero;
use rand::{CryptoRng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::biprime;
use super::message::MESSAGE_VERSION;
use super::params::Context;
use super::secret::{self, Bounds};
use super::sieve::{self, CandSieve, Slot};
use super::{
    Body, Header, KeyShare, KeygenError, KeygenMessage, Outgoing, Params, Phase, Progress,
};
use crate::arith;
use crate::paillier::PublicKey;
use crate::sharing;

/// At most this many candidates that pass the first biprimality round go on to the rest.
const MAX_FINALISTS: usize = 4;

/// Per-batch local state.
struct BatchState {
    cands: Vec<CandSieve>,
    slots: Vec<Slot>,
    /// Own additive shares p_i, q_i per candidate (after the sieve). Secret.
    p: Vec<BigUint>,
    q: Vec<BigUint>,
    /// Public candidate moduli.
    n: Vec<BigUint>,
    survivors: Vec<usize>,
    /// Survivors tested so far (the first biprimality round runs in chunks).
    bf_cursor: usize,
    /// The chunk in the current first round.
    bf_chunk: Vec<usize>,
    finalists: Vec<usize>,
}

impl Drop for BatchState {
    fn drop(&mut self) {
        for x in self.p.iter_mut().chain(self.q.iter_mut()) {
            arith::zeroize_biguint(x);
        }
    }
}

/// Phase-5 local state.
struct SecretState {
    public: PublicKey,
    bounds: Bounds,
    /// ρ(j) = Σ_i P_i(j), from round 2 (secret).
    rho: BigInt,
}

impl Drop for SecretState {
    fn drop(&mut self) {
        arith::zeroize_bigint(&mut self.rho);
    }
}

enum State {
    Batch(Box<BatchState>),
    Secret(Box<SecretState>),
    Done(Box<KeyShare>),
}

/// One party's key-generation state machine.
pub struct Keygen {
    ctx: Context,
    rng: ChaCha20Rng,
    step: u32,
    batch: u32,
    awaiting: Phase,
    inbox: BTreeMap<u32, Body>,
    early: BTreeMap<u32, KeygenMessage>,
    progress: Progress,
    state: State,
}

impl std::fmt::Debug for Keygen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keygen")
            .field("index", &self.ctx.index)
            .field("step", &self.step)
            .field("batch", &self.batch)
            .field("awaiting", &self.awaiting)
            .field("progress", &self.progress)
            .field("secrets", &"<redacted>")
            .finish()
    }
}

impl Keygen {
    /// Starts party `index` (1..=n) of the run `run` (see [`super::run_tag`]); returns the state
    /// and the first messages to send.
    pub fn start<R: CryptoRng + ?Sized>(
        params: &Params,
        index: u32,
        run: [u8; 32],
        rng: &mut R,
    ) -> Result<(Self, Vec<Outgoing>), KeygenError> {
        let ctx = Context::new(params, index, run)?;
        let mut kg = Self {
            ctx,
            rng: ChaCha20Rng::from_rng(rng),
            step: 0,
            batch: 0,
            awaiting: Phase::SieveShares,
            inbox: BTreeMap::new(),
            early: BTreeMap::new(),
            progress: Progress::default(),
            state: State::Batch(Box::new(BatchState::empty())),
        };
        let out = kg.begin_batch()?;
        Ok((kg, out))
    }

    /// Progress counters.
    pub fn progress(&self) -> Progress {
        self.progress
    }

    /// This party's index.
    pub fn index(&self) -> u32 {
        self.ctx.index
    }

    /// The current step.
    pub fn step(&self) -> u32 {
        self.step
    }

    /// The phase of the messages awaited now.
    pub fn awaiting(&self) -> Phase {
        self.awaiting
    }

    /// Whether the key share is ready.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done(_))
    }

    /// The key share, once done.
    pub fn into_share(self) -> Option<KeyShare> {
        match self.state {
            State::Done(ks) => Some(*ks),
            _ => None,
        }
    }

    /// Handles one message from party `from` (as authenticated by the transport).
    pub fn handle(
        mut self,
        from: u32,
        msg: KeygenMessage,
    ) -> Result<(Self, Vec<Outgoing>), KeygenError> {
        if self.is_done() {
            return Err(KeygenError::Finished);
        }
        if from == 0 || from > self.ctx.n || from == self.ctx.index {
            return Err(KeygenError::UnknownSender { culprit: from });
        }
        let h = &msg.header;
        if h.version != MESSAGE_VERSION {
            return Err(KeygenError::UnsupportedVersion {
                culprit: from,
                version: h.version,
            });
        }
        if h.run.as_slice() != self.ctx.run.as_slice() {
            return Err(KeygenError::WrongRun { culprit: from });
        }
        if h.step < self.step {
            return Err(KeygenError::PastRound {
                culprit: from,
                step: h.step,
            });
        }
        if h.step > self.step.saturating_add(1) {
            return Err(KeygenError::FutureRound {
                culprit: from,
                step: h.step,
            });
        }
        if h.step == self.step + 1 {
            if self.early.contains_key(&from) {
                return Err(KeygenError::Duplicate { culprit: from });
            }
            self.early.insert(from, msg);
            return Ok((self, Vec::new()));
        }
        self.accept(from, msg)?;
        let out = self.pump()?;
        Ok((self, out))
    }

    fn accept(&mut self, from: u32, msg: KeygenMessage) -> Result<(), KeygenError> {
        if msg.header.batch != self.batch || msg.body.phase() != self.awaiting {
            return Err(KeygenError::UnexpectedMessage { culprit: from });
        }
        if self.inbox.contains_key(&from) {
            return Err(KeygenError::Duplicate { culprit: from });
        }
        self.validate(from, &msg.body)?;
        self.inbox.insert(from, msg.body);
        Ok(())
    }

    /// Counts and ranges, before any big-number work.
    fn validate(&self, from: u32, body: &Body) -> Result<(), KeygenError> {
        let count = |expected: usize, got: usize| {
            if expected == got {
                Ok(())
            } else {
                Err(KeygenError::WrongCount {
                    culprit: from,
                    expected,
                    got,
                })
            }
        };
        let bad = KeygenError::InvalidShare { culprit: from };
        match (&self.state, body) {
            (State::Batch(b), Body::SecretShares { .. } | Body::SecretReshare { .. }) => {
                let _ = b;
                Err(KeygenError::UnexpectedMessage { culprit: from })
            }
            (State::Batch(b), body) => {
                let values = body.values();
                let expected = match self.awaiting {
                    Phase::SieveShares => 3 * b.slots.len(),
                    Phase::SieveOpen => b.slots.len(),
                    Phase::ProductShares => 3 * b.cands.len(),
                    Phase::ProductOpen => b.cands.len(),
                    Phase::BiprimeFirst => b.bf_chunk.len(),
                    Phase::BiprimeRest => b.finalists.len() * self.rest_per_finalist(),
                    Phase::SecretShares | Phase::SecretReshare => 0,
                };
                count(expected, values.len())?;
                match self.awaiting {
                    Phase::BiprimeFirst => {
                        for (v, &c) in values.iter().zip(&b.bf_chunk) {
                            if v.is_zero() || v >= &b.n[c] {
                                return Err(bad);
                            }
                        }
                    }
                    Phase::BiprimeRest => {
                        let per = self.rest_per_finalist();
                        for (i, v) in values.iter().enumerate() {
                            let c = b.finalists[i / per];
                            if v >= &b.n[c] {
                                return Err(bad);
                            }
                        }
                    }
                    _ => {
                        if values.iter().any(|v| v >= &self.ctx.field) {
                            return Err(bad);
                        }
                    }
                }
                Ok(())
            }
            (
                State::Secret(s),
                Body::SecretShares {
                    phi,
                    beta,
                    mask,
                    root_mask,
                },
            ) => {
                let bd = &s.bounds;
                if phi.bits() > bd.f_eval
                    || beta.bits() > bd.b_eval
                    || mask.bits() > bd.z_eval
                    || root_mask.bits() > bd.rho_eval
                {
                    return Err(bad);
                }
                Ok(())
            }
            (State::Secret(s), Body::SecretReshare { reshare, opening }) => {
                let bd = &s.bounds;
                if reshare.bits() > bd.g_eval || opening.bits() > bd.w_eval {
                    return Err(bad);
                }
                Ok(())
            }
            _ => Err(KeygenError::UnexpectedMessage { culprit: from }),
        }
    }

    fn rest_per_finalist(&self) -> usize {
        (self.ctx.params.biprime_rounds as usize - 1) + 2 * self.ctx.params.twisted_rounds as usize
    }

    /// Advances while the current step is complete.
    fn pump(&mut self) -> Result<Vec<Outgoing>, KeygenError> {
        let mut out = Vec::new();
        while self.inbox.len() == self.ctx.n as usize && !self.is_done() {
            let msgs = std::mem::take(&mut self.inbox);
            self.step += 1;
            self.progress.rounds += 1;
            out.extend(self.advance(msgs)?);
            for (from, m) in std::mem::take(&mut self.early) {
                self.accept(from, m)?;
            }
        }
        Ok(out)
    }

    fn header(&self) -> Header {
        Header {
            version: MESSAGE_VERSION,
            run: self.ctx.run.to_vec(),
            step: self.step,
            batch: self.batch,
        }
    }

    /// Sends `bodies[j − 1]` to party j; our own goes straight to the inbox.
    fn emit_direct(&mut self, phase: Phase, bodies: Vec<Body>) -> Vec<Outgoing> {
        self.awaiting = phase;
        let mut out = Vec::with_capacity(bodies.len());
        for (j, body) in (1..=self.ctx.n).zip(bodies) {
            if j == self.ctx.index {
                self.inbox.insert(j, body);
            } else {
                out.push(Outgoing::Direct {
                    to: j,
                    msg: KeygenMessage {
                        header: self.header(),
                        body,
                    },
                });
            }
        }
        out
    }

    fn emit_broadcast(&mut self, phase: Phase, body: Body) -> Vec<Outgoing> {
        self.awaiting = phase;
        let msg = KeygenMessage {
            header: self.header(),
            body: body.clone(),
        };
        self.inbox.insert(self.ctx.index, body);
        vec![Outgoing::Broadcast(msg)]
    }

    fn batch_state(&mut self) -> &mut BatchState {
        match &mut self.state {
            State::Batch(b) => b,
            // Not reachable: batch phases run only in the batch state (guarded by `validate`).
            _ => unreachable_state(),
        }
    }

    fn begin_batch(&mut self) -> Result<Vec<Outgoing>, KeygenError> {
        if self.batch >= self.ctx.params.max_batches {
            return Err(KeygenError::TooManyBatches(self.batch));
        }
        self.progress.batches += 1;
        let nb = self.ctx.batch_size;
        let primes = self.ctx.sieve.len();
        let mut slots = Vec::with_capacity(nb * sieve::VARIANTS_FIRST);
        for c in 0..nb {
            for _ in 0..sieve::VARIANTS_FIRST {
                slots.push(sieve::draw_slot(&self.ctx, c, &mut self.rng));
            }
        }
        let mut b = BatchState::empty();
        b.cands = (0..nb).map(|_| CandSieve::new(primes)).collect();
        self.state = State::Batch(Box::new(b));
        Ok(self.send_sieve_shares(slots))
    }

    fn next_batch(&mut self) -> Result<Vec<Outgoing>, KeygenError> {
        self.batch += 1;
        self.begin_batch()
    }

    /// Phase 1 > each party Shamir-shares its CRT values c_p, c_q (degree t) and M·R_i (degree 2t).
    fn send_sieve_shares(&mut self, slots: Vec<Slot>) -> Vec<Outgoing> {
        let ctx = &self.ctx;
        let n = ctx.n as usize;
        let r4 = sieve::r4(ctx);
        let mut per: Vec<Vec<BigUint>> = vec![Vec::with_capacity(3 * slots.len()); n];
        for slot in &slots {
            let cp = ctx.crt(&slot.a, r4);
            let cq = ctx.crt(&slot.b, r4);
            let mask = &ctx.m * self.rng.random_biguint(ctx.sieve_mask_bits);
            let sp = sharing::share_field(&cp, ctx.t, ctx.n, &ctx.field, &mut self.rng);
            let sq = sharing::share_field(&cq, ctx.t, ctx.n, &ctx.field, &mut self.rng);
            let sz = sharing::share_field(&mask, 2 * ctx.t, ctx.n, &ctx.field, &mut self.rng);
            for (v, ((a, b), z)) in per.iter_mut().zip(sp.into_iter().zip(sq).zip(sz)) {
                v.push(a);
                v.push(b);
                v.push(z);
            }
        }
        self.batch_state().slots = slots;
        let bodies = per
            .into_iter()
            .map(|shares| Body::SieveShares { shares })
            .collect();
        self.emit_direct(Phase::SieveShares, bodies)
    }

    /// Local product of summed shares: A(j)·B(j) + Z(j) mod P for each triple.
    fn local_products(&self, msgs: &BTreeMap<u32, Body>, triples: usize) -> Vec<BigUint> {
        let p = &self.ctx.field;
        (0..triples)
            .map(|s| {
                let (mut a, mut b, mut z) = (BigUint::zero(), BigUint::zero(), BigUint::zero());
                for body in msgs.values() {
                    let v = body.values();
                    a += &v[3 * s];
                    b += &v[3 * s + 1];
                    z += &v[3 * s + 2];
                }
                let ab = sharing::reduce_mod(a, p) * sharing::reduce_mod(b, p);
                sharing::reduce_mod(ab + z, p)
            })
            .collect()
    }

    /// Interpolates f(0) of each position from the n broadcast points (Lagrange over 1..=n).
    fn interpolate(&self, msgs: &BTreeMap<u32, Body>, len: usize) -> Vec<BigUint> {
        let p = &self.ctx.field;
        (0..len)
            .map(|s| {
                let mut acc = BigUint::zero();
                for (body, l) in msgs.values().zip(&self.ctx.lagrange) {
                    acc += &body.values()[s] * l;
                }
                sharing::reduce_mod(acc, p)
            })
            .collect()
    }

    fn advance(&mut self, msgs: BTreeMap<u32, Body>) -> Result<Vec<Outgoing>, KeygenError> {
        match self.awaiting {
            Phase::SieveShares => {
                let slots = self.batch_state().slots.len();
                let values = self.local_products(&msgs, slots);
                Ok(self.emit_broadcast(Phase::SieveOpen, Body::SieveOpen { values }))
            }
            Phase::SieveOpen => self.on_sieve_open(&msgs),
            Phase::ProductShares => {
                let cands = self.batch_state().cands.len();
                let values = self.local_products(&msgs, cands);
                Ok(self.emit_broadcast(Phase::ProductOpen, Body::ProductOpen { values }))
            }
            Phase::ProductOpen => self.on_product_open(&msgs),
            Phase::BiprimeFirst => self.on_biprime_first(&msgs),
            Phase::BiprimeRest => self.on_biprime_rest(&msgs),
            Phase::SecretShares => self.on_secret_shares(msgs),
            Phase::SecretReshare => self.on_secret_reshare(msgs),
        }
    }

    /// Phase 1 > open V, keep V mod m for every unresolved prime; redraw what stays unresolved.
    fn on_sieve_open(&mut self, msgs: &BTreeMap<u32, Body>) -> Result<Vec<Outgoing>, KeygenError> {
        let nslots = self.batch_state().slots.len();
        let opened = self.interpolate(msgs, nslots);
        let mut redraws = 0;
        {
            let ctx = &self.ctx;
            let State::Batch(b) = &mut self.state else {
                unreachable_state()
            };
            let slots = std::mem::take(&mut b.slots);
            for (slot, v) in slots.iter().zip(&opened) {
                redraws += sieve::apply_open(ctx, &mut b.cands[slot.cand], slot, v);
            }
        }
        self.progress.sieve_redraws += redraws;
        let pending: Vec<usize> = (0..self.batch_state().cands.len())
            .filter(|&c| self.batch_state().cands[c].pending())
            .collect();
        if !pending.is_empty() {
            let mut slots = Vec::with_capacity(pending.len() * sieve::VARIANTS_LATER);
            for c in pending {
                for _ in 0..sieve::VARIANTS_LATER {
                    slots.push(sieve::draw_slot(&self.ctx, c, &mut self.rng));
                }
            }
            return Ok(self.send_sieve_shares(slots));
        }
        // Phase 1 > p_i = CRT(a_i) + M·x_i (+ O for party 1), same for q_i.
        // Phase 2 > share p_i, q_i (degree t) and a zero (degree 2t) over GF(P).
        let ctx = &self.ctx;
        let n = ctx.n as usize;
        let r4 = sieve::r4(ctx);
        let ncand = match &self.state {
            State::Batch(b) => b.cands.len(),
            _ => unreachable_state(),
        };
        let mut ps = Vec::with_capacity(ncand);
        let mut qs = Vec::with_capacity(ncand);
        let mut per: Vec<Vec<BigUint>> = vec![Vec::with_capacity(3 * ncand); n];
        for c in 0..ncand {
            let (ca, cb) = match &self.state {
                State::Batch(b) => (ctx.crt(&b.cands[c].a, r4), ctx.crt(&b.cands[c].b, r4)),
                _ => unreachable_state(),
            };
            let mut pi = ca + &ctx.m * self.rng.random_biguint_below(&ctx.x_bound);
            let mut qi = cb + &ctx.m * self.rng.random_biguint_below(&ctx.x_bound);
            if ctx.index == 1 {
                pi += &ctx.offset;
                qi += &ctx.offset;
            }
            let sp = sharing::share_field(&pi, ctx.t, ctx.n, &ctx.field, &mut self.rng);
            let sq = sharing::share_field(&qi, ctx.t, ctx.n, &ctx.field, &mut self.rng);
            let sz = sharing::share_field(
                &BigUint::zero(),
                2 * ctx.t,
                ctx.n,
                &ctx.field,
                &mut self.rng,
            );
            for (v, ((a, b), z)) in per.iter_mut().zip(sp.into_iter().zip(sq).zip(sz)) {
                v.push(a);
                v.push(b);
                v.push(z);
            }
            ps.push(pi);
            qs.push(qi);
        }
        {
            let b = self.batch_state();
            b.p = ps;
            b.q = qs;
        }
        let bodies = per
            .into_iter()
            .map(|shares| Body::ProductShares { shares })
            .collect();
        Ok(self.emit_direct(Phase::ProductShares, bodies))
    }

    /// Phase 2 > interpolate N; Phase 3 > trial division; Phase 4 > first biprimality round.
    fn on_product_open(
        &mut self,
        msgs: &BTreeMap<u32, Body>,
    ) -> Result<Vec<Outgoing>, KeygenError> {
        let ncand = self.batch_state().cands.len();
        let ns = self.interpolate(msgs, ncand);
        let k = u64::from(self.ctx.params.bits);
        let mut survivors = Vec::new();
        let mut rejects = 0;
        for (c, n) in ns.iter().enumerate() {
            // N has exactly k bits by construction (p, q ∈ [0.75·2^(k/2), 2^(k/2))).
            // N ≡ 1 (mod 4) as p ≡ q ≡ 3 (mod 4): a cheap sanity check on the opened value.
            let mod4 = n.iter_u32_digits().next().unwrap_or(0) & 3;
            if n.bits() == k && mod4 == 1 && !self.ctx.trial.has_factor(n) {
                survivors.push(c);
            } else {
                rejects += 1;
            }
        }
        self.progress.candidates += ncand as u64;
        self.progress.trial_division_rejects += rejects;
        {
            let b = self.batch_state();
            b.n = ns;
            b.survivors = survivors.clone();
        }
        if survivors.is_empty() {
            return self.next_batch();
        }
        Ok(self.start_bf_chunk())
    }

    /// Phase 4 > first biprimality round for the next chunk of survivors (small public bases).
    fn start_bf_chunk(&mut self) -> Vec<Outgoing> {
        let chunk_size = self.ctx.bf_chunk;
        let values = {
            let ctx = &self.ctx;
            let State::Batch(b) = &mut self.state else {
                unreachable_state()
            };
            let end = (b.bf_cursor + chunk_size).min(b.survivors.len());
            b.bf_chunk = b.survivors[b.bf_cursor..end].to_vec();
            b.bf_cursor = end;
            b.bf_chunk
                .iter()
                .map(|&c| {
                    let g = biprime::small_jacobi_base(&ctx.run, &b.n[c]);
                    let d = designated(ctx, c, 0);
                    let e = jacobi_exponent(ctx, &b.n[c], &b.p[c], &b.q[c], d);
                    // AWS-LC's exponentiation beats a small-base word-multiplication shortcut
                    // 1.7–2× here: the squarings dominate.
                    caucus_modexp::modpow(&g, &e, &b.n[c])
                })
                .collect()
        };
        self.emit_broadcast(Phase::BiprimeFirst, Body::BiprimeFirst { values })
    }

    fn on_biprime_first(
        &mut self,
        msgs: &BTreeMap<u32, Body>,
    ) -> Result<Vec<Outgoing>, KeygenError> {
        let mut finalists = Vec::new();
        let tested;
        let more;
        {
            let State::Batch(b) = &self.state else {
                unreachable_state()
            };
            tested = b.bf_chunk.len();
            more = b.bf_cursor < b.survivors.len();
            for (i, &c) in b.bf_chunk.iter().enumerate() {
                let vals: Vec<&BigUint> = msgs.values().map(|body| &body.values()[i]).collect();
                let d = designated_position(&self.ctx, c, 0);
                if biprime::jacobi_check(&vals, d, &b.n[c]) {
                    finalists.push(c);
                    if finalists.len() == MAX_FINALISTS {
                        break;
                    }
                }
            }
        }
        self.progress.biprimality_tests += tested as u64;
        if finalists.is_empty() {
            return if more {
                Ok(self.start_bf_chunk())
            } else {
                self.next_batch()
            };
        }
        self.batch_state().finalists = finalists.clone();
        let ctx = &self.ctx;
        let State::Batch(b) = &self.state else {
            unreachable_state()
        };
        let mut values = Vec::with_capacity(finalists.len() * self.rest_per_finalist());
        for &c in &finalists {
            let n = &b.n[c];
            let own = jacobi_exponent(ctx, n, &b.p[c], &b.q[c], false);
            let big = jacobi_exponent(ctx, n, &b.p[c], &b.q[c], true);
            let mt = caucus_modexp::Modulus::new(n);
            for idx in 1..ctx.params.biprime_rounds {
                let g = biprime::jacobi_base(&ctx.run, n, idx);
                let e = if designated(ctx, c, idx) { &big } else { &own };
                values.push(match &mt {
                    Some(mt) => mt.pow(&g, e),
                    None => g.modpow(e, n),
                });
            }
            for idx in 0..ctx.params.twisted_rounds {
                let u = biprime::twisted_base(&ctx.run, n, idx);
                let d = designated(ctx, c, ctx.params.biprime_rounds + idx);
                let et = twisted_exponent(ctx, n, &b.p[c], &b.q[c], d);
                let (x, y) = biprime::twisted_pow(&u, &et, n);
                values.push(x);
                values.push(y);
            }
        }
        Ok(self.emit_broadcast(Phase::BiprimeRest, Body::BiprimeRest { values }))
    }

    fn on_biprime_rest(
        &mut self,
        msgs: &BTreeMap<u32, Body>,
    ) -> Result<Vec<Outgoing>, KeygenError> {
        let per = self.rest_per_finalist();
        let jac = self.ctx.params.biprime_rounds as usize - 1;
        let mut chosen = None;
        {
            let State::Batch(b) = &self.state else {
                unreachable_state()
            };
            for (f, &c) in b.finalists.iter().enumerate() {
                let n = &b.n[c];
                let at = |body: &Body, i: usize| body.values()[f * per + i].clone();
                let jac_ok = (0..jac).all(|i| {
                    let vals: Vec<BigUint> = msgs.values().map(|body| at(body, i)).collect();
                    let d = designated_position(&self.ctx, c, i as u32 + 1);
                    biprime::jacobi_check(&vals.iter().collect::<Vec<_>>(), d, n)
                });
                let tw_ok = jac_ok
                    && (0..self.ctx.params.twisted_rounds as usize).all(|r| {
                        let vals: Vec<(BigUint, BigUint)> = msgs
                            .values()
                            .map(|body| (at(body, jac + 2 * r), at(body, jac + 2 * r + 1)))
                            .collect();
                        biprime::twisted_check(&vals, n)
                    });
                if jac_ok && tw_ok {
                    chosen = Some(c);
                    break;
                }
            }
        }
        let Some(c) = chosen else {
            return self.next_batch();
        };
        self.progress.biprimality_passed += 1;
        // Phase 5 > φ_1 = N + 1 − p_1 − q_1, φ_i = −(p_i + q_i).
        let (n_mod, mut phi) = {
            let State::Batch(b) = &self.state else {
                unreachable_state()
            };
            let n = b.n[c].clone();
            let pq = BigInt::from_biguint(Sign::Plus, &b.p[c] + &b.q[c]);
            let phi = if self.ctx.index == 1 {
                BigInt::from_biguint(Sign::Plus, &n + 1u8) - pq
            } else {
                -pq
            };
            (n, phi)
        };
        let public = PublicKey::new(n_mod.clone()).map_err(|_| KeygenError::Degenerate)?;
        let bounds = Bounds::new(&self.ctx);
        let dealt = secret::deal(&self.ctx, &bounds, &n_mod, &phi, &mut self.rng);
        arith::zeroize_bigint(&mut phi);
        self.state = State::Secret(Box::new(SecretState {
            public,
            bounds,
            rho: BigInt::default(),
        }));
        let bodies = dealt
            .into_iter()
            .map(|mut d| Body::SecretShares {
                phi: std::mem::take(&mut d.phi),
                beta: std::mem::take(&mut d.beta),
                mask: std::mem::take(&mut d.mask),
                root_mask: std::mem::take(&mut d.root_mask),
            })
            .collect();
        Ok(self.emit_direct(Phase::SecretShares, bodies))
    }

    fn on_secret_shares(
        &mut self,
        msgs: BTreeMap<u32, Body>,
    ) -> Result<Vec<Outgoing>, KeygenError> {
        let received: Vec<secret::Dealt> = msgs
            .into_values()
            .filter_map(|b| match b {
                Body::SecretShares {
                    phi,
                    beta,
                    mask,
                    root_mask,
                } => Some(secret::Dealt {
                    phi,
                    beta,
                    mask,
                    root_mask,
                }),
                _ => None,
            })
            .collect();
        let State::Secret(s) = &mut self.state else {
            unreachable_state()
        };
        let (w, g, rho) = secret::reshare(&self.ctx, &s.bounds, &received, &mut self.rng);
        s.rho = rho;
        let bodies = g
            .into_iter()
            .map(|reshare| Body::SecretReshare {
                reshare,
                opening: w.clone(),
            })
            .collect();
        Ok(self.emit_direct(Phase::SecretReshare, bodies))
    }

    fn on_secret_reshare(
        &mut self,
        msgs: BTreeMap<u32, Body>,
    ) -> Result<Vec<Outgoing>, KeygenError> {
        let received: Vec<(BigInt, BigInt)> = msgs
            .into_values()
            .filter_map(|b| match b {
                Body::SecretReshare { reshare, opening } => Some((reshare, opening)),
                _ => None,
            })
            .collect();
        let State::Secret(s) = &self.state else {
            unreachable_state()
        };
        let mut c = secret::combine(&self.ctx, &s.public, &received, &s.rho)
            .ok_or(KeygenError::Degenerate)?;
        let ks = KeyShare::new(
            s.public.clone(),
            self.ctx.params.threshold,
            self.ctx.n,
            self.ctx.index,
            std::mem::take(&mut c.share),
            c.theta.clone(),
            Some(std::mem::take(&mut c.root_share)),
        )
        .map_err(|_| KeygenError::Degenerate)?;
        self.state = State::Done(Box::new(ks));
        Ok(Vec::new())
    }
}

impl BatchState {
    fn empty() -> Self {
        Self {
            cands: Vec::new(),
            slots: Vec::new(),
            p: Vec::new(),
            q: Vec::new(),
            n: Vec::new(),
            survivors: Vec::new(),
            bf_cursor: 0,
            bf_chunk: Vec::new(),
            finalists: Vec::new(),
        }
    }
}

/// Phase 4 > which party carries the public part of the exponent in test `round` of candidate
/// `c`: party `(c + round) mod n + 1`, so the k-bit exponentiations rotate over the parties
/// instead of all falling on party 1 (each test costs every party about the same on average).
fn designated(ctx: &Context, c: usize, round: u32) -> bool {
    designated_position(ctx, c, round) + 1 == ctx.index as usize
}

/// The designated party's position (index − 1) in index-ordered values.
fn designated_position(ctx: &Context, c: usize, round: u32) -> usize {
    (c + round as usize) % ctx.n as usize
}

/// Jacobi-test exponent. Own part e_i = (p_i + q_i − 2·[i = 1])/4 (exact: p_1 ≡ q_1 ≡ 3 and
/// p_i ≡ q_i ≡ 0 mod 4); the designated party sends (N − 1)/4 − e_i instead, so that
/// φ/4 = (N − 1)/4 − Σ e_i and g^(φ/4) = ±1 ⇔ v_d = ±∏_{i≠d} v_i. Party 1 designated sends
/// (N + 1 − p_1 − q_1)/4, as in BF.
fn jacobi_exponent(
    ctx: &Context,
    n: &BigUint,
    p: &BigUint,
    q: &BigUint,
    designated: bool,
) -> BigUint {
    let own = if ctx.index == 1 {
        (p + q - 2u8) >> 2u32
    } else {
        (p + q) >> 2u32
    };
    if designated {
        ((n - 1u8) >> 2u32) - own
    } else {
        own
    }
}

/// Twisted-group exponent: p_i + q_i, plus N + 1 for the designated party (the product of all
/// values is u^(N + 1 + p + q)).
fn twisted_exponent(
    ctx: &Context,
    n: &BigUint,
    p: &BigUint,
    q: &BigUint,
    designated: bool,
) -> BigUint {
    let _ = ctx;
    if designated { n + 1u8 + p + q } else { p + q }
}

#[allow(clippy::panic)]
fn unreachable_state() -> ! {
    // The phase/state pairing is maintained by `advance`; reaching this is a bug in this module.
    panic!("keygen state machine invariant broken")
}
