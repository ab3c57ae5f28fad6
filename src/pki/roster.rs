//! The CA-signed session roster: who is enrolled in a session, with which certificate, reachable at
//! which address. Nodes find and authenticate each other through it (the discovery service MPyC
//! sessions lack).
//!
//! The signed form carries the roster as an exact JSON string plus an RSA-PSS-SHA256 signature by the
//! root key over its UTF-8 bytes, so no JSON canonicalisation is needed. [`SignedRoster::verify`]
//! checks the signature, then every member certificate against the root and against its entry.

use serde::{Deserialize, Serialize};

use super::identity::{PartyId, SpiffeId, check_name};
use super::keys::{KeyError, PrivateKey};
use super::verify::{VerifyError, check_root, verify_chain};
use crate::encoding::{b64u, b64u_decode};

/// Roster format version.
pub const ROSTER_VERSION: u32 = 1;

/// Largest roster JSON accepted, in bytes.
pub const MAX_ROSTER_BYTES: usize = 8 << 20;

/// Largest advertised address accepted, in bytes.
pub const MAX_ADDRESS_LEN: usize = 255;

/// Errors building or verifying a roster.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RosterError {
    /// Not the JSON shape of a roster (or too large).
    #[error("roster is malformed")]
    Malformed,
    /// The root signature does not verify.
    #[error("roster signature does not verify")]
    BadSignature,
    /// Unsupported version.
    #[error("unsupported roster version {0}")]
    Version(u32),
    /// The roster names another CA than the pinned root.
    #[error("roster is for ca {0:?}, not the pinned root")]
    WrongCa(String),
    /// The session has ended.
    #[error("roster has expired")]
    Expired,
    /// Threshold or party list inconsistent (t ≥ n, duplicates, bad names).
    #[error("roster parameters are inconsistent")]
    BadParameters,
    /// A member entry is inconsistent with its certificate or the party list.
    #[error("roster member {name:?}: {reason}")]
    BadMember {
        /// the member name as given in the roster
        name: String,
        /// what is wrong
        reason: &'static str,
    },
    /// A member certificate does not verify against the root.
    #[error("roster member {name:?}: {source}")]
    MemberCert {
        /// the member name
        name: String,
        /// why its certificate was refused
        source: VerifyError,
    },
    /// The root certificate is unusable.
    #[error(transparent)]
    Root(VerifyError),
    /// Signing failed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// One enrolled party.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterEntry {
    /// 1-based position of `name` in the session's party list (stable).
    pub index: u32,
    /// Party name.
    pub name: String,
    /// SHA-256 of the member certificate's SPKI.
    pub party_id: PartyId,
    /// Certificate serial (lowercase hex).
    pub serial_hex: String,
    /// The member certificate, DER (base64url on the wire).
    #[serde(with = "crate::encoding::bytes_b64u")]
    pub cert_der: Vec<u8>,
    /// Where peers reach this party (`host:port`); empty if it enrolled offline and advertised none.
    pub address: String,
}

/// A session roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// Format version ([`ROSTER_VERSION`]).
    pub version: u32,
    /// CA name.
    pub ca: String,
    /// Session id.
    pub session: String,
    /// Corruption threshold t (any t+1 parties can decrypt).
    pub threshold: u32,
    /// Every party name, in session order (index = position + 1).
    pub parties: Vec<String>,
    /// Session end, unix seconds.
    pub not_after: i64,
    /// When the CA produced this roster, unix seconds.
    pub issued_at: i64,
    /// Parties enrolled so far, by index.
    pub members: Vec<RosterEntry>,
}

impl Roster {
    /// The member named `name`.
    pub fn by_name(&self, name: &str) -> Option<&RosterEntry> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The member with party id `id`.
    pub fn by_party_id(&self, id: &PartyId) -> Option<&RosterEntry> {
        self.members.iter().find(|m| &m.party_id == id)
    }

    /// The member with 1-based index `index`.
    pub fn by_index(&self, index: u32) -> Option<&RosterEntry> {
        self.members.iter().find(|m| m.index == index)
    }

    /// Whether every party of the session has enrolled.
    pub fn is_complete(&self) -> bool {
        self.members.len() == self.parties.len()
    }
}

/// A roster as the CA serves it: the exact JSON text and the root's RSA-PSS signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRoster {
    /// The roster as JSON text (signed byte for byte).
    pub roster: String,
    /// base64url RSA-PSS-SHA256 signature by the root key over `roster`'s UTF-8 bytes.
    pub signature: String,
}

/// Signs a roster with the root key.
pub fn sign_roster(roster: &Roster, root_key: &PrivateKey) -> Result<SignedRoster, RosterError> {
    let text = serde_json::to_string(roster).map_err(|_| RosterError::Malformed)?;
    let sig = root_key.sign_pss(text.as_bytes())?;
    Ok(SignedRoster {
        roster: text,
        signature: b64u(&sig),
    })
}

/// Verifies the root's RSA-PSS signature over `text` (shared by the roster and the CRL).
pub(crate) fn verify_signed_text(
    text: &str,
    signature: &str,
    root: &super::verify::RootInfo,
) -> Result<(), ()> {
    let sig = b64u_decode(signature, 1024).map_err(|_| ())?;
    root.public_key
        .verify_pss(text.as_bytes(), &sig)
        .map_err(|_| ())
}

impl SignedRoster {
    /// Verifies the signature with `root_der`, then the roster's consistency and every member
    /// certificate at `now`, and returns the roster.
    pub fn verify(&self, root_der: &[u8], now: i64) -> Result<Roster, RosterError> {
        if self.roster.len() > MAX_ROSTER_BYTES {
            return Err(RosterError::Malformed);
        }
        let root = check_root(root_der).map_err(RosterError::Root)?;
        verify_signed_text(&self.roster, &self.signature, &root)
            .map_err(|_| RosterError::BadSignature)?;
        let roster: Roster =
            serde_json::from_str(&self.roster).map_err(|_| RosterError::Malformed)?;
        if roster.version != ROSTER_VERSION {
            return Err(RosterError::Version(roster.version));
        }
        if roster.ca != root.name {
            return Err(RosterError::WrongCa(roster.ca.chars().take(64).collect()));
        }
        if now > roster.not_after {
            return Err(RosterError::Expired);
        }
        check_name(&roster.session).map_err(|_| RosterError::BadParameters)?;
        let n = roster.parties.len();
        if n == 0 || roster.threshold as usize >= n {
            return Err(RosterError::BadParameters);
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &roster.parties {
            check_name(p).map_err(|_| RosterError::BadParameters)?;
            if !names.insert(p.as_str()) {
                return Err(RosterError::BadParameters);
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for m in &roster.members {
            let bad = |reason| RosterError::BadMember {
                name: m.name.chars().take(64).collect(),
                reason,
            };
            let pos = roster
                .parties
                .iter()
                .position(|p| *p == m.name)
                .ok_or_else(|| bad("not a party of the session"))?;
            if m.index as usize != pos + 1 {
                return Err(bad("index does not match the party list"));
            }
            if !seen.insert(m.index) {
                return Err(bad("listed twice"));
            }
            // An empty address means the party enrolled offline (`sign-csr`) and advertised none.
            if m.address.len() > MAX_ADDRESS_LEN || m.address.chars().any(char::is_control) {
                return Err(bad("bad address"));
            }
            let v = verify_chain(&m.cert_der, root_der, now).map_err(|source| {
                RosterError::MemberCert {
                    name: m.name.chars().take(64).collect(),
                    source,
                }
            })?;
            let want = SpiffeId {
                ca: roster.ca.clone(),
                session: roster.session.clone(),
                party: m.name.clone(),
            };
            if v.id != want {
                return Err(bad("certificate identity does not match"));
            }
            if v.party_id != m.party_id {
                return Err(bad("party id does not match the certificate"));
            }
            if v.serial_hex != m.serial_hex {
                return Err(bad("serial does not match the certificate"));
            }
        }
        Ok(roster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::csr::{build_csr, parse_csr, tests::key};
    use crate::pki::issue::tests::{NOW, ca};
    use crate::pki::issue::{issue, make_serial, serial_hex};

    fn entry(index: u32, name: &str, serial: u8) -> RosterEntry {
        let req = parse_csr(&build_csr(key(), name).expect("csr")).expect("parse");
        let id = SpiffeId::new("acme", "s1", name).expect("id");
        let s = make_serial([serial; 16]);
        let der = issue(&req, &id, (NOW - 60, NOW + 3600), s, ca()).expect("issue");
        RosterEntry {
            index,
            name: name.into(),
            party_id: key().public_key().party_id(),
            serial_hex: serial_hex(&s),
            cert_der: der,
            address: format!("127.0.0.1:{}", 7000 + index),
        }
    }

    fn roster() -> Roster {
        Roster {
            version: ROSTER_VERSION,
            ca: "acme".into(),
            session: "s1".into(),
            threshold: 1,
            parties: vec!["a".into(), "b".into(), "c".into()],
            not_after: NOW + 3600,
            issued_at: NOW,
            members: vec![entry(1, "a", 1), entry(3, "c", 3)],
        }
    }

    #[test]
    fn sign_verify_round_trip() {
        let r = roster();
        let signed = sign_roster(&r, ca().key()).expect("sign");
        let back = signed.verify(ca().root_der(), NOW).expect("verify");
        assert_eq!(back, r);
        assert_eq!(back.by_name("c").map(|m| m.index), Some(3));
        assert_eq!(back.by_index(1).map(|m| m.name.as_str()), Some("a"));
        assert!(back.by_party_id(&r.members[0].party_id).is_some());
        assert!(back.by_name("b").is_none());
        assert!(!back.is_complete());
        // Survives a JSON round trip of the signed form.
        let json = serde_json::to_string(&signed).expect("json");
        let again: SignedRoster = serde_json::from_str(&json).expect("parse");
        assert!(again.verify(ca().root_der(), NOW).is_ok());
    }

    #[test]
    fn refuses_tampering_and_expiry() {
        let mut signed = sign_roster(&roster(), ca().key()).expect("sign");
        assert_eq!(
            signed.verify(ca().root_der(), NOW + 3601),
            Err(RosterError::Expired)
        );
        signed.roster = signed.roster.replace("127.0.0.1:7001", "10.0.0.66:7001");
        assert_eq!(
            signed.verify(ca().root_der(), NOW),
            Err(RosterError::BadSignature)
        );
        let other = crate::pki::keys::PrivateKey::generate(2048).expect("key");
        let forged = sign_roster(&roster(), &other).expect("sign");
        assert_eq!(
            forged.verify(ca().root_der(), NOW),
            Err(RosterError::BadSignature)
        );
    }

    #[test]
    fn refuses_inconsistent_members() {
        let sign_verify = |r: &Roster| {
            sign_roster(r, ca().key())
                .expect("sign")
                .verify(ca().root_der(), NOW)
        };
        let mut r = roster();
        r.members[0].index = 2;
        assert!(matches!(
            sign_verify(&r),
            Err(RosterError::BadMember { .. })
        ));
        let mut r = roster();
        r.members[1].name = "b".into();
        r.members[1].index = 2;
        assert!(matches!(
            sign_verify(&r),
            Err(RosterError::BadMember { .. })
        ));
        let mut r = roster();
        r.members[0].serial_hex = "01".into();
        assert!(matches!(
            sign_verify(&r),
            Err(RosterError::BadMember { .. })
        ));
        let mut r = roster();
        r.members[0].cert_der[20] ^= 1;
        assert!(matches!(
            sign_verify(&r),
            Err(RosterError::MemberCert { .. }) | Err(RosterError::BadMember { .. })
        ));
        let mut r = roster();
        r.threshold = 3;
        assert_eq!(sign_verify(&r), Err(RosterError::BadParameters));
        let mut r = roster();
        r.ca = "other".into();
        assert!(matches!(sign_verify(&r), Err(RosterError::WrongCa(_))));
        let mut r = roster();
        r.version = 2;
        assert_eq!(sign_verify(&r), Err(RosterError::Version(2)));
        let mut r = roster();
        r.members[0].address = "h".repeat(MAX_ADDRESS_LEN + 1);
        assert!(matches!(
            sign_verify(&r),
            Err(RosterError::BadMember { .. })
        ));
        // No address (offline enrolment) is allowed.
        let mut r = roster();
        r.members[0].address.clear();
        assert!(sign_verify(&r).is_ok());
    }
}
