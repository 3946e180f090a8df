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
//! - [`dump`]: the records a rewrite of the log writes per key (the engine
//!   takes the rewrite's snapshot; the store's `kv-rewrite` thread writes it);
//! - [`memory`]: what `INFO memory` reports;
//! - [`relay`]: a worker's side of a connection under the forking
//!   architectures.
//!
//! Every session of a server sees one keyspace. In the architectures whose
//! sessions live in one process (threads, reactors, tasks) they share one
//! [`store::Store`]. The forking architectures (process-per-connection and
//! the prefork family) run the store in a process of its own, the
//! protocol's companion: the server forks it before the workers and keeps
//! it alive. A worker's session is a [`relay::RelaySession`] that carries
//! its client's bytes to the store process over a Unix-domain stream and the
//! replies back; there a whole [`session::KvSession`] serves it, so
//! `MULTI`, blocking pops and every other command behave as they do with
//! threads. The cost is one more hop per request (measured in the README).

pub mod aof;
pub mod cmd;
pub mod dump;
pub mod engine;
pub mod memory;
pub mod relay;
pub mod reply;
pub mod resp;
pub mod session;
pub mod store;

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::net::Listeners;
use crate::session::{Companion, ConnInfo, Placement, Protocol, Session};
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
    /// Under the forking architectures: the store process's listener,
    /// which workers' sessions reach.
    link: Option<StoreLink>,
    /// In the store process: the line every worker's stream opens with.
    secret: Option<Vec<u8>>,
}

/// The store process of a forking server, as its workers and its keeper
/// see it.
struct StoreLink {
    config: KvConfig,
    listeners: Listeners,
    /// The listener's name in the abstract namespace.
    name: String,
    /// A random line a stream must open with: an abstract socket has no
    /// permissions (any local user may connect), the store serves only
    /// this server's workers.
    secret: Vec<u8>,
}

impl Kv {
    /// The protocol with `config`; its store is made by [`Protocol::start`].
    pub fn new(config: KvConfig) -> Kv {
        Kv {
            config,
            store: None,
            link: None,
            secret: None,
        }
    }
}

impl Protocol for Kv {
    fn name(&self) -> &'static str {
        "kv"
    }

    fn start(&mut self, placement: Placement) -> std::io::Result<()> {
        if placement == Placement::ManyProcesses {
            // The store opens in its own process (`StoreLink::open`); here
            // only its listener, bound before any fork: a Unix-domain
            // socket in the abstract namespace, named after this process
            // and the secret, so that servers side by side never meet.
            let secret = random_secret()?;
            let name = format!(
                "muse-kv-{}-{}",
                std::process::id(),
                String::from_utf8_lossy(&secret[..16])
            );
            let listeners = Listeners::bind_abstract(&name)?;
            self.link = Some(StoreLink {
                config: self.config.clone(),
                listeners,
                name,
                secret,
            });
            return Ok(());
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
        // A relay waits on nothing but its two streams.
        self.link.is_none()
    }

    fn open_service(&self) -> std::io::Result<crate::net::Stream> {
        let Some(link) = &self.link else {
            return Err(std::io::ErrorKind::Unsupported.into());
        };
        let socket = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        // A Unix-domain connect completes at once (the stream waits in the
        // listener's backlog, even while the store process restarts); it
        // fails with EAGAIN only when that backlog is full.
        socket.connect(&socket2::SockAddr::unix(format!("\0{}", link.name))?)?;
        Ok(socket)
    }

    fn companion(&self) -> Option<&dyn Companion> {
        self.link.as_ref().map(|l| l as &dyn Companion)
    }

    fn stop(&self) {
        if let Some(store) = &self.store {
            store.close();
        }
    }

    fn new_session(&self, info: &ConnInfo, now: Instant) -> Box<dyn Session> {
        if let Some(link) = &self.link {
            return Box::new(relay::RelaySession::new(
                &link.secret,
                info,
                self.config.idle_timeout,
                now,
            ));
        }
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
            self.secret.clone(),
            now,
        ))
    }

    fn refusal(&self) -> &[u8] {
        b"-ERR max number of clients reached\r\n"
    }
}

impl Companion for StoreLink {
    fn name(&self) -> &'static str {
        "kv store"
    }

    fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    fn open(&self) -> std::io::Result<Box<dyn Protocol>> {
        let mut kv = Kv::new(self.config.clone());
        kv.secret = Some(self.secret.clone());
        kv.start(Placement::OneProcess)?;
        Ok(Box::new(kv))
    }
}

/// 32 random hex digits, from the kernel's generator.
fn random_secret() -> std::io::Result<Vec<u8>> {
    let mut raw = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    Ok(raw
        .iter()
        .flat_map(|b| [b >> 4, b & 15])
        .map(|d| b"0123456789abcdef"[usize::from(d)])
        .collect())
}
