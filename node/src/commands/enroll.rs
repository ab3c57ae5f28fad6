//! `caucus enroll --dir DIR --ca ADDR --fingerprint FP --token TOKEN --advertise HOST:PORT`:
//! builds a CSR for the node key, sends it with the token to the CA (pinned by the root
//! fingerprint), verifies the answer, and stores `node.pem`, `ca.pem` and `node.json`.
//! Nothing is written unless the whole exchange verified.

use caucus::pki::csr::{build_csr, csr_to_pem};
use caucus::pki::keys::pem_encode;
use caucus_ca::authority::{EnrollArgs, check_address};
use serde::Serialize;

use super::CommandError;
use crate::ca_client::{CaClient, enroll as ca_enroll};
use crate::config::{NodeDir, write_atomic};

/// `enroll` options.
#[derive(Clone, Debug)]
pub struct EnrollOptions {
    /// CA address (`host:port`).
    pub ca: String,
    /// Pinned root fingerprint.
    pub fingerprint: String,
    /// Single-use enrolment token.
    pub token: String,
    /// Where peers reach this node.
    pub advertise: String,
    /// Refuse unless the token is for this session.
    pub session: Option<String>,
}

/// What `enroll` did.
#[derive(Clone, Debug, Serialize)]
pub struct EnrollResult {
    /// Party name.
    pub name: String,
    /// Session id.
    pub session: String,
    /// 1-based index in the session.
    pub index: u32,
    /// Serial.
    pub serial: String,
    /// Party id.
    pub party_id: String,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
    /// CA name.
    pub ca: String,
}

/// Enrols the node in `dir`.
pub async fn enroll(dir: &NodeDir, opts: &EnrollOptions) -> Result<EnrollResult, CommandError> {
    let mut cfg = dir.load_config()?;
    let key = dir.load_key()?;
    check_address(&opts.advertise).map_err(|e| CommandError::BadArgument(e.to_string()))?;
    let csr = csr_to_pem(&build_csr(&key, &cfg.name)?);
    let client = CaClient::pinned(&opts.ca, &opts.fingerprint)?;
    let mut conn = client.connect().await?;
    let args = EnrollArgs {
        csr,
        token: opts.token.clone(),
        advertise: opts.advertise.clone(),
        session: opts.session.clone(),
    };
    let out = ca_enroll(&client, &mut conn, &args, key.public_key(), crate::now()).await?;
    if out.enrolled.name != cfg.name {
        return Err(CommandError::BadArgument(format!(
            "the token is for party {:?}, but this node is {:?}",
            out.enrolled.name, cfg.name
        )));
    }
    write_atomic(
        &dir.root_path(),
        pem_encode("CERTIFICATE", &out.root_der).as_bytes(),
        0o644,
    )?;
    write_atomic(&dir.cert_path(), out.enrolled.cert.as_bytes(), 0o644)?;
    cfg.ca_addr = Some(opts.ca.clone());
    cfg.advertise = Some(opts.advertise.clone());
    cfg.session = Some(out.enrolled.session.clone());
    cfg.ca_name = Some(out.cert.id.ca.clone());
    cfg.fingerprint = Some(caucus::pki::fingerprint(&out.root_der));
    dir.save_config(&cfg)?;
    Ok(EnrollResult {
        name: out.enrolled.name,
        session: out.enrolled.session,
        index: out.enrolled.index,
        serial: out.enrolled.serial,
        party_id: out.enrolled.party_id,
        not_after: out.enrolled.not_after,
        ca: out.cert.id.ca,
    })
}
