//! Pure certificate issuance: the root, the CA's own TLS server certificate, and party session
//! certificates, plus the small policy validators the CA's issuance pipeline applies
//! (step-ca style: each validator is one small function, unit-tested on its own).
//!
//! Nothing here reads a clock or an rng: `now` (unix seconds) and the serial are arguments.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::csr::CsrRequest;
use super::identity::{SpiffeId, check_name};
use super::keys::{KeyError, MIN_RSA_BITS, PrivateKey};

/// The fixed TLS server name of every CA front-end. Nodes verify the CA's TLS certificate against
/// this name, never against an IP address or host name.
pub const CA_SERVER_NAME: &str = "ca.caucus";

/// How far back a certificate's `notBefore` is set, to tolerate small clock skew (1 minute).
pub const BACKDATE_SECS: i64 = 60;

/// Longest session (and so certificate) lifetime: 7 days.
pub const MAX_SESSION_SECS: i64 = 7 * 24 * 3600;

/// Errors from issuance and its policy checks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum IssueError {
    /// The CSR asks for a name other than the one the enrolment token is bound to.
    #[error("csr requests {requested:?} but the token is for {expected:?}")]
    NameMismatch {
        /// the offending requested name
        requested: String,
        /// what the token binding allows
        expected: String,
    },
    /// The key is below policy.
    #[error("rsa key of {bits} bits is below the minimum of {min}")]
    KeyTooSmall {
        /// offered size
        bits: usize,
        /// policy minimum
        min: usize,
    },
    /// The session has ended (or ends before `now`), so no certificate can be issued.
    #[error("session has expired")]
    SessionExpired,
    /// A validity window that is empty or out of range.
    #[error("invalid validity window")]
    BadValidity,
    /// A serial that is zero or has its top bit set (would be negative).
    #[error("serial must be positive and non-zero")]
    BadSerial,
    /// The CA key does not match the root certificate, or the root is unusable.
    #[error("ca key and root certificate do not match or the root is unusable")]
    BadRoot,
    /// A name (CA, session or party) is invalid.
    #[error(transparent)]
    Name(#[from] super::identity::IdentityError),
    /// Key handling failed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Certificate construction or signing failed.
    #[error("signing the certificate failed")]
    Sign,
}

/// The CA's signing identity: root key, root certificate, CA name.
pub struct CaSigner {
    key: PrivateKey,
    issuer: Issuer<'static, rcgen::KeyPair>,
    root_der: Vec<u8>,
    name: String,
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner")
            .field("name", &self.name)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl CaSigner {
    /// Pairs the root key with its certificate, checking that they match and that the root is a CA
    /// whose CN is a valid caucus name.
    pub fn new(key: PrivateKey, root_der: Vec<u8>) -> Result<Self, IssueError> {
        let (_, cert) = X509Certificate::from_der(&root_der).map_err(|_| IssueError::BadRoot)?;
        if cert.public_key().raw != key.public_key().spki_der() || !cert.is_ca() {
            return Err(IssueError::BadRoot);
        }
        let name = super::verify::common_name(&cert).ok_or(IssueError::BadRoot)?;
        check_name(&name)?;
        let kp = key.rcgen_key_pair()?;
        let der = rustls_pki_types::CertificateDer::from(root_der.as_slice());
        let issuer = Issuer::from_ca_cert_der(&der, kp).map_err(|_| IssueError::BadRoot)?;
        Ok(Self {
            key,
            issuer,
            root_der,
            name,
        })
    }

    /// The CA name (root CN, and the authority part of every issued URI SAN).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The root key (signs rosters and revocation lists with RSA-PSS).
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// The root fingerprint (lowercase hex SHA-256 of the DER certificate).
    pub fn fingerprint(&self) -> String {
        super::verify::fingerprint(&self.root_der)
    }
}

/// Turns 16 random bytes into a valid serial: top bit cleared (positive), first byte non-zero (so
/// the DER encoding is always exactly 16 bytes and its hex form is 32 characters).
pub fn make_serial(mut random: [u8; 16]) -> [u8; 16] {
    random[0] &= 0x7f;
    if random[0] == 0 {
        random[0] = 1;
    }
    random
}

/// Lowercase hex of a serial, the form used in the registry, the roster and the CRL.
pub fn serial_hex(serial: &[u8; 16]) -> String {
    hex::encode(serial)
}

fn check_serial(serial: &[u8; 16]) -> Result<(), IssueError> {
    if serial[0] & 0x80 != 0 || serial.iter().all(|&b| b == 0) {
        return Err(IssueError::BadSerial);
    }
    Ok(())
}

fn to_time(unix: i64) -> Result<OffsetDateTime, IssueError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|_| IssueError::BadValidity)
}

/// Validator: the key is RSA with at least [`MIN_RSA_BITS`] bits.
pub fn check_key(req: &CsrRequest) -> Result<(), IssueError> {
    let bits = req.public_key.bits();
    if bits < MIN_RSA_BITS {
        return Err(IssueError::KeyTooSmall {
            bits,
            min: MIN_RSA_BITS,
        });
    }
    Ok(())
}

/// Validator: every name the CSR asks for agrees with the token binding. A CN, if present, must be
/// the party name; a URI SAN must be the binding's URI; a DNS SAN must be the party name.
/// (The CA sets the names itself; this only refuses requests for *other* names.)
pub fn check_names(req: &CsrRequest, binding: &SpiffeId) -> Result<(), IssueError> {
    let mismatch = |requested: &str, expected: &str| IssueError::NameMismatch {
        requested: requested.chars().take(200).collect(),
        expected: expected.to_string(),
    };
    if let Some(cn) = &req.common_name
        && cn != &binding.party
    {
        return Err(mismatch(cn, &binding.party));
    }
    let uri = binding.to_uri();
    if let Some(u) = req.uri_sans.iter().find(|u| **u != uri) {
        return Err(mismatch(u, &uri));
    }
    if let Some(d) = req.dns_sans.iter().find(|d| **d != binding.party) {
        return Err(mismatch(d, &binding.party));
    }
    Ok(())
}

/// Validator/modifier: the validity window for a certificate issued at `now` for a session that ends
/// at `session_end`, capped at `now + ttl`: `(now − 1 min, min(session_end, now + ttl))`.
pub fn validity_window(
    now: i64,
    session_end: i64,
    ttl_secs: i64,
) -> Result<(i64, i64), IssueError> {
    if session_end <= now {
        return Err(IssueError::SessionExpired);
    }
    if ttl_secs <= 0 {
        return Err(IssueError::BadValidity);
    }
    let not_after = session_end.min(now.saturating_add(ttl_secs));
    Ok((now - BACKDATE_SECS, not_after))
}

/// Issues a party session certificate for `req`, with subject and SAN taken from `binding` only.
///
/// Runs the name and key validators first. The certificate has CN = party name, exactly one URI SAN
/// (`binding`), KeyUsage digitalSignature + keyEncipherment, EKU serverAuth + clientAuth,
/// basicConstraints CA:false, SKI and AKI, and is signed by the root (RSA-PKCS#1-SHA256).
pub fn issue(
    req: &CsrRequest,
    binding: &SpiffeId,
    validity: (i64, i64),
    serial: [u8; 16],
    ca: &CaSigner,
) -> Result<Vec<u8>, IssueError> {
    check_key(req)?;
    check_names(req, binding)?;
    check_serial(&serial)?;
    if binding.ca != ca.name {
        return Err(IssueError::NameMismatch {
            requested: binding.ca.clone(),
            expected: ca.name.clone(),
        });
    }
    if validity.0 >= validity.1 {
        return Err(IssueError::BadValidity);
    }
    let mut params = CertificateParams::default();
    params.not_before = to_time(validity.0)?;
    params.not_after = to_time(validity.1)?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, binding.party.as_str());
    params.distinguished_name = dn;
    let uri = binding.to_uri().try_into().map_err(|_| IssueError::Sign)?;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    let spki = rcgen::SubjectPublicKeyInfo::from_der(req.public_key.spki_der())
        .map_err(|_| IssueError::Sign)?;
    let cert = params
        .signed_by(&spki, &ca.issuer)
        .map_err(|_| IssueError::Sign)?;
    Ok(cert.der().to_vec())
}

/// Makes a self-signed root: CN = `ca_name`, CA:true (path length 0), keyCertSign + cRLSign, valid
/// from `now − 1 min` for `lifetime_secs`.
pub fn make_root(
    key: &PrivateKey,
    ca_name: &str,
    now: i64,
    lifetime_secs: i64,
    serial: [u8; 16],
) -> Result<Vec<u8>, IssueError> {
    check_name(ca_name)?;
    check_serial(&serial)?;
    if lifetime_secs <= 0 {
        return Err(IssueError::BadValidity);
    }
    let mut params = CertificateParams::default();
    params.not_before = to_time(now - BACKDATE_SECS)?;
    params.not_after = to_time(now.saturating_add(lifetime_secs))?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, ca_name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let kp = key.rcgen_key_pair()?;
    let cert = params.self_signed(&kp).map_err(|_| IssueError::Sign)?;
    Ok(cert.der().to_vec())
}

/// Issues the CA front-end's own TLS server certificate for the key `server_spki_der` (any key type
/// rcgen knows, e.g. an ECDSA P-256 key made at start-up): DNS SANs [`CA_SERVER_NAME`] and
/// `localhost`, EKU serverAuth, KeyUsage digitalSignature, CA:false, valid `now − 1 min` for
/// `lifetime_secs`.
pub fn make_tls_server_cert(
    ca: &CaSigner,
    server_spki_der: &[u8],
    now: i64,
    lifetime_secs: i64,
    serial: [u8; 16],
) -> Result<Vec<u8>, IssueError> {
    check_serial(&serial)?;
    if lifetime_secs <= 0 {
        return Err(IssueError::BadValidity);
    }
    let mut params =
        CertificateParams::new(vec![CA_SERVER_NAME.to_string(), "localhost".to_string()])
            .map_err(|_| IssueError::Sign)?;
    params.not_before = to_time(now - BACKDATE_SECS)?;
    params.not_after = to_time(now.saturating_add(lifetime_secs))?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_SERVER_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let spki =
        rcgen::SubjectPublicKeyInfo::from_der(server_spki_der).map_err(|_| IssueError::Sign)?;
    let cert = params
        .signed_by(&spki, &ca.issuer)
        .map_err(|_| IssueError::Sign)?;
    Ok(cert.der().to_vec())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::pki::csr::{build_csr, parse_csr, tests::key};

    pub(crate) const NOW: i64 = 1_800_000_000;

    pub(crate) fn ca() -> &'static CaSigner {
        static CA: std::sync::OnceLock<CaSigner> = std::sync::OnceLock::new();
        CA.get_or_init(|| {
            let key = PrivateKey::generate(2048).expect("ca key");
            let root = make_root(&key, "acme", NOW - 3600, 365 * 86400, make_serial([9; 16]))
                .expect("root");
            CaSigner::new(key, root).expect("signer")
        })
    }

    pub(crate) fn binding(party: &str) -> SpiffeId {
        SpiffeId::new("acme", "s1", party).expect("binding")
    }

    #[test]
    fn serial_rules() {
        assert_eq!(make_serial([0xff; 16])[0], 0x7f);
        assert_eq!(make_serial([0x80; 16])[0], 1);
        assert_eq!(serial_hex(&make_serial([0; 16])).len(), 32);
        assert_eq!(check_serial(&[0; 16]), Err(IssueError::BadSerial));
        assert_eq!(check_serial(&[0x80; 16]), Err(IssueError::BadSerial));
    }

    #[test]
    fn validity_window_rules() {
        assert_eq!(
            validity_window(NOW, NOW + 100, 3600),
            Ok((NOW - 60, NOW + 100))
        );
        assert_eq!(
            validity_window(NOW, NOW + 10_000, 3600),
            Ok((NOW - 60, NOW + 3600))
        );
        assert_eq!(
            validity_window(NOW, NOW, 3600),
            Err(IssueError::SessionExpired)
        );
        assert_eq!(
            validity_window(NOW, NOW - 1, 3600),
            Err(IssueError::SessionExpired)
        );
        assert_eq!(
            validity_window(NOW, NOW + 10, 0),
            Err(IssueError::BadValidity)
        );
    }

    #[test]
    fn name_validator() {
        let b = binding("alice");
        let mut req = parse_csr(&build_csr(key(), "alice").expect("csr")).expect("parse");
        check_names(&req, &b).expect("cn ok");
        req.uri_sans = vec![b.to_uri()];
        req.dns_sans = vec!["alice".into()];
        check_names(&req, &b).expect("agreeing sans ok");
        req.common_name = None;
        check_names(&req, &b).expect("no cn ok");
        req.common_name = Some("bob".into());
        assert!(matches!(
            check_names(&req, &b),
            Err(IssueError::NameMismatch { .. })
        ));
        req.common_name = Some("alice".into());
        req.uri_sans = vec!["caucus://acme/session/s2/party/alice".into()];
        assert!(matches!(
            check_names(&req, &b),
            Err(IssueError::NameMismatch { .. })
        ));
        req.uri_sans.clear();
        req.dns_sans = vec!["evil.example".into()];
        assert!(matches!(
            check_names(&req, &b),
            Err(IssueError::NameMismatch { .. })
        ));
    }

    #[test]
    fn issue_sets_names_from_binding() {
        let req = parse_csr(&build_csr(key(), "alice").expect("csr")).expect("parse");
        let der = issue(
            &req,
            &binding("alice"),
            (NOW - 60, NOW + 3600),
            make_serial([7; 16]),
            ca(),
        )
        .expect("issue");
        let v = crate::pki::verify::verify_chain(&der, ca().root_der(), NOW).expect("verify");
        assert_eq!(v.id, binding("alice"));
        assert_eq!(v.serial_hex, serial_hex(&make_serial([7; 16])));
        assert_eq!(v.not_before, NOW - 60);
        assert_eq!(v.not_after, NOW + 3600);
        assert_eq!(v.party_id, key().public_key().party_id());
    }

    #[test]
    fn issue_refusals() {
        let req = parse_csr(&build_csr(key(), "alice").expect("csr")).expect("parse");
        let v = (NOW - 60, NOW + 3600);
        assert!(matches!(
            issue(&req, &binding("bob"), v, make_serial([1; 16]), ca()),
            Err(IssueError::NameMismatch { .. })
        ));
        let other_ca = SpiffeId::new("other", "s1", "alice").expect("id");
        assert!(matches!(
            issue(&req, &other_ca, v, make_serial([1; 16]), ca()),
            Err(IssueError::NameMismatch { .. })
        ));
        assert_eq!(
            issue(&req, &binding("alice"), v, [0; 16], ca()),
            Err(IssueError::BadSerial)
        );
        assert_eq!(
            issue(
                &req,
                &binding("alice"),
                (NOW, NOW),
                make_serial([1; 16]),
                ca()
            ),
            Err(IssueError::BadValidity)
        );
    }

    #[test]
    fn signer_refuses_mismatched_key() {
        let other = PrivateKey::generate(2048).expect("key");
        assert_eq!(
            CaSigner::new(other, ca().root_der().to_vec()).err(),
            Some(IssueError::BadRoot)
        );
        assert!(!format!("{:?}", ca()).contains("PRIVATE"));
    }

    #[test]
    fn tls_server_cert_chains_to_root() {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("ec");
        let spki = rcgen::PublicKeyData::subject_public_key_info(&kp);
        let der = make_tls_server_cert(ca(), &spki, NOW, 86400, make_serial([3; 16])).expect("tls");
        let (_, cert) = X509Certificate::from_der(&der).expect("parse");
        let (_, root) = X509Certificate::from_der(ca().root_der()).expect("root");
        cert.verify_signature(Some(root.public_key()))
            .expect("signed by root");
        assert!(!cert.is_ca());
    }
}
