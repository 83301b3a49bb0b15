//! Shared memory and the cross-process objects built on it.

pub(crate) mod fds;
pub(crate) mod handle;
pub(crate) mod lane;
pub(crate) mod segment;
pub(crate) mod waitlist;
