//! PKI primitives, IO-free: RSA keys, identities, CSRs, issuance, certificate verification, and the
//! CA-signed roster and revocation list that nodes use to find and authenticate each other.
//!
//! - [`keys`]: RSA keys (aws-lc-rs), PEM helpers.
//! - [`identity`]: [`PartyId`] and the URI SAN [`SpiffeId`].
//! - [`csr`]: build a CSR, parse one and verify its proof of possession.
//! - [`issue`](mod@issue): the root, the CA's TLS certificate, party certificates, issuance validators.
//! - [`verify`]: chain verification to a pinned root at `now`, fingerprints.
//! - [`roster`]: the signed session roster.
//! - [`crl`]: the signed revocation list.

pub mod crl;
pub mod csr;
pub mod identity;
pub mod issue;
pub mod keys;
pub mod roster;
pub mod verify;

pub use crl::{Crl, CrlError, RevokedEntry, SignedCrl, sign_crl};
pub use csr::{CsrError, CsrRequest, build_csr, csr_to_pem, parse_csr};
pub use identity::{PartyId, SpiffeId};
pub use issue::{CA_SERVER_NAME, CaSigner, IssueError, issue, make_root, make_serial, serial_hex};
pub use keys::{PrivateKey, PublicKey};
pub use roster::{Roster, RosterEntry, RosterError, SignedRoster, sign_roster};
pub use verify::{
    VerifiedCert, VerifyError, check_root, fingerprint, fingerprint_matches, parse_fingerprint,
    verify_chain,
};
