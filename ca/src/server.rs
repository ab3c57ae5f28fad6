//! The CA network front-end: TLS 1.3 over TCP, several requests per connection, every request
//! bounded in size and time, connections capped by a semaphore. Excess load gets one `busy`
//! answer and a close, never a crash; one misbehaving peer never stops the others.
//!
//! Also the admin socket (`DIR/admin.sock`, mode 0600) through which the admin commands reach a
//! running server (redb lets one process open the registry).

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use caucus::msg::frame::FrameKind;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, MAX_REQUEST, Response};
use crate::authority::Authority;
use crate::wire::{WireError, read_frame, write_frame};

/// Limits of the front-end.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// Most concurrent connections served; more get a `busy` answer.
    pub max_connections: usize,
    /// Largest request body.
    pub max_request: usize,
    /// How long a connection may take to send a whole request (or stay idle between requests).
    pub read_timeout: Duration,
    /// How long a TLS handshake may take.
    pub handshake_timeout: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            max_request: MAX_REQUEST,
            read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Most connections that are being told `busy` at once; beyond that excess connections are closed.
const MAX_BUSY_REPLIES: usize = 128;

async fn serve_tls(
    sock: tokio::net::TcpStream,
    acceptor: TlsAcceptor,
    auth: Arc<Authority>,
    opts: Arc<ServerOptions>,
) -> Result<(), WireError> {
    let mut stream = tokio::time::timeout(opts.handshake_timeout, acceptor.accept(sock))
        .await
        .map_err(|_| WireError::Timeout)??;
    loop {
        let frame = match read_frame(&mut stream, opts.max_request, opts.read_timeout).await {
            Ok(Some(f)) => f,
            Ok(None) | Err(WireError::Timeout) => break,
            Err(WireError::Frame(e)) => {
                let r = Response::err("bad_request", e.to_string());
                let _ = write_frame(
                    &mut stream,
                    FrameKind::Plain,
                    &r.to_bytes(),
                    api::MAX_RESPONSE,
                )
                .await;
                break;
            }
            Err(e) => return Err(e),
        };
        if frame.kind != FrameKind::Plain {
            let r = Response::err("bad_request", "expected a plain json frame");
            let _ = write_frame(
                &mut stream,
                FrameKind::Plain,
                &r.to_bytes(),
                api::MAX_RESPONSE,
            )
            .await;
            break;
        }
        let resp = api::handle(&auth, &frame.body).await;
        write_frame(
            &mut stream,
            FrameKind::Plain,
            &resp.to_bytes(),
            api::MAX_RESPONSE,
        )
        .await?;
    }
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
    Ok(())
}

async fn reply_busy(sock: tokio::net::TcpStream, acceptor: TlsAcceptor, opts: Arc<ServerOptions>) {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(opts.handshake_timeout, acceptor.accept(sock)).await
    else {
        return;
    };
    let r = Response::err("busy", "ca is at its connection limit, retry shortly");
    let _ = write_frame(
        &mut stream,
        FrameKind::Plain,
        &r.to_bytes(),
        api::MAX_RESPONSE,
    )
    .await;
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
}

/// Serves the TLS front-end on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    auth: Arc<Authority>,
    tls: Arc<rustls::ServerConfig>,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let conns = Arc::new(Semaphore::new(opts.max_connections));
    let busy = Arc::new(Semaphore::new(MAX_BUSY_REPLIES));
    let opts = Arc::new(opts);
    tokio::pin!(shutdown);
    loop {
        let (sock, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = sock.set_nodelay(true);
        match conns.clone().try_acquire_owned() {
            Ok(permit) => {
                let (acceptor, auth, opts) = (acceptor.clone(), auth.clone(), opts.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve_tls(sock, acceptor, auth, opts).await {
                        tracing::debug!(%peer, error = %e, "connection ended");
                    }
                    drop(permit);
                });
            }
            Err(_) => {
                if let Ok(permit) = busy.clone().try_acquire_owned() {
                    let (acceptor, opts) = (acceptor.clone(), opts.clone());
                    tokio::spawn(async move {
                        reply_busy(sock, acceptor, opts).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    Ok(())
}

/// Binds the admin socket at `path` with mode 0600 (the CA directory itself is 0700, so nobody
/// else can reach it between bind and chmod). A stale socket file is replaced.
pub fn bind_admin(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        std::fs::remove_file(path)?;
    }
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

/// Serves admin requests on the Unix socket until `shutdown` completes.
pub async fn run_admin(
    listener: UnixListener,
    auth: Arc<Authority>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let sem = Arc::new(Semaphore::new(16));
    tokio::pin!(shutdown);
    loop {
        let (mut sock, _) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => { tokio::time::sleep(Duration::from_millis(20)).await; continue; }
            },
        };
        let Ok(permit) = sem.clone().try_acquire_owned() else {
            continue;
        };
        let auth = auth.clone();
        tokio::spawn(async move {
            while let Ok(Some(frame)) =
                read_frame(&mut sock, MAX_REQUEST, Duration::from_secs(30)).await
            {
                let resp = crate::admin::handle(&auth, &frame.body).await;
                if write_frame(
                    &mut sock,
                    FrameKind::Plain,
                    &resp.to_bytes(),
                    api::MAX_RESPONSE,
                )
                .await
                .is_err()
                {
                    break;
                }
            }
            drop(permit);
        });
    }
    Ok(())
}
