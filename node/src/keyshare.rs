//! `keyshare.json`: one party's share of the distributed Paillier key, as `caucus keygen` writes it
//! (mode 0600, written atomically: a temp file created 0600, fsynced, renamed; nothing
//! half-written is ever left under the final name).
//!
//! The file is versioned JSON: the public key (inside `share`), the party's own share s_i, its
//! N-th-root share a_i (inner format 2; a format-1 share without it decrypts classic only) and θ,
//! the threshold t, the roster of the keygen session (index, name, `PartyId`) and the keygen
//! session id. The key outlives the session certificates: later sessions match parties by NAME
//! (the new `PartyId`s come from the new certificates).

use std::path::{Path, PathBuf};

use caucus::keygen::KeyShare;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::config::{ConfigError, write_atomic};

/// Current `keyshare.json` format version.
pub const KEYSHARE_FILE_VERSION: u16 = 1;

/// Errors reading or writing `keyshare.json`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyShareFileError {
    /// No key share yet.
    #[error("no key share in {0} (run `caucus keygen` first)")]
    Missing(PathBuf),
    /// The file could not be read or written.
    #[error(transparent)]
    Io(#[from] ConfigError),
    /// The file does not parse or is inconsistent.
    #[error("{path}: {reason}")]
    Bad {
        /// the file
        path: PathBuf,
        /// what is wrong
        reason: String,
    },
}

/// One member of the keygen roster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyParty {
    /// Key index (1-based roster position at keygen).
    pub index: u32,
    /// Party name (how later sessions find the party).
    pub name: String,
    /// `PartyId` of the certificate the party held at keygen.
    pub party_id: String,
}

/// The content of `keyshare.json`.
///
/// # Security
/// `share` holds the secret share: never log or send this struct (its `Debug` is redacted).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyShareFile {
    /// Format version.
    pub version: u16,
    /// Key fingerprint (hex SHA-256 of N).
    pub key_id: String,
    /// Bit length of N.
    pub bits: u64,
    /// The CA session the key was generated in.
    pub keygen_session: String,
    /// Unix seconds when the key was written.
    pub created_at: i64,
    /// This party's name.
    pub me: String,
    /// Threshold t (any t+1 parties decrypt).
    pub threshold: u32,
    /// Every party of the key, by index.
    pub parties: Vec<KeyParty>,
    /// The share (public key, s_i, θ, t, n, index).
    pub share: KeyShare,
}

impl std::fmt::Debug for KeyShareFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyShareFile")
            .field("key_id", &self.key_id)
            .field("keygen_session", &self.keygen_session)
            .field("me", &self.me)
            .field("threshold", &self.threshold)
            .field("share", &"<redacted>")
            .finish()
    }
}

impl KeyShareFile {
    /// The party with key index `index`.
    pub fn party_by_index(&self, index: u32) -> Option<&KeyParty> {
        self.parties.iter().find(|p| p.index == index)
    }

    /// The key index of party `name`.
    pub fn index_of(&self, name: &str) -> Option<u32> {
        self.parties
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.index)
    }

    /// Consistency checks: version, key id, indices 1..=n in order, own entry, threshold.
    pub fn check(&self) -> Result<(), String> {
        if self.version != KEYSHARE_FILE_VERSION {
            return Err(format!("unsupported version {}", self.version));
        }
        if self.key_id != self.share.key_id() {
            return Err("key_id does not match the public key".into());
        }
        if self.parties.len() != self.share.parties() as usize {
            return Err("party list does not match the share".into());
        }
        for (i, p) in self.parties.iter().enumerate() {
            if p.index as usize != i + 1 {
                return Err("party indices are not 1..n in order".into());
            }
        }
        if self.threshold != self.share.threshold() {
            return Err("threshold does not match the share".into());
        }
        match self.index_of(&self.me) {
            Some(i) if i == self.share.index() => Ok(()),
            _ => Err(format!("own entry {:?} does not match the share", self.me)),
        }
    }

    /// Writes the file atomically with mode 0600 (temp file + fsync + rename).
    pub fn save(&self, path: &Path) -> Result<(), KeyShareFileError> {
        let bytes = Zeroizing::new(serde_json::to_vec_pretty(self).map_err(|e| {
            KeyShareFileError::Bad {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?);
        write_atomic(path, &bytes, 0o600)?;
        Ok(())
    }

    /// Loads and checks the file.
    pub fn load(path: &Path) -> Result<Self, KeyShareFileError> {
        if !path.exists() {
            return Err(KeyShareFileError::Missing(
                path.parent().unwrap_or(path).to_path_buf(),
            ));
        }
        let bad = |reason: String| KeyShareFileError::Bad {
            path: path.to_path_buf(),
            reason,
        };
        let text = Zeroizing::new(std::fs::read(path).map_err(|source| {
            KeyShareFileError::Io(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            })
        })?);
        let f: KeyShareFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        f.check().map_err(bad)?;
        Ok(f)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A key share file from a seeded 256-bit keygen (alice's).
    pub(crate) fn sample() -> KeyShareFile {
        let (shares, _) = caucus::testing::run_keygen(3, 1, 256, 7);
        let share = shares.into_iter().next().expect("share");
        KeyShareFile {
            version: KEYSHARE_FILE_VERSION,
            key_id: share.key_id(),
            bits: share.public().bits(),
            keygen_session: "s1".into(),
            created_at: 1,
            me: "alice".into(),
            threshold: 1,
            parties: ["alice", "bob", "carol"]
                .iter()
                .enumerate()
                .map(|(i, n)| KeyParty {
                    index: i as u32 + 1,
                    name: n.to_string(),
                    party_id: "00".repeat(32),
                })
                .collect(),
            share,
        }
    }

    #[test]
    fn round_trip_0600_and_refusals() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("keyshare.json");
        assert!(matches!(
            KeyShareFile::load(&path),
            Err(KeyShareFileError::Missing(_))
        ));
        let f = sample();
        assert!(!format!("{f:?}").contains("share\": "));
        f.save(&path).expect("save");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let g = KeyShareFile::load(&path).expect("load");
        assert_eq!(g.key_id, f.key_id);
        assert_eq!(g.parties, f.parties);
        assert!(!tmp.path().join("keyshare.tmp").exists());

        // a wrong own entry, a truncated file
        let mut h = sample();
        h.me = "bob".into();
        h.save(&path).expect("save");
        assert!(matches!(
            KeyShareFile::load(&path),
            Err(KeyShareFileError::Bad { .. })
        ));
        std::fs::write(&path, b"{\"version\":1").expect("write");
        assert!(matches!(
            KeyShareFile::load(&path),
            Err(KeyShareFileError::Bad { .. })
        ));
    }
}
