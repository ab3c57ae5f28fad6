//! Helpers for tests (in this crate and in `caucus-node`): an in-process CA front-end on
//! `127.0.0.1:0` with a movable clock, and a minimal TLS client that speaks the wire API. Real TLS,
//! real redb, real issuance: nothing is mocked.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use caucus::msg::frame::FrameKind;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::CaError;
use crate::api::{MAX_REQUEST, MAX_RESPONSE, Request, Response};
use crate::authority::Authority;
use crate::dir::CaDir;
use crate::server::ServerOptions;
use crate::store::Store;
use crate::wire::{WireError, read_frame, write_frame};

/// A running in-process CA.
pub struct TestCa {
    /// The authority (shared with the server task).
    pub auth: Arc<Authority>,
    /// Where the TLS front-end listens.
    pub addr: SocketAddr,
    /// Root fingerprint.
    pub fingerprint: String,
    /// Root certificate, DER.
    pub root_der: Vec<u8>,
    /// CA directory.
    pub dir: CaDir,
    offset: Arc<AtomicI64>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("addr", &self.addr).finish()
    }
}

impl TestCa {
    /// Creates a CA named `test-ca` (RSA-2048 root, for speed) in `dir` and serves it on
    /// `127.0.0.1:0` with `opts`. Must run inside a tokio runtime.
    pub async fn start(dir: &Path, opts: ServerOptions) -> Result<Self, CaError> {
        let dir = CaDir::new(dir);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        crate::dir::init(&dir, "test-ca", 2048, now)?;
        let offset = Arc::new(AtomicI64::new(0));
        let o = offset.clone();
        let clock: crate::authority::Clock = Arc::new(move || {
            time::OffsetDateTime::now_utc().unix_timestamp() + o.load(Ordering::SeqCst)
        });
        let signer = dir.load_signer()?;
        let store = Store::open(&dir.registry())?;
        let auth = Arc::new(Authority::new(signer, store, clock));
        let tls = crate::tls::server_config(auth.signer(), auth.now())?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(crate::server::run(
            listener,
            auth.clone(),
            tls,
            opts,
            async {
                let _ = rx.await;
            },
        ));
        Ok(Self {
            fingerprint: auth.fingerprint(),
            root_der: auth.signer().root_der().to_vec(),
            auth,
            addr,
            dir,
            offset,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Moves the CA's clock `secs` forward (cumulative).
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::SeqCst);
    }

    /// Stops accepting connections.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

/// A minimal client for the CA wire API, trusting `root_der`.
pub struct RawClient {
    stream: TlsStream<TcpStream>,
}

impl std::fmt::Debug for RawClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawClient")
    }
}

impl RawClient {
    /// Connects and completes the TLS handshake (server name `ca.caucus`).
    pub async fn connect(addr: SocketAddr, root_der: &[u8]) -> Result<Self, CaError> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(root_der.to_vec()))
            .map_err(|e| CaError::Tls(e.to_string()))?;
        let mut cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| CaError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![crate::tls::ALPN.to_vec()];
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from(caucus::pki::CA_SERVER_NAME)
            .map_err(|e| CaError::Tls(e.to_string()))?;
        let stream = TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await?;
        Ok(Self { stream })
    }

    /// Sends raw bytes as one frame of `kind` (for malformed-input tests).
    pub async fn send_raw(&mut self, kind: FrameKind, body: &[u8]) -> Result<(), WireError> {
        write_frame(&mut self.stream, kind, body, usize::MAX >> 1).await
    }

    /// Sends raw bytes without framing.
    pub async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        tokio::io::AsyncWriteExt::write_all(&mut self.stream, bytes).await?;
        tokio::io::AsyncWriteExt::flush(&mut self.stream).await?;
        Ok(())
    }

    /// Reads one response (`None` if the server closed).
    pub async fn recv(&mut self) -> Result<Option<Response>, WireError> {
        let Some(frame) =
            read_frame(&mut self.stream, MAX_RESPONSE, Duration::from_secs(30)).await?
        else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&frame.body).ok())
    }

    /// One request, one response.
    pub async fn call(&mut self, method: &str, args: Value) -> Result<Response, WireError> {
        let body = serde_json::to_vec(&Request {
            method: method.to_string(),
            args,
        })
        .unwrap_or_default();
        write_frame(&mut self.stream, FrameKind::Plain, &body, MAX_REQUEST).await?;
        self.recv().await?.ok_or_else(|| {
            WireError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "server closed",
            ))
        })
    }
}
