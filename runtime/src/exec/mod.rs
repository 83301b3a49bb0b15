//! The backend-neutral execution core: options (`Opts`), results (`AsyncResult` and the
//! collector of a map's chunks), the `imap` window, the Python call family written once, the
//! life cycle every pool shares, and the `TaskPool` trait. It knows nothing of processes or
//! threads: each backend (`pool`, `dummy`) supplies the few primitives it builds on.

pub mod concurrent;
pub(crate) mod family;
pub(crate) mod imap;
pub(crate) mod lifecycle;
pub(crate) mod options;
pub(crate) mod progress;
pub(crate) mod result;
pub(crate) mod task_pool;

pub use imap::Imap;
#[cfg(feature = "futures")]
pub use imap::ImapStream;
pub use options::Opts;
pub use result::AsyncResult;
