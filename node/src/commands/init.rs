//! `caucus init --dir DIR --name NAME [--key FILE] [--key-bits 2048]`: a new node directory with a
//! fresh RSA key, or an imported PKCS#8 PEM key (for example one made by `openssl genpkey`).

use std::path::Path;

use caucus::pki::keys::PrivateKey;
use serde::Serialize;

use super::CommandError;
use crate::config::{ConfigError, NodeConfig, NodeDir};

/// What `init` did.
#[derive(Clone, Debug, Serialize)]
pub struct InitResult {
    /// Party name.
    pub name: String,
    /// Node directory.
    pub dir: String,
    /// Party id of the key (SHA-256 of its SPKI).
    pub party_id: String,
    /// Key size.
    pub key_bits: usize,
    /// Whether the key was imported.
    pub imported: bool,
}

/// Creates the node directory, its key (0600) and `node.json`.
pub fn init(
    dir: &NodeDir,
    name: &str,
    key_file: Option<&Path>,
    key_bits: usize,
) -> Result<InitResult, CommandError> {
    caucus::pki::identity::check_name(name)
        .map_err(|e| CommandError::BadArgument(e.to_string()))?;
    if dir.key_path().exists() {
        return Err(ConfigError::Exists(dir.key_path()).into());
    }
    let key = match key_file {
        Some(p) => {
            let text = zeroize::Zeroizing::new(std::fs::read_to_string(p).map_err(|source| {
                ConfigError::Io {
                    path: p.to_path_buf(),
                    source,
                }
            })?);
            if text.contains("BEGIN RSA PRIVATE KEY")
                || text.contains("BEGIN ENCRYPTED PRIVATE KEY")
            {
                return Err(CommandError::BadArgument(format!(
                    "{}: not an unencrypted PKCS#8 key (convert with `openssl pkcs8 -topk8 -nocrypt`)",
                    p.display()
                )));
            }
            PrivateKey::from_pkcs8_pem(&text).map_err(|e| ConfigError::Bad {
                path: p.to_path_buf(),
                message: e.to_string(),
            })?
        }
        None => PrivateKey::generate(key_bits)?,
    };
    key.public_key()
        .check_min_bits(caucus::pki::keys::MIN_RSA_BITS)?;
    dir.create()?;
    dir.save_key(&key)?;
    dir.save_config(&NodeConfig::new(name))?;
    Ok(InitResult {
        name: name.to_string(),
        dir: dir.root.display().to_string(),
        party_id: key.public_key().party_id().to_hex(),
        key_bits: key.bits(),
        imported: key_file.is_some(),
    })
}
