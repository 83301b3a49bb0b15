//! The manager's wire protocol: a mutual HMAC-SHA256 challenge–response on the shared key,
//! then length-prefixed messages (`wire::serial`), each authenticated with a key of this session.
//!
//! Handshake (each nonce 32 random bytes, `Ns` the server's, `Nc` the client's):
//! 1. server → client: `MAGIC`, `Ns`.
//! 2. client → server: HMAC(key, "client" ‖ `Ns`), `Nc`.
//! 3. server → client: `OK__` and HMAC(key, "server" ‖ `Nc`), or `FAIL` and closes.
//!
//! The labels keep one side's answer from being replayed as the other's. Before the handshake
//! completes no message longer than the handshake's own is read.
//!
//! Messages over TCP: `len` (u32 LE) ‖ body ‖ tag, the tag HMAC(direction key, seq ‖ `len` ‖
//! body), where the direction keys are HMAC(key, "client→server" ‖ `Ns` ‖ `Nc`) and likewise
//! "server→client", and `seq` (u64 LE, never sent) counts the messages sent that way on
//! this connection. A message injected, altered, replayed, reordered or cut fails its tag,
//! and the connection ends; a tag from one connection or direction is worth nothing in
//! another. The body is decoded only after its tag checked out.
//!
//! Messages over a Unix socket: `len` ‖ body, untagged ([`Messages::Untagged`]). Once the
//! handshake has authenticated both ends, only the two processes holding them can write to
//! the connection, and the kernel carries its bytes: there is no path on which to inject or
//! alter one, so a tag would guard nothing (and costs ~1 µs of each round trip's 9).
//!
//! The server's first message is a [`Welcome`] with its limits.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

#[cfg(test)]
use super::messages::*;
use crate::error::{Error, Result};

/// Names the protocol and the codec: bumped whenever either changes (a test pins the pair),
/// so a client of another build stops at the greeting instead of misreading messages.
pub(crate) const MAGIC: &[u8; 8] = b"MPMGR005";
const NONCE: usize = 32;
const MAC_LEN: usize = 32;
/// What the server sends first: `MAGIC` and its nonce.
pub(crate) const HELLO_LEN: usize = MAGIC.len() + NONCE;
/// The client's answer: its MAC of the server's nonce, and its own nonce.
pub(crate) const ANSWER_LEN: usize = MAC_LEN + NONCE;
/// Largest message either side accepts after the handshake (the server may set less).
pub(crate) const MAX_MESSAGE: usize = 1 << 30;
/// Bytes of a message body read (and, on the server, reserved) at a time.
const CHUNK: usize = 64 * 1024;

type HmacSha256 = Hmac<Sha256>;

fn keyed(key: &[u8]) -> Result<HmacSha256> {
    // HMAC accepts keys of any length; the error cannot happen.
    <HmacSha256 as Mac>::new_from_slice(key)
        .map_err(|_| Error::InvalidArgument("unusable authentication key".into()))
}

fn mac(key: &[u8], label: &[u8], nonces: &[&[u8]]) -> Result<HmacSha256> {
    let mut m = keyed(key)?;
    m.update(label);
    for n in nonces {
        m.update(n);
    }
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

/// Whether the messages of a connection carry tags, which depends on its transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Messages {
    /// Over TCP, where anything on the path could inject, alter or replay bytes.
    Tagged,
    /// Over a Unix socket, which only its two authenticated ends can write to.
    Untagged,
}

/// The keys and counters of one authenticated connection, as one side sees it.
#[cfg_attr(test, derive(Clone))]
pub(crate) struct Session {
    send: HmacSha256,
    recv: HmacSha256,
    sent: u64,
    received: u64,
    messages: Messages,
}

const TO_SERVER: &[u8] = "client→server".as_bytes();
const TO_CLIENT: &[u8] = "server→client".as_bytes();

impl Session {
    fn new(
        key: &[u8],
        server_nonce: &[u8],
        client_nonce: &[u8],
        server: bool,
        messages: Messages,
    ) -> Result<Session> {
        let direction = |label| -> Result<HmacSha256> {
            let k = mac(key, label, &[server_nonce, client_nonce])?
                .finalize()
                .into_bytes();
            keyed(&k)
        };
        let (to_server, to_client) = (direction(TO_SERVER)?, direction(TO_CLIENT)?);
        let (send, recv) = if server {
            (to_client, to_server)
        } else {
            (to_server, to_client)
        };
        Ok(Session {
            send,
            recv,
            sent: 0,
            received: 0,
            messages,
        })
    }

    fn tag(key: &HmacSha256, seq: u64, len: &[u8; 4], body: &[u8]) -> HmacSha256 {
        let mut m = key.clone();
        m.update(&seq.to_le_bytes());
        m.update(len);
        m.update(body);
        m
    }
}

/// The server's first step: the bytes to send, and its nonce to keep.
pub(crate) fn hello() -> Result<([u8; HELLO_LEN], [u8; NONCE])> {
    let ours = nonce()?;
    let mut out = [0u8; HELLO_LEN];
    out[..MAGIC.len()].copy_from_slice(MAGIC);
    out[MAGIC.len()..].copy_from_slice(&ours);
    Ok((out, ours))
}

/// The server's verdict on a client's answer to `ours`: the bytes to send, and the session
/// if the client proved it holds the key. Constant-time comparison.
pub(crate) fn verdict(
    key: &[u8],
    ours: &[u8; NONCE],
    answer: &[u8; ANSWER_LEN],
    messages: Messages,
) -> Result<(Vec<u8>, Option<Session>)> {
    let (their_mac, their_nonce) = answer.split_at(MAC_LEN);
    if mac(key, b"client", &[ours])?
        .verify_slice(their_mac)
        .is_err()
    {
        return Ok((b"FAIL".to_vec(), None));
    }
    let mut out = b"OK__".to_vec();
    out.extend_from_slice(&mac(key, b"server", &[their_nonce])?.finalize().into_bytes());
    Ok((
        out,
        Some(Session::new(key, ours, their_nonce, true, messages)?),
    ))
}

/// The server's side of the handshake on a blocking stream (whose timeouts bound it): the
/// session if the peer holds the key, else `AuthenticationFailed` (after telling it so).
/// Reads exactly the answer's length: an unauthenticated peer costs no more memory.
pub(crate) fn serve(
    s: &mut (impl Read + Write),
    key: &[u8],
    messages: Messages,
) -> Result<Session> {
    let (greeting, ours) = hello()?;
    s.write_all(&greeting)?;
    s.flush()?;
    let mut answer = [0u8; ANSWER_LEN];
    s.read_exact(&mut answer)?;
    let (out, session) = verdict(key, &ours, &answer, messages)?;
    // The refused peer may be gone already; its refusal is ours to report either way.
    let sent = s.write_all(&out).and_then(|()| s.flush());
    match session {
        Some(session) => {
            sent?;
            Ok(session)
        }
        None => Err(Error::AuthenticationFailed),
    }
}

/// The client's side of the handshake.
pub(crate) fn connect(
    s: &mut (impl Read + Write),
    key: &[u8],
    messages: Messages,
) -> Result<Session> {
    let mut hello = [0u8; HELLO_LEN];
    s.read_exact(&mut hello)?;
    if &hello[..MAGIC.len()] != MAGIC {
        return Err(Error::Protocol(
            "the peer is not a multiproc manager or listener (or another version)".into(),
        ));
    }
    let server_nonce = &hello[MAGIC.len()..];
    let ours = nonce()?;
    let answer = mac(key, b"client", &[server_nonce])?
        .finalize()
        .into_bytes();
    let mut out = [0u8; ANSWER_LEN];
    out[..MAC_LEN].copy_from_slice(&answer);
    out[MAC_LEN..].copy_from_slice(&ours);
    s.write_all(&out)?;
    s.flush()?;
    // A server that refuses says `FAIL` before it closes; a connection closed without it
    // was cut short (the server evicted it, say), which is an I/O error.
    let mut status = [0u8; 4];
    s.read_exact(&mut status)?;
    if &status != b"OK__" {
        return Err(Error::AuthenticationFailed);
    }
    let mut their_mac = [0u8; MAC_LEN];
    s.read_exact(&mut their_mac)?;
    mac(key, b"server", &[&ours])?
        .verify_slice(&their_mac)
        .map_err(|_| Error::AuthenticationFailed)?;
    Session::new(key, server_nonce, &ours, false, messages)
}

/// Whether an I/O error is a socket timeout (or a deadline's).
pub(crate) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Sends one message of an authenticated session, tagged if its transport needs it. A body
/// over `max` is refused (`TooLarge`) before anything is written, so the connection stays
/// usable.
pub(crate) fn send<T: Serialize>(
    s: &mut impl Write,
    session: &mut Session,
    msg: &T,
    max: usize,
) -> Result<()> {
    let mut framed = frame(msg, max)?;
    if session.messages == Messages::Tagged {
        let len: [u8; 4] = framed[..4].try_into().expect("four bytes");
        let tag = Session::tag(&session.send, session.sent, &len, &framed[4..]);
        framed.extend_from_slice(&tag.finalize().into_bytes());
    }
    session.sent += 1;
    s.write_all(&framed)?;
    s.flush()?;
    Ok(())
}

/// `msg` encoded behind its length prefix.
fn frame<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>> {
    let mut framed = vec![0u8; 4];
    crate::wire::serial::encode_into(&mut framed, msg)
        .map_err(|e| Error::serialization("a manager message", e))?;
    let len = framed.len() - 4;
    if len > max.min(MAX_MESSAGE) {
        return Err(Error::TooLarge {
            what: format!("a manager message of {len} bytes"),
            limit: max.min(MAX_MESSAGE),
        });
    }
    framed[..4].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(framed)
}

/// Reads one message of an authenticated session (its tag checked, if it has one);
/// `Ok(None)` at a clean end of stream (before its first byte). A body longer than `max` is refused as soon as its length is read; memory grows as
/// bytes arrive, not as the length announces, and `reserve(n)` is asked before each `n` more
/// bytes are taken in (it fails to stop the read). The body is decoded only once its tag
/// checked out.
pub(crate) fn recv<T: serde::de::DeserializeOwned>(
    s: &mut impl Read,
    session: &mut Session,
    max: usize,
    mut reserve: impl FnMut(usize) -> Result<()>,
) -> Result<Option<T>> {
    let Some(len) = read_len(s)? else {
        return Ok(None);
    };
    let n = u32::from_le_bytes(len) as usize;
    if n > max.min(MAX_MESSAGE) {
        return Err(Error::Protocol(format!(
            "a manager message announced {n} bytes, over the limit of {}",
            max.min(MAX_MESSAGE)
        )));
    }
    let mut body = Vec::new();
    while body.len() < n {
        let step = (n - body.len()).min(CHUNK);
        reserve(step)?;
        body.reserve_exact(step);
        let got = s.by_ref().take(step as u64).read_to_end(&mut body)?;
        if got < step {
            return Err(cut_short());
        }
    }
    if session.messages == Messages::Tagged {
        let mut tag = [0u8; MAC_LEN];
        s.read_exact(&mut tag).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => cut_short(),
            _ => e.into(),
        })?;
        Session::tag(&session.recv, session.received, &len, &body)
            .verify_slice(&tag)
            .map_err(|_| {
                Error::Protocol(
                    "a manager message failed authentication (altered, injected or replayed)"
                        .into(),
                )
            })?;
    }
    session.received += 1;
    crate::wire::serial::decode(&body)
        .map(Some)
        .map_err(|e| Error::Protocol(format!("bad manager message: {e}")))
}

fn cut_short() -> Error {
    Error::Protocol("a manager message was cut short".into())
}

/// A message's length prefix; `None` at the end of stream before its first byte. A stream
/// that ends within the prefix was cut short, which is an error.
fn read_len(s: &mut impl Read) -> Result<Option<[u8; 4]>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        match s.read(&mut len[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(cut_short()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Some(len))
}

/// Unauthenticated messages, for the owner's control channel to its server (a socket pair
/// nobody else holds).
pub(crate) fn send_plain<T: Serialize>(s: &mut impl Write, msg: &T) -> Result<()> {
    s.write_all(&frame(msg, MAX_MESSAGE)?)?;
    s.flush()?;
    Ok(())
}

/// Reads one message sent with [`send_plain`]; `Ok(None)` at a clean end of stream.
pub(crate) fn recv_plain<T: serde::de::DeserializeOwned>(s: &mut impl Read) -> Result<Option<T>> {
    let Some(len) = read_len(s)? else {
        return Ok(None);
    };
    let n = u32::from_le_bytes(len) as usize;
    if n > CHUNK {
        return Err(Error::Protocol(format!(
            "a control message announced {n} bytes"
        )));
    }
    let mut body = vec![0u8; n];
    s.read_exact(&mut body)?;
    crate::wire::serial::decode(&body)
        .map(Some)
        .map_err(|e| Error::Protocol(format!("bad control message: {e}")))
}

/// A stream whose reads end by a deadline: each read waits at most what is left of it (so
/// a peer sending a byte now and then cannot stretch one message past it). No deadline:
/// reads wait as long as it takes.
pub(crate) struct Deadlined<S> {
    pub s: S,
    deadline: Option<Instant>,
    /// The read timeout now set on the socket.
    set: Option<Duration>,
    /// Whether the next read that finds nothing buffered polls briefly first.
    poll_next: bool,
}

/// What a [`Deadlined`] stream needs: a socket read timeout.
pub(crate) trait ReadTimeout {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()>;
}

impl<S: Read + ReadTimeout> Deadlined<S> {
    pub(crate) fn new(s: S) -> Deadlined<S> {
        Deadlined {
            s,
            deadline: None,
            // Unknown: the first read with a deadline sets one, one without clears it.
            set: Some(Duration::MAX),
            poll_next: false,
        }
    }

    pub(crate) fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    /// Makes the next read poll briefly (see `recv_briefly`) before it sleeps: for a read
    /// whose data usually follows within microseconds (a reply, a client's next request).
    /// The poll reads what comes, so no second call is needed to take it.
    pub(crate) fn poll_next(&mut self) {
        self.poll_next = true;
    }
}

impl<S: Read + ReadTimeout + AsFd> Read for Deadlined<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if std::mem::take(&mut self.poll_next) {
            if let Some(got) = crate::sys::wait::recv_briefly(self.s.as_fd(), self.deadline, buf) {
                return got;
            }
        }
        let want = match self.deadline {
            None => None,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::ErrorKind::TimedOut.into());
                }
                Some(left)
            }
        };
        // A timeout already set that ends near the deadline (at most 1/64 of what is left
        // before it, 1 ms after it) is as good, and saves a system call on most reads of a
        // connection used call after call.
        let close_enough = match (self.set, want) {
            (None, None) => true,
            (Some(cur), Some(left)) => {
                cur <= left + Duration::from_millis(1) && left.saturating_sub(cur) <= left / 64
            }
            _ => false,
        };
        if !close_enough {
            self.s.set_read_timeout(want)?;
            self.set = want;
        }
        self.s.read(buf)
    }
}

impl<S: Write> Write for Deadlined<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.s.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.s.flush()
    }
}

#[cfg(test)]
mod tests {
    //! The manager's decoders fed random and mutated input (`sys::fuzz`): the handshake on
    //! both sides, authenticated messages, control messages. None may panic; no mutated
    //! message passes authentication; memory is asked for only as bytes arrive.

    use std::io::{Cursor, Read, Write};

    use super::*;
    use crate::sys::fuzz::Inputs;

    const KEY: &[u8] = b"fuzzing key";

    #[test]
    fn the_greeting_names_this_codec() {
        // Changing the codec (or the messages) without bumping MAGIC would let two builds
        // talk past each other: bump both, then this pair.
        assert_eq!(
            (MAGIC, crate::wire::serial::CODEC_ID),
            (
                b"MPMGR005",
                "serde-wincode 0.1 (bincode-1 layout, fixint, u64 lengths)"
            )
        );
    }

    /// A client and a server session of one handshake, run over a socket pair.
    fn sessions(messages: Messages) -> (Session, Session) {
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            let (hello, ours) = hello().unwrap();
            b.write_all(&hello).unwrap();
            let mut answer = [0u8; ANSWER_LEN];
            b.read_exact(&mut answer).unwrap();
            let (out, session) = verdict(KEY, &ours, &answer, messages).unwrap();
            b.write_all(&out).unwrap();
            session.unwrap()
        });
        let client = connect(&mut a, KEY, messages).unwrap();
        (client, server.join().unwrap())
    }

    /// Reads from `input`, writes nowhere: a peer that says what it likes.
    struct Scripted(Cursor<Vec<u8>>);

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn requests() -> Vec<Request> {
        vec![
            Request::Open {
                kind: Kind::Dict,
                name: Some("d".into()),
                tag: 5,
            },
            Request::Dict {
                id: 1,
                op: DictOp::Insert(Bytes::from(vec![1, 2]), Bytes::from(vec![3; 40])),
            },
            Request::List {
                id: 2,
                op: ListOp::Extend(vec![Bytes::from(vec![9]); 3]),
            },
            Request::List {
                id: 2,
                op: ListOp::Insert(-1, Bytes::from(vec![])),
            },
        ]
    }

    /// Reads one request from `input` as `server`'s next message, checking that memory was
    /// asked for as bytes arrived (never much more than the input holds): what the read gave,
    /// and how many bytes it took.
    fn recv_hostile(input: &[u8], server: &Session) -> (Result<Option<Request>>, usize) {
        let mut r = Cursor::new(input);
        let mut reserved = 0;
        let got = recv::<Request>(&mut r, &mut server.clone(), 1 << 20, |n| {
            reserved += n;
            Ok(())
        });
        assert!(
            reserved <= input.len() + 64 * 1024,
            "{reserved} for {}",
            input.len()
        );
        (got, r.position() as usize)
    }

    #[test]
    fn authenticated_messages() {
        let mut gen = Inputs::new("manager messages");
        let (mut client, server) = sessions(Messages::Tagged);
        // Each seed is the first message of the connection (sequence number 0).
        let seeds: Vec<Vec<u8>> = requests()
            .iter()
            .map(|r| {
                let mut c = client.clone();
                let mut out = Vec::new();
                send(&mut out, &mut c, r, MAX_MESSAGE).unwrap();
                out
            })
            .collect();
        for (seed, req) in seeds.iter().zip(requests()) {
            let mut s = server.clone();
            let got: Request = recv(&mut Cursor::new(seed), &mut s, MAX_MESSAGE, |_| Ok(()))
                .unwrap()
                .unwrap();
            assert_eq!(format!("{got:?}"), format!("{req:?}"));
        }
        // A valid message out of turn (sequence 1 read as 0) fails too.
        let mut out = Vec::new();
        send(&mut out, &mut client, &requests()[0], MAX_MESSAGE).unwrap();
        send(&mut out, &mut client, &requests()[0], MAX_MESSAGE).unwrap();
        let second = out[out.len() / 2..].to_vec();
        assert!(recv::<Request>(
            &mut Cursor::new(&second),
            &mut server.clone(),
            MAX_MESSAGE,
            |_| Ok(())
        )
        .is_err());
        for _ in 0..Inputs::iterations() {
            let input = gen.input(&seeds);
            if let (Ok(Some(_)), used) = recv_hostile(&input, &server) {
                // Only an unchanged message passes (bytes after it are not its own).
                assert!(
                    seeds.iter().any(|s| s[..] == input[..used]),
                    "a mutated message passed"
                );
            }
        }
    }

    #[test]
    fn untagged_messages() {
        // Over a Unix socket a message is its length and body, nothing more; whatever comes
        // in place of one decodes or fails cleanly, and memory is asked for as bytes arrive.
        let mut gen = Inputs::new("untagged manager messages");
        let (client, server) = sessions(Messages::Untagged);
        let (tagged, _) = sessions(Messages::Tagged);
        let mut seeds = Vec::new();
        for req in requests() {
            let (mut out, mut with_tag) = (Vec::new(), Vec::new());
            send(&mut out, &mut client.clone(), &req, MAX_MESSAGE).unwrap();
            send(&mut with_tag, &mut tagged.clone(), &req, MAX_MESSAGE).unwrap();
            assert_eq!(out.len() + MAC_LEN, with_tag.len());
            assert_eq!(out[..], with_tag[..out.len()]);
            let mut r = Cursor::new(&out);
            let got: Request = recv(&mut r, &mut server.clone(), MAX_MESSAGE, |_| Ok(()))
                .unwrap()
                .unwrap();
            assert_eq!(format!("{got:?}"), format!("{req:?}"));
            assert_eq!(r.position() as usize, out.len());
            // Cut anywhere after its first byte, it is an error, not a message.
            for cut in 1..out.len() {
                let got = recv::<Request>(
                    &mut Cursor::new(&out[..cut]),
                    &mut server.clone(),
                    MAX_MESSAGE,
                    |_| Ok(()),
                );
                assert!(got.is_err(), "cut at {cut} of {}", out.len());
            }
            seeds.push(out);
        }
        for _ in 0..Inputs::iterations() {
            let _ = recv_hostile(&gen.input(&seeds), &server);
        }
    }

    #[test]
    fn handshakes() {
        let mut gen = Inputs::new("manager handshakes");
        let (hello_bytes, ours) = hello().unwrap();
        // A genuine answer, from a client run against that hello.
        let mut answer = mac(KEY, b"client", &[&ours])
            .unwrap()
            .finalize()
            .into_bytes()
            .to_vec();
        answer.extend_from_slice(&[5u8; NONCE]);
        let valid: [u8; ANSWER_LEN] = answer.clone().try_into().unwrap();
        assert!(verdict(KEY, &ours, &valid, Messages::Tagged)
            .unwrap()
            .1
            .is_some());
        let mut server_side = hello_bytes.to_vec();
        server_side.extend_from_slice(b"OK__");
        server_side.extend_from_slice(&[0u8; MAC_LEN]);
        let seeds = vec![answer.clone(), server_side.clone()];
        for _ in 0..Inputs::iterations() {
            let input = gen.input(&seeds);
            // The server's verdict on an answer without the genuine MAC is FAIL. (A changed
            // client nonce passes here, but then the client rejects the server's MAC, and
            // the two sides' session keys differ.)
            if let Ok(a) = <[u8; ANSWER_LEN]>::try_from(&input[..]) {
                let (out, session) = verdict(KEY, &ours, &a, Messages::Tagged).unwrap();
                let genuine = a[..MAC_LEN] == valid[..MAC_LEN];
                assert_eq!(session.is_some(), genuine);
                assert_eq!(out.starts_with(b"OK__"), genuine);
            }
            // A client facing a peer that says anything fails cleanly (no server MAC can be
            // guessed).
            assert!(connect(
                &mut Scripted(Cursor::new(input.clone())),
                KEY,
                Messages::Tagged
            )
            .is_err());
            let _ = recv_plain::<std::result::Result<String, String>>(&mut Cursor::new(&input));
        }
    }
}
