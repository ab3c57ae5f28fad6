//! `caucus peers --dir DIR`: fetches the session roster from the CA and verifies it against the
//! saved root (signature, every member certificate, identities), and marks revoked members using
//! the CA's signed revocation list.

use caucus::pki::roster::Roster;
use serde::Serialize;

use super::CommandError;
use crate::ca_client::{CaClient, fetch_crl, fetch_roster};
use crate::config::{ConfigError, NodeDir};

/// One peer.
#[derive(Clone, Debug, Serialize)]
pub struct PeerInfo {
    /// 1-based index.
    pub index: u32,
    /// Party name.
    pub name: String,
    /// Party id.
    pub party_id: String,
    /// Advertised address.
    pub address: String,
    /// Certificate serial.
    pub serial: String,
    /// Whether the CA revoked it.
    pub revoked: bool,
    /// Whether this is the local node.
    pub me: bool,
}

/// The verified roster, flattened for output.
#[derive(Clone, Debug, Serialize)]
pub struct PeersResult {
    /// CA name.
    pub ca: String,
    /// Session id.
    pub session: String,
    /// Threshold.
    pub threshold: u32,
    /// All party names in order.
    pub parties: Vec<String>,
    /// Session end.
    pub not_after: i64,
    /// Enrolled members.
    pub members: Vec<PeerInfo>,
    /// Whether every party has enrolled.
    pub complete: bool,
}

/// Fetches and verifies the roster of the node's session.
pub async fn fetch_verified_roster(dir: &NodeDir) -> Result<(Roster, Vec<String>), CommandError> {
    let (_, e) = dir.load_enrolled()?;
    let root = dir.load_root()?;
    if !caucus::pki::fingerprint_matches(&root, &e.fingerprint).unwrap_or(false) {
        return Err(ConfigError::Bad {
            path: dir.root_path(),
            message: "saved root does not match the pinned fingerprint in node.json".into(),
        }
        .into());
    }
    let client = CaClient::with_root(&e.ca_addr, &root)?;
    let now = crate::now();
    let roster = fetch_roster(&client, &e.session, &root, now).await?;
    let crl = fetch_crl(&client, &root, now).await?;
    let revoked = roster
        .members
        .iter()
        .filter(|m| crl.is_revoked(&m.serial_hex))
        .map(|m| m.serial_hex.clone())
        .collect();
    Ok((roster, revoked))
}

/// `caucus peers`.
pub async fn peers(dir: &NodeDir) -> Result<PeersResult, CommandError> {
    let cfg = dir.load_config()?;
    let (roster, revoked) = fetch_verified_roster(dir).await?;
    Ok(PeersResult {
        complete: roster.is_complete(),
        members: roster
            .members
            .iter()
            .map(|m| PeerInfo {
                index: m.index,
                name: m.name.clone(),
                party_id: m.party_id.to_hex(),
                address: m.address.clone(),
                serial: m.serial_hex.clone(),
                revoked: revoked.contains(&m.serial_hex),
                me: m.name == cfg.name,
            })
            .collect(),
        ca: roster.ca,
        session: roster.session,
        threshold: roster.threshold,
        parties: roster.parties,
        not_after: roster.not_after,
    })
}
