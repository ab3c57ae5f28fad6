//! The CA registry in redb: sessions, enrolment token hashes, issued certificates (by serial, by
//! party, by party id, by session), revocations and advertised addresses.
//!
//! redb fsyncs on commit, so a record is durable once [`Store::record_batch`] returns. Consuming a
//! token and recording its certificate happen in one write transaction: of two concurrent uses of
//! one token, exactly one commits a certificate.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

/// session id → JSON [`SessionRecord`]
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// SHA-256(token) → JSON [`TokenRecord`]
const TOKENS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("tokens");
/// serial hex → JSON [`CertRecord`]
const CERTS: TableDefinition<&str, &[u8]> = TableDefinition::new("certs");
/// "session/party" → serial hex
const BY_PARTY: TableDefinition<&str, &str> = TableDefinition::new("by_party");
/// party id hex → serial hex (latest)
const BY_PARTY_ID: TableDefinition<&str, &str> = TableDefinition::new("by_party_id");
/// serial hex → revoked_at (unix seconds)
const REVOKED: TableDefinition<&str, i64> = TableDefinition::new("revoked");

/// Registry errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (a running `caucus-ca serve`) has the registry open.
    #[error("registry is in use by another process")]
    Locked,
    /// A session with this id exists already.
    #[error("session {0:?} already exists")]
    SessionExists(String),
    /// No such session.
    #[error("unknown session {0:?}")]
    UnknownSession(String),
    /// The token hash is not known.
    #[error("unknown enrolment token")]
    UnknownToken,
    /// The token was consumed before.
    #[error("enrolment token already used")]
    TokenUsed,
    /// The token's session has ended.
    #[error("enrolment token expired (its session has ended)")]
    TokenExpired,
    /// A serial collision (astronomically unlikely with 127 random bits): the request is refused.
    #[error("serial collision")]
    SerialCollision,
    /// No certificate with that serial.
    #[error("no certificate with serial {0}")]
    UnknownSerial(String),
    /// The database failed.
    #[error("registry: {0}")]
    Db(String),
    /// A stored record does not parse.
    #[error("registry record is corrupt")]
    Corrupt,
}

fn dberr<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// A session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id.
    pub id: String,
    /// Party names in order (index = position + 1).
    pub parties: Vec<String>,
    /// Threshold t.
    pub threshold: u32,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Session end, unix seconds.
    pub not_after: i64,
}

/// What a token hash is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Session id.
    pub session: String,
    /// Party name.
    pub party: String,
    /// Expiry (the session end), unix seconds.
    pub not_after: i64,
    /// The serial issued with it, once used.
    pub used_by: Option<String>,
}

/// An issued certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertRecord {
    /// Serial, lowercase hex.
    pub serial: String,
    /// Session id.
    pub session: String,
    /// Party name.
    pub party: String,
    /// Party id (SHA-256 of SPKI), hex.
    pub party_id: String,
    /// 1-based index of the party in its session.
    pub index: u32,
    /// Issue time, unix seconds.
    pub issued_at: i64,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
    /// Advertised `host:port` (empty for offline `sign-csr` enrolments).
    pub address: String,
    /// The certificate, DER (base64url in JSON).
    #[serde(with = "caucus::encoding::bytes_b64u")]
    pub cert_der: Vec<u8>,
}

/// A certificate waiting to be recorded, with the token it consumes.
#[derive(Clone, Debug)]
pub struct Pending {
    /// SHA-256 of the token.
    pub token_hash: [u8; 32],
    /// The record to write.
    pub cert: CertRecord,
}

/// The registry.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|_| StoreError::Corrupt)
}

fn from_json<T: for<'de> Deserialize<'de>>(b: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(b).map_err(|_| StoreError::Corrupt)
}

impl Store {
    /// Opens (or creates) the registry at `path`. [`StoreError::Locked`] if a server holds it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = match Database::create(path) {
            Ok(db) => db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => return Err(StoreError::Locked),
            Err(e) => return Err(dberr(e)),
        };
        let tx = db.begin_write().map_err(dberr)?;
        {
            tx.open_table(SESSIONS).map_err(dberr)?;
            tx.open_table(TOKENS).map_err(dberr)?;
            tx.open_table(CERTS).map_err(dberr)?;
            tx.open_table(BY_PARTY).map_err(dberr)?;
            tx.open_table(BY_PARTY_ID).map_err(dberr)?;
            tx.open_table(REVOKED).map_err(dberr)?;
        }
        tx.commit().map_err(dberr)?;
        Ok(Self { db })
    }

    /// Creates a session and its token hashes (one per party) in one transaction.
    pub fn create_session(
        &self,
        session: &SessionRecord,
        tokens: &[([u8; 32], String)],
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        {
            let mut sessions = tx.open_table(SESSIONS).map_err(dberr)?;
            if sessions.get(session.id.as_str()).map_err(dberr)?.is_some() {
                return Err(StoreError::SessionExists(session.id.clone()));
            }
            sessions
                .insert(session.id.as_str(), to_json(session)?.as_slice())
                .map_err(dberr)?;
            let mut table = tx.open_table(TOKENS).map_err(dberr)?;
            for (hash, party) in tokens {
                let rec = TokenRecord {
                    session: session.id.clone(),
                    party: party.clone(),
                    not_after: session.not_after,
                    used_by: None,
                };
                table
                    .insert(hash.as_slice(), to_json(&rec)?.as_slice())
                    .map_err(dberr)?;
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(())
    }

    /// A session by id.
    pub fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(SESSIONS).map_err(dberr)?;
        match t.get(id).map_err(dberr)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    /// Every session.
    pub fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(SESSIONS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (_, v) = item.map_err(dberr)?;
            out.push(from_json(v.value())?);
        }
        Ok(out)
    }

    /// Authorises a token (read-only): known, unused and not expired at `now`.
    pub fn check_token(&self, hash: &[u8; 32], now: i64) -> Result<TokenRecord, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(TOKENS).map_err(dberr)?;
        let rec: TokenRecord = match t.get(hash.as_slice()).map_err(dberr)? {
            Some(v) => from_json(v.value())?,
            None => return Err(StoreError::UnknownToken),
        };
        Self::token_usable(&rec, now)?;
        Ok(rec)
    }

    fn token_usable(rec: &TokenRecord, now: i64) -> Result<(), StoreError> {
        if rec.used_by.is_some() {
            return Err(StoreError::TokenUsed);
        }
        if now >= rec.not_after {
            return Err(StoreError::TokenExpired);
        }
        Ok(())
    }

    /// Records a batch of certificates in ONE write transaction (group commit), each consuming
    /// its token. Each item is checked again inside the transaction (token still unused and
    /// unexpired, serial unused); an item that fails writes nothing and does not affect the others.
    /// Returns one result per item, valid once the commit (fsync) has succeeded.
    pub fn record_batch(
        &self,
        items: &[Pending],
        now: i64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        let mut results = Vec::with_capacity(items.len());
        {
            let mut tokens = tx.open_table(TOKENS).map_err(dberr)?;
            let mut certs = tx.open_table(CERTS).map_err(dberr)?;
            let mut by_party = tx.open_table(BY_PARTY).map_err(dberr)?;
            let mut by_pid = tx.open_table(BY_PARTY_ID).map_err(dberr)?;
            for item in items {
                let check = (|| {
                    let mut rec: TokenRecord =
                        match tokens.get(item.token_hash.as_slice()).map_err(dberr)? {
                            Some(v) => from_json(v.value())?,
                            None => return Err(StoreError::UnknownToken),
                        };
                    Self::token_usable(&rec, now)?;
                    if rec.session != item.cert.session || rec.party != item.cert.party {
                        return Err(StoreError::UnknownToken);
                    }
                    if certs
                        .get(item.cert.serial.as_str())
                        .map_err(dberr)?
                        .is_some()
                    {
                        return Err(StoreError::SerialCollision);
                    }
                    rec.used_by = Some(item.cert.serial.clone());
                    Ok(rec)
                })();
                let rec = match check {
                    Ok(rec) => rec,
                    Err(e) => {
                        results.push(Err(e));
                        continue;
                    }
                };
                tokens
                    .insert(item.token_hash.as_slice(), to_json(&rec)?.as_slice())
                    .map_err(dberr)?;
                certs
                    .insert(item.cert.serial.as_str(), to_json(&item.cert)?.as_slice())
                    .map_err(dberr)?;
                let key = format!("{}/{}", item.cert.session, item.cert.party);
                by_party
                    .insert(key.as_str(), item.cert.serial.as_str())
                    .map_err(dberr)?;
                by_pid
                    .insert(item.cert.party_id.as_str(), item.cert.serial.as_str())
                    .map_err(dberr)?;
                results.push(Ok(()));
            }
        }
        tx.commit().map_err(dberr)?;
        Ok(results)
    }

    /// A certificate by serial.
    pub fn cert(&self, serial: &str) -> Result<Option<CertRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(CERTS).map_err(dberr)?;
        match t.get(serial).map_err(dberr)? {
            Some(v) => Ok(Some(from_json(v.value())?)),
            None => Ok(None),
        }
    }

    fn cert_via(
        &self,
        index: TableDefinition<&str, &str>,
        key: &str,
    ) -> Result<Option<CertRecord>, StoreError> {
        let serial = {
            let tx = self.db.begin_read().map_err(dberr)?;
            let t = tx.open_table(index).map_err(dberr)?;
            match t.get(key).map_err(dberr)? {
                Some(v) => v.value().to_string(),
                None => return Ok(None),
            }
        };
        self.cert(&serial)
    }

    /// A party's certificate by (session, name).
    pub fn cert_by_party(
        &self,
        session: &str,
        name: &str,
    ) -> Result<Option<CertRecord>, StoreError> {
        self.cert_via(BY_PARTY, &format!("{session}/{name}"))
    }

    /// A party's latest certificate by party id (hex).
    pub fn cert_by_party_id(&self, party_id: &str) -> Result<Option<CertRecord>, StoreError> {
        self.cert_via(BY_PARTY_ID, party_id)
    }

    /// Every certificate of a session.
    pub fn session_certs(&self, session: &str) -> Result<Vec<CertRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let idx = tx.open_table(BY_PARTY).map_err(dberr)?;
        let certs = tx.open_table(CERTS).map_err(dberr)?;
        // Names never contain '/', and '0' sorts right after '/': this range is exactly the session.
        let lo = format!("{session}/");
        let hi = format!("{session}0");
        let mut out = Vec::new();
        for item in idx.range(lo.as_str()..hi.as_str()).map_err(dberr)? {
            let (_, serial) = item.map_err(dberr)?;
            if let Some(v) = certs.get(serial.value()).map_err(dberr)? {
                out.push(from_json(v.value())?);
            }
        }
        Ok(out)
    }

    /// Every issued certificate, in serial order.
    pub fn list(&self) -> Result<Vec<CertRecord>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(CERTS).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (_, v) = item.map_err(dberr)?;
            out.push(from_json(v.value())?);
        }
        Ok(out)
    }

    /// Revokes a serial. Returns the revocation time (the earlier one if it was revoked already).
    pub fn revoke(&self, serial: &str, now: i64) -> Result<i64, StoreError> {
        let tx = self.db.begin_write().map_err(dberr)?;
        let at;
        {
            let certs = tx.open_table(CERTS).map_err(dberr)?;
            if certs.get(serial).map_err(dberr)?.is_none() {
                return Err(StoreError::UnknownSerial(serial.chars().take(64).collect()));
            }
            let mut rev = tx.open_table(REVOKED).map_err(dberr)?;
            let existing = rev.get(serial).map_err(dberr)?.map(|v| v.value());
            at = match existing {
                Some(t) => t,
                None => {
                    rev.insert(serial, now).map_err(dberr)?;
                    now
                }
            };
        }
        tx.commit().map_err(dberr)?;
        Ok(at)
    }

    /// Every revocation: (serial, revoked_at).
    pub fn revoked(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let tx = self.db.begin_read().map_err(dberr)?;
        let t = tx.open_table(REVOKED).map_err(dberr)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(dberr)? {
            let (k, v) = item.map_err(dberr)?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: i64) -> SessionRecord {
        SessionRecord {
            id: "s1".into(),
            parties: vec!["a".into(), "b".into()],
            threshold: 1,
            created_at: now,
            not_after: now + 100,
        }
    }

    fn pending(hash: [u8; 32], serial: &str, party: &str) -> Pending {
        Pending {
            token_hash: hash,
            cert: CertRecord {
                serial: serial.into(),
                session: "s1".into(),
                party: party.into(),
                party_id: format!("{party}-id"),
                index: 1,
                issued_at: 0,
                not_after: 100,
                address: "h:1".into(),
                cert_der: vec![1, 2, 3],
            },
        }
    }

    #[test]
    fn token_is_consumed_once_and_persisted() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("r.redb");
        let store = Store::open(&path).expect("open");
        assert!(matches!(Store::open(&path), Err(StoreError::Locked)));
        store
            .create_session(&session(0), &[([1; 32], "a".into()), ([2; 32], "b".into())])
            .expect("create");
        assert!(matches!(
            store.create_session(&session(0), &[]),
            Err(StoreError::SessionExists(_))
        ));
        assert_eq!(store.check_token(&[1; 32], 10).expect("ok").party, "a");
        assert!(matches!(
            store.check_token(&[9; 32], 10),
            Err(StoreError::UnknownToken)
        ));
        assert!(matches!(
            store.check_token(&[1; 32], 100),
            Err(StoreError::TokenExpired)
        ));
        // Two uses of one token in one batch: exactly one is recorded.
        let res = store
            .record_batch(
                &[pending([1; 32], "01", "a"), pending([1; 32], "02", "a")],
                10,
            )
            .expect("batch");
        assert!(res[0].is_ok());
        assert!(matches!(res[1], Err(StoreError::TokenUsed)));
        assert!(matches!(
            store.check_token(&[1; 32], 10),
            Err(StoreError::TokenUsed)
        ));
        // Serial collisions are refused.
        let res = store
            .record_batch(&[pending([2; 32], "01", "b")], 10)
            .expect("batch");
        assert!(matches!(res[0], Err(StoreError::SerialCollision)));
        assert_eq!(store.list().expect("list").len(), 1);
        assert_eq!(
            store
                .cert_by_party("s1", "a")
                .expect("get")
                .map(|c| c.serial),
            Some("01".into())
        );
        assert!(store.cert_by_party_id("a-id").expect("get").is_some());
        assert_eq!(store.session_certs("s1").expect("certs").len(), 1);
        assert_eq!(store.session_certs("s").expect("certs").len(), 0);
        assert_eq!(store.revoke("01", 50).expect("revoke"), 50);
        assert_eq!(store.revoke("01", 60).expect("revoke"), 50);
        assert!(matches!(
            store.revoke("ff", 60),
            Err(StoreError::UnknownSerial(_))
        ));
        drop(store);
        let store = Store::open(&path).expect("reopen");
        assert_eq!(store.list().expect("list").len(), 1);
        assert_eq!(store.revoked().expect("revoked"), vec![("01".into(), 50)]);
    }
}
