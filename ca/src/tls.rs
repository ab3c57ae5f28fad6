//! TLS for the CA front-end: TLS 1.3 only, ALPN `caucus/1`, aws-lc-rs provider, server-authenticated.
//!
//! At start-up the server makes an ephemeral ECDSA P-256 key and has the root certify it for the
//! fixed name [`caucus::pki::CA_SERVER_NAME`]; the chain sent is `[server cert, root]` so a node that
//! pins the root fingerprint finds the root in it. No second long-lived key lives on disk.

use std::sync::Arc;

use caucus::pki::issue::{CaSigner, make_serial, make_tls_server_cert};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::CaError;

/// ALPN protocol id.
pub const ALPN: &[u8] = b"caucus/1";

/// Lifetime of the ephemeral server certificate (capped by the root's end): 1 year.
pub const SERVER_CERT_SECS: i64 = 365 * 24 * 3600;

/// The aws-lc-rs crypto provider (the only one compiled in).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Builds the server configuration for `signer` at `now`.
pub fn server_config(signer: &CaSigner, now: i64) -> Result<Arc<rustls::ServerConfig>, CaError> {
    let tls = |e: &dyn std::fmt::Display| CaError::Tls(e.to_string());
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| tls(&e))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&kp);
    let root = caucus::pki::check_root(signer.root_der()).map_err(|e| tls(&e))?;
    let lifetime = SERVER_CERT_SECS.min(root.not_after - now).max(1);
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|e| tls(&e))?;
    let cert = make_tls_server_cert(signer, &spki, now, lifetime, make_serial(serial))
        .map_err(|e| tls(&e))?;
    let chain = vec![
        CertificateDer::from(cert),
        CertificateDer::from(signer.root_der().to_vec()),
    ];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(kp.serialize_der()));
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| tls(&e))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(cfg))
}
