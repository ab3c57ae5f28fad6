//! Key-generation wire messages. Every message carries a [`Header`] (format version, the run tag,
//! the step counter and the batch counter) and one [`Body`] whose variant names the phase. Big
//! integers are base64url (bounded on decode); signed integers add a leading `-`. The batch vectors
//! travel as one base64url string each: a 2-byte width, then fixed-width big-endian values
//! ([`crate::encoding::biguint_vec_pack`]).

use num_bigint::{BigInt, BigUint};
use serde::{Deserialize, Serialize};

use super::KeygenError;
use crate::encoding::{biguint_vec_packed, bytes_b64u};
use crate::paillier::encoding::bigint_b64u;

/// Current message format version (2: packed batch vectors).
pub const MESSAGE_VERSION: u16 = 3;

/// The phase a message belongs to (the [`Body`] variant).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Sieve: Shamir shares of the CRT residue values and mask (point-to-point).
    SieveShares,
    /// Sieve: each party's point of the masked products (broadcast).
    SieveOpen,
    /// N: Shamir shares of p_i, q_i and a zero (point-to-point).
    ProductShares,
    /// N: each party's point of p·q (broadcast).
    ProductOpen,
    /// Biprimality: first round for every survivor (broadcast).
    BiprimeFirst,
    /// Biprimality: remaining rounds and twisted-group test for the finalists (broadcast).
    BiprimeRest,
    /// Secret key: integer shares of φ_i, β_i and the θ mask (point-to-point).
    SecretShares,
    /// Secret key: degree-t re-sharing and the θ opening (point-to-point).
    SecretReshare,
}

/// Message header.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Format version ([`MESSAGE_VERSION`]).
    pub version: u16,
    /// Run tag (binds session and attempt, see [`super::run_tag`]).
    #[serde(with = "bytes_b64u")]
    pub run: Vec<u8>,
    /// Protocol step (round) counter, from 0.
    pub step: u32,
    /// Batch counter, from 0.
    pub batch: u32,
}

/// Message body: one variant per phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Body {
    /// Three field elements per sieve variant: shares of c_p, c_q and M·R.
    SieveShares {
        /// flattened triples
        #[serde(with = "biguint_vec_packed")]
        shares: Vec<BigUint>,
    },
    /// One field element per sieve variant.
    SieveOpen {
        /// points V(j)
        #[serde(with = "biguint_vec_packed")]
        values: Vec<BigUint>,
    },
    /// Three field elements per candidate: shares of p_i, q_i and a zero.
    ProductShares {
        /// flattened triples
        #[serde(with = "biguint_vec_packed")]
        shares: Vec<BigUint>,
    },
    /// One field element per candidate.
    ProductOpen {
        /// points N(j)
        #[serde(with = "biguint_vec_packed")]
        values: Vec<BigUint>,
    },
    /// One value mod N per surviving candidate.
    BiprimeFirst {
        /// v_i per survivor
        #[serde(with = "biguint_vec_packed")]
        values: Vec<BigUint>,
    },
    /// Per finalist: s − 1 values mod N, then two per twisted-group round.
    BiprimeRest {
        /// flattened per finalist
        #[serde(with = "biguint_vec_packed")]
        values: Vec<BigUint>,
    },
    /// Integer shares F_i(j), B_i(j), Z_i(j), P_i(j).
    SecretShares {
        /// share of Δ·φ_i
        #[serde(with = "bigint_b64u")]
        phi: BigInt,
        /// share of Δ·β_i
        #[serde(with = "bigint_b64u")]
        beta: BigInt,
        /// share of Δ·N·R_i
        #[serde(with = "bigint_b64u")]
        mask: BigInt,
        /// degree-t share of Δ·R_i (the N-th-root shares, see [`super::secret`])
        #[serde(with = "bigint_b64u")]
        root_mask: BigInt,
    },
    /// Degree-t re-share G_j(ℓ) and the opening w_j.
    SecretReshare {
        /// G_j(ℓ)
        #[serde(with = "bigint_b64u")]
        reshare: BigInt,
        /// w_j = F(j)·B(j) + Z(j)
        #[serde(with = "bigint_b64u")]
        opening: BigInt,
    },
}

impl Body {
    /// The phase of this body.
    pub fn phase(&self) -> Phase {
        match self {
            Body::SieveShares { .. } => Phase::SieveShares,
            Body::SieveOpen { .. } => Phase::SieveOpen,
            Body::ProductShares { .. } => Phase::ProductShares,
            Body::ProductOpen { .. } => Phase::ProductOpen,
            Body::BiprimeFirst { .. } => Phase::BiprimeFirst,
            Body::BiprimeRest { .. } => Phase::BiprimeRest,
            Body::SecretShares { .. } => Phase::SecretShares,
            Body::SecretReshare { .. } => Phase::SecretReshare,
        }
    }

    /// The vector of big integers of a vector body (empty for the secret phases).
    pub(crate) fn values(&self) -> &[BigUint] {
        match self {
            Body::SieveShares { shares } | Body::ProductShares { shares } => shares,
            Body::SieveOpen { values }
            | Body::ProductOpen { values }
            | Body::BiprimeFirst { values }
            | Body::BiprimeRest { values } => values,
            Body::SecretShares { .. } | Body::SecretReshare { .. } => &[],
        }
    }
}

/// A key-generation message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeygenMessage {
    /// Header.
    pub header: Header,
    /// Body.
    pub body: Body,
}

impl KeygenMessage {
    /// Parses a message received from party `from`; a parse failure names `from`.
    pub fn from_json(from: u32, bytes: &[u8]) -> Result<Self, KeygenError> {
        serde_json::from_slice(bytes).map_err(|e| KeygenError::Malformed {
            culprit: from,
            reason: e.to_string(),
        })
    }

    /// JSON encoding.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What a step asks the runtime to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// The same message to every other party.
    Broadcast(KeygenMessage),
    /// A message for one party.
    Direct {
        /// recipient index
        to: u32,
        /// message
        msg: KeygenMessage,
    },
}
