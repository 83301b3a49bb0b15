//! The handshake between a parent and a child it re-executed or forked: the child's HELLO
//! and how the parent checks it, the WELCOME a pool worker gets, and the identity a child is
//! given (`current_process()` there).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// First frame a worker sends. Its layout never changes, so any two versions can at least
/// tell each other apart.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Hello {
    pub version: u32,
    pub build_id: u64,
    pub pid: u32,
}

/// The parent's answer to HELLO: who the worker is and what to run before serving. The
/// worker's lane travels as the frame's last descriptor.
#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct Welcome {
    /// Task name and encoded one-element argument chunk.
    pub initializer: Option<(String, Vec<u8>)>,
    /// The worker's identity (`SpawnPoolWorker-N`, daemon; its pid is its own to fill in).
    pub me: ProcessInfo,
    /// The pool's process.
    pub parent: ProcessInfo,
    /// The pool's memory limits for its workers.
    pub limits: WorkerLimits,
    /// Threads to spread a chunk's items over (`threads_per_worker`; 1: none).
    pub threads: u32,
}

/// Memory limits a pool sets on its workers.
#[derive(Serialize, Deserialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WorkerLimits {
    /// Exit (to be replaced) after a job that leaves resident memory above this.
    pub max_rss: Option<u64>,
    /// The address-space limit (`RLIMIT_AS`), set before the initializer runs.
    pub address_space: Option<u64>,
}

/// Name, pid and daemon flag of a process, as `current_process` and `parent_process` report.
/// Example: [`current_process`](crate::current_process).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    /// The process's name (`MainProcess` for the program itself, `Process-N` by default,
    /// `SpawnPoolWorker-N` / `ForkServerPoolWorker-N` for pool workers).
    pub name: String,
    /// Its process id.
    pub pid: u32,
    /// Whether it is a daemon process.
    pub daemon: bool,
}

/// Validates a worker's (or fork server's) greeting against this process's protocol
/// version and task table (`build_id`).
pub(crate) fn check_hello(h: &Hello, build_id: u64) -> Result<()> {
    if h.version != super::PROTOCOL_VERSION {
        return Err(Error::Handshake(format!(
            "worker speaks protocol {}, this process speaks {}",
            h.version,
            super::PROTOCOL_VERSION
        )));
    }
    if h.build_id != build_id {
        return Err(Error::Handshake(format!(
            "worker {} runs a different build of the program (task table {:016x}, expected \
             {build_id:016x}); was the executable replaced while running?",
            h.pid, h.build_id,
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_rejects_another_protocol_or_build() {
        let good = Hello {
            version: super::super::PROTOCOL_VERSION,
            build_id: 42,
            pid: 1,
        };
        assert!(check_hello(&good, 42).is_ok());
        let old = Hello {
            version: super::super::PROTOCOL_VERSION + 1,
            ..good
        };
        assert!(
            matches!(check_hello(&old, 42), Err(Error::Handshake(m)) if m.contains("protocol"))
        );
        assert!(
            matches!(check_hello(&good, 43), Err(Error::Handshake(m)) if m.contains("different build"))
        );
    }
}
