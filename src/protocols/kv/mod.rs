//! `kv`: an in-memory store speaking the Redis protocol (DESIGN.md §4.2).
//!
//! - [`resp`]: the request parser (RESP2 multibulk and inline commands);
//! - [`reply`]: reply writing in RESP2 or RESP3, and Redis's error words;
//! - [`engine`]: the keyspace (sixteen databases, expiry, watch versions);
//! - [`cmd`]: the command table and the commands that run on the keyspace;
//! - [`store`]: the keyspace as the server's sessions share it (one lock,
//!   blocked clients, counters);
//! - [`session`]: one connection (per-client state, transactions, blocking
//!   pops);
//! - [`aof`]: the append-only log for durability (`--data-dir`), replayed
//!   into the store at start;
//! - [`memory`]: what `INFO memory` reports.
//!
//! Every session of a server sees one keyspace. In the architectures whose
//! sessions live in one process (threads, reactors, tasks) they share one
//! [`store::Store`]. The forking architectures need a store every worker
//! process reaches; until that store process exists, `serve kv` refuses
//! them at start with a message saying so.

pub mod aof;
pub mod cmd;
pub mod engine;
pub mod memory;
pub mod reply;
pub mod resp;
pub mod session;
pub mod store;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::session::{ConnInfo, Placement, Protocol, Session};
use store::{Store, StoreConfig};

/// kv's per-server settings.
#[derive(Clone, Debug, Default)]
pub struct KvConfig {
    /// Close a connection idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// What `INFO`, `CONFIG` and `AUTH` see.
    pub store: StoreConfig,
}

/// The kv protocol.
pub struct Kv {
    config: KvConfig,
    store: Option<Arc<Store>>,
}

impl Kv {
    /// The protocol with `config`; its store is made by [`Protocol::start`].
    pub fn new(config: KvConfig) -> Kv {
        Kv {
            config,
            store: None,
        }
    }
}

impl Protocol for Kv {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn start(&mut self, placement: Placement) -> std::io::Result<()> {
        if placement == Placement::ManyProcesses {
            return Err(std::io::Error::other(format!(
                "kv does not run under the forking architectures yet ({}): their workers need a shared store process; use one of the architectures whose sessions share a process (serial, thread-per-connection, thread-pool, reactor, multi-reactor, reactor-pool, async)",
                self.config.store.arch
            )));
        }
        let store = Store::open(self.config.store.clone()).map_err(|e| {
            // The whole chain: the file and the offset, or the lock's holder.
            std::io::Error::other(format!("{e:#}"))
        })?;
        let store = Arc::new(store);
        store::start_expiry(&store)?;
        self.store = Some(store);
        Ok(())
    }

    fn wants_waker(&self) -> bool {
        true
    }

    fn stop(&self) {
        if let Some(store) = &self.store {
            store.close();
        }
    }

    fn new_session(&self, info: &ConnInfo, now: Instant) -> Box<dyn Session> {
        let store = match &self.store {
            Some(s) => Arc::clone(s),
            // A session before `start` (a unit test that skips it) gets a
            // store of its own.
            None => Arc::new(Store::new(self.config.store.clone())),
        };
        Box::new(session::KvSession::new(
            store,
            info,
            self.config.idle_timeout,
            None,
            now,
        ))
    }

    fn refusal(&self) -> &[u8] {
        b"-ERR max number of clients reached\r\n"
    }
}
