//! rustls configurations for node ↔ node mutual TLS: TLS 1.3 only, ALPN `caucus/1`, the aws-lc-rs
//! provider, and custom verifiers on both sides that accept exactly the peers [`Trust`] accepts.
//!
//! * [`PeerClientVerifier`] (server side): client authentication is required; the client
//!   certificate must chain to the pinned root at `now`, not be revoked, name this session in its
//!   URI SAN and be on the signed roster.
//! * [`PeerServerVerifier`] (client side): the same checks, plus the server must be the party we
//!   dialled. There is no host name or IP check: the identity is the certificate.
//!
//! Both verify the handshake signatures with the provider's `verify_tls13_signature`. A refusal
//! carries the typed [`PeerError`] inside `rustls::Error::InvalidCertificate(Other(..))`;
//! [`peer_error_from_io`] gets it back out of the handshake's `io::Error`.

use std::sync::Arc;

use caucus::pki::{PartyId, PrivateKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use super::trust::{PeerError, Trust};

/// The ALPN protocol id of node ↔ node connections.
pub const ALPN: &[u8] = b"caucus/1";

/// The TLS server name a dialler uses. It is not checked (identity is the certificate) and SNI is
/// not sent.
pub const PEER_SERVER_NAME: &str = "peer.caucus";

/// The one crypto provider caucus uses (aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn refuse(e: PeerError) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Finds the [`PeerError`] a verifier raised (or a missing client certificate) inside a handshake
/// error.
pub fn peer_error_from_io(e: &std::io::Error) -> Option<PeerError> {
    let inner = e.get_ref()?;
    let tls = inner.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(o))) => {
            o.downcast_ref::<PeerError>().cloned()
        }
        rustls::Error::NoCertificatesPresented => Some(PeerError::NoCertificate),
        rustls::Error::NoApplicationProtocol => Some(PeerError::NoAlpn),
        _ => None,
    }
}

fn verify13(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// Server-side verifier of client certificates (client authentication required).
#[derive(Debug)]
pub struct PeerClientVerifier {
    trust: Arc<Trust>,
    provider: Arc<CryptoProvider>,
}

impl PeerClientVerifier {
    /// A verifier accepting the roster members of `trust`.
    pub fn new(trust: Arc<Trust>) -> Self {
        Self {
            trust,
            provider: provider(),
        }
    }
}

impl ClientCertVerifier for PeerClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.trust
            .check_peer(end_entity.as_ref(), None)
            .map(|_| ClientCertVerified::assertion())
            .map_err(refuse)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("tls 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Client-side verifier of the server certificate: a roster member, and the party we dialled.
#[derive(Debug)]
pub struct PeerServerVerifier {
    trust: Arc<Trust>,
    expected: PartyId,
    provider: Arc<CryptoProvider>,
}

impl PeerServerVerifier {
    /// A verifier that accepts only `expected` among the roster members of `trust`.
    pub fn new(trust: Arc<Trust>, expected: PartyId) -> Self {
        Self {
            trust,
            expected,
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.trust
            .check_peer(end_entity.as_ref(), Some(&self.expected))
            .map(|_| ServerCertVerified::assertion())
            .map_err(refuse)
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("tls 1.2 is not supported".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify13(&self.provider, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS configuration errors (local misuse: a key or certificate rustls will not use).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsConfigError {
    /// rustls refused the configuration.
    #[error("tls configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

fn key_der(key: &PrivateKey) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec()))
}

/// The server configuration: TLS 1.3, ALPN `caucus/1`, our certificate, mandatory client
/// authentication by [`PeerClientVerifier`].
pub fn server_config(
    key: &PrivateKey,
    cert_der: &[u8],
    trust: Arc<Trust>,
) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PeerClientVerifier::new(trust)))
        .with_single_cert(vec![CertificateDer::from(cert_der.to_vec())], key_der(key))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// The client configuration for dialling `expected`: TLS 1.3, ALPN `caucus/1`, no SNI, our
/// certificate as client certificate, the server checked by [`PeerServerVerifier`].
pub fn client_config(
    key: &PrivateKey,
    cert_der: &[u8],
    trust: Arc<Trust>,
    expected: PartyId,
) -> Result<Arc<rustls::ClientConfig>, TlsConfigError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PeerServerVerifier::new(trust, expected)))
        .with_client_auth_cert(vec![CertificateDer::from(cert_der.to_vec())], key_der(key))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    cfg.enable_sni = false;
    Ok(Arc::new(cfg))
}

/// The [`ServerName`] diallers pass to rustls ([`PEER_SERVER_NAME`]; never checked).
pub fn peer_server_name() -> Result<ServerName<'static>, TlsConfigError> {
    ServerName::try_from(PEER_SERVER_NAME)
        .map_err(|_| TlsConfigError::Rustls(rustls::Error::General("bad server name".into())))
}
