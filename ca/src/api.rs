//! The CA's wire API: JSON requests and responses in `Plain` frames, and thin handlers that call the
//! [`Authority`] and map its errors to status codes (only here, at the boundary).
//!
//! Request `{"method": "get/csr"|"get/crt"|"get/roster"|"get/crl", "args": {...}}`; response
//! `{"ok": true, "result": ...}` or `{"ok": false, "error": {"code", "message"}}` with code one of
//! `bad_request`, `unauthorized`, `forbidden`, `not_found`, `busy`, `internal`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::authority::{Authority, AuthorityError, EnrollArgs};

/// Largest request body accepted by the CA (64 KiB).
pub const MAX_REQUEST: usize = 64 * 1024;

/// Largest response body a client accepts (rosters of many parties are big): 16 MiB.
pub const MAX_RESPONSE: usize = caucus::msg::frame::DEFAULT_MAX_FRAME;

/// A request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Method name.
    pub method: String,
    /// Method arguments.
    #[serde(default)]
    pub args: Value,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Status code.
    pub code: String,
    /// One-line message.
    pub message: String,
}

/// A response.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    /// Whether the call succeeded.
    pub ok: bool,
    /// The result, on success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error, on failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl Response {
    /// A success.
    pub fn ok(result: Value) -> Self {
        Self {
            ok: true,
            result: Some(result),
            error: None,
        }
    }

    /// A failure.
    pub fn err(code: &str, message: impl Into<String>) -> Self {
        Self {
            ok: false,
            result: None,
            error: Some(ErrorBody {
                code: code.to_string(),
                message: message.into(),
            }),
        }
    }

    /// The answer to an authority error.
    pub fn from_error(e: &AuthorityError) -> Self {
        Self::err(e.code(), e.to_string())
    }

    /// Serialised body.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| {
            br#"{"ok":false,"error":{"code":"internal","message":"response encoding failed"}}"#
                .to_vec()
        })
    }

    /// Converts into the result value or the error body.
    pub fn into_result(self) -> Result<Value, ErrorBody> {
        match (self.ok, self.result, self.error) {
            (true, Some(v), _) => Ok(v),
            (true, None, _) => Ok(Value::Null),
            (false, _, Some(e)) => Err(e),
            (false, _, None) => Err(ErrorBody {
                code: "internal".into(),
                message: "error without detail".into(),
            }),
        }
    }
}

/// `get/crt` arguments.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrtArgs {
    /// Session id (with `name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Party name (with `session`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Party id (alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub party_id: Option<String>,
}

/// `get/crt` result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrtResult {
    /// The certificate, PEM.
    pub cert: String,
    /// Serial.
    pub serial: String,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// `get/roster` arguments.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterArgs {
    /// Session id.
    pub session: String,
}

fn args<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, AuthorityError> {
    let v = if v.is_null() {
        Value::Object(Default::default())
    } else {
        v
    };
    serde_json::from_value(v)
        .map_err(|e| AuthorityError::BadArgument(format!("bad arguments: {e}")))
}

fn value<T: Serialize>(v: &T) -> Result<Value, AuthorityError> {
    serde_json::to_value(v).map_err(|_| AuthorityError::BadArgument("unencodable result".into()))
}

async fn dispatch(auth: &Authority, req: Request) -> Result<Value, AuthorityError> {
    match req.method.as_str() {
        "get/csr" => {
            let a: EnrollArgs = args(req.args)?;
            if a.advertise.is_empty() {
                return Err(AuthorityError::BadArgument(
                    "advertise (host:port) is required".into(),
                ));
            }
            value(&auth.enroll(&a).await?)
        }
        "get/crt" => {
            let a: CrtArgs = args(req.args)?;
            let c = auth.cert(
                a.session.as_deref(),
                a.name.as_deref(),
                a.party_id.as_deref(),
            )?;
            let revoked = auth.store().revoked()?.iter().any(|(s, _)| *s == c.serial);
            value(&CrtResult {
                cert: caucus::pki::keys::pem_encode("CERTIFICATE", &c.cert_der),
                serial: c.serial,
                revoked,
            })
        }
        "get/roster" => {
            let a: RosterArgs = args(req.args)?;
            value(&auth.roster(&a.session)?)
        }
        "get/crl" => {
            let _: serde_json::Map<String, Value> = args(req.args)?;
            value(&auth.crl()?)
        }
        other => Err(AuthorityError::BadArgument(format!(
            "unknown method {:?}",
            other.chars().take(40).collect::<String>()
        ))),
    }
}

/// Handles one request body and returns the response. Never panics on bad input.
pub async fn handle(auth: &Authority, body: &[u8]) -> Response {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(_) => return Response::err("bad_request", "request is not valid json"),
    };
    let method = req.method.clone();
    match dispatch(auth, req).await {
        Ok(v) => Response::ok(v),
        Err(e) => {
            tracing::info!(method = %method.chars().take(40).collect::<String>(), code = e.code(), error = %e, "request refused");
            Response::from_error(&e)
        }
    }
}
