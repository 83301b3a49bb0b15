//! The one serde codec every value crossing a process boundary goes through: task
//! arguments and results, queue items, pipe messages, manager requests, handshakes. Callers
//! never name the codec; changing it means changing this file, and [`CODEC_ID`], which the
//! build id and the Manager's greeting carry, so that mixed builds refuse each other.
//!
//! The codec is serde-wincode (over wincode), chosen by measurement over postcard, bitcode,
//! rmp-serde, CBOR and others (bench/CODECS.md; `multiproc-bench --codecs` reruns the
//! comparison). It writes bincode 1's layout: fixed-width little-endian integers, a u64 length
//! before every sequence, string and map, a u32 variant index. What we rely on, each covered
//! by a test below:
//! - serde's custom messages (`Error::custom("...")` in a `Serialize`/`Deserialize` impl)
//!   reach the user word for word;
//! - `serde_bytes` buffers are copied whole;
//! - decoding untrusted bytes never panics and never allocates more than the bytes can hold
//!   (each length is checked against what is left of the slice; the codec's own 4 MiB
//!   preallocation cap is therefore off, since it would refuse big strings and buffers);
//! - a sequence written item by item after [`push_seq_len`] decodes as a `Vec`.
//!
//! Not carried: `u128`/`i128` (the codec refuses them with an error saying so), and serde's
//! self-describing features (`deserialize_any`: untagged or internally tagged enums,
//! `flatten`), which bincode 1 did not carry either.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Fixed-width integers, bincode lengths, little endian, no preallocation cap (see above).
type Cfg =
    wincode::config::Configuration<true, { wincode::config::PREALLOCATION_SIZE_LIMIT_DISABLED }>;

/// Names the codec and its layout; part of the build id and the Manager's greeting.
pub(crate) const CODEC_ID: &str = "serde-wincode 0.1 (bincode-1 layout, fixint, u64 lengths)";

/// A failure to encode or decode; its `Display` is the codec's (custom messages included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CodecError(String);

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodecError {}

impl CodecError {
    fn from_codec(e: impl std::fmt::Display) -> Self {
        let msg = e.to_string();
        // serde's default for a format without 128-bit integers; say what to do instead.
        if msg == "u128 is not supported" || msg == "i128 is not supported" {
            return CodecError(format!(
                "{msg} by the wire codec (bincode 1's layout): send it as [u64; 2] or [u8; 16]"
            ));
        }
        CodecError(msg)
    }
}

/// `value`, encoded.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::new();
    encode_into(&mut out, value)?;
    Ok(out)
}

/// Appends `value`'s encoding to `out` (on error, `out` may hold part of it).
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), CodecError> {
    value
        .serialize(serde_wincode::Serializer::<_, Cfg>::new(out))
        .map_err(CodecError::from_codec)
}

/// Writes `value`'s encoding at the front of `buf` (which `encoded_len` sized), advancing it
/// past what was written.
pub(crate) fn encode_to_slice<T: Serialize + ?Sized>(
    buf: &mut &mut [u8],
    value: &T,
) -> Result<(), CodecError> {
    value
        .serialize(serde_wincode::Serializer::<_, Cfg>::new(buf))
        .map_err(CodecError::from_codec)
}

/// How many bytes `encode` would produce, without producing them.
pub(crate) fn encoded_len<T: Serialize>(value: &T) -> Result<u64, CodecError> {
    match <serde_wincode::SerdeCompat<T> as wincode::SchemaWrite<Cfg>>::size_of(value) {
        Ok(n) => Ok(n as u64),
        // The sizing path keeps only "serde error" of a custom message; encoding says it
        // whole, so fail the way `encode` would (this costs a real encode, on failure only).
        Err(e) => Err(encode(value)
            .err()
            .unwrap_or_else(|| CodecError::from_codec(e))),
    }
}

/// Decodes a whole value from `bytes`. Never panics on bad input, and allocates no more than
/// the bytes can hold: a length prefix is checked against what is left.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    T::deserialize(serde_wincode::Deserializer::<_, Cfg>::new(bytes))
        .map_err(CodecError::from_codec)
}

/// Appends the length of a sequence, as `encode` writes it before a slice's items: so a
/// sequence encoded item by item (to note where each ends) decodes as a `Vec`.
pub(crate) fn push_seq_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u64).to_le_bytes());
}

/// The bytes `push_seq_len` writes.
pub(crate) const SEQ_LEN_BYTES: usize = 8;

/// An error of our own making, in the codec's type (a size the framing cannot carry).
pub(crate) fn size_limit() -> CodecError {
    CodecError("the encoded value is larger than a frame can carry (4 GiB)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Shape {
        Unit,
        Pair(u8, i64),
        Named { name: String, tags: Vec<String> },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        id: u64,
        score: f64,
        flag: bool,
        ch: char,
        shape: Shape,
        maybe: Option<Option<u32>>,
        unit: Option<()>,
        map: BTreeMap<String, i16>,
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
    }

    fn record() -> Record {
        Record {
            id: u64::MAX - 7,
            score: -0.5,
            flag: true,
            ch: 'é',
            shape: Shape::Named {
                name: "n".into(),
                tags: vec!["a".into(), String::new()],
            },
            maybe: Some(None),
            unit: Some(()),
            map: [("k".to_string(), -3i16), ("z".to_string(), 9)]
                .into_iter()
                .collect(),
            blob: (0..=255u8).collect(),
        }
    }

    #[test]
    fn round_trips_what_serde_derives_including_nested_options() {
        let r = record();
        let bytes = encode(&r).unwrap();
        assert_eq!(encoded_len(&r).unwrap(), bytes.len() as u64);
        assert_eq!(decode::<Record>(&bytes).unwrap(), r);
        for s in [Shape::Unit, Shape::Pair(1, -1)] {
            assert_eq!(decode::<Shape>(&encode(&s).unwrap()).unwrap(), s);
        }
    }

    #[test]
    fn writes_bincode_1s_layout() {
        // Fixed-width little endian, u64 lengths, u32 variant index: peers and the
        // framing's offset arithmetic (u64 count, then items) depend on it.
        assert_eq!(
            encode(&(1u16, -2i32)).unwrap(),
            [1, 0, 0xfe, 0xff, 0xff, 0xff]
        );
        assert_eq!(encode("ab").unwrap(), [2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b']);
        assert_eq!(
            encode(&Shape::Pair(5, 1)).unwrap(),
            [1, 0, 0, 0, 5, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(encode(&Some(3u8)).unwrap(), [1, 3]);
        let mut by_items = Vec::new();
        push_seq_len(&mut by_items, 2);
        assert_eq!(by_items.len(), SEQ_LEN_BYTES);
        encode_into(&mut by_items, &7u32).unwrap();
        encode_into(&mut by_items, &8u32).unwrap();
        assert_eq!(by_items, encode(&vec![7u32, 8]).unwrap());
        assert_eq!(decode::<Vec<u32>>(&by_items).unwrap(), [7, 8]);
    }

    #[test]
    fn encode_to_slice_advances_and_refuses_overflow() {
        let v = (3u64, "xyz".to_string());
        let n = encoded_len(&v).unwrap() as usize;
        let mut backing = vec![0u8; n + 4];
        let mut buf: &mut [u8] = &mut backing;
        encode_to_slice(&mut buf, &v).unwrap();
        assert_eq!(buf.len(), 4);
        assert_eq!(decode::<(u64, String)>(&backing[..n]).unwrap(), v);
        let mut small = vec![0u8; n - 1];
        let mut buf: &mut [u8] = &mut small;
        assert!(encode_to_slice(&mut buf, &v).is_err());
    }

    struct Picky;
    impl Serialize for Picky {
        fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom(
                "picky refuses: 42 is not allowed",
            ))
        }
    }
    #[derive(Debug)]
    struct Strict;
    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let n = u8::deserialize(d)?;
            Err(serde::de::Error::custom(format!("strict refuses {n}")))
        }
    }

    #[test]
    fn custom_messages_reach_the_caller_word_for_word() {
        assert_eq!(
            encode(&Picky).unwrap_err().to_string(),
            "picky refuses: 42 is not allowed"
        );
        assert_eq!(
            encoded_len(&Picky).unwrap_err().to_string(),
            "picky refuses: 42 is not allowed"
        );
        let mut out = Vec::new();
        assert!(encode_into(&mut out, &(1u8, Picky))
            .unwrap_err()
            .to_string()
            .contains("42"));
        assert_eq!(
            decode::<Strict>(&[9]).unwrap_err().to_string(),
            "strict refuses 9"
        );
    }

    #[test]
    fn big_strings_and_buffers_decode_and_bytes_go_whole() {
        // Past wincode's default 4 MiB preallocation cap, which is off here.
        let s = "x".repeat(5 << 20);
        assert_eq!(
            decode::<String>(&encode(&s).unwrap()).unwrap().len(),
            s.len()
        );
        let b = serde_bytes::ByteBuf::from(vec![7u8; 6 << 20]);
        let bytes = encode(&b).unwrap();
        assert_eq!(bytes.len(), 8 + (6 << 20));
        assert_eq!(decode::<serde_bytes::ByteBuf>(&bytes).unwrap(), b);
    }

    #[test]
    fn lying_lengths_are_errors_not_allocations() {
        for claim in [u64::MAX, 1 << 40, 1 << 31, 200 << 20] {
            let mut bytes = claim.to_le_bytes().to_vec();
            bytes.extend_from_slice(b"abc");
            assert!(decode::<String>(&bytes).is_err());
            assert!(decode::<serde_bytes::ByteBuf>(&bytes).is_err());
            assert!(decode::<Vec<u64>>(&bytes).is_err());
            assert!(decode::<BTreeMap<u8, u8>>(&bytes).is_err());
        }
        assert!(decode::<u64>(&[1, 2, 3]).is_err());
        assert!(decode::<bool>(&[2]).is_err());
        assert!(decode::<char>(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode::<String>(&[1, 0, 0, 0, 0, 0, 0, 0, 0xff]).is_err());
        assert!(decode::<Shape>(&[9, 0, 0, 0]).is_err());
    }

    #[test]
    fn wide_integers_are_refused_with_advice() {
        let e = encode(&(1u8, 5u128)).unwrap_err().to_string();
        assert!(
            e.contains("u128 is not supported") && e.contains("[u64; 2]"),
            "{e}"
        );
        assert!(encode(&-5i128).unwrap_err().to_string().contains("i128"));
    }
}
