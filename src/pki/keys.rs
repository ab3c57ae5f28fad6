//! RSA keys for nodes and the CA, backed by aws-lc-rs (constant-time, the same library rustls uses).
//!
//! * [`PrivateKey`]: generate (2048/3072/4096), PKCS#8 DER/PEM import and export, RSA-PSS-SHA256
//!   signing, RSA-OAEP-SHA256 unwrapping, conversion to an [`rcgen::KeyPair`] for CSRs and issuance.
//! * [`PublicKey`]: an X.509 `SubjectPublicKeyInfo`; RSA-PSS-SHA256 verification, RSA-OAEP-SHA256
//!   wrapping, and the [`PartyId`] (SHA-256 of the SPKI DER).
//!
//! The private key material is held only inside aws-lc-rs and a zeroizing PKCS#8 buffer; `Debug`
//! never prints it.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{
    KeyPair, KeySize, OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{self, UnparsedPublicKey};
use zeroize::Zeroizing;

use super::identity::PartyId;

/// Errors from key handling.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The requested RSA modulus size is not one of 2048, 3072, 4096.
    #[error("unsupported rsa key size {0} (use 2048, 3072 or 4096)")]
    UnsupportedSize(usize),
    /// Key generation failed inside the crypto library.
    #[error("rsa key generation failed")]
    Generate,
    /// The bytes are not a PKCS#8 RSA private key we accept.
    #[error("not a usable pkcs#8 rsa private key")]
    BadPrivateKey,
    /// The PEM text has no block of the expected label.
    #[error("no PEM block labelled {0}")]
    BadPem(&'static str),
    /// The bytes are not an RSA SubjectPublicKeyInfo we accept.
    #[error("not a usable rsa public key")]
    BadPublicKey,
    /// The RSA key is smaller than policy allows.
    #[error("rsa key of {bits} bits is below the minimum of {min}")]
    TooSmall {
        /// modulus size of the offered key
        bits: usize,
        /// policy minimum
        min: usize,
    },
    /// A signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    Sign,
    /// RSA-OAEP encryption failed (for example, plaintext too long).
    #[error("rsa-oaep encryption failed")]
    Encrypt,
    /// RSA-OAEP decryption failed (wrong key or tampered ciphertext).
    #[error("rsa-oaep decryption failed")]
    Decrypt,
}

/// Minimum RSA modulus size accepted anywhere in caucus.
pub const MIN_RSA_BITS: usize = 2048;

/// An RSA private key.
pub struct PrivateKey {
    pair: KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
    public: PublicKey,
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateKey")
            .field("bits", &self.bits())
            .field("party_id", &self.public.party_id())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl PrivateKey {
    /// Generates a fresh RSA key of `bits` (2048, 3072 or 4096).
    pub fn generate(bits: usize) -> Result<Self, KeyError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(KeyError::UnsupportedSize(other)),
        };
        let pair = KeyPair::generate(size).map_err(|_| KeyError::Generate)?;
        let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8_der(der.as_ref())
    }

    /// Imports a PKCS#8 DER private key (for example one made by `openssl genpkey`).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        let pair = KeyPair::from_pkcs8(der).map_err(|_| KeyError::BadPrivateKey)?;
        let dec = PrivateDecryptingKey::from_pkcs8(der).map_err(|_| KeyError::BadPrivateKey)?;
        let spki: PublicKeyX509Der<'static> = dec
            .public_key()
            .as_der()
            .map_err(|_| KeyError::BadPrivateKey)?;
        let public = PublicKey::from_spki_der(spki.as_ref())?;
        Ok(Self {
            pair,
            pkcs8: Zeroizing::new(der.to_vec()),
            public,
        })
    }

    /// Imports a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let der = Zeroizing::new(pem_decode(pem, "PRIVATE KEY")?);
        Self::from_pkcs8_der(&der)
    }

    /// The PKCS#8 DER encoding. Handle with care: this is the secret.
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The PKCS#8 PEM encoding, in a zeroizing buffer.
    pub fn to_pkcs8_pem(&self) -> Zeroizing<String> {
        Zeroizing::new(pem_encode("PRIVATE KEY", &self.pkcs8))
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.pair.public_modulus_len() * 8
    }

    /// Signs `msg` with RSA-PSS-SHA256 (salt length = digest length).
    pub fn sign_pss(&self, msg: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&signature::RSA_PSS_SHA256, &rng, msg, &mut sig)
            .map_err(|_| KeyError::Sign)?;
        Ok(sig)
    }

    /// Unwraps an RSA-OAEP-SHA256 ciphertext addressed to this key.
    pub fn oaep_decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
        let dec = PrivateDecryptingKey::from_pkcs8(&self.pkcs8).map_err(|_| KeyError::Decrypt)?;
        let dec = OaepPrivateDecryptingKey::new(dec).map_err(|_| KeyError::Decrypt)?;
        let mut out = Zeroizing::new(vec![0u8; dec.min_output_size()]);
        let n = dec
            .decrypt(&OAEP_SHA256_MGF1SHA256, ciphertext, &mut out, None)
            .map_err(|_| KeyError::Decrypt)?
            .len();
        out.truncate(n);
        Ok(out)
    }

    /// This key as an rcgen key pair (for building CSRs and signing certificates).
    /// rcgen signs with RSA-PKCS#1-SHA256, the algorithm every X.509 verifier accepts.
    pub fn rcgen_key_pair(&self) -> Result<rcgen::KeyPair, KeyError> {
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(self.pkcs8.to_vec());
        rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_RSA_SHA256)
            .map_err(|_| KeyError::BadPrivateKey)
    }
}

/// An RSA public key as X.509 `SubjectPublicKeyInfo` DER.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    spki: Vec<u8>,
    bits: usize,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey")
            .field("bits", &self.bits)
            .field("party_id", &self.party_id())
            .finish()
    }
}

impl PublicKey {
    /// Parses and checks an RSA SubjectPublicKeyInfo.
    pub fn from_spki_der(spki: &[u8]) -> Result<Self, KeyError> {
        let enc = PublicEncryptingKey::from_der(spki).map_err(|_| KeyError::BadPublicKey)?;
        Ok(Self {
            spki: spki.to_vec(),
            bits: enc.key_size_bits(),
        })
    }

    /// The SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// Refuses keys below `min` bits.
    pub fn check_min_bits(&self, min: usize) -> Result<(), KeyError> {
        if self.bits < min {
            return Err(KeyError::TooSmall {
                bits: self.bits,
                min,
            });
        }
        Ok(())
    }

    /// The party identity bound to this key: SHA-256 of the SPKI DER.
    pub fn party_id(&self) -> PartyId {
        PartyId::from_spki_der(&self.spki)
    }

    /// Verifies an RSA-PSS-SHA256 signature over `msg`.
    pub fn verify_pss(&self, msg: &[u8], sig: &[u8]) -> Result<(), KeyError> {
        UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, &self.spki)
            .verify(msg, sig)
            .map_err(|_| KeyError::BadSignature)
    }

    /// Wraps a short secret (for example a blob file key) with RSA-OAEP-SHA256.
    pub fn oaep_encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let enc = PublicEncryptingKey::from_der(&self.spki).map_err(|_| KeyError::Encrypt)?;
        let enc = OaepPublicEncryptingKey::new(enc).map_err(|_| KeyError::Encrypt)?;
        let mut out = vec![0u8; enc.ciphertext_size()];
        let n = enc
            .encrypt(&OAEP_SHA256_MGF1SHA256, plaintext, &mut out, None)
            .map_err(|_| KeyError::Encrypt)?
            .len();
        out.truncate(n);
        Ok(out)
    }
}

/// Encodes `der` as a PEM block with `label`.
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes the first PEM block labelled `label` in `pem`.
pub fn pem_decode(pem: &str, label: &'static str) -> Result<Vec<u8>, KeyError> {
    use base64::Engine;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin).ok_or(KeyError::BadPem(label))? + begin.len();
    let stop = pem[start..].find(&end).ok_or(KeyError::BadPem(label))? + start;
    let body: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|_| KeyError::BadPem(label))
}

/// Decodes every PEM block labelled `label` in `pem`, in order.
pub fn pem_decode_all(pem: &str, label: &'static str) -> Result<Vec<Vec<u8>>, KeyError> {
    let end = format!("-----END {label}-----");
    let mut out = Vec::new();
    let mut rest = pem;
    while rest.contains(&format!("-----BEGIN {label}-----")) {
        out.push(pem_decode(rest, label)?);
        let cut = rest.find(&end).ok_or(KeyError::BadPem(label))? + end.len();
        rest = &rest[cut..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_oaep_pem_round_trip() {
        let key = PrivateKey::generate(2048).expect("generate");
        assert_eq!(key.bits(), 2048);
        let sig = key.sign_pss(b"hello").expect("sign");
        key.public_key().verify_pss(b"hello", &sig).expect("verify");
        assert_eq!(
            key.public_key().verify_pss(b"hellO", &sig),
            Err(KeyError::BadSignature)
        );
        let ct = key.public_key().oaep_encrypt(&[7u8; 32]).expect("wrap");
        assert_eq!(&key.oaep_decrypt(&ct).expect("unwrap")[..], &[7u8; 32]);
        let mut bad = ct.clone();
        bad[10] ^= 1;
        assert_eq!(key.oaep_decrypt(&bad).err(), Some(KeyError::Decrypt));
        let pem = key.to_pkcs8_pem();
        let again = PrivateKey::from_pkcs8_pem(&pem).expect("pem");
        assert_eq!(again.public_key(), key.public_key());
        assert!(!format!("{key:?}").contains(&pem[30..60]));
        assert!(key.rcgen_key_pair().is_ok());
        assert_eq!(
            PrivateKey::generate(1024).err(),
            Some(KeyError::UnsupportedSize(1024))
        );
    }
}
