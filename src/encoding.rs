//! Wire encodings shared by every message kind.
//!
//! Big integers travel as base64url (no padding) of their big-endian magnitude; byte strings as
//! base64url. Decoders take a size bound and check it *before* any big-number work, so a peer cannot
//! make us allocate or compute on a value larger than the protocol allows.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use num_bigint::BigUint;

/// Errors decoding wire values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodingError {
    /// Not valid base64url without padding.
    #[error("malformed base64url")]
    BadBase64,
    /// Longer than the bound for this field.
    #[error("value of {len} bytes exceeds the bound of {max}")]
    TooLong {
        /// decoded (or implied) length in bytes
        len: usize,
        /// the bound
        max: usize,
    },
    /// A big integer with a leading zero byte (non-canonical) or an empty string for a non-zero value.
    #[error("non-canonical big integer")]
    NonCanonical,
}

/// Base64url (no padding) of `bytes`.
pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url (no padding), refusing more than `max` decoded bytes before decoding.
pub fn b64u_decode(s: &str, max: usize) -> Result<Vec<u8>, EncodingError> {
    let implied = s.len() / 4 * 3 + (s.len() % 4).saturating_sub(1);
    if implied > max {
        return Err(EncodingError::TooLong { len: implied, max });
    }
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| EncodingError::BadBase64)
}

/// Encodes a big integer: base64url of its minimal big-endian magnitude (zero is the empty string).
pub fn biguint_to_b64u(n: &BigUint) -> String {
    if n.bits() == 0 {
        return String::new();
    }
    b64u(&n.to_bytes_be())
}

/// Decodes a big integer of at most `max_bytes` bytes; refuses leading zero bytes.
pub fn biguint_from_b64u(s: &str, max_bytes: usize) -> Result<BigUint, EncodingError> {
    let bytes = b64u_decode(s, max_bytes)?;
    if bytes.first() == Some(&0) {
        return Err(EncodingError::NonCanonical);
    }
    Ok(BigUint::from_bytes_be(&bytes))
}

/// Serde adapter for `BigUint` fields: `#[serde(with = "caucus::encoding::biguint_b64u")]`.
///
/// Deserialisation bounds the value at [`MAX_WIRE_BIGINT_BYTES`]; protocol code checks tighter,
/// field-specific bounds itself.
pub mod biguint_b64u {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as base64url big-endian.
    pub fn serialize<S: Serializer>(n: &BigUint, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&biguint_to_b64u(n))
    }

    /// Deserialises from base64url big-endian, bounded.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BigUint, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        biguint_from_b64u(&s, MAX_WIRE_BIGINT_BYTES).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for `Vec<BigUint>` fields (each element bounded like [`biguint_b64u`]).
pub mod biguint_vec_b64u {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    /// Serialises as a JSON array of base64url strings.
    pub fn serialize<S: Serializer>(v: &[BigUint], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for n in v {
            seq.serialize_element(&biguint_to_b64u(n))?;
        }
        seq.end()
    }

    /// Deserialises a JSON array of base64url strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BigUint>, D::Error> {
        let v = Vec::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        v.iter()
            .map(|s| biguint_from_b64u(s, MAX_WIRE_BIGINT_BYTES).map_err(serde::de::Error::custom))
            .collect()
    }
}

/// Packs big integers as one byte string: a 2-byte big-endian width w, then every value as w
/// big-endian bytes (w is the widest value's length; the empty vector is the empty string).
pub fn biguint_vec_pack(v: &[BigUint]) -> Vec<u8> {
    let width = v.iter().map(|x| x.bits().div_ceil(8)).max().unwrap_or(0) as usize;
    if v.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(2 + width * v.len());
    out.extend_from_slice(&(width as u16).to_be_bytes());
    for x in v {
        let start = out.len();
        out.resize(start + width, 0);
        let slot = &mut out[start..];
        let mut end = width;
        for d in x.iter_u64_digits() {
            let take = end.min(8);
            slot[end - take..end].copy_from_slice(&d.to_be_bytes()[8 - take..]);
            end -= take;
            if end == 0 {
                break;
            }
        }
    }
    out
}

/// Unpacks [`biguint_vec_pack`]: refuses a width above `max_width` bytes or a length that is not
/// a whole number of values.
pub fn biguint_vec_unpack(bytes: &[u8], max_width: usize) -> Result<Vec<BigUint>, EncodingError> {
    let Some((w, body)) = bytes.split_first_chunk::<2>() else {
        return if bytes.is_empty() {
            Ok(Vec::new())
        } else {
            Err(EncodingError::NonCanonical)
        };
    };
    let width = usize::from(u16::from_be_bytes(*w));
    if width > max_width {
        return Err(EncodingError::TooLong {
            len: width,
            max: max_width,
        });
    }
    if width == 0 || body.is_empty() || body.len() % width != 0 {
        return Err(EncodingError::NonCanonical);
    }
    Ok(body
        .chunks_exact(width)
        .map(BigUint::from_bytes_be)
        .collect())
}

/// Serde adapter for `Vec<BigUint>` fields as one compact base64url string of fixed-width values
/// ([`biguint_vec_pack`]): each value bounded by [`MAX_WIRE_BIGINT_BYTES`], the whole string by
/// [`MAX_WIRE_VEC_BYTES`], both checked before decoding. Protocol code checks counts and ranges.
pub mod biguint_vec_packed {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as base64url of the packed bytes.
    pub fn serialize<S: Serializer>(v: &[BigUint], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b64u(&biguint_vec_pack(v)))
    }

    /// Deserialises, bounded.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BigUint>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let bytes = b64u_decode(&s, MAX_WIRE_VEC_BYTES).map_err(serde::de::Error::custom)?;
        biguint_vec_unpack(&bytes, MAX_WIRE_BIGINT_BYTES).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for byte strings as base64url: `#[serde(with = "caucus::encoding::bytes_b64u")]`.
pub mod bytes_b64u {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as base64url.
    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b64u(b))
    }

    /// Deserialises from base64url (bounded by [`MAX_WIRE_BYTES`]).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        b64u_decode(&s, MAX_WIRE_BYTES).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for fixed-size byte arrays as base64url: `#[serde(with = "caucus::encoding::array_b64u")]`.
/// Deserialisation refuses any other length.
pub mod array_b64u {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as base64url.
    pub fn serialize<S: Serializer, const N: usize>(b: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&b64u(b))
    }

    /// Deserialises exactly `N` bytes from base64url.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let v = b64u_decode(&s, N).map_err(serde::de::Error::custom)?;
        <[u8; N]>::try_from(v.as_slice())
            .map_err(|_| serde::de::Error::custom(format!("expected {N} bytes")))
    }
}

/// Serde adapter for fixed-size byte arrays as lowercase hex: `#[serde(with = "caucus::encoding::array_hex")]`.
/// Deserialisation refuses any other length and uppercase digits.
pub mod array_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as lowercase hex.
    pub fn serialize<S: Serializer, const N: usize>(b: &[u8; N], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(b))
    }

    /// Deserialises exactly `N` bytes from lowercase hex.
    pub fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
        d: D,
    ) -> Result<[u8; N], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let ok = s.len() == 2 * N
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let mut out = [0u8; N];
        if !ok || hex::decode_to_slice(s.as_bytes(), &mut out).is_err() {
            return Err(serde::de::Error::custom(format!(
                "expected {N} bytes of lowercase hex"
            )));
        }
        Ok(out)
    }
}

/// Upper bound for any big integer on the wire (16384-bit values: N² for 8192-bit N).
pub const MAX_WIRE_BIGINT_BYTES: usize = 2048;

/// Upper bound for a byte string carried inside a JSON message.
pub const MAX_WIRE_BYTES: usize = 1 << 20;

/// Upper bound for a packed vector of big integers ([`biguint_vec_packed`]): 15 MiB, inside the
/// default 16 MiB frame.
pub const MAX_WIRE_VEC_BYTES: usize = 15 << 20;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bigint_round_trip_and_bounds() {
        for v in [0u64, 1, 255, 256, u64::MAX] {
            let n = BigUint::from(v);
            let s = biguint_to_b64u(&n);
            assert_eq!(biguint_from_b64u(&s, 8), Ok(n));
        }
        assert_eq!(
            biguint_from_b64u("AAE", 8),
            Err(EncodingError::NonCanonical)
        );
        assert!(matches!(
            biguint_from_b64u(&"A".repeat(40), 8),
            Err(EncodingError::TooLong { .. })
        ));
        assert_eq!(biguint_from_b64u("a+b/", 8), Err(EncodingError::BadBase64));
        assert_eq!(biguint_from_b64u("AQ==", 8), Err(EncodingError::BadBase64));
    }

    #[test]
    fn packed_vectors_round_trip_and_refuse_bad_shapes() {
        let v: Vec<BigUint> = [0u64, 1, 255, 256, u64::MAX]
            .iter()
            .map(|&x| BigUint::from(x))
            .collect();
        let packed = biguint_vec_pack(&v);
        assert_eq!(packed.len(), 2 + 8 * v.len());
        assert_eq!(biguint_vec_unpack(&packed, 8), Ok(v.clone()));
        assert_eq!(biguint_vec_pack(&[]), Vec::<u8>::new());
        assert_eq!(biguint_vec_unpack(&[], 8), Ok(vec![]));
        assert_eq!(
            biguint_vec_unpack(&[0, 0, 0], 8),
            Err(EncodingError::NonCanonical),
            "zero width"
        );
        assert_eq!(
            biguint_vec_unpack(&[0, 2, 1, 2, 3], 8),
            Err(EncodingError::NonCanonical),
            "ragged"
        );
        assert_eq!(
            biguint_vec_unpack(&[0, 2], 8),
            Err(EncodingError::NonCanonical)
        );
        assert_eq!(
            biguint_vec_unpack(&[7], 8),
            Err(EncodingError::NonCanonical)
        );
        assert!(matches!(
            biguint_vec_unpack(&[0, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9], 8),
            Err(EncodingError::TooLong { len: 9, max: 8 })
        ));
        // The serde adapter bounds the whole string before decoding.
        #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
        struct W {
            #[serde(with = "biguint_vec_packed")]
            v: Vec<BigUint>,
        }
        let json = serde_json::to_string(&W { v: v.clone() }).expect("ser");
        assert_eq!(serde_json::from_str::<W>(&json).expect("de").v, v);
        let huge = format!(
            "{{\"v\":\"{}\"}}",
            "A".repeat(MAX_WIRE_VEC_BYTES / 3 * 4 + 8)
        );
        assert!(serde_json::from_str::<W>(&huge).is_err());
    }
}
