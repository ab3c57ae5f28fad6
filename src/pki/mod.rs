//! PKI primitives, IO-free: RSA keys, identities, CSRs, certificate verification, and the CA-signed
//! roster and revocation list that nodes use to find and authenticate each other.

pub mod identity;
pub mod keys;

pub use identity::{PartyId, SpiffeId};
pub use keys::{PrivateKey, PublicKey};
