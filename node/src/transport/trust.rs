//! What a node trusts: the pinned root, the session's signed roster and the CA's revocation list,
//! read at `now` from an injectable [`Clock`].
//!
//! [`Trust::check_peer`] is the one place that decides whether a certificate belongs to a peer of
//! this session. Both TLS verifiers call it during the handshake, and the runtime calls it again
//! after the handshake to map the peer to its roster entry. The roster and CRL can be replaced at
//! any time (periodic refresh from the CA, or on demand when an unknown peer shows up).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use caucus::pki::verify::{RootInfo, VerifyError, check_root, verify_chain};
use caucus::pki::{Crl, PartyId, PublicKey, Roster, RosterEntry};

/// A source of the current time. Tests inject a [`ManualClock`] to move time.
pub trait Clock: std::fmt::Debug + Send + Sync {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> i64;
    /// Unix time in seconds.
    fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }
}

/// The system wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        let now = time::OffsetDateTime::now_utc();
        (now.unix_timestamp_nanos() / 1_000_000) as i64
    }
}

/// A clock that reads the system clock plus an adjustable offset (tests move time with it).
#[derive(Debug, Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    /// A clock equal to the system clock.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock by `delta_ms` (negative moves it back).
    pub fn advance_ms(&self, delta_ms: i64) {
        self.offset_ms.fetch_add(delta_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        SystemClock.now_ms() + self.offset_ms.load(Ordering::SeqCst)
    }
}

/// Why a peer certificate was refused. Short, and never more than needed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    /// The peer presented no certificate.
    #[error("peer presented no certificate")]
    NoCertificate,
    /// The certificate does not chain to the pinned root at `now` (other CA, expired, malformed…).
    #[error("peer certificate refused: {0}")]
    Chain(VerifyError),
    /// The certificate's serial is on the CA's revocation list.
    #[error("peer certificate {serial} is revoked")]
    Revoked {
        /// the revoked serial (hex)
        serial: String,
    },
    /// The revocation list is past its next update and could not be refreshed.
    #[error("revocation list is stale; refusing peers until it is refreshed")]
    CrlStale,
    /// The certificate belongs to another session.
    #[error("peer certificate is for session {session:?}, not this session")]
    WrongSession {
        /// the session named in the certificate
        session: String,
    },
    /// The certificate is valid but its key is not on this session's roster.
    #[error("peer {party:?} ({id:?}) is not on the session roster")]
    NotMember {
        /// the party name in the certificate
        party: String,
        /// the certificate's party id
        id: PartyId,
    },
    /// The peer is a roster member but not the one this connection was meant for.
    #[error("expected peer {expected:?}, got {got:?}")]
    UnexpectedPeer {
        /// who we dialled
        expected: PartyId,
        /// who answered
        got: PartyId,
    },
    /// The peer did not negotiate the `caucus/1` application protocol.
    #[error("peer did not negotiate alpn caucus/1")]
    NoAlpn,
}

/// An authenticated peer: who it is on the roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// SHA-256 of the certificate's SPKI.
    pub party_id: PartyId,
    /// Roster name.
    pub name: String,
    /// 1-based roster index.
    pub index: u32,
    /// Certificate serial (hex).
    pub serial_hex: String,
    /// The certified key (verifies the peer's envelopes).
    pub public_key: PublicKey,
    /// Certificate `notAfter`, unix seconds.
    pub not_after: i64,
}

/// The pinned root, the session roster and the revocation list, with the clock that judges them.
#[derive(Debug)]
pub struct Trust {
    root_der: Vec<u8>,
    root: RootInfo,
    session: String,
    clock: Arc<dyn Clock>,
    roster: RwLock<Arc<Roster>>,
    crl: RwLock<Option<Arc<Crl>>>,
    refresh: tokio::sync::Notify,
}

impl Trust {
    /// Trust for `roster`'s session under the pinned root `root_der`. The roster must already be
    /// verified (see [`caucus::pki::SignedRoster::verify`]); `crl` likewise.
    pub fn new(
        root_der: Vec<u8>,
        roster: Roster,
        crl: Option<Crl>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, VerifyError> {
        let root = check_root(&root_der)?;
        Ok(Self {
            root_der,
            root,
            session: roster.session.clone(),
            clock,
            roster: RwLock::new(Arc::new(roster)),
            crl: RwLock::new(crl.map(Arc::new)),
            refresh: tokio::sync::Notify::new(),
        })
    }

    /// The pinned root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The CA name (root CN).
    pub fn ca_name(&self) -> &str {
        &self.root.name
    }

    /// The session id.
    pub fn session(&self) -> &str {
        &self.session
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current roster.
    pub fn roster(&self) -> Arc<Roster> {
        self.roster
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The current revocation list, if any.
    pub fn crl(&self) -> Option<Arc<Crl>> {
        self.crl
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Replaces the roster (already verified). A roster for another session is ignored.
    pub fn set_roster(&self, roster: Roster) -> bool {
        if roster.session != self.session {
            return false;
        }
        let mut w = self.roster.write().unwrap_or_else(|p| p.into_inner());
        *w = Arc::new(roster);
        true
    }

    /// Replaces the revocation list (already verified).
    pub fn set_crl(&self, crl: Crl) {
        let mut w = self.crl.write().unwrap_or_else(|p| p.into_inner());
        *w = Some(Arc::new(crl));
    }

    /// Asks the refresher (if one runs) to fetch the roster and CRL again now.
    pub fn request_refresh(&self) {
        self.refresh.notify_one();
    }

    /// Resolves when someone called [`Trust::request_refresh`].
    pub async fn refresh_requested(&self) {
        self.refresh.notified().await
    }

    /// The roster entry for `name`.
    pub fn member_by_name(&self, name: &str) -> Option<RosterEntry> {
        self.roster().by_name(name).cloned()
    }

    /// Decides whether `cert_der` is a peer of this session at the clock's `now`, in order: chain
    /// to the pinned root and validity, revocation, session of the URI SAN, roster membership (the
    /// roster entry's key and name must match), and, if given, that it is the `expected` party.
    pub fn check_peer(
        &self,
        cert_der: &[u8],
        expected: Option<&PartyId>,
    ) -> Result<PeerInfo, PeerError> {
        let now = self.clock.now_secs();
        let v = verify_chain(cert_der, &self.root_der, now).map_err(PeerError::Chain)?;
        if let Some(crl) = self.crl() {
            if now > crl.next_update {
                self.request_refresh();
                return Err(PeerError::CrlStale);
            }
            if crl.is_revoked(&v.serial_hex) {
                return Err(PeerError::Revoked {
                    serial: v.serial_hex,
                });
            }
        }
        if v.id.session != self.session {
            return Err(PeerError::WrongSession {
                session: v.id.session,
            });
        }
        let roster = self.roster();
        let entry = match roster.by_party_id(&v.party_id) {
            Some(e) if e.name == v.id.party => e,
            _ => {
                self.request_refresh();
                return Err(PeerError::NotMember {
                    party: v.id.party,
                    id: v.party_id,
                });
            }
        };
        if let Some(exp) = expected
            && *exp != v.party_id
        {
            return Err(PeerError::UnexpectedPeer {
                expected: *exp,
                got: v.party_id,
            });
        }
        Ok(PeerInfo {
            party_id: v.party_id,
            name: entry.name.clone(),
            index: entry.index,
            serial_hex: v.serial_hex,
            public_key: v.public_key,
            not_after: v.not_after,
        })
    }

    /// Re-checks an already authenticated peer against the current clock, revocation list and
    /// roster (cheap lookups, no signature work): an open connection is dropped as soon as its
    /// certificate expires, is revoked, or leaves the roster.
    pub fn recheck(&self, peer: &PeerInfo) -> Result<(), PeerError> {
        let now = self.clock.now_secs();
        if now > peer.not_after {
            return Err(PeerError::Chain(VerifyError::Expired));
        }
        if let Some(crl) = self.crl()
            && crl.is_revoked(&peer.serial_hex)
        {
            return Err(PeerError::Revoked {
                serial: peer.serial_hex.clone(),
            });
        }
        match self.roster().by_party_id(&peer.party_id) {
            Some(e) if e.name == peer.name => Ok(()),
            _ => Err(PeerError::NotMember {
                party: peer.name.clone(),
                id: peer.party_id,
            }),
        }
    }
}

#[cfg(all(test, feature = "test-util"))]
mod tests {
    use caucus::pki::PrivateKey;

    use super::*;
    use crate::testing::TestPki;

    #[test]
    fn check_peer_order_and_refresh() {
        let now = SystemClock.now_secs();
        let pki = TestPki::new("acme", now);
        let ka = PrivateKey::generate(2048).expect("key");
        let kb = PrivateKey::generate(2048).expect("key");
        let (a, _) = pki.issue(&ka, "s1", "a", (now - 60, now + 7200));
        let (b, serial_b) = pki.issue_now(&kb, "s1", "b");
        let roster = pki.roster("s1", &[("a", &a, "127.0.0.1:1".into())]);
        let clock = Arc::new(ManualClock::new());
        let t =
            Trust::new(pki.root_der(), roster, Some(pki.crl(&[])), clock.clone()).expect("trust");
        assert_eq!(t.check_peer(&a, None).expect("a").name, "a");
        // b is valid but not on the roster, until a refreshed roster lists it.
        assert!(matches!(
            t.check_peer(&b, None),
            Err(PeerError::NotMember { .. })
        ));
        let both = pki.roster(
            "s1",
            &[
                ("a", &a, "127.0.0.1:1".into()),
                ("b", &b, "127.0.0.1:2".into()),
            ],
        );
        assert!(t.set_roster(both));
        assert_eq!(t.check_peer(&b, None).expect("b").index, 2);
        // Revocation wins over membership.
        t.set_crl(pki.crl(&[&serial_b]));
        assert_eq!(
            t.check_peer(&b, None),
            Err(PeerError::Revoked { serial: serial_b })
        );
        // Expected peer.
        assert!(matches!(
            t.check_peer(&a, Some(&kb.public_key().party_id())),
            Err(PeerError::UnexpectedPeer { .. })
        ));
        // A roster for another session is ignored.
        let (a2, _) = pki.issue_now(&ka, "s2", "a");
        let other = pki.roster("s2", &[("a", &a2, "127.0.0.1:1".into())]);
        assert!(!t.set_roster(other));
        // Past the CRL's next update: refuse (fail closed) until refreshed.
        clock.advance_ms(3_700_000);
        assert_eq!(t.check_peer(&a, None), Err(PeerError::CrlStale));
        // Past the certificate's end: expired (checked first).
        clock.advance_ms(4_000_000);
        assert_eq!(
            t.check_peer(&a, None),
            Err(PeerError::Chain(VerifyError::Expired))
        );
    }
}
