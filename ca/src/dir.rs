//! The CA directory: `ca.pem` (root certificate), `ca.key` (root key, PKCS#8 PEM, mode 0600),
//! `registry.redb`, and `admin.sock` while `caucus-ca serve` runs.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use caucus::pki::issue::{CaSigner, make_root, make_serial};
use caucus::pki::keys::{PrivateKey, pem_decode, pem_encode};

/// Lifetime of a root made by `init`: 10 years.
pub const ROOT_LIFETIME_SECS: i64 = 10 * 365 * 24 * 3600;

/// Errors handling the CA directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirError {
    /// `init` on a directory that already holds a CA.
    #[error("{0} already exists; refusing to overwrite a CA")]
    Exists(PathBuf),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// what failed
        source: std::io::Error,
    },
    /// The key or certificate is unusable.
    #[error("{path}: {message}")]
    Bad {
        /// the file
        path: PathBuf,
        /// what is wrong
        message: String,
    },
}

/// Paths inside a CA directory.
#[derive(Clone, Debug)]
pub struct CaDir {
    /// The directory.
    pub root: PathBuf,
}

impl CaDir {
    /// A CA directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// `ca.pem`
    pub fn ca_pem(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    /// `ca.key`
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    /// `registry.redb`
    pub fn registry(&self) -> PathBuf {
        self.root.join("registry.redb")
    }
    /// `admin.sock`
    pub fn admin_sock(&self) -> PathBuf {
        self.root.join("admin.sock")
    }

    /// Loads the root key and certificate as a signer.
    pub fn load_signer(&self) -> Result<CaSigner, DirError> {
        let key_path = self.ca_key();
        let pem = zeroize::Zeroizing::new(read(&key_path)?);
        let key = PrivateKey::from_pkcs8_pem(&pem).map_err(|e| DirError::Bad {
            path: key_path.clone(),
            message: e.to_string(),
        })?;
        let root = self.load_root()?;
        CaSigner::new(key, root).map_err(|e| DirError::Bad {
            path: key_path,
            message: e.to_string(),
        })
    }

    /// The root certificate, DER.
    pub fn load_root(&self) -> Result<Vec<u8>, DirError> {
        let path = self.ca_pem();
        let pem = read(&path)?;
        pem_decode(&pem, "CERTIFICATE").map_err(|e| DirError::Bad {
            path,
            message: e.to_string(),
        })
    }
}

fn read(path: &Path) -> Result<String, DirError> {
    std::fs::read_to_string(path).map_err(|source| DirError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `data` to a new file created with `mode` (never chmod after the fact); refuses to
/// overwrite.
pub fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<(), DirError> {
    let io = |source| DirError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                DirError::Exists(path.to_path_buf())
            } else {
                io(e)
            }
        })?;
    f.write_all(data).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(())
}

/// What `init` made.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InitInfo {
    /// CA name.
    pub name: String,
    /// Root fingerprint (lowercase hex SHA-256 of the DER).
    pub fingerprint: String,
    /// Root key size.
    pub key_bits: usize,
    /// The directory.
    pub dir: String,
}

/// Creates a CA: directory (0700), root key (`ca.key`, 0600), self-signed root (`ca.pem`) and an
/// empty registry. Refuses to overwrite an existing CA.
pub fn init(dir: &CaDir, name: &str, key_bits: usize, now: i64) -> Result<InitInfo, DirError> {
    caucus::pki::identity::check_name(name).map_err(|e| DirError::Bad {
        path: dir.root.clone(),
        message: e.to_string(),
    })?;
    if dir.ca_key().exists() || dir.ca_pem().exists() {
        return Err(DirError::Exists(dir.ca_key()));
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir.root)
        .map_err(|source| DirError::Io {
            path: dir.root.clone(),
            source,
        })?;
    let bad = |message: String| DirError::Bad {
        path: dir.ca_key(),
        message,
    };
    let key = PrivateKey::generate(key_bits).map_err(|e| bad(e.to_string()))?;
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|_| bad("no randomness".into()))?;
    let root = make_root(&key, name, now, ROOT_LIFETIME_SECS, make_serial(serial))
        .map_err(|e| bad(e.to_string()))?;
    write_new(&dir.ca_key(), key.to_pkcs8_pem().as_bytes(), 0o600)?;
    write_new(
        &dir.ca_pem(),
        pem_encode("CERTIFICATE", &root).as_bytes(),
        0o644,
    )?;
    crate::store::Store::open(&dir.registry()).map_err(|e| DirError::Bad {
        path: dir.registry(),
        message: e.to_string(),
    })?;
    Ok(InitInfo {
        name: name.to_string(),
        fingerprint: caucus::pki::fingerprint(&root),
        key_bits,
        dir: dir.root.display().to_string(),
    })
}
