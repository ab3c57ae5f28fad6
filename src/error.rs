//! The top-level error, wrapping each module's typed error.

/// Any caucus protocol-core error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Key handling.
    #[error(transparent)]
    Key(#[from] crate::pki::keys::KeyError),
    /// Identity parsing.
    #[error(transparent)]
    Identity(#[from] crate::pki::identity::IdentityError),
    /// CSR building or parsing.
    #[error(transparent)]
    Csr(#[from] crate::pki::csr::CsrError),
    /// Certificate issuance.
    #[error(transparent)]
    Issue(#[from] crate::pki::issue::IssueError),
    /// Certificate verification.
    #[error(transparent)]
    Verify(#[from] crate::pki::verify::VerifyError),
    /// Roster signing or verification.
    #[error(transparent)]
    Roster(#[from] crate::pki::roster::RosterError),
    /// Revocation list signing or verification.
    #[error(transparent)]
    Crl(#[from] crate::pki::crl::CrlError),
    /// Wire encoding.
    #[error(transparent)]
    Encoding(#[from] crate::encoding::EncodingError),
    /// Framing.
    #[error(transparent)]
    Frame(#[from] crate::msg::frame::FrameError),
    /// Signed envelopes.
    #[error(transparent)]
    Envelope(#[from] crate::msg::envelope::EnvelopeError),
    /// The replay cache.
    #[error(transparent)]
    Replay(#[from] crate::msg::replay::ReplayError),
    /// Blobs.
    #[error(transparent)]
    Blob(#[from] crate::blob::BlobError),
    /// Paillier operations and formats.
    #[error(transparent)]
    Paillier(#[from] crate::paillier::PaillierError),
    /// Distributed key generation.
    #[error(transparent)]
    Keygen(#[from] crate::keygen::KeygenError),
    /// Key share loading.
    #[error(transparent)]
    KeyShare(#[from] crate::keygen::share::KeyShareError),
    /// Threshold decryption.
    #[error(transparent)]
    Decrypt(#[from] crate::decrypt::DecryptError),
    /// Secret sharing.
    #[error(transparent)]
    Sharing(#[from] crate::sharing::SharingError),
}

/// Result with the top-level [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
