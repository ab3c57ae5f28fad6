//! Admin operations (`session create`, `list`, `revoke`, `sign-csr`). The same [`execute`] runs them
//! either directly on the registry (no server running) or inside a running `caucus-ca serve`, which
//! receives them on `DIR/admin.sock` (mode 0600) because redb lets only one process open the file.

use std::path::PathBuf;
use std::time::Duration;

use caucus::msg::frame::FrameKind;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CaError;
use crate::api::{MAX_REQUEST, MAX_RESPONSE, Request, Response};
use crate::authority::{Authority, AuthorityError, EnrollArgs};
use crate::dir::CaDir;
use crate::store::StoreError;
use crate::wire::{read_frame, write_frame};

/// An admin operation. `Debug` shows only the operation, never a token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AdminRequest {
    /// Create a session and its tokens.
    SessionCreate {
        /// Session id.
        id: String,
        /// Party names in order.
        parties: Vec<String>,
        /// Threshold t.
        threshold: u32,
        /// Lifetime in seconds.
        ttl_secs: i64,
    },
    /// List issued certificates.
    List,
    /// Revoke a serial.
    Revoke {
        /// The serial (hex).
        serial: String,
    },
    /// Offline enrolment of a CSR with a token.
    SignCsr {
        /// The CSR, PEM.
        csr: String,
        /// The token.
        token: String,
        /// Expected session, if any.
        #[serde(default)]
        session: Option<String>,
        /// Advertised address, if any.
        #[serde(default)]
        advertise: String,
    },
}

impl std::fmt::Debug for AdminRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self {
            Self::SessionCreate { .. } => "session_create",
            Self::List => "list",
            Self::Revoke { .. } => "revoke",
            Self::SignCsr { .. } => "sign_csr",
        };
        write!(f, "AdminRequest({op})")
    }
}

/// `revoke` result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Revoked {
    /// The serial.
    pub serial: String,
    /// When it was revoked.
    pub revoked_at: i64,
}

/// Runs an admin operation on an authority.
pub async fn execute(auth: &Authority, req: AdminRequest) -> Result<Value, AuthorityError> {
    let v = match req {
        AdminRequest::SessionCreate {
            id,
            parties,
            threshold,
            ttl_secs,
        } => serde_json::to_value(auth.create_session(&id, &parties, threshold, ttl_secs)?),
        AdminRequest::List => serde_json::to_value(auth.list()?),
        AdminRequest::Revoke { serial } => {
            let (serial, revoked_at) = auth.revoke(&serial)?;
            serde_json::to_value(Revoked { serial, revoked_at })
        }
        AdminRequest::SignCsr {
            csr,
            token,
            session,
            advertise,
        } => serde_json::to_value(
            auth.enroll(&EnrollArgs {
                csr,
                token,
                advertise,
                session,
            })
            .await?,
        ),
    };
    v.map_err(|_| AuthorityError::BadArgument("unencodable result".into()))
}

/// Handles one admin-socket request body.
pub async fn handle(auth: &Authority, body: &[u8]) -> Response {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => return Response::err("bad_request", "request is not valid json"),
    };
    if req.method != "admin" {
        return Response::err(
            "bad_request",
            "the admin socket only serves method \"admin\"",
        );
    }
    let op: AdminRequest = match serde_json::from_value(req.args) {
        Ok(op) => op,
        Err(e) => return Response::err("bad_request", format!("bad admin request: {e}")),
    };
    match execute(auth, op).await {
        Ok(v) => Response::ok(v),
        Err(e) => Response::from_error(&e),
    }
}

/// Where admin operations run.
#[derive(Debug)]
pub enum Admin {
    /// Directly on the registry (no server running).
    Local(Box<Authority>),
    /// Through a running server's admin socket.
    Remote(PathBuf),
}

impl Admin {
    /// Opens the registry directly, or, if a running server holds it, uses its admin socket.
    pub fn connect(dir: &CaDir) -> Result<Self, CaError> {
        match Authority::open(dir) {
            Ok(a) => Ok(Self::Local(Box::new(a))),
            Err(CaError::Store(StoreError::Locked)) => Ok(Self::Remote(dir.admin_sock())),
            Err(e) => Err(e),
        }
    }

    /// Runs `req` and returns its JSON result.
    pub async fn call(&self, req: AdminRequest) -> Result<Value, CaError> {
        match self {
            Self::Local(auth) => Ok(execute(auth, req).await?),
            Self::Remote(path) => {
                let mut sock = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                    CaError::Remote {
                        code: "internal".into(),
                        message: format!(
                            "registry is locked by a running server but its admin socket {} is unreachable: {e}",
                            path.display()
                        ),
                    }
                })?;
                let body = serde_json::to_vec(&Request {
                    method: "admin".into(),
                    args: serde_json::to_value(&req).map_err(|e| CaError::Tls(e.to_string()))?,
                })
                .map_err(|e| CaError::Tls(e.to_string()))?;
                let remote = |m: String| CaError::Remote {
                    code: "internal".into(),
                    message: m,
                };
                write_frame(&mut sock, FrameKind::Plain, &body, MAX_REQUEST)
                    .await
                    .map_err(|e| remote(format!("admin socket: {e}")))?;
                let frame = read_frame(&mut sock, MAX_RESPONSE, Duration::from_secs(60))
                    .await
                    .map_err(|e| remote(format!("admin socket: {e}")))?
                    .ok_or_else(|| remote("admin socket closed without answering".into()))?;
                let resp: Response = serde_json::from_slice(&frame.body)
                    .map_err(|_| remote("admin socket sent an invalid answer".into()))?;
                resp.into_result().map_err(|e| CaError::Remote {
                    code: e.code,
                    message: e.message,
                })
            }
        }
    }
}
