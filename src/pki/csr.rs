//! Certificate signing requests: build one (rcgen) for a node key, and parse + check one (x509-parser)
//! into a typed [`CsrRequest`], verifying its self-signature (proof of possession of the private key).
//!
//! The CA never trusts the names in a CSR: it sets subject and SAN from the enrolment token's binding
//! and only uses the requested names to refuse a CSR that asks for something else
//! (see [`crate::pki::issue::check_names`]).

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::keys::{KeyError, MIN_RSA_BITS, PrivateKey, PublicKey, pem_decode, pem_encode};

/// Largest CSR (DER) accepted, in bytes. An RSA-8192 CSR with a few names is well below this.
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// Errors building or parsing a CSR.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrError {
    /// Neither a `CERTIFICATE REQUEST` PEM block nor DER.
    #[error("csr is not valid pem or der")]
    Malformed,
    /// Larger than [`MAX_CSR_BYTES`].
    #[error("csr of {0} bytes exceeds the limit of {MAX_CSR_BYTES}")]
    TooLarge(usize),
    /// The CSR's key is not RSA.
    #[error("csr key is not rsa (only rsa keys are accepted)")]
    NotRsa,
    /// The CSR's RSA key is below policy.
    #[error("csr key of {bits} bits is below the minimum of {min}")]
    KeyTooSmall {
        /// offered modulus size
        bits: usize,
        /// policy minimum
        min: usize,
    },
    /// The CSR's self-signature does not verify (no proof of possession).
    #[error("csr signature does not verify")]
    BadSignature,
    /// The CSR carries a subject alternative name of a type caucus never issues.
    #[error("csr requests an unsupported subject alternative name")]
    UnsupportedSan,
    /// The party name is not a valid caucus name.
    #[error(transparent)]
    Name(#[from] super::identity::IdentityError),
    /// The key could not be used to build a CSR or is not an acceptable public key.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// rcgen failed to build the request.
    #[error("building the csr failed")]
    Build,
}

/// A parsed CSR whose self-signature has been verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrRequest {
    /// The key to certify (RSA, at least [`MIN_RSA_BITS`]).
    pub public_key: PublicKey,
    /// The subject CN, if any.
    pub common_name: Option<String>,
    /// Requested URI SANs.
    pub uri_sans: Vec<String>,
    /// Requested DNS SANs.
    pub dns_sans: Vec<String>,
}

/// Builds a DER CSR for `key` with CN = `party_name` and no extensions.
pub fn build_csr(key: &PrivateKey, party_name: &str) -> Result<Vec<u8>, CsrError> {
    super::identity::check_name(party_name)?;
    let kp = key.rcgen_key_pair()?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, party_name);
    let csr = params.serialize_request(&kp).map_err(|_| CsrError::Build)?;
    Ok(csr.der().to_vec())
}

/// PEM (`CERTIFICATE REQUEST`) form of a DER CSR.
pub fn csr_to_pem(der: &[u8]) -> String {
    pem_encode("CERTIFICATE REQUEST", der)
}

/// Decodes a CSR given as PEM text or raw DER into DER bytes (bounded by [`MAX_CSR_BYTES`]).
pub fn csr_der(input: &[u8]) -> Result<Vec<u8>, CsrError> {
    if input.len() > 2 * MAX_CSR_BYTES {
        return Err(CsrError::TooLarge(input.len()));
    }
    let der = if input.first() == Some(&0x30) {
        input.to_vec()
    } else {
        let text = std::str::from_utf8(input).map_err(|_| CsrError::Malformed)?;
        // OpenSSL writes "CERTIFICATE REQUEST"; some old tools write "NEW CERTIFICATE REQUEST".
        pem_decode(text, "CERTIFICATE REQUEST")
            .or_else(|_| pem_decode(text, "NEW CERTIFICATE REQUEST"))
            .map_err(|_| CsrError::Malformed)?
    };
    if der.len() > MAX_CSR_BYTES {
        return Err(CsrError::TooLarge(der.len()));
    }
    Ok(der)
}

/// Bit length of a big-endian unsigned magnitude.
pub(crate) fn magnitude_bits(bytes: &[u8]) -> usize {
    let trimmed: &[u8] = {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        &bytes[start..]
    };
    match trimmed.first() {
        None => 0,
        Some(&b) => (trimmed.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
    }
}

/// Parses a CSR (PEM or DER), checks the key is RSA of at least [`MIN_RSA_BITS`] and verifies the
/// self-signature. Nothing about the requested names is decided here.
pub fn parse_csr(input: &[u8]) -> Result<CsrRequest, CsrError> {
    let der = csr_der(input)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|_| CsrError::Malformed)?;
    if !rest.is_empty() {
        return Err(CsrError::Malformed);
    }
    let info = &csr.certification_request_info;
    let spki = &info.subject_pki;
    // Key type and size first, so an RSA-1024 CSR gets the clear "too small" answer.
    let bits = match spki.parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => magnitude_bits(rsa.modulus),
        _ => return Err(CsrError::NotRsa),
    };
    if bits < MIN_RSA_BITS {
        return Err(CsrError::KeyTooSmall {
            bits,
            min: MIN_RSA_BITS,
        });
    }
    csr.verify_signature().map_err(|_| CsrError::BadSignature)?;
    let public_key = PublicKey::from_spki_der(spki.raw)?;

    let mut common_name = None;
    for cn in info.subject.iter_common_name() {
        let s = cn.as_str().map_err(|_| CsrError::Malformed)?;
        if common_name.is_some() {
            // Two CNs: ambiguous; treat as malformed rather than pick one.
            return Err(CsrError::Malformed);
        }
        common_name = Some(s.to_string());
    }
    let mut uri_sans = Vec::new();
    let mut dns_sans = Vec::new();
    if let Some(exts) = csr.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::URI(u) => uri_sans.push((*u).to_string()),
                        GeneralName::DNSName(d) => dns_sans.push((*d).to_string()),
                        _ => return Err(CsrError::UnsupportedSan),
                    }
                }
            }
        }
    }
    Ok(CsrRequest {
        public_key,
        common_name,
        uri_sans,
        dns_sans,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A 1024-bit RSA CSR made with `openssl req -new -newkey rsa:1024 -nodes -subj /CN=alice`.
    pub(crate) const RSA1024_CSR: &str = include_str!("testdata/rsa1024.csr");
    /// A 2048-bit RSA CSR made with OpenSSL: CN=alice, SAN DNS:alice, URI:caucus://x/session/s/party/alice.
    pub(crate) const OPENSSL_CSR: &str = include_str!("testdata/openssl2048.csr");

    pub(crate) fn key() -> &'static PrivateKey {
        static KEY: std::sync::OnceLock<PrivateKey> = std::sync::OnceLock::new();
        KEY.get_or_init(|| PrivateKey::generate(2048).expect("generate"))
    }

    #[test]
    fn build_and_parse_round_trip() {
        let der = build_csr(key(), "alice").expect("build");
        let req = parse_csr(&der).expect("parse der");
        assert_eq!(req.common_name.as_deref(), Some("alice"));
        assert_eq!(&req.public_key, key().public_key());
        assert!(req.uri_sans.is_empty() && req.dns_sans.is_empty());
        let pem = csr_to_pem(&der);
        assert_eq!(parse_csr(pem.as_bytes()).expect("parse pem"), req);
    }

    #[test]
    fn refuses_bad_names_and_garbage() {
        assert!(matches!(build_csr(key(), "a/b"), Err(CsrError::Name(_))));
        assert_eq!(parse_csr(b"hello"), Err(CsrError::Malformed));
        assert_eq!(parse_csr(&[0x30, 0x03, 1, 2, 3]), Err(CsrError::Malformed));
        assert!(matches!(
            parse_csr(&vec![b'a'; 3 * MAX_CSR_BYTES]),
            Err(CsrError::TooLarge(_))
        ));
    }

    #[test]
    fn refuses_tampered_signature() {
        let mut der = build_csr(key(), "alice").expect("build");
        let n = der.len();
        der[n - 5] ^= 0x01; // inside the signature value
        assert_eq!(parse_csr(&der), Err(CsrError::BadSignature));
        // Tampering with the signed part (the CN) also breaks the signature.
        let mut der = build_csr(key(), "alice").expect("build");
        let pos = der.windows(5).position(|w| w == b"alice").expect("cn");
        der[pos] = b'b';
        assert_eq!(parse_csr(&der), Err(CsrError::BadSignature));
    }

    #[test]
    fn refuses_rsa_1024() {
        assert_eq!(
            parse_csr(RSA1024_CSR.as_bytes()),
            Err(CsrError::KeyTooSmall {
                bits: 1024,
                min: 2048
            })
        );
    }

    #[test]
    fn parses_openssl_csr_with_sans() {
        let req = parse_csr(OPENSSL_CSR.as_bytes()).expect("parse");
        assert_eq!(req.common_name.as_deref(), Some("alice"));
        assert_eq!(req.dns_sans, vec!["alice".to_string()]);
        assert_eq!(
            req.uri_sans,
            vec!["caucus://x/session/s/party/alice".to_string()]
        );
        assert_eq!(req.public_key.bits(), 2048);
    }

    #[test]
    fn magnitude_bits_counts() {
        assert_eq!(magnitude_bits(&[]), 0);
        assert_eq!(magnitude_bits(&[0, 0]), 0);
        assert_eq!(magnitude_bits(&[0, 1]), 1);
        assert_eq!(magnitude_bits(&[0, 0x80, 0]), 16);
    }
}
