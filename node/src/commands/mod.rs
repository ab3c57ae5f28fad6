//! The code of each `caucus` CLI command, one module per command, callable from tests.

pub mod enroll;
pub mod init;
pub mod peers;
pub mod serve;

use crate::ca_client::CaClientError;
use crate::config::ConfigError;

/// Errors from CLI commands.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// Node directory.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Talking to the CA.
    #[error(transparent)]
    Ca(#[from] CaClientError),
    /// Key handling.
    #[error(transparent)]
    Key(#[from] caucus::pki::keys::KeyError),
    /// CSR building.
    #[error(transparent)]
    Csr(#[from] caucus::pki::csr::CsrError),
    /// A command-line argument is invalid.
    #[error("{0}")]
    BadArgument(String),
}
