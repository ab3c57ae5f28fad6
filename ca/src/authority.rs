//! The CA's authority: sessions and tokens, the linear issuance pipeline, rosters, the CRL.
//!
//! Issuance is one straight line (step-ca's sign handler):
//! parse CSR → verify its signature → key policy (RSA ≥ 2048) → authorise the token → names from the
//! token binding (a CSR asking for others is refused) → validity window → random serial → sign →
//! record durably (group commit) → answer. Nothing is answered before it is recorded.
//!
//! Recording goes through one writer thread that batches concurrent enrolments into a single redb
//! transaction (group commit); every enrolment in the batch is answered only after that commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use caucus::pki::crl::{Crl, CrlError, RevokedEntry, SignedCrl, sign_crl};
use caucus::pki::csr::{CsrError, parse_csr};
use caucus::pki::identity::{IdentityError, SpiffeId, check_name};
use caucus::pki::issue::{
    CaSigner, IssueError, MAX_SESSION_SECS, check_key, check_names, issue, make_serial, serial_hex,
    validity_window,
};
use caucus::pki::keys::pem_encode;
use caucus::pki::roster::{
    MAX_ADDRESS_LEN, ROSTER_VERSION, Roster, RosterEntry, RosterError, SignedRoster, sign_roster,
};
use serde::{Deserialize, Serialize};

use crate::store::{CertRecord, Pending, SessionRecord, Store, StoreError};

/// Default certificate TTL cap (the session end usually comes first): 7 days.
pub const DEFAULT_CERT_TTL_SECS: i64 = MAX_SESSION_SECS;

/// How long a served CRL stays fresh: 1 hour.
pub const CRL_LIFETIME_SECS: i64 = 3600;

/// Most parties in one session.
pub const MAX_PARTIES: usize = 1000;

/// Most enrolments recorded in one group commit.
pub const MAX_BATCH: usize = 512;

/// Errors from authority operations. [`AuthorityError::code`] maps them to wire status codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The CSR is malformed, too large, not RSA, or its signature does not verify.
    #[error(transparent)]
    Csr(#[from] CsrError),
    /// Issuance policy refused the request (names, key, validity).
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// Token, session or registry problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token is for another session than the one the node asked for.
    #[error("enrolment token is for another session")]
    WrongSession,
    /// A request argument is invalid.
    #[error("{0}")]
    BadArgument(String),
    /// Not found.
    #[error("{0}")]
    NotFound(String),
    /// Signing a roster failed.
    #[error(transparent)]
    Roster(#[from] RosterError),
    /// Signing a CRL failed.
    #[error(transparent)]
    Crl(#[from] CrlError),
    /// The recorder thread is gone (the server is shutting down).
    #[error("ca is shutting down")]
    ShuttingDown,
}

impl From<IdentityError> for AuthorityError {
    fn from(e: IdentityError) -> Self {
        Self::BadArgument(e.to_string())
    }
}

impl AuthorityError {
    /// The wire status code: `bad_request`, `unauthorized`, `forbidden`, `not_found`, `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Csr(CsrError::KeyTooSmall { .. }) | Self::Csr(CsrError::NotRsa) => "forbidden",
            Self::Csr(_) | Self::BadArgument(_) => "bad_request",
            Self::Issue(IssueError::SessionExpired) => "unauthorized",
            Self::Issue(IssueError::Sign) | Self::Issue(IssueError::BadRoot) => "internal",
            Self::Issue(_) | Self::WrongSession => "forbidden",
            Self::Store(StoreError::UnknownToken)
            | Self::Store(StoreError::TokenUsed)
            | Self::Store(StoreError::TokenExpired) => "unauthorized",
            Self::Store(StoreError::SessionExists(_)) => "bad_request",
            Self::Store(StoreError::UnknownSession(_))
            | Self::Store(StoreError::UnknownSerial(_))
            | Self::NotFound(_) => "not_found",
            Self::ShuttingDown => "busy",
            Self::Store(_) | Self::Roster(_) | Self::Crl(_) => "internal",
        }
    }
}

/// An enrolment request (the `get/csr` arguments). `Debug` never prints the token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollArgs {
    /// The CSR, PEM.
    pub csr: String,
    /// The single-use enrolment token.
    pub token: String,
    /// Where peers reach the node (`host:port`); empty only for offline `sign-csr`.
    #[serde(default)]
    pub advertise: String,
    /// If given, the session the node expects its token to be for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// An enrolment answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolled {
    /// The certificate, PEM.
    pub cert: String,
    /// The root certificate, PEM.
    pub root: String,
    /// Serial, lowercase hex.
    pub serial: String,
    /// Party id (SHA-256 of SPKI), hex.
    pub party_id: String,
    /// Session id.
    pub session: String,
    /// Party name.
    pub name: String,
    /// 1-based index in the session.
    pub index: u32,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
}

/// What `session create` returns. `Debug` never prints the tokens.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCreated {
    /// Session id.
    pub session: String,
    /// Party names in order.
    pub parties: Vec<String>,
    /// Threshold.
    pub threshold: u32,
    /// Session end, unix seconds.
    pub not_after: i64,
    /// One single-use token per party.
    pub tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for EnrollArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollArgs")
            .field("advertise", &self.advertise)
            .field("session", &self.session)
            .field("token", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Debug for SessionCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCreated")
            .field("session", &self.session)
            .field("parties", &self.parties)
            .field("threshold", &self.threshold)
            .field("not_after", &self.not_after)
            .field("tokens", &"<redacted>")
            .finish()
    }
}

/// One line of `list`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListEntry {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Party name.
    pub party: String,
    /// Session id.
    pub session: String,
    /// Party id, hex.
    pub party_id: String,
    /// Advertised address.
    pub address: String,
    /// Issue time, unix seconds.
    pub issued_at: i64,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
    /// Whether revoked.
    pub revoked: bool,
}

/// A source of the current time in unix seconds (injectable so tests can move time).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| time::OffsetDateTime::now_utc().unix_timestamp())
}

struct Job {
    pending: Pending,
    now: i64,
    reply: tokio::sync::oneshot::Sender<Result<(), StoreError>>,
}

/// The CA authority: signer, registry, group-commit recorder, clock.
pub struct Authority {
    signer: CaSigner,
    store: Arc<Store>,
    recorder: std::sync::Mutex<Option<std::sync::mpsc::Sender<Job>>>,
    recorder_thread: Option<std::thread::JoinHandle<()>>,
    clock: Clock,
    cert_ttl: i64,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("ca", &self.signer.name())
            .finish()
    }
}

fn recorder_loop(store: Arc<Store>, rx: std::sync::mpsc::Receiver<Job>) {
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // One `now` for the batch: the latest, so an item is never recorded after its token
        // expired.
        let now = jobs.iter().map(|j| j.now).max().unwrap_or_default();
        let pendings: Vec<Pending> = jobs.iter().map(|j| j.pending.clone()).collect();
        match store.record_batch(&pendings, now) {
            Ok(results) => {
                for (job, res) in jobs.into_iter().zip(results) {
                    let _ = job.reply.send(res);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Db(msg.clone())));
                }
            }
        }
    }
}

/// Formats an enrolment token: the prefix `cct_` and base64url of 128 random bits. The prefix makes
/// tokens recognisable to secret scanners and, since base64url may begin with `-`, keeps a token from
/// being read as a command-line option (`caucus enroll --token -Tv...` would otherwise fail).
pub fn new_token(random: &[u8; 16]) -> String {
    format!("cct_{}", caucus::encoding::b64u(random))
}

/// SHA-256 of a token's text: how tokens are stored at rest.
pub fn token_hash(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn random_bytes<const N: usize>() -> Result<[u8; N], AuthorityError> {
    let mut b = [0u8; N];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| AuthorityError::Store(StoreError::Db("no randomness".into())))?;
    Ok(b)
}

/// Checks an advertised `host:port`.
pub fn check_address(addr: &str) -> Result<(), AuthorityError> {
    let bad = || {
        AuthorityError::BadArgument(format!(
            "invalid advertised address {addr:?} (want host:port)"
        ))
    };
    if addr.is_empty()
        || addr.len() > MAX_ADDRESS_LEN
        || addr.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(bad());
    }
    Ok(())
}

/// Normalises a serial given by a user: lowercase, no colons, no leading zeros beyond 16 bytes.
pub fn normalize_serial(s: &str) -> Result<String, AuthorityError> {
    let clean: String = s
        .trim()
        .chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if clean.is_empty() || clean.len() > 64 || !clean.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(AuthorityError::BadArgument(format!(
            "invalid serial {:?}",
            s.chars().take(80).collect::<String>()
        )));
    }
    Ok(clean)
}

impl Authority {
    /// An authority over `signer` and `store`, reading time from `clock`.
    pub fn new(signer: CaSigner, store: Store, clock: Clock) -> Self {
        let store = Arc::new(store);
        let (tx, rx) = std::sync::mpsc::channel();
        let s = store.clone();
        // If the thread cannot start, `rx` is dropped and enrolments answer "shutting down".
        let recorder_thread = std::thread::Builder::new()
            .name("caucus-ca-recorder".into())
            .spawn(move || recorder_loop(s, rx))
            .ok();
        Self {
            signer,
            store,
            recorder: std::sync::Mutex::new(Some(tx)),
            recorder_thread,
            clock,
            cert_ttl: DEFAULT_CERT_TTL_SECS,
        }
    }

    /// Opens the authority of a CA directory with the wall clock.
    pub fn open(dir: &crate::dir::CaDir) -> Result<Self, crate::CaError> {
        let signer = dir.load_signer()?;
        let store = Store::open(&dir.registry())?;
        Ok(Self::new(signer, store, system_clock()))
    }

    /// Caps certificate lifetimes at `secs` (the session end still applies).
    pub fn set_cert_ttl(&mut self, secs: i64) {
        self.cert_ttl = secs;
    }

    /// The current time (unix seconds) by this authority's clock.
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// The signer (root certificate, key, name).
    pub fn signer(&self) -> &CaSigner {
        &self.signer
    }

    /// The registry.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Root fingerprint.
    pub fn fingerprint(&self) -> String {
        self.signer.fingerprint()
    }

    /// Creates a session with one fresh token per party (tokens are returned once and stored only
    /// as SHA-256 hashes).
    pub fn create_session(
        &self,
        id: &str,
        parties: &[String],
        threshold: u32,
        ttl_secs: i64,
    ) -> Result<SessionCreated, AuthorityError> {
        check_name(id)?;
        if parties.len() < 2 || parties.len() > MAX_PARTIES {
            return Err(AuthorityError::BadArgument(format!(
                "a session needs 2 to {MAX_PARTIES} parties, got {}",
                parties.len()
            )));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in parties {
            check_name(p)?;
            if !seen.insert(p.as_str()) {
                return Err(AuthorityError::BadArgument(format!(
                    "party {p:?} listed twice"
                )));
            }
        }
        if threshold as usize >= parties.len() {
            return Err(AuthorityError::BadArgument(format!(
                "threshold {threshold} must be below the number of parties ({})",
                parties.len()
            )));
        }
        if ttl_secs <= 0 || ttl_secs > MAX_SESSION_SECS {
            return Err(AuthorityError::BadArgument(
                "session ttl must be between 1 second and 7 days".into(),
            ));
        }
        let now = self.now();
        let rec = SessionRecord {
            id: id.to_string(),
            parties: parties.to_vec(),
            threshold,
            created_at: now,
            not_after: now + ttl_secs,
        };
        let mut tokens = BTreeMap::new();
        let mut hashes = Vec::with_capacity(parties.len());
        for p in parties {
            let token = new_token(&random_bytes::<16>()?);
            hashes.push((token_hash(&token), p.clone()));
            tokens.insert(p.clone(), token);
        }
        self.store.create_session(&rec, &hashes)?;
        Ok(SessionCreated {
            session: rec.id,
            parties: rec.parties,
            threshold,
            not_after: rec.not_after,
            tokens,
        })
    }

    /// Enrols: the whole issuance pipeline. Returns only after the certificate is durably recorded.
    pub async fn enroll(&self, args: &EnrollArgs) -> Result<Enrolled, AuthorityError> {
        let now = self.now();
        if !args.advertise.is_empty() {
            check_address(&args.advertise)?;
        }
        // 1-2. Parse the CSR and verify its signature (proof of possession).
        let req = parse_csr(args.csr.as_bytes())?;
        // 3. Key policy.
        check_key(&req)?;
        // 4. Authorise the token (read-only here; consumed atomically when recording).
        if args.token.len() > 256 {
            return Err(StoreError::UnknownToken.into());
        }
        let hash = token_hash(&args.token);
        let tok = self.store.check_token(&hash, now)?;
        if let Some(s) = &args.session
            && s != &tok.session
        {
            return Err(AuthorityError::WrongSession);
        }
        let session = self
            .store
            .session(&tok.session)?
            .ok_or_else(|| StoreError::UnknownSession(tok.session.clone()))?;
        let index = session
            .parties
            .iter()
            .position(|p| *p == tok.party)
            .map(|i| i as u32 + 1)
            .ok_or(StoreError::UnknownToken)?;
        // 5. Names come from the token binding; the CSR may only ask for the same ones.
        let binding = SpiffeId::new(self.signer.name(), &tok.session, &tok.party)?;
        check_names(&req, &binding)?;
        // 6. Validity and serial.
        let validity = validity_window(now, session.not_after, self.cert_ttl)?;
        let serial = make_serial(random_bytes::<16>()?);
        // 7. Sign.
        let der = issue(&req, &binding, validity, serial, &self.signer)?;
        // 8. Record durably (token consumed in the same transaction).
        let record = CertRecord {
            serial: serial_hex(&serial),
            session: tok.session.clone(),
            party: tok.party.clone(),
            party_id: req.public_key.party_id().to_hex(),
            index,
            issued_at: now,
            not_after: validity.1,
            address: args.advertise.clone(),
            cert_der: der.clone(),
        };
        let (reply, wait) = tokio::sync::oneshot::channel();
        let job = Job {
            pending: Pending {
                token_hash: hash,
                cert: record.clone(),
            },
            now,
            reply,
        };
        {
            let tx = self
                .recorder
                .lock()
                .map_err(|_| AuthorityError::ShuttingDown)?;
            tx.as_ref()
                .ok_or(AuthorityError::ShuttingDown)?
                .send(job)
                .map_err(|_| AuthorityError::ShuttingDown)?;
        }
        wait.await.map_err(|_| AuthorityError::ShuttingDown)??;
        // 9. Answer.
        Ok(Enrolled {
            cert: pem_encode("CERTIFICATE", &der),
            root: pem_encode("CERTIFICATE", self.signer.root_der()),
            serial: record.serial,
            party_id: record.party_id,
            session: record.session,
            name: record.party,
            index,
            not_after: record.not_after,
        })
    }

    /// The signed roster of a session at the current time: every enrolled party whose certificate
    /// is neither revoked nor expired, in index order.
    pub fn roster(&self, session: &str) -> Result<SignedRoster, AuthorityError> {
        let now = self.now();
        let s = self
            .store
            .session(session)?
            .ok_or_else(|| StoreError::UnknownSession(session.chars().take(64).collect()))?;
        let revoked: std::collections::BTreeSet<String> =
            self.store.revoked()?.into_iter().map(|(s, _)| s).collect();
        let mut members: Vec<RosterEntry> = Vec::new();
        for c in self.store.session_certs(session)? {
            if revoked.contains(&c.serial) || c.not_after < now {
                continue;
            }
            members.push(RosterEntry {
                index: c.index,
                name: c.party,
                party_id: c.party_id.parse().map_err(|_| StoreError::Corrupt)?,
                serial_hex: c.serial,
                cert_der: c.cert_der,
                address: c.address,
            });
        }
        members.sort_by_key(|m| m.index);
        let roster = Roster {
            version: ROSTER_VERSION,
            ca: self.signer.name().to_string(),
            session: s.id,
            threshold: s.threshold,
            parties: s.parties,
            not_after: s.not_after,
            issued_at: now,
            members,
        };
        Ok(sign_roster(&roster, self.signer.key())?)
    }

    /// The signed revocation list, fresh for [`CRL_LIFETIME_SECS`].
    pub fn crl(&self) -> Result<SignedCrl, AuthorityError> {
        let now = self.now();
        let revoked = self
            .store
            .revoked()?
            .into_iter()
            .map(|(serial_hex, revoked_at)| RevokedEntry {
                serial_hex,
                revoked_at,
            })
            .collect();
        let crl = Crl {
            version: caucus::pki::crl::CRL_VERSION,
            ca: self.signer.name().to_string(),
            issued_at: now,
            next_update: now + CRL_LIFETIME_SECS,
            revoked,
        };
        Ok(sign_crl(&crl, self.signer.key())?)
    }

    /// A certificate by (session, name) or by party id.
    pub fn cert(
        &self,
        session: Option<&str>,
        name: Option<&str>,
        party_id: Option<&str>,
    ) -> Result<CertRecord, AuthorityError> {
        let found = match (session, name, party_id) {
            (Some(s), Some(n), None) => self.store.cert_by_party(s, n)?,
            (None, None, Some(p)) => self.store.cert_by_party_id(&p.to_ascii_lowercase())?,
            _ => {
                return Err(AuthorityError::BadArgument(
                    "give either session and name, or party_id".into(),
                ));
            }
        };
        found.ok_or_else(|| AuthorityError::NotFound("no such certificate".into()))
    }

    /// Every issued certificate with its revocation state.
    pub fn list(&self) -> Result<Vec<ListEntry>, AuthorityError> {
        let revoked: std::collections::BTreeSet<String> =
            self.store.revoked()?.into_iter().map(|(s, _)| s).collect();
        Ok(self
            .store
            .list()?
            .into_iter()
            .map(|c| ListEntry {
                revoked: revoked.contains(&c.serial),
                serial: c.serial,
                party: c.party,
                session: c.session,
                party_id: c.party_id,
                address: c.address,
                issued_at: c.issued_at,
                not_after: c.not_after,
            })
            .collect())
    }

    /// Revokes a serial; returns (normalised serial, revoked_at).
    pub fn revoke(&self, serial: &str) -> Result<(String, i64), AuthorityError> {
        let serial = normalize_serial(serial)?;
        let at = self.store.revoke(&serial, self.now())?;
        Ok((serial, at))
    }
}

impl Drop for Authority {
    /// Stops the recorder thread after it has written everything queued, so the registry file is
    /// closed (and its lock released) when the authority is gone.
    fn drop(&mut self) {
        if let Ok(mut tx) = self.recorder.lock() {
            tx.take();
        }
        if let Some(t) = self.recorder_thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_serials() {
        assert!(check_address("127.0.0.1:7000").is_ok());
        assert!(check_address("[::1]:7000").is_ok());
        assert!(check_address("node.example:1").is_ok());
        for bad in ["", "host", ":80", "h:0", "h:99999", "h :1"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_serial("0A:0b").expect("ok"), "0a0b");
        assert!(normalize_serial("xyz").is_err());
        assert!(normalize_serial("").is_err());
    }

    #[test]
    fn debug_never_prints_tokens() {
        let a = EnrollArgs {
            csr: String::new(),
            token: "SECRET-TOKEN".into(),
            advertise: "h:1".into(),
            session: None,
        };
        assert!(!format!("{a:?}").contains("SECRET"));
        let s = SessionCreated {
            session: "s".into(),
            parties: vec!["a".into()],
            threshold: 0,
            not_after: 0,
            tokens: [("a".to_string(), "SECRET-TOKEN".to_string())].into(),
        };
        assert!(!format!("{s:?}").contains("SECRET"));
    }

    #[test]
    fn tokens_never_look_like_options() {
        // 0xf9 0x3f... encodes to base64url starting with '-'.
        let t = new_token(&[0xf9; 16]);
        assert!(t.starts_with("cct_-"), "{t}");
        assert!(!t.starts_with('-'));
        assert_eq!(t.len(), 4 + 22);
    }

    #[test]
    fn token_hash_is_sha256() {
        assert_eq!(
            hex::encode(token_hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
