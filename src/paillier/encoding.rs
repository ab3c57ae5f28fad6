//! Plaintext encodings (signed integers, fixed-point numbers with a public precision) and the
//! versioned serde formats of the public key and ciphertexts.
//!
//! Signed: `x ∈ (−N/2, N/2)` maps to `x mod N`; values above N/2 decode as negative.
//! Fixed point: `x` maps to the signed integer `round(x·10^precision)`; a sum keeps the precision,
//! a product of two encodings has precision `p1 + p2`.
//! Wire: `{"version": 1, "n": "<b64u>"}` and `{"version": 1, "c": "<b64u>"}`; big integers are
//! base64url of their big-endian magnitude ([`crate::encoding`]).

use num_bigint::{BigInt, BigUint, Sign};
use num_traits::{ToPrimitive, Zero};
use serde::{Deserialize, Serialize};

use super::{Ciphertext, PaillierError, PublicKey};
use crate::encoding::biguint_b64u;

/// Current version of the Paillier wire formats.
pub const FORMAT_VERSION: u16 = 1;

/// Encodes a signed integer with |x| < N/2 as `x mod N`.
pub fn encode_signed(x: &BigInt, pk: &PublicKey) -> Result<BigUint, PaillierError> {
    let half = pk.n() >> 1u32;
    if x.magnitude() > &half || (x.sign() == Sign::Plus && x.magnitude() == &half) {
        return Err(PaillierError::PlaintextOutOfRange);
    }
    Ok(crate::arith::mod_floor(x, pk.n()))
}

/// Decodes `m ∈ [0, N)`: values above N/2 are negative.
pub fn decode_signed(m: &BigUint, pk: &PublicKey) -> BigInt {
    let half = pk.n() >> 1u32;
    if m > &half {
        BigInt::from_biguint(Sign::Minus, pk.n() - m)
    } else {
        BigInt::from_biguint(Sign::Plus, m.clone())
    }
}

/// Fixed-point encoding with a public decimal precision (scale 10^precision).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedPoint {
    /// Decimal digits after the point.
    pub precision: u32,
}

impl FixedPoint {
    /// Largest supported precision (f64 carries about 17 significant digits).
    pub const MAX_PRECISION: u32 = 30;

    /// A fixed-point encoding with `precision` decimals.
    pub fn new(precision: u32) -> Result<Self, PaillierError> {
        if precision > Self::MAX_PRECISION {
            return Err(PaillierError::NotRepresentable);
        }
        Ok(Self { precision })
    }

    /// 10^precision.
    pub fn scale(&self) -> BigUint {
        BigUint::from(10u8).pow(self.precision)
    }

    /// `round(x·10^precision)` as a signed integer.
    pub fn encode(&self, x: f64) -> Result<BigInt, PaillierError> {
        if !x.is_finite() {
            return Err(PaillierError::NotRepresentable);
        }
        let scaled = (x * 10f64.powi(self.precision as i32)).round();
        if !scaled.is_finite() || scaled.abs() >= 9.0e18 {
            // Beyond exact i64 range: go through the decimal expansion of x.
            let digits = format!("{:.*}", self.precision as usize, x).replace('.', "");
            return digits
                .parse::<BigInt>()
                .map_err(|_| PaillierError::NotRepresentable);
        }
        Ok(BigInt::from(scaled as i64))
    }

    /// Encodes into the plaintext space of `pk`.
    pub fn encode_for(&self, x: f64, pk: &PublicKey) -> Result<BigUint, PaillierError> {
        encode_signed(&self.encode(x)?, pk)
    }

    /// `v / 10^precision` as an `f64` (nearest).
    pub fn decode(&self, v: &BigInt) -> f64 {
        let scale = self.scale();
        let (q, r) = (v.magnitude() / &scale, v.magnitude() % &scale);
        let q = q.to_f64().unwrap_or(f64::INFINITY);
        let r = r.to_f64().unwrap_or(0.0) / scale.to_f64().unwrap_or(1.0);
        let x = q + r;
        if v.sign() == Sign::Minus { -x } else { x }
    }

    /// Decodes a plaintext of `pk` (signed).
    pub fn decode_from(&self, m: &BigUint, pk: &PublicKey) -> f64 {
        self.decode(&decode_signed(m, pk))
    }

    /// The encoding of a product of values encoded with `self` and `other`.
    pub fn product(&self, other: &FixedPoint) -> FixedPoint {
        FixedPoint {
            precision: self.precision + other.precision,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublicKeyWire {
    version: u16,
    #[serde(with = "biguint_b64u")]
    n: BigUint,
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        PublicKeyWire {
            version: FORMAT_VERSION,
            n: self.n().clone(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = PublicKeyWire::deserialize(d)?;
        if w.version != FORMAT_VERSION {
            return Err(serde::de::Error::custom(PaillierError::UnsupportedVersion(
                w.version,
            )));
        }
        PublicKey::new(w.n).map_err(serde::de::Error::custom)
    }
}

/// A ciphertext as it travels: `{"version": 1, "c": "<b64u>"}`. Check it against a key with
/// [`WireCiphertext::open`]; build one with [`WireCiphertext::seal`] (which applies the freshness
/// rule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireCiphertext {
    /// Format version.
    pub version: u16,
    /// The value in Z*_{N²}.
    #[serde(with = "biguint_b64u")]
    pub c: BigUint,
}

impl WireCiphertext {
    /// Prepares `ct` for sending (re-randomising it unless fresh; see [`Ciphertext::prepare_send`]).
    pub fn seal<R: rand::Rng + ?Sized>(ct: &mut Ciphertext, pk: &PublicKey, rng: &mut R) -> Self {
        Self {
            version: FORMAT_VERSION,
            c: ct.prepare_send(pk, rng).clone(),
        }
    }

    /// Checks version and range for `pk`; the result is not fresh.
    pub fn open(self, pk: &PublicKey) -> Result<Ciphertext, PaillierError> {
        if self.version != FORMAT_VERSION {
            return Err(PaillierError::UnsupportedVersion(self.version));
        }
        Ciphertext::from_value(pk, self.c)
    }
}

/// Serde adapter for signed big integers: a mandatory sign character (`+` or `-`; base64url itself
/// uses `-`, so the sign is never optional) followed by base64url of the magnitude (zero is `+`).
/// Bounded like [`crate::encoding::biguint_b64u`].
pub mod bigint_b64u {
    use super::*;
    use crate::encoding::{
        EncodingError, MAX_WIRE_BIGINT_BYTES, biguint_from_b64u, biguint_to_b64u,
    };
    use serde::{Deserializer, Serializer};

    /// Encodes a signed integer.
    pub fn to_string(x: &BigInt) -> String {
        let sign = if x.sign() == Sign::Minus { '-' } else { '+' };
        format!("{sign}{}", biguint_to_b64u(x.magnitude()))
    }

    /// Decodes a signed integer of at most `max_bytes` bytes; refuses a missing sign and `-0`.
    pub fn from_str(s: &str, max_bytes: usize) -> Result<BigInt, EncodingError> {
        let (neg, body) = if let Some(b) = s.strip_prefix('-') {
            (true, b)
        } else if let Some(b) = s.strip_prefix('+') {
            (false, b)
        } else {
            return Err(EncodingError::NonCanonical);
        };
        let mag = biguint_from_b64u(body, max_bytes)?;
        if neg && mag.is_zero() {
            return Err(EncodingError::NonCanonical);
        }
        Ok(BigInt::from_biguint(
            if neg { Sign::Minus } else { Sign::Plus },
            mag,
        ))
    }

    /// Serialises.
    pub fn serialize<S: Serializer>(x: &BigInt, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_string(x))
    }

    /// Deserialises (bounded).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BigInt, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        from_str(&s, MAX_WIRE_BIGINT_BYTES).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for `Option<BigInt>` (as [`bigint_b64u`]; use with `#[serde(default)]`).
pub mod opt_bigint_b64u {
    use super::*;
    use serde::{Deserializer, Serializer};

    /// Serialises (`None` as null; pair with `skip_serializing_if`).
    pub fn serialize<S: Serializer>(x: &Option<BigInt>, s: S) -> Result<S::Ok, S::Error> {
        match x {
            Some(v) => s.serialize_some(&bigint_b64u::to_string(v)),
            None => s.serialize_none(),
        }
    }

    /// Deserialises (bounded).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<BigInt>, D::Error> {
        let s = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        s.map(|s| {
            bigint_b64u::from_str(&s, crate::encoding::MAX_WIRE_BIGINT_BYTES)
                .map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// Serde adapter for `Vec<BigInt>` (each element as [`bigint_b64u`]).
pub mod bigint_vec_b64u {
    use super::*;
    use serde::{Deserializer, Serializer, ser::SerializeSeq};

    /// Serialises.
    pub fn serialize<S: Serializer>(v: &[BigInt], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for x in v {
            seq.serialize_element(&bigint_b64u::to_string(x))?;
        }
        seq.end()
    }

    /// Deserialises (each element bounded).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BigInt>, D::Error> {
        let v = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        v.iter()
            .map(|s| {
                bigint_b64u::from_str(s, crate::encoding::MAX_WIRE_BIGINT_BYTES)
                    .map_err(serde::de::Error::custom)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paillier::Keypair;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn signed_round_trip_and_bounds() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let kp = Keypair::generate(256, &mut rng).expect("kp");
        let pk = kp.public();
        let half = BigInt::from_biguint(Sign::Plus, pk.n() >> 1u32);
        for x in [
            BigInt::zero(),
            BigInt::from(-1),
            BigInt::from(1),
            -&half + 1,
            &half - 1,
            -half.clone(),
        ] {
            assert_eq!(decode_signed(&encode_signed(&x, pk).expect("fits"), pk), x);
        }
        assert_eq!(
            encode_signed(&half, pk),
            Err(PaillierError::PlaintextOutOfRange)
        );
        assert_eq!(
            encode_signed(&(-&half - 1), pk),
            Err(PaillierError::PlaintextOutOfRange)
        );
    }

    #[test]
    fn fixed_point_sums_and_products() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let kp = Keypair::generate(256, &mut rng).expect("kp");
        let pk = kp.public();
        let fp = FixedPoint::new(6).expect("precision");
        for _ in 0..30 {
            let a: f64 = rng.random_range(-1.0e6..1.0e6);
            let b: f64 = rng.random_range(-1.0e6..1.0e6);
            let k: f64 = rng.random_range(-100.0..100.0);
            let ca = pk
                .encrypt(&fp.encode_for(a, pk).expect("enc"), &mut rng)
                .expect("enc");
            let cb = pk
                .encrypt(&fp.encode_for(b, pk).expect("enc"), &mut rng)
                .expect("enc");
            let sum = fp.decode_from(&kp.decrypt(&pk.add(&ca, &cb)).expect("dec"), pk);
            assert!((sum - (a + b)).abs() < 2e-6, "{sum} vs {}", a + b);
            let kk = fp.encode(k).expect("enc");
            let prod = pk.mul_scalar(&ca, &kk);
            let got = fp
                .product(&fp)
                .decode_from(&kp.decrypt(&prod).expect("dec"), pk);
            // Exact up to the encoding's rounding of a and k.
            let want = fp.decode(&fp.encode(a).expect("enc")) * fp.decode(&kk);
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
            assert!((got - a * k).abs() < 1e-6 * (a.abs() + k.abs() + 1.0));
        }
        assert_eq!(fp.encode(f64::NAN), Err(PaillierError::NotRepresentable));
        assert!(FixedPoint::new(31).is_err());
        assert_eq!(
            fp.encode(1.0e20).expect("big"),
            "100000000000000000000000000"
                .parse::<BigInt>()
                .expect("int")
        );
    }

    #[test]
    fn wire_formats_are_versioned_and_checked() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let kp = Keypair::generate(256, &mut rng).expect("kp");
        let pk = kp.public();
        let json = serde_json::to_string(pk).expect("ser");
        assert!(json.starts_with("{\"version\":1,\"n\":\""));
        let back: PublicKey = serde_json::from_str(&json).expect("de");
        assert_eq!(&back, pk);
        assert!(
            serde_json::from_str::<PublicKey>(&json.replace("\"version\":1", "\"version\":2"))
                .is_err()
        );
        assert!(serde_json::from_str::<PublicKey>(&json.replace("{", "{\"x\":1,")).is_err());
        assert!(serde_json::from_str::<PublicKey>(r#"{"version":1,"n":"Dw"}"#).is_err());

        let mut ct = pk.encrypt(&BigUint::from(9u8), &mut rng).expect("enc");
        let w = WireCiphertext::seal(&mut ct, pk, &mut rng);
        let json = serde_json::to_string(&w).expect("ser");
        let back: WireCiphertext = serde_json::from_str(&json).expect("de");
        let opened = back.open(pk).expect("open");
        assert_eq!(kp.decrypt(&opened).expect("dec"), BigUint::from(9u8));
        let bad = WireCiphertext {
            version: 1,
            c: pk.n_squared().clone(),
        };
        assert_eq!(bad.open(pk), Err(PaillierError::CiphertextOutOfRange));

        // 0xf8.. encodes to a base64url string starting with '-': the sign must stay unambiguous.
        for x in [
            BigInt::from(-300),
            BigInt::zero(),
            BigInt::from(7),
            BigInt::from(0xf8u8),
            BigInt::from(-0xf8),
        ] {
            let s = bigint_b64u::to_string(&x);
            assert_eq!(bigint_b64u::from_str(&s, 8).expect("ok"), x);
        }
        assert_eq!(bigint_b64u::to_string(&BigInt::from(0xf8u8)), "+-A");
        assert!(bigint_b64u::from_str("-", 8).is_err());
        assert!(bigint_b64u::from_str("AQ", 8).is_err());
    }
}
