//! The node's client for the CA: TLS 1.3 (ALPN `caucus/1`), server-authenticated, with the CA
//! trusted either by pinning the root fingerprint (first contact, like `step ca bootstrap
//! --fingerprint`) or by the saved `ca.pem` afterwards.
//!
//! Pinning: a custom rustls verifier looks for the certificate in the presented chain whose SHA-256
//! equals the pinned fingerprint, then verifies the server certificate against it with webpki for the
//! fixed name `ca.caucus`. A wrong fingerprint fails the handshake with a clear error, before anything
//! is sent or written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use caucus::msg::frame::FrameKind;
use caucus::pki::crl::{Crl, CrlError, SignedCrl};
use caucus::pki::keys::pem_decode;
use caucus::pki::roster::{Roster, RosterError, SignedRoster};
use caucus::pki::verify::{VerifiedCert, VerifyError, parse_fingerprint, verify_chain};
use caucus_ca::api::{
    CrtArgs, CrtResult, MAX_REQUEST, MAX_RESPONSE, Request, Response, RosterArgs,
};
use caucus_ca::authority::{EnrollArgs, Enrolled};
use caucus_ca::wire::{WireError, read_frame, write_frame};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long connecting + handshaking may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request may wait for its answer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors talking to the CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaClientError {
    /// The CA's root does not have the pinned fingerprint.
    #[error("the ca's root certificate does not match the pinned fingerprint {0}")]
    FingerprintMismatch(String),
    /// Could not reach the CA.
    #[error("cannot reach the ca at {addr}: {message}")]
    Connect {
        /// address
        addr: String,
        /// what failed
        message: String,
    },
    /// The connection failed during a call.
    #[error("connection to the ca failed: {0}")]
    Wire(#[from] WireError),
    /// The CA refused the request.
    #[error("ca refused ({code}): {message}")]
    Refused {
        /// status code
        code: String,
        /// message
        message: String,
    },
    /// The CA's answer does not have the expected shape.
    #[error("unexpected answer from the ca: {0}")]
    Protocol(String),
    /// A certificate from the CA does not verify.
    #[error("certificate from the ca does not verify: {0}")]
    Verify(#[from] VerifyError),
    /// The roster does not verify.
    #[error("roster does not verify: {0}")]
    Roster(#[from] RosterError),
    /// The revocation list does not verify.
    #[error("revocation list does not verify: {0}")]
    Crl(#[from] CrlError),
    /// Bad fingerprint syntax or TLS setup.
    #[error("{0}")]
    Config(String),
}

impl CaClientError {
    /// The CA's status code, if the CA refused.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
    mismatch: AtomicBool,
    found: Mutex<Option<Vec<u8>>>,
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(root) = intermediates.iter().find(|c| sha256(c) == self.pin) else {
            self.mismatch.store(true, Ordering::SeqCst);
            return Err(rustls::Error::General(
                "ca root does not match the pinned fingerprint".into(),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots
            .add(root.clone().into_owned())
            .map_err(|_| rustls::Error::General("pinned root is not a usable ca".into()))?;
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let ok = v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        if let Ok(mut f) = self.found.lock() {
            *f = Some(root.to_vec());
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A configured client for one CA.
#[derive(Clone)]
pub struct CaClient {
    addr: String,
    connector: TlsConnector,
    pinned: Option<Arc<PinnedVerifier>>,
    fingerprint: Option<String>,
}

impl std::fmt::Debug for CaClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaClient")
            .field("addr", &self.addr)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

fn client_config(
    verifier: Arc<dyn ServerCertVerifier>,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<rustls::ClientConfig>, CaClientError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| CaClientError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![caucus_ca::tls::ALPN.to_vec()];
    // Nodes talk to the CA rarely; every connection does a full handshake (and benchmarks measure
    // that, not resumption).
    cfg.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// A connection to the CA; several calls may share it.
pub struct CaConn {
    stream: TlsStream<TcpStream>,
}

impl std::fmt::Debug for CaConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CaConn")
    }
}

impl CaConn {
    /// Sends one request and returns the result (or the CA's refusal).
    pub async fn call(&mut self, method: &str, args: Value) -> Result<Value, CaClientError> {
        let body = serde_json::to_vec(&Request {
            method: method.to_string(),
            args,
        })
        .map_err(|e| CaClientError::Protocol(e.to_string()))?;
        write_frame(&mut self.stream, FrameKind::Plain, &body, MAX_REQUEST).await?;
        let frame = read_frame(&mut self.stream, MAX_RESPONSE, CALL_TIMEOUT)
            .await?
            .ok_or_else(|| CaClientError::Protocol("ca closed the connection".into()))?;
        if frame.kind != FrameKind::Plain {
            return Err(CaClientError::Protocol("unexpected frame kind".into()));
        }
        let resp: Response = serde_json::from_slice(&frame.body)
            .map_err(|_| CaClientError::Protocol("answer is not json".into()))?;
        resp.into_result().map_err(|e| CaClientError::Refused {
            code: e.code,
            message: e.message,
        })
    }
}

impl CaClient {
    /// A client that trusts the CA whose root has fingerprint `fingerprint` (hex, optionally with
    /// colons).
    pub fn pinned(addr: &str, fingerprint: &str) -> Result<Self, CaClientError> {
        let pin =
            parse_fingerprint(fingerprint).map_err(|e| CaClientError::Config(e.to_string()))?;
        let provider = caucus_ca::tls::provider();
        let v = Arc::new(PinnedVerifier {
            pin,
            provider: provider.clone(),
            mismatch: AtomicBool::new(false),
            found: Mutex::new(None),
        });
        Ok(Self {
            addr: addr.to_string(),
            connector: TlsConnector::from(client_config(v.clone(), provider)?),
            pinned: Some(v),
            fingerprint: Some(hex::encode(pin)),
        })
    }

    /// A client that trusts the saved root certificate `root_der`.
    pub fn with_root(addr: &str, root_der: &[u8]) -> Result<Self, CaClientError> {
        let provider = caucus_ca::tls::provider();
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(root_der.to_vec()))
            .map_err(|e| CaClientError::Config(format!("saved root is unusable: {e}")))?;
        let v = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| CaClientError::Config(e.to_string()))?;
        Ok(Self {
            addr: addr.to_string(),
            connector: TlsConnector::from(client_config(v, provider)?),
            pinned: None,
            fingerprint: None,
        })
    }

    /// The CA address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The root found in the chain during a pinned handshake (DER).
    pub fn pinned_root(&self) -> Option<Vec<u8>> {
        self.pinned
            .as_ref()
            .and_then(|p| p.found.lock().ok().and_then(|f| f.clone()))
    }

    /// Opens a connection (TCP + TLS handshake).
    pub async fn connect(&self) -> Result<CaConn, CaClientError> {
        let connect_err = |message: String| CaClientError::Connect {
            addr: self.addr.clone(),
            message,
        };
        let fut = async {
            let tcp = TcpStream::connect(&self.addr)
                .await
                .map_err(|e| connect_err(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(caucus::pki::CA_SERVER_NAME)
                .map_err(|e| CaClientError::Config(e.to_string()))?;
            match self.connector.connect(name, tcp).await {
                Ok(stream) => Ok(CaConn { stream }),
                Err(e) => {
                    if let Some(p) = &self.pinned
                        && p.mismatch.load(Ordering::SeqCst)
                    {
                        return Err(CaClientError::FingerprintMismatch(
                            self.fingerprint.clone().unwrap_or_default(),
                        ));
                    }
                    Err(connect_err(format!("tls handshake failed: {e}")))
                }
            }
        };
        tokio::time::timeout(CONNECT_TIMEOUT, fut)
            .await
            .map_err(|_| connect_err("timed out".into()))?
    }

    /// One call on a fresh connection.
    pub async fn call(&self, method: &str, args: Value) -> Result<Value, CaClientError> {
        self.connect().await?.call(method, args).await
    }
}

fn from_value<T: for<'de> serde::Deserialize<'de>>(v: Value) -> Result<T, CaClientError> {
    serde_json::from_value(v).map_err(|e| CaClientError::Protocol(e.to_string()))
}

/// The result of a verified enrolment.
#[derive(Clone, Debug)]
pub struct EnrollOutcome {
    /// The CA's answer.
    pub enrolled: Enrolled,
    /// The issued certificate, verified against the root.
    pub cert: VerifiedCert,
    /// The root, DER (its fingerprint is the pinned one).
    pub root_der: Vec<u8>,
}

/// Enrols over `conn`: sends the CSR and token, then checks the answer: the returned root has the
/// pinned fingerprint (when the client pins one), the certificate chains to it at `now`, certifies
/// `expected_key`, and names the party and session the CA says.
pub async fn enroll(
    client: &CaClient,
    conn: &mut CaConn,
    args: &EnrollArgs,
    expected_key: &caucus::pki::PublicKey,
    now: i64,
) -> Result<EnrollOutcome, CaClientError> {
    let v = conn
        .call(
            "get/csr",
            serde_json::to_value(args).map_err(|e| CaClientError::Protocol(e.to_string()))?,
        )
        .await?;
    let enrolled: Enrolled = from_value(v)?;
    let root_der = pem_decode(&enrolled.root, "CERTIFICATE")
        .map_err(|_| CaClientError::Protocol("root is not pem".into()))?;
    if let Some(fp) = &client.fingerprint
        && hex::encode(sha256(&root_der)) != *fp
    {
        return Err(CaClientError::FingerprintMismatch(fp.clone()));
    }
    let cert_der = pem_decode(&enrolled.cert, "CERTIFICATE")
        .map_err(|_| CaClientError::Protocol("certificate is not pem".into()))?;
    let cert = verify_chain(&cert_der, &root_der, now)?;
    if &cert.public_key != expected_key {
        return Err(CaClientError::Protocol(
            "issued certificate is for another key".into(),
        ));
    }
    if cert.id.party != enrolled.name || cert.id.session != enrolled.session {
        return Err(CaClientError::Protocol(
            "issued certificate names another party or session".into(),
        ));
    }
    Ok(EnrollOutcome {
        enrolled,
        cert,
        root_der,
    })
}

/// Fetches and verifies the signed roster of `session` against `root_der` at `now`.
pub async fn fetch_roster(
    client: &CaClient,
    session: &str,
    root_der: &[u8],
    now: i64,
) -> Result<Roster, CaClientError> {
    let v = client
        .call(
            "get/roster",
            serde_json::to_value(RosterArgs {
                session: session.to_string(),
            })
            .map_err(|e| CaClientError::Protocol(e.to_string()))?,
        )
        .await?;
    let signed: SignedRoster = from_value(v)?;
    let roster = signed.verify(root_der, now)?;
    if roster.session != session {
        return Err(CaClientError::Protocol(
            "roster is for another session".into(),
        ));
    }
    Ok(roster)
}

/// Fetches and verifies the revocation list against `root_der` at `now`.
pub async fn fetch_crl(client: &CaClient, root_der: &[u8], now: i64) -> Result<Crl, CaClientError> {
    let v = client
        .call("get/crl", Value::Object(Default::default()))
        .await?;
    let signed: SignedCrl = from_value(v)?;
    Ok(signed.verify(root_der, now)?)
}

/// Fetches a party's certificate (by session + name, or by party id) and verifies it.
pub async fn fetch_cert(
    client: &CaClient,
    args: &CrtArgs,
    root_der: &[u8],
    now: i64,
) -> Result<(VerifiedCert, bool), CaClientError> {
    let v = client
        .call(
            "get/crt",
            serde_json::to_value(args).map_err(|e| CaClientError::Protocol(e.to_string()))?,
        )
        .await?;
    let r: CrtResult = from_value(v)?;
    let der = pem_decode(&r.cert, "CERTIFICATE")
        .map_err(|_| CaClientError::Protocol("certificate is not pem".into()))?;
    Ok((verify_chain(&der, root_der, now)?, r.revoked))
}
