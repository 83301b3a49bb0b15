//! Thread versions of `pipe()` and `pipe_oneway()` (the process ones are `crate::pipe`):
//! items are moved, never serialized.

use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys::wait::{deadline_after, lock};

enum Msg<T> {
    Item(T),
    Bytes(Vec<u8>),
}

/// The channel and a message `poll` took out of it early.
type Peekable<T> = (mpsc::Receiver<Msg<T>>, Option<Msg<T>>);

struct RecvEnd<T> {
    rx: Mutex<Peekable<T>>,
}

impl<T> RecvEnd<T> {
    fn next(&self, deadline: Option<Instant>) -> Result<Msg<T>> {
        let mut g = lock(&self.rx);
        match g.1.take() {
            Some(m) => Ok(m),
            None => receive(&g.0, deadline),
        }
    }

    /// Whether a message (or the end of the stream) is there, waiting up to `timeout`. A
    /// message taken to find out is kept, under the same lock, for the next receive.
    fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
        let deadline = timeout.and_then(deadline_after);
        let mut g = lock(&self.rx);
        if g.1.is_some() {
            return Ok(true);
        }
        match receive(&g.0, deadline) {
            Ok(m) => {
                g.1 = Some(m);
                Ok(true)
            }
            Err(Error::Eof) => Ok(true),
            Err(Error::Timeout) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn recv(&self, deadline: Option<Instant>) -> Result<T> {
        match self.next(deadline)? {
            Msg::Item(t) => Ok(t),
            Msg::Bytes(_) => Err(Error::serialization(
                "a pipe message",
                "raw bytes were sent where an item was expected",
            )),
        }
    }

    fn recv_bytes(&self) -> Result<Vec<u8>> {
        match self.next(None)? {
            Msg::Bytes(b) => Ok(b),
            Msg::Item(_) => Err(Error::serialization(
                "a pipe message",
                "an item was sent where raw bytes were expected",
            )),
        }
    }
}

fn receive<T>(rx: &mpsc::Receiver<Msg<T>>, deadline: Option<Instant>) -> Result<Msg<T>> {
    match deadline {
        None => rx.recv().map_err(|_| Error::Eof),
        Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
            Ok(m) => Ok(m),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Eof),
        },
    }
}

fn send_msg<T>(tx: &mpsc::Sender<Msg<T>>, m: Msg<T>) -> Result<()> {
    tx.send(m).map_err(|_| Error::Eof)
}

/// One end of a two-way thread pipe.
/// The calls are the process version's: see [its example](crate::pipe).
pub struct Connection<T> {
    tx: mpsc::Sender<Msg<T>>,
    rx: RecvEnd<T>,
}
/// The sending end of a one-way thread pipe.
/// The calls are the process version's: see [its example](crate::pipe_oneway).
pub struct Sender<T> {
    tx: mpsc::Sender<Msg<T>>,
}
/// The receiving end of a one-way thread pipe.
/// The calls are the process version's: see [its example](crate::pipe_oneway).
pub struct Receiver<T> {
    rx: RecvEnd<T>,
}

macro_rules! thread_send_api {
    ($ty:ident) => {
        impl<T: Send> $ty<T> {
            /// Sends an item (moved: nothing is serialized between threads).
            pub fn send(&self, item: T) -> Result<()> {
                send_msg(&self.tx, Msg::Item(item))
            }
            /// Sends raw bytes as one message.
            pub fn send_bytes(&self, bytes: &[u8]) -> Result<()> {
                send_msg(&self.tx, Msg::Bytes(bytes.to_vec()))
            }
            /// Sends `size` bytes of `buf` from `offset` (the rest if `None`).
            pub fn send_bytes_range(
                &self,
                buf: &[u8],
                offset: usize,
                size: Option<usize>,
            ) -> Result<()> {
                let r = crate::pipe::check_range(buf.len(), offset, size)?;
                self.send_bytes(&buf[r])
            }
        }
    };
}
macro_rules! thread_recv_api {
    ($ty:ident) => {
        impl<T: Send> $ty<T> {
            /// Receives an item; `Eof` once the other end is dropped and nothing is left.
            pub fn recv(&self) -> Result<T> {
                self.rx.recv(None)
            }
            /// Like `recv`, at most `timeout`.
            pub fn recv_timeout(&self, timeout: Duration) -> Result<T> {
                self.rx.recv(deadline_after(timeout))
            }
            /// Receives a raw-bytes message.
            pub fn recv_bytes(&self) -> Result<Vec<u8>> {
                self.rx.recv_bytes()
            }
            /// Receives a raw-bytes message into `buf`; too small: the error carries it.
            pub fn recv_bytes_into(&self, buf: &mut [u8]) -> Result<usize> {
                let msg = self.rx.recv_bytes()?;
                if msg.len() > buf.len() {
                    return Err(Error::BufferTooSmall {
                        message: msg,
                        capacity: buf.len(),
                    });
                }
                buf[..msg.len()].copy_from_slice(&msg);
                Ok(msg.len())
            }
            /// Whether a message (or the end) is ready, waiting up to `timeout`.
            pub fn poll(&self, timeout: Option<Duration>) -> Result<bool> {
                self.rx.poll(timeout)
            }
        }
    };
}
thread_send_api!(Connection);
thread_send_api!(Sender);
thread_recv_api!(Connection);
thread_recv_api!(Receiver);

fn recv_end<T>(rx: mpsc::Receiver<Msg<T>>) -> RecvEnd<T> {
    RecvEnd {
        rx: Mutex::new((rx, None)),
    }
}

/// A two-way pipe between threads.
/// The calls are the process version's: see [its example](crate::pipe).
pub fn pipe<T: Send>() -> Result<(Connection<T>, Connection<T>)> {
    let (tx_a, rx_b) = mpsc::channel();
    let (tx_b, rx_a) = mpsc::channel();
    Ok((
        Connection {
            tx: tx_a,
            rx: recv_end(rx_a),
        },
        Connection {
            tx: tx_b,
            rx: recv_end(rx_b),
        },
    ))
}

/// A one-way pipe between threads: `(receiver, sender)`.
/// The calls are the process version's: see [its example](crate::pipe_oneway).
pub fn pipe_oneway<T: Send>() -> Result<(Receiver<T>, Sender<T>)> {
    let (tx, rx) = mpsc::channel();
    Ok((Receiver { rx: recv_end(rx) }, Sender { tx }))
}

debug_by_name!(<T> Connection, Sender, Receiver);
