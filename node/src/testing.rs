//! Test helpers (feature `test-util`): an in-process test PKI built with the real `caucus::pki`
//! issuance functions (a root, party certificates, a signed roster and CRL), and a raw TLS client
//! that can present any certificate (or none) so tests can play misbehaving peers.
//!
//! This is not a CA: no tokens, no registry. Tests that need the real CA use `caucus-ca`.

use std::net::SocketAddr;
use std::sync::Arc;

use caucus::pki::crl::CRL_VERSION;
use caucus::pki::roster::ROSTER_VERSION;
use caucus::pki::{
    CaSigner, Crl, PrivateKey, RevokedEntry, Roster, RosterEntry, SpiffeId, build_csr, issue,
    make_root, make_serial, parse_csr, serial_hex, sign_crl, sign_roster,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use crate::transport::conn::{FrameReader, FrameWriter};
use crate::transport::tls::{ALPN, provider};

/// A test root and the issuance around it.
#[derive(Debug)]
pub struct TestPki {
    /// The CA signing identity.
    pub signer: CaSigner,
    /// `now` used for issuance, unix seconds.
    pub now: i64,
    serial: std::sync::atomic::AtomicU8,
}

impl TestPki {
    /// A fresh root named `ca_name` (RSA-2048 to keep tests fast), valid from `now` for a day.
    pub fn new(ca_name: &str, now: i64) -> Self {
        let key = PrivateKey::generate(2048).expect("root key");
        let root = make_root(&key, ca_name, now, 86_400, make_serial([0x11; 16])).expect("root");
        Self {
            signer: CaSigner::new(key, root).expect("signer"),
            now,
            serial: std::sync::atomic::AtomicU8::new(1),
        }
    }

    /// The root certificate, DER.
    pub fn root_der(&self) -> Vec<u8> {
        self.signer.root_der().to_vec()
    }

    /// Issues a certificate for `key` as `party` of `session`, valid over `validity` (unix s).
    /// Returns the DER and serial hex.
    pub fn issue(
        &self,
        key: &PrivateKey,
        session: &str,
        party: &str,
        validity: (i64, i64),
    ) -> (Vec<u8>, String) {
        let n = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let serial = make_serial([n.max(1); 16]);
        let req = parse_csr(&build_csr(key, party).expect("csr")).expect("parse csr");
        let id = SpiffeId::new(self.signer.name(), session, party).expect("id");
        let der = issue(&req, &id, validity, serial, &self.signer).expect("issue");
        (der, serial_hex(&serial))
    }

    /// Issues a certificate valid for an hour around `now`.
    pub fn issue_now(&self, key: &PrivateKey, session: &str, party: &str) -> (Vec<u8>, String) {
        self.issue(key, session, party, (self.now - 60, self.now + 3600))
    }

    /// A roster of `session` (threshold 1, or 0 for one member) with `members` as (name, cert DER, address), signed and
    /// verified.
    pub fn roster(&self, session: &str, members: &[(&str, &[u8], String)]) -> Roster {
        let mut entries = Vec::new();
        for (i, (name, der, addr)) in members.iter().enumerate() {
            let v = caucus::pki::verify_chain(der, self.signer.root_der(), self.now)
                .expect("member cert");
            entries.push(RosterEntry {
                index: i as u32 + 1,
                name: name.to_string(),
                party_id: v.party_id,
                serial_hex: v.serial_hex,
                cert_der: der.to_vec(),
                address: addr.clone(),
            });
        }
        let roster = Roster {
            version: ROSTER_VERSION,
            ca: self.signer.name().to_string(),
            session: session.to_string(),
            threshold: (members.len() as u32).saturating_sub(1).min(1),
            parties: members.iter().map(|m| m.0.to_string()).collect(),
            not_after: self.now + 3600,
            issued_at: self.now,
            members: entries,
        };
        sign_roster(&roster, self.signer.key())
            .expect("sign roster")
            .verify(self.signer.root_der(), self.now)
            .expect("verify roster")
    }

    /// A revocation list naming `serials`, signed and verified, fresh for an hour.
    pub fn crl(&self, serials: &[&str]) -> Crl {
        let crl = Crl {
            version: CRL_VERSION,
            ca: self.signer.name().to_string(),
            issued_at: self.now,
            next_update: self.now + 3600,
            revoked: serials
                .iter()
                .map(|s| RevokedEntry {
                    serial_hex: s.to_string(),
                    revoked_at: self.now,
                })
                .collect(),
        };
        sign_crl(&crl, self.signer.key())
            .expect("sign crl")
            .verify(self.signer.root_der(), self.now)
            .expect("verify crl")
    }
}

/// Accepts any server certificate (still checking the handshake signature): for playing a
/// client that does not care who the server is.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("tls 1.2".into()))
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A raw client connection: the framed halves of a TLS stream, no envelope logic.
pub struct RawConn {
    /// Frame reader.
    pub reader: FrameReader<tokio::io::ReadHalf<tokio_rustls::client::TlsStream<TcpStream>>>,
    /// Frame writer.
    pub writer: FrameWriter<tokio::io::WriteHalf<tokio_rustls::client::TlsStream<TcpStream>>>,
}

/// Connects to `addr` over TLS 1.3 with ALPN `caucus/1`, presenting `client` (key and
/// certificate) or no certificate at all, and accepting any server certificate.
pub async fn raw_connect(
    addr: SocketAddr,
    client: Option<(&PrivateKey, &[u8])>,
) -> std::io::Result<RawConn> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(std::io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider())));
    let mut cfg = match client {
        Some((key, der)) => b
            .with_client_auth_cert(
                vec![CertificateDer::from(der.to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.pkcs8_der().to_vec())),
            )
            .map_err(std::io::Error::other)?,
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("peer.caucus").map_err(std::io::Error::other)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await?;
    let (r, w) = tokio::io::split(tls);
    Ok(RawConn {
        reader: FrameReader::new(r, caucus::msg::frame::DEFAULT_MAX_FRAME),
        writer: FrameWriter::new(w, caucus::msg::frame::DEFAULT_MAX_FRAME),
    })
}
