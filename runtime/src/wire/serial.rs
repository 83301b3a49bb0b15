//! The one serde codec every value crossing a process boundary goes through: task
//! arguments and results, queue items, pipe messages, manager requests, handshakes. Callers
//! never name the codec; changing it means changing this file (and the build id the
//! handshake checks, so that mixed builds refuse each other).
//!
//! Today this is bincode 1.3 with its default (fixed-width integer) encoding. Errors keep
//! serde's custom messages (a `Serialize` impl's `Error::custom("...")` reaches the user),
//! and `serde_bytes` buffers are copied whole.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A failure to encode or decode; its `Display` is the codec's (custom messages included).
pub(crate) type CodecError = bincode::Error;

/// `value`, encoded.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serialize(value)
}

/// Appends `value`'s encoding to `out`.
pub(crate) fn encode_into<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), CodecError> {
    bincode::serialize_into(out, value)
}

/// Writes `value`'s encoding at the front of `buf` (which `encoded_len` sized), advancing it
/// past what was written.
pub(crate) fn encode_to_slice<T: Serialize + ?Sized>(
    buf: &mut &mut [u8],
    value: &T,
) -> Result<(), CodecError> {
    bincode::serialize_into(buf, value)
}

/// How many bytes `encode` would produce, without producing them.
pub(crate) fn encoded_len<T: Serialize + ?Sized>(value: &T) -> Result<u64, CodecError> {
    bincode::serialized_size(value)
}

/// Decodes a whole value from `bytes`. Never panics on bad input, and allocates no more than
/// the bytes can hold: a length prefix is checked against what is left.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    bincode::deserialize(bytes)
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
    Box::new(bincode::ErrorKind::SizeLimit)
}
