//! The manager's wire protocol: length-prefixed bincode messages after a mutual
//! HMAC-SHA256 challenge–response on the shared authentication key.
//!
//! Handshake (each nonce 32 random bytes):
//! 1. server → client: `MAGIC`, server nonce.
//! 2. client → server: HMAC(key, "client" ‖ server nonce), client nonce.
//! 3. server → client: `OK__` and HMAC(key, "server" ‖ client nonce), or `FAIL` and closes.
//!
//! The labels keep one side's answer from being replayed as the other's. Before the handshake
//! completes no message longer than the handshake's own is read.

use std::io::{Read, Write};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use sha2::Sha256;

use crate::error::{Error, Result};

pub(crate) const MAGIC: &[u8; 8] = b"MPMGR001";
const NONCE: usize = 32;
const MAC_LEN: usize = 32;
/// Largest message either side accepts after the handshake.
pub(crate) const MAX_MESSAGE: usize = 1 << 30;

/// Which kind of shared object.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Dict,
    List,
}

/// Keys, values and items travel as encoded bytes: the server never needs their types.
pub(crate) type Bytes = ByteBuf;

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Request {
    /// A new object, or (with a name) the object of that name, created if missing.
    Open {
        kind: Kind,
        name: Option<String>,
    },
    Dict {
        id: u64,
        op: DictOp,
    },
    List {
        id: u64,
        op: ListOp,
    },
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum DictOp {
    Get(Bytes),
    Insert(Bytes, Bytes),
    Remove(Bytes),
    Contains(Bytes),
    SetDefault(Bytes, Bytes),
    Len,
    Keys,
    Values,
    Items,
    Clear,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum ListOp {
    Push(Bytes),
    Extend(Vec<Bytes>),
    Get(i64),
    Set(i64, Bytes),
    Insert(i64, Bytes),
    Pop(Option<i64>),
    Len,
    All,
    Clear,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) enum Response {
    Id(u64),
    Done,
    Bool(bool),
    Len(u64),
    Value(Option<Bytes>),
    Values(Vec<Bytes>),
    Items(Vec<(Bytes, Bytes)>),
    /// The request was refused (bad index, wrong kind, unknown object).
    Refused(String),
}

fn mac(key: &[u8], label: &[u8], nonce: &[u8]) -> Result<Hmac<Sha256>> {
    // HMAC accepts keys of any length; the error cannot happen.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| Error::InvalidArgument("unusable authentication key".into()))?;
    m.update(label);
    m.update(nonce);
    Ok(m)
}

fn nonce() -> Result<[u8; NONCE]> {
    let mut n = [0u8; NONCE];
    let mut filled = 0;
    while filled < NONCE {
        filled += rustix::rand::getrandom(&mut n[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(n)
}

/// Random bytes for a fresh authentication key.
pub(crate) fn random_key() -> Result<Vec<u8>> {
    Ok(nonce()?.to_vec())
}

/// The server's side of the handshake. `Ok(false)`: the peer failed it (and was told).
pub(crate) fn accept(s: &mut (impl Read + Write), key: &[u8]) -> Result<bool> {
    let ours = nonce()?;
    s.write_all(MAGIC)?;
    s.write_all(&ours)?;
    s.flush()?;
    let mut answer = [0u8; MAC_LEN + NONCE];
    s.read_exact(&mut answer)?;
    let (their_mac, their_nonce) = answer.split_at(MAC_LEN);
    if mac(key, b"client", &ours)?.verify_slice(their_mac).is_err() {
        let _ = s.write_all(b"FAIL");
        let _ = s.flush();
        return Ok(false);
    }
    let reply = mac(key, b"server", their_nonce)?.finalize().into_bytes();
    s.write_all(b"OK__")?;
    s.write_all(&reply)?;
    s.flush()?;
    Ok(true)
}

/// The client's side of the handshake.
pub(crate) fn connect(s: &mut (impl Read + Write), key: &[u8]) -> Result<()> {
    let mut hello = [0u8; 8 + NONCE];
    s.read_exact(&mut hello)?;
    if &hello[..8] != MAGIC {
        return Err(Error::Protocol(
            "the peer is not a multiproc manager (or another version)".into(),
        ));
    }
    let ours = nonce()?;
    let answer = mac(key, b"client", &hello[8..])?.finalize().into_bytes();
    s.write_all(&answer)?;
    s.write_all(&ours)?;
    s.flush()?;
    let mut status = [0u8; 4];
    s.read_exact(&mut status)
        .map_err(|_| Error::AuthenticationFailed)?;
    if &status != b"OK__" {
        return Err(Error::AuthenticationFailed);
    }
    let mut their_mac = [0u8; MAC_LEN];
    s.read_exact(&mut their_mac)?;
    mac(key, b"server", &ours)?
        .verify_slice(&their_mac)
        .map_err(|_| Error::AuthenticationFailed)
}

pub(crate) fn send<T: Serialize>(s: &mut impl Write, msg: &T) -> Result<()> {
    // Length prefix first, filled in once the body is encoded behind it.
    let mut framed = vec![0u8; 4];
    bincode::serialize_into(&mut framed, msg)
        .map_err(|e| Error::serialization("a manager message", e))?;
    let len = framed.len() - 4;
    if len > MAX_MESSAGE {
        return Err(Error::TooLarge {
            what: format!("a manager message of {len} bytes"),
            limit: MAX_MESSAGE,
        });
    }
    framed[..4].copy_from_slice(&(len as u32).to_le_bytes());
    s.write_all(&framed)?;
    s.flush()?;
    Ok(())
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub(crate) fn recv<T: serde::de::DeserializeOwned>(s: &mut impl Read) -> Result<Option<T>> {
    let mut len = [0u8; 4];
    match s.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(Error::Protocol(format!(
            "a manager message announced {len} bytes"
        )));
    }
    // Memory grows as bytes arrive, not as announced.
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    s.take(len as u64).read_to_end(&mut body)?;
    if body.len() < len {
        return Err(Error::Protocol("a manager message was cut short".into()));
    }
    bincode::deserialize(&body)
        .map(Some)
        .map_err(|e| Error::Protocol(format!("bad manager message: {e}")))
}
