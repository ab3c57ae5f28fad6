//! The node directory and its configuration.
//!
//! A node directory holds `node.key` (PKCS#8 PEM, 0600), `node.pem` (the current session
//! certificate), `ca.pem` (the pinned root), `node.json` ([`NodeConfig`]), `keyshare.json` (0600,
//! after keygen) and `blobs/`.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use caucus::pki::keys::{PrivateKey, pem_decode};
use serde::{Deserialize, Serialize};

/// Errors handling the node directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// what failed
        source: std::io::Error,
    },
    /// A file has unusable content.
    #[error("{path}: {message}")]
    Bad {
        /// the file
        path: PathBuf,
        /// what is wrong
        message: String,
    },
    /// The node has not enrolled yet.
    #[error("node in {0} is not enrolled yet (run `caucus enroll`)")]
    NotEnrolled(PathBuf),
    /// `caucus init` on a directory that already has a key.
    #[error("{0} already exists; refusing to overwrite a node key")]
    Exists(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ConfigError + '_ {
    move |source| ConfigError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `node.json`: who this node is and where its CA is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// Party name.
    pub name: String,
    /// CA address (`host:port`), once enrolled.
    #[serde(default)]
    pub ca_addr: Option<String>,
    /// Where peers reach this node (`host:port`), once enrolled.
    #[serde(default)]
    pub advertise: Option<String>,
    /// Session id, once enrolled.
    #[serde(default)]
    pub session: Option<String>,
    /// CA name (root CN), once enrolled.
    #[serde(default)]
    pub ca_name: Option<String>,
    /// Pinned root fingerprint (lowercase hex SHA-256), once enrolled.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// The enrolled part of a [`NodeConfig`], all present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolment {
    /// CA address.
    pub ca_addr: String,
    /// Advertised address.
    pub advertise: String,
    /// Session id.
    pub session: String,
    /// CA name.
    pub ca_name: String,
    /// Root fingerprint.
    pub fingerprint: String,
}

impl NodeConfig {
    /// A fresh (not enrolled) config.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            ca_addr: None,
            advertise: None,
            session: None,
            ca_name: None,
            fingerprint: None,
        }
    }

    /// The enrolment fields, or `None` if not enrolled.
    pub fn enrolment(&self) -> Option<Enrolment> {
        Some(Enrolment {
            ca_addr: self.ca_addr.clone()?,
            advertise: self.advertise.clone()?,
            session: self.session.clone()?,
            ca_name: self.ca_name.clone()?,
            fingerprint: self.fingerprint.clone()?,
        })
    }
}

/// Paths inside a node directory.
#[derive(Clone, Debug)]
pub struct NodeDir {
    /// The directory.
    pub root: PathBuf,
}

impl NodeDir {
    /// A node directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// `node.key` (0600)
    pub fn key_path(&self) -> PathBuf {
        self.root.join("node.key")
    }
    /// `node.pem`
    pub fn cert_path(&self) -> PathBuf {
        self.root.join("node.pem")
    }
    /// `ca.pem`
    pub fn root_path(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    /// `node.json`
    pub fn config_path(&self) -> PathBuf {
        self.root.join("node.json")
    }
    /// `keyshare.json` (0600)
    pub fn keyshare_path(&self) -> PathBuf {
        self.root.join("keyshare.json")
    }
    /// `blobs/`
    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs")
    }

    /// Creates the directory (0700) if needed.
    pub fn create(&self) -> Result<(), ConfigError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(io(&self.root))
    }

    /// Loads `node.json`.
    pub fn load_config(&self) -> Result<NodeConfig, ConfigError> {
        let p = self.config_path();
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        serde_json::from_str(&text).map_err(|e| ConfigError::Bad {
            path: p,
            message: e.to_string(),
        })
    }

    /// Loads `node.json` and requires the node to be enrolled.
    pub fn load_enrolled(&self) -> Result<(NodeConfig, Enrolment), ConfigError> {
        let cfg = self.load_config()?;
        let e = cfg
            .enrolment()
            .ok_or_else(|| ConfigError::NotEnrolled(self.root.clone()))?;
        Ok((cfg, e))
    }

    /// Saves `node.json` atomically (write to a temp file, then rename).
    pub fn save_config(&self, cfg: &NodeConfig) -> Result<(), ConfigError> {
        let text = serde_json::to_string_pretty(cfg).map_err(|e| ConfigError::Bad {
            path: self.config_path(),
            message: e.to_string(),
        })?;
        write_atomic(&self.config_path(), text.as_bytes(), 0o644)
    }

    /// Loads `node.key`.
    pub fn load_key(&self) -> Result<PrivateKey, ConfigError> {
        let p = self.key_path();
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(&p).map_err(io(&p))?);
        PrivateKey::from_pkcs8_pem(&text).map_err(|e| ConfigError::Bad {
            path: p,
            message: e.to_string(),
        })
    }

    /// Writes `node.key` (0600, created with that mode; never overwrites).
    pub fn save_key(&self, key: &PrivateKey) -> Result<(), ConfigError> {
        let p = self.key_path();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    ConfigError::Exists(p.clone())
                } else {
                    ConfigError::Io {
                        path: p.clone(),
                        source: e,
                    }
                }
            })?;
        f.write_all(key.to_pkcs8_pem().as_bytes()).map_err(io(&p))?;
        f.sync_all().map_err(io(&p))
    }

    fn load_pem_cert(&self, p: PathBuf) -> Result<Vec<u8>, ConfigError> {
        if !p.exists() {
            return Err(ConfigError::NotEnrolled(self.root.clone()));
        }
        let text = std::fs::read_to_string(&p).map_err(io(&p))?;
        pem_decode(&text, "CERTIFICATE").map_err(|e| ConfigError::Bad {
            path: p,
            message: e.to_string(),
        })
    }

    /// Loads `node.pem` (DER).
    pub fn load_cert(&self) -> Result<Vec<u8>, ConfigError> {
        self.load_pem_cert(self.cert_path())
    }

    /// Loads `ca.pem` (DER).
    pub fn load_root(&self) -> Result<Vec<u8>, ConfigError> {
        self.load_pem_cert(self.root_path())
    }
}

/// Writes a file atomically and durably: a temp file created with `mode` in the same directory,
/// fsynced, renamed over `path`, then the directory fsynced so the rename survives a crash.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), ConfigError> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(io(d))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn key_is_0600_and_config_round_trips() {
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = NodeDir::new(tmp.path().join("n"));
        dir.create().expect("create");
        let key = PrivateKey::generate(2048).expect("key");
        dir.save_key(&key).expect("save");
        let mode = std::fs::metadata(dir.key_path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(matches!(dir.save_key(&key), Err(ConfigError::Exists(_))));
        assert_eq!(dir.load_key().expect("load").public_key(), key.public_key());
        let cfg = NodeConfig::new("alice");
        dir.save_config(&cfg).expect("save cfg");
        assert_eq!(dir.load_config().expect("load"), cfg);
        assert!(matches!(
            dir.load_enrolled(),
            Err(ConfigError::NotEnrolled(_))
        ));
        assert!(matches!(dir.load_cert(), Err(ConfigError::NotEnrolled(_))));
    }
}
