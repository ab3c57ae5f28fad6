//! The CA's revocation list: revoked serials, signed by the root key (RSA-PSS-SHA256 over the exact
//! JSON text, like the roster). Nodes fetch it and refuse revoked peers; a list past its
//! `next_update` is refused so a stale list cannot hide a later revocation forever.

use serde::{Deserialize, Serialize};

use super::keys::PrivateKey;
use super::roster::verify_signed_text;
use super::verify::{VerifyError, check_root};
use crate::encoding::b64u;

/// CRL format version.
pub const CRL_VERSION: u32 = 1;

/// Largest CRL JSON accepted, in bytes.
pub const MAX_CRL_BYTES: usize = 8 << 20;

/// Errors building or verifying a revocation list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrlError {
    /// Not the JSON shape of a CRL (or too large).
    #[error("revocation list is malformed")]
    Malformed,
    /// The root signature does not verify.
    #[error("revocation list signature does not verify")]
    BadSignature,
    /// Unsupported version.
    #[error("unsupported revocation list version {0}")]
    Version(u32),
    /// Issued by another CA than the pinned root.
    #[error("revocation list is for ca {0:?}, not the pinned root")]
    WrongCa(String),
    /// `now` is past `next_update`.
    #[error("revocation list is stale (past its next update)")]
    Stale,
    /// The root certificate is unusable.
    #[error(transparent)]
    Root(VerifyError),
    /// Signing failed.
    #[error(transparent)]
    Key(#[from] super::keys::KeyError),
}

/// One revoked certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokedEntry {
    /// Serial, lowercase hex.
    pub serial_hex: String,
    /// When it was revoked, unix seconds.
    pub revoked_at: i64,
}

/// A revocation list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crl {
    /// Format version ([`CRL_VERSION`]).
    pub version: u32,
    /// CA name.
    pub ca: String,
    /// When the CA produced it, unix seconds.
    pub issued_at: i64,
    /// After this, the list is stale and must be fetched again, unix seconds.
    pub next_update: i64,
    /// Revoked serials.
    pub revoked: Vec<RevokedEntry>,
}

impl Crl {
    /// Whether `serial_hex` (any case, leading zeros ignored) is revoked.
    pub fn is_revoked(&self, serial_hex: &str) -> bool {
        let norm = |s: &str| s.trim_start_matches('0').to_ascii_lowercase();
        let want = norm(serial_hex);
        self.revoked.iter().any(|r| norm(&r.serial_hex) == want)
    }
}

/// A CRL as the CA serves it: exact JSON text and the root's signature over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedCrl {
    /// The CRL as JSON text (signed byte for byte).
    pub crl: String,
    /// base64url RSA-PSS-SHA256 signature by the root key over `crl`'s UTF-8 bytes.
    pub signature: String,
}

/// Signs a CRL with the root key.
pub fn sign_crl(crl: &Crl, root_key: &PrivateKey) -> Result<SignedCrl, CrlError> {
    let text = serde_json::to_string(crl).map_err(|_| CrlError::Malformed)?;
    let sig = root_key.sign_pss(text.as_bytes())?;
    Ok(SignedCrl {
        crl: text,
        signature: b64u(&sig),
    })
}

impl SignedCrl {
    /// Verifies the signature with `root_der` and freshness at `now`, and returns the list.
    pub fn verify(&self, root_der: &[u8], now: i64) -> Result<Crl, CrlError> {
        if self.crl.len() > MAX_CRL_BYTES {
            return Err(CrlError::Malformed);
        }
        let root = check_root(root_der).map_err(CrlError::Root)?;
        verify_signed_text(&self.crl, &self.signature, &root)
            .map_err(|_| CrlError::BadSignature)?;
        let crl: Crl = serde_json::from_str(&self.crl).map_err(|_| CrlError::Malformed)?;
        if crl.version != CRL_VERSION {
            return Err(CrlError::Version(crl.version));
        }
        if crl.ca != root.name {
            return Err(CrlError::WrongCa(crl.ca.chars().take(64).collect()));
        }
        if now > crl.next_update {
            return Err(CrlError::Stale);
        }
        Ok(crl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::issue::tests::{NOW, ca};

    fn crl() -> Crl {
        Crl {
            version: CRL_VERSION,
            ca: "acme".into(),
            issued_at: NOW,
            next_update: NOW + 3600,
            revoked: vec![RevokedEntry {
                serial_hex: "0a0b".into(),
                revoked_at: NOW - 5,
            }],
        }
    }

    #[test]
    fn round_trip_and_lookup() {
        let signed = sign_crl(&crl(), ca().key()).expect("sign");
        let back = signed.verify(ca().root_der(), NOW).expect("verify");
        assert!(back.is_revoked("0a0b"));
        assert!(back.is_revoked("A0B"));
        assert!(!back.is_revoked("0a0c"));
    }

    #[test]
    fn refusals() {
        let signed = sign_crl(&crl(), ca().key()).expect("sign");
        assert_eq!(
            signed.verify(ca().root_der(), NOW + 3601),
            Err(CrlError::Stale)
        );
        let mut bad = signed.clone();
        bad.crl = bad.crl.replace("0a0b", "0a0c");
        assert_eq!(
            bad.verify(ca().root_der(), NOW),
            Err(CrlError::BadSignature)
        );
        let mut other = crl();
        other.ca = "x".into();
        let s = sign_crl(&other, ca().key()).expect("sign");
        assert!(matches!(
            s.verify(ca().root_der(), NOW),
            Err(CrlError::WrongCa(_))
        ));
        let mut v = crl();
        v.version = 9;
        let s = sign_crl(&v, ca().key()).expect("sign");
        assert_eq!(s.verify(ca().root_der(), NOW), Err(CrlError::Version(9)));
        let garbage = SignedCrl {
            crl: "{".into(),
            signature: "!!".into(),
        };
        assert_eq!(
            garbage.verify(ca().root_der(), NOW),
            Err(CrlError::BadSignature)
        );
    }
}
