//! Using the distributed key over the network: encryption, threshold decryption by any quorum of
//! t+1 parties, and the secure sum / mean.
//!
//! * The key outlives the keygen session: parties are matched by NAME between the current CA
//!   session's roster and the key's party list; the sender of each message is the certificate
//!   `PartyId` the current roster maps to that name. A partial decryption must carry the key
//!   index recorded for its sender's name.
//! * Decryption (`caucus decrypt`): each quorum member publishes its partial decryption to the
//!   receivers only (`--to`, default: the quorum); a receiver combines. Parties outside the quorum
//!   need not be online. Method ([`caucus::decrypt`]): `root` (partials (c mod N)^(Δ·a_i) mod N,
//!   the default for key shares of format 2) or `classic` (c^(2Δ·s_i) mod N², PROTOCOL.md's);
//!   every quorum member must use the same.
//! * Secure sum (`caucus sum`): every party encrypts its value (fresh randomness), broadcasts the
//!   ciphertext, everyone multiplies them (the encrypted total), the quorum decrypts the total for
//!   everyone. Nothing but the total is ever decrypted.
//! * Values are signed integers, or fixed-point decimals with a public `precision` (scale
//!   10^precision), parsed and printed exactly (no floating point).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use caucus::decrypt::{
    Method, PartialDecryption, ThresholdKey, ciphertext_digest, combine, partial_decrypt_with,
};
use caucus::paillier::encoding::WireCiphertext;
use caucus::paillier::{Ciphertext, PublicKey, decode_signed};
use num_bigint::{BigInt, BigUint, Sign};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use crate::keygen::{DriverError, recv_from_all, session_options};
use crate::keyshare::KeyShareFile;
use crate::session::{Party, Session};

/// Parses a decimal value (`-12`, `3.25`) into the integer `round-free` value·10^precision.
/// More decimals than `precision` are refused (no silent rounding).
pub fn parse_value(s: &str, precision: u32) -> Result<BigInt, DriverError> {
    let bad = || DriverError::BadArgument(format!("invalid value {s:?}"));
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, f),
        None => (body, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || body.len() > 4096
    {
        return Err(bad());
    }
    if frac.len() > precision as usize {
        return Err(DriverError::BadArgument(format!(
            "value {s:?} has {} decimals; pass --precision {} (every party must use the same)",
            frac.len(),
            frac.len()
        )));
    }
    let digits = format!(
        "{}{}{}",
        if int.is_empty() { "0" } else { int },
        frac,
        "0".repeat(precision as usize - frac.len())
    );
    let mag: BigUint = digits.parse().map_err(|_| bad())?;
    Ok(BigInt::from_biguint(
        if neg { Sign::Minus } else { Sign::Plus },
        mag,
    ))
}

/// Formats v / 10^precision exactly.
pub fn format_value(v: &BigInt, precision: u32) -> String {
    if precision == 0 {
        return v.to_string();
    }
    let mag = v.magnitude().to_string();
    let p = precision as usize;
    let padded = if mag.len() <= p {
        format!("{}{}", "0".repeat(p + 1 - mag.len()), mag)
    } else {
        mag
    };
    let (i, f) = padded.split_at(padded.len() - p);
    let sign = if v.sign() == Sign::Minus { "-" } else { "" };
    format!("{sign}{i}.{f}")
}

/// Encrypts `value` (already scaled) under `pk`.
pub fn encrypt_value(pk: &PublicKey, value: &BigInt) -> Result<Ciphertext, DriverError> {
    let mut rng: ChaCha20Rng = rand::make_rng();
    pk.encrypt_signed(value, &mut rng)
        .map_err(|e| DriverError::BadArgument(format!("cannot encrypt: {e}")))
}

/// Parses a decimal ciphertext for `pk`.
pub fn parse_ciphertext(pk: &PublicKey, s: &str) -> Result<Ciphertext, DriverError> {
    let v: BigUint = s
        .trim()
        .parse()
        .map_err(|_| DriverError::BadArgument("ciphertext is not a decimal integer".into()))?;
    Ciphertext::from_value(pk, v).map_err(|e| DriverError::BadArgument(format!("ciphertext: {e}")))
}

/// Who takes part in a decryption.
#[derive(Clone, Debug)]
pub struct Quorum {
    /// Quorum members (names, key order).
    pub members: Vec<Party>,
    /// Their key indices.
    pub indices: Vec<u32>,
    /// Receivers of the partials.
    pub receivers: Vec<Party>,
}

/// Resolves `quorum` and `to` (names) against the key and the current roster. Default quorum:
/// every party of the key; default receivers: the quorum.
pub fn resolve_quorum(
    session: &Session,
    key: &KeyShareFile,
    quorum: Option<&[String]>,
    to: Option<&[String]>,
) -> Result<Quorum, DriverError> {
    let names: Vec<String> = match quorum {
        Some(q) => q.to_vec(),
        None => key.parties.iter().map(|p| p.name.clone()).collect(),
    };
    let mut members = Vec::new();
    let mut indices = Vec::new();
    for name in &names {
        let idx = key.index_of(name).ok_or_else(|| {
            DriverError::BadArgument(format!(
                "{name:?} is not a party of key {}",
                &key.key_id[..16]
            ))
        })?;
        if indices.contains(&idx) {
            return Err(DriverError::BadArgument(format!("{name:?} named twice")));
        }
        let p = session.party(name)?;
        members.push(p);
        indices.push(idx);
    }
    let need = key.threshold as usize + 1;
    if members.len() < need {
        return Err(DriverError::BadArgument(format!(
            "a quorum needs at least {need} parties (t = {}), got {}",
            key.threshold,
            members.len()
        )));
    }
    // Combine in key-index order.
    let mut pairs: Vec<(u32, Party)> = indices.into_iter().zip(members).collect();
    pairs.sort_by_key(|(i, _)| *i);
    let (indices, members): (Vec<u32>, Vec<Party>) = pairs.into_iter().unzip();
    let receivers = match to {
        Some(t) => {
            let mut v = Vec::new();
            for n in t {
                let p = session.party(n)?;
                if !v.iter().any(|q: &Party| q.name == p.name) {
                    v.push(p);
                }
            }
            v
        }
        None => members.clone(),
    };
    Ok(Quorum {
        members,
        indices,
        receivers,
    })
}

/// The decryption method: `asked`, or the key share's default (root for format 2, classic for
/// format 1). Root with a format-1 share is refused.
pub fn resolve_method(key: &KeyShareFile, asked: Option<Method>) -> Result<Method, DriverError> {
    match asked {
        Some(Method::Root) if !key.share.has_root_share() => Err(DriverError::BadArgument(
            "this key share predates the root method (format 1): use --method classic".into(),
        )),
        Some(m) => Ok(m),
        None if key.share.has_root_share() => Ok(Method::Root),
        None => Ok(Method::Classic),
    }
}

/// One decryption over the network by `method`. Returns the plaintext in `[0, N)` if this party
/// is a receiver. `tag` distinguishes repeated decryptions of the same ciphertext in one session.
pub async fn run_decrypt(
    session: &Arc<Session>,
    key: &KeyShareFile,
    c: &Ciphertext,
    q: &Quorum,
    method: Method,
    tag: &str,
    deadline: Instant,
) -> Result<Option<BigUint>, DriverError> {
    let me = session.me();
    let in_quorum = q.members.iter().any(|p| p.name == me.name);
    let receiving = q.receivers.iter().any(|p| p.name == me.name);
    if !in_quorum && !receiving {
        return Err(DriverError::BadArgument(format!(
            "{} is neither in the quorum nor a receiver",
            me.name
        )));
    }
    let digest = ciphertext_digest(c);
    let msg_id = format!("dec/{}/{}/{tag}", &key.key_id[..16], &digest[..16]);
    let mut mine = None;
    if in_quorum {
        let partial = partial_decrypt_with(&key.share, c, method)
            .map_err(|e| DriverError::Protocol(format!("partial decryption: {e}")))?;
        let targets: Vec<&Party> = q.receivers.iter().filter(|p| p.name != me.name).collect();
        let mut set = tokio::task::JoinSet::new();
        for p in targets {
            let s = session.clone();
            let name = p.name.clone();
            let id = msg_id.clone();
            let partial = partial.clone();
            let left = deadline.saturating_duration_since(Instant::now());
            set.spawn(async move { s.send_timeout(&name, &id, &partial, left).await });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(Err(e)) = r {
                return Err(e.into());
            }
        }
        mine = Some(partial);
    }
    if !receiving {
        return Ok(None);
    }
    let others: Vec<Party> = q
        .members
        .iter()
        .filter(|p| p.name != me.name)
        .cloned()
        .collect();
    let got: BTreeMap<String, PartialDecryption> =
        recv_from_all(session, &others, &msg_id, deadline).await?;
    let mut partials = Vec::new();
    for (p, idx) in q.members.iter().zip(&q.indices) {
        let part = if p.name == me.name {
            mine.clone()
        } else {
            got.get(&p.name).cloned()
        }
        .ok_or_else(|| DriverError::Protocol(format!("no partial from {}", p.name)))?;
        if part.method != method {
            return Err(DriverError::Peer {
                party: p.name.clone(),
                reason: format!(
                    "its partial uses the {} method, this decryption the {} (every quorum member must pass the same --method)",
                    part.method.as_str(),
                    method.as_str()
                ),
            });
        }
        if part.index != *idx {
            return Err(DriverError::Peer {
                party: p.name.clone(),
                reason: format!(
                    "partial claims key index {} (its index is {idx})",
                    part.index
                ),
            });
        }
        partials.push(part);
    }
    let tk: ThresholdKey = key.share.threshold_key();
    let m = combine(&tk, c, &partials).map_err(|e| match e.culprit() {
        Some(i) => DriverError::Peer {
            party: key
                .party_by_index(i)
                .map(|p| p.name.clone())
                .unwrap_or_else(|| format!("#{i}")),
            reason: e.to_string(),
        },
        None => DriverError::Protocol(format!("combining: {e}")),
    })?;
    Ok(Some(m))
}

/// Result of `caucus decrypt`.
#[derive(Clone, Debug, Serialize)]
pub struct DecryptReport {
    /// This party.
    pub party: String,
    /// Key fingerprint.
    pub key_id: String,
    /// The quorum (names).
    pub quorum: Vec<String>,
    /// Who learns the result.
    pub receivers: Vec<String>,
    /// Decryption method (`root` or `classic`).
    pub method: Method,
    /// The value (signed, scaled by the precision), if this party is a receiver.
    pub value: Option<String>,
    /// Wall time of each decryption, milliseconds (one unless repeated).
    pub latency_ms: Vec<f64>,
}

/// Options of `caucus decrypt`.
#[derive(Clone, Debug, Default)]
pub struct DecryptOptions {
    /// Quorum names (default: every party of the key).
    pub quorum: Option<Vec<String>>,
    /// Receivers (default: the quorum).
    pub to: Option<Vec<String>>,
    /// Overall timeout.
    pub timeout: Duration,
    /// Decimal precision of the value.
    pub precision: u32,
    /// Decrypt this many times (latency measurement).
    pub repeat: u32,
    /// Method (default: the key share's, see [`resolve_method`]).
    pub method: Option<Method>,
}

/// `caucus decrypt`: opens the node's session and decrypts `ciphertext` with a quorum.
pub async fn decrypt(
    dir: &std::path::Path,
    ciphertext: &str,
    opts: &DecryptOptions,
) -> Result<DecryptReport, DriverError> {
    let key = KeyShareFile::load(&crate::config::NodeDir::new(dir).keyshare_path())?;
    let c = parse_ciphertext(key.share.public(), ciphertext)?;
    let session = Arc::new(Session::open(dir, session_options(opts.timeout)).await?);
    let r = decrypt_on(&session, &key, &c, opts).await;
    crate::keygen::close(session).await;
    r
}

/// [`decrypt`] on an open session.
pub async fn decrypt_on(
    session: &Arc<Session>,
    key: &KeyShareFile,
    c: &Ciphertext,
    opts: &DecryptOptions,
) -> Result<DecryptReport, DriverError> {
    let deadline = Instant::now() + opts.timeout;
    let q = resolve_quorum(session, key, opts.quorum.as_deref(), opts.to.as_deref())?;
    let method = resolve_method(key, opts.method)?;
    let mut latency_ms = Vec::new();
    let mut value = None;
    for rep in 0..opts.repeat.max(1) {
        let t0 = Instant::now();
        let m = run_decrypt(session, key, c, &q, method, &rep.to_string(), deadline).await?;
        latency_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        value = m.map(|m| format_value(&decode_signed(&m, key.share.public()), opts.precision));
    }
    Ok(DecryptReport {
        party: session.me().name,
        key_id: key.key_id.clone(),
        quorum: q.members.iter().map(|p| p.name.clone()).collect(),
        receivers: q.receivers.iter().map(|p| p.name.clone()).collect(),
        method,
        value,
        latency_ms,
    })
}

#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
struct SumContribution {
    key_id: String,
    precision: u32,
    ciphertext: WireCiphertext,
}

/// Options of `caucus sum`.
#[derive(Clone, Debug, Default)]
pub struct SumOptions {
    /// Quorum names (default: the first t+1 parties of the key, by index).
    pub quorum: Option<Vec<String>>,
    /// Overall timeout.
    pub timeout: Duration,
    /// Decimal precision of the values.
    pub precision: u32,
    /// Decryption method (default: the key share's, see [`resolve_method`]).
    pub method: Option<Method>,
}

/// Result of `caucus sum`.
#[derive(Clone, Debug, Serialize)]
pub struct SumReport {
    /// This party.
    pub party: String,
    /// Key fingerprint.
    pub key_id: String,
    /// Contributing parties.
    pub parties: Vec<String>,
    /// Decryption quorum.
    pub quorum: Vec<String>,
    /// The total (exact decimal).
    pub total: String,
    /// The mean (exact quotient to `precision + 6` decimals).
    pub mean: String,
    /// Wall time, milliseconds.
    pub ms: f64,
}

/// The secure sum on an open session: every roster member contributes `value` (scaled by
/// 10^precision); every member learns the total.
pub async fn sum_on(
    session: &Arc<Session>,
    key: &KeyShareFile,
    value: &BigInt,
    opts: &SumOptions,
) -> Result<SumReport, DriverError> {
    let t0 = Instant::now();
    let deadline = t0 + opts.timeout;
    let method = resolve_method(key, opts.method)?;
    let pk = key.share.public();
    let me = session.me();
    let parties = session.parties();
    for p in &parties {
        if key.index_of(&p.name).is_none() {
            return Err(DriverError::BadArgument(format!(
                "roster member {:?} is not a party of key {}",
                p.name,
                &key.key_id[..16]
            )));
        }
    }
    // Encrypt (fresh randomness) and broadcast.
    let mut c = encrypt_value(pk, value)?;
    let mut rng: ChaCha20Rng = rand::make_rng();
    let wire = WireCiphertext::seal(&mut c, pk, &mut rng);
    let contrib = SumContribution {
        key_id: key.key_id.clone(),
        precision: opts.precision,
        ciphertext: wire,
    };
    let ct_id = format!("sum/{}/ct", &key.key_id[..16]);
    session
        .broadcast_timeout(
            &ct_id,
            &contrib,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await?;
    let others = session.others();
    let got: BTreeMap<String, SumContribution> =
        recv_from_all(session, &others, &ct_id, deadline).await?;
    let mut total = c;
    for p in &others {
        let sc = got
            .get(&p.name)
            .ok_or_else(|| DriverError::Protocol(format!("no contribution from {}", p.name)))?;
        if sc.key_id != key.key_id {
            return Err(DriverError::Disagree {
                party: p.name.clone(),
                reason: format!(
                    "it encrypted under key {}",
                    &sc.key_id[..16.min(sc.key_id.len())]
                ),
            });
        }
        if sc.precision != opts.precision {
            return Err(DriverError::Disagree {
                party: p.name.clone(),
                reason: format!(
                    "it uses precision {} (here: {})",
                    sc.precision, opts.precision
                ),
            });
        }
        let ci = sc
            .ciphertext
            .clone()
            .open(pk)
            .map_err(|e| DriverError::Peer {
                party: p.name.clone(),
                reason: format!("bad ciphertext: {e}"),
            })?;
        total = pk.add(&total, &ci);
    }
    let quorum_names = match &opts.quorum {
        Some(q) => q.clone(),
        None => {
            let on_roster: Vec<String> = key
                .parties
                .iter()
                .filter(|p| parties.iter().any(|r| r.name == p.name))
                .map(|p| p.name.clone())
                .collect();
            on_roster
                .into_iter()
                .take(key.threshold as usize + 1)
                .collect()
        }
    };
    let all: Vec<String> = parties.iter().map(|p| p.name.clone()).collect();
    let q = resolve_quorum(session, key, Some(&quorum_names), Some(&all))?;
    let m = run_decrypt(session, key, &total, &q, method, "sum", deadline)
        .await?
        .ok_or_else(|| DriverError::Protocol("no total".into()))?;
    let total_v = decode_signed(&m, pk);
    let n = parties.len() as u32;
    let extra = 6u32;
    let mean_scaled = (&total_v * BigInt::from(10u32).pow(extra)) / BigInt::from(n);
    Ok(SumReport {
        party: me.name,
        key_id: key.key_id.clone(),
        parties: all,
        quorum: q.members.iter().map(|p| p.name.clone()).collect(),
        total: format_value(&total_v, opts.precision),
        mean: format_value(&mean_scaled, opts.precision + extra),
        ms: t0.elapsed().as_secs_f64() * 1000.0,
    })
}

/// `caucus sum`: opens the node's session and runs the secure sum.
pub async fn sum(
    dir: &std::path::Path,
    value: &str,
    opts: &SumOptions,
) -> Result<SumReport, DriverError> {
    let key = KeyShareFile::load(&crate::config::NodeDir::new(dir).keyshare_path())?;
    let v = parse_value(value, opts.precision)?;
    let session = Arc::new(Session::open(dir, session_options(opts.timeout)).await?);
    let r = sum_on(&session, &key, &v, opts).await;
    crate::keygen::close(session).await;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_parse_and_format_exactly() {
        let p = |s: &str, d: u32| parse_value(s, d).map(|v| v.to_string());
        assert_eq!(p("12", 0).expect("int"), "12");
        assert_eq!(p("-12", 0).expect("neg"), "-12");
        assert_eq!(p("3.25", 2).expect("fixed"), "325");
        assert_eq!(p("-0.5", 3).expect("fixed"), "-500");
        assert_eq!(p(".5", 1).expect("fixed"), "5");
        assert!(matches!(p("3.25", 1), Err(DriverError::BadArgument(_))));
        for bad in ["", "-", "1e5", "12a", "1.2.3", "--1", "."] {
            assert!(p(bad, 3).is_err(), "{bad:?}");
        }
        assert_eq!(format_value(&BigInt::from(-500), 3), "-0.500");
        assert_eq!(format_value(&BigInt::from(12345), 2), "123.45");
        assert_eq!(format_value(&BigInt::from(5), 2), "0.05");
        assert_eq!(format_value(&BigInt::from(-7), 0), "-7");
    }

    #[test]
    fn the_method_defaults_to_the_key_shares_and_root_needs_a_root_share() {
        let key = crate::keyshare::tests::sample();
        assert_eq!(resolve_method(&key, None).expect("default"), Method::Root);
        assert_eq!(
            resolve_method(&key, Some(Method::Classic)).expect("classic"),
            Method::Classic
        );
        // The same share in format 1 (no root share): classic by default, root refused.
        let mut v = serde_json::to_value(&key.share).expect("ser");
        v["version"] = serde_json::json!(1);
        v.as_object_mut().expect("object").remove("root_share");
        let old = KeyShareFile {
            share: serde_json::from_value(v).expect("format 1"),
            ..key
        };
        assert_eq!(
            resolve_method(&old, None).expect("default"),
            Method::Classic
        );
        match resolve_method(&old, Some(Method::Root)) {
            Err(DriverError::BadArgument(m)) => assert!(m.contains("--method classic"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
