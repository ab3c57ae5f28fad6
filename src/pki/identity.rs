//! Party identity: a party *is* its certificate's public key, never an IP address.
//!
//! [`PartyId`] is the SHA-256 of the certificate's SubjectPublicKeyInfo DER, shown as lowercase hex.
//! [`SpiffeId`] is the single URI SAN every caucus certificate carries:
//! `caucus://<ca-name>/session/<session-id>/party/<party-name>`.

use std::fmt;
use std::str::FromStr;

/// Errors parsing identities.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not 64 lowercase hex characters.
    #[error("malformed party id")]
    BadPartyId,
    /// Not a `caucus://<ca>/session/<sid>/party/<name>` URI.
    #[error("malformed caucus uri: {0}")]
    BadUri(String),
    /// A name (CA, session or party) uses characters outside `[A-Za-z0-9._-]` or is empty/too long.
    #[error("invalid name {0:?}: use 1-64 characters from A-Z a-z 0-9 . _ -")]
    BadName(String),
}

/// SHA-256 of a certificate's SubjectPublicKeyInfo DER.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartyId(pub [u8; 32]);

impl PartyId {
    /// Hashes an SPKI DER into its party id.
    pub fn from_spki_der(spki: &[u8]) -> Self {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki);
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        Self(out)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex characters, for human output.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartyId({})", self.short())
    }
}

impl FromStr for PartyId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(IdentityError::BadPartyId);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| IdentityError::BadPartyId)?;
        Ok(Self(out))
    }
}

impl serde::Serialize for PartyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for PartyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a CA, session or party name: 1-64 characters from `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<(), IdentityError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(IdentityError::BadName(name.to_string()))
    }
}

/// The URI SAN identity `caucus://<ca>/session/<session>/party/<party>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct SpiffeId {
    /// CA name.
    pub ca: String,
    /// Session id.
    pub session: String,
    /// Party name (also the certificate CN).
    pub party: String,
}

impl SpiffeId {
    /// Builds and validates an identity.
    pub fn new(ca: &str, session: &str, party: &str) -> Result<Self, IdentityError> {
        check_name(ca)?;
        check_name(session)?;
        check_name(party)?;
        Ok(Self {
            ca: ca.into(),
            session: session.into(),
            party: party.into(),
        })
    }

    /// The URI form.
    pub fn to_uri(&self) -> String {
        format!(
            "caucus://{}/session/{}/party/{}",
            self.ca, self.session, self.party
        )
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

impl FromStr for SpiffeId {
    type Err = IdentityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || IdentityError::BadUri(s.chars().take(200).collect());
        let rest = s.strip_prefix("caucus://").ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [ca, "session", sid, "party", name] => Self::new(ca, sid, name).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip_and_refusals() {
        let id = SpiffeId::new("acme", "s1", "alice").expect("valid");
        assert_eq!(id.to_uri(), "caucus://acme/session/s1/party/alice");
        assert_eq!(id.to_uri().parse::<SpiffeId>(), Ok(id));
        for bad in [
            "https://acme/session/s1/party/alice",
            "caucus://acme/session/s1/party/",
            "caucus://acme/session/s1/party/a/b",
            "caucus://acme/sessions/s1/party/alice",
            "caucus://ac me/session/s1/party/alice",
        ] {
            assert!(bad.parse::<SpiffeId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn party_id_hex() {
        let p = PartyId::from_spki_der(b"x");
        let s = p.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<PartyId>(), Ok(p));
        assert!(s.to_uppercase().parse::<PartyId>().is_err());
        let json = serde_json::to_string(&p).expect("json");
        assert_eq!(serde_json::from_str::<PartyId>(&json).expect("parse"), p);
    }
}
