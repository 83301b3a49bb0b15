//! The wire protocol between a parent and its workers: length-prefixed frames over a Unix
//! stream socket, bodies encoded by `serial` (serde-wincode: bincode 1's layout). See ARCHITECTURE.md for the frame layout.

pub(crate) mod codec;
pub(crate) mod conn;
pub(crate) mod frame;
pub(crate) mod handshake;
pub(crate) mod serial;

#[cfg(test)]
mod fuzz;

/// Bumped whenever the frame layout or a message changes meaning.
pub(crate) const PROTOCOL_VERSION: u32 = 3;
