//! muse: one protocol, every server architecture.
//!
//! muse runs a network protocol under any classic server concurrency
//! architecture and measures them side by side. It is three layers, each
//! ignorant of the ones above it:
//!
//! # Layout
//!
//! - [`session`]: the sans-IO seam. A protocol is a state machine fed bytes,
//!   events and the time; it answers with bytes and requests.
//! - [`protocols`]: the protocols (`echo` so far), each a [`session::Session`].
//! - [`drivers`]: move bytes between sockets and sessions: [`drivers::blocking`]
//!   (a thread or process per session), [`drivers::evented`] (an epoll
//!   reactor) and [`drivers::task`] (tokio tasks), all on the shared
//!   [`drivers::conn::Connection`] core and [`drivers::channel`] transfers.
//! - [`archs`]: one file per architecture, saying who runs a driver where.
//! - [`supervisor`]: the prefork master shared by the prefork family, and
//!   [`accept`], how its workers get their connections (`--accept`).
//! - [`restart`]: hot restarts (`USR2`), a new server taking over the
//!   listening sockets.
//! - [`server`], [`net`], [`signals`], [`shutdown`], [`scoreboard`]: binding,
//!   accepting, signals, graceful shutdown, and the memory shared across
//!   worker processes.
//! - [`cli`]: the `muse` command line.
//! - [`tls`]: the certificate and rustls configuration of TLS listeners.
//! - [`sys`]: the few POSIX calls made directly.
//! - [`allocator`]: the counting allocator the `muse` binary runs on.

pub mod accept;
pub mod allocator;
pub mod archs;
pub mod bench;
pub mod cli;
pub mod companion;
pub mod drivers;
pub mod gate;
pub mod log;
pub mod net;
pub mod protocols;
pub mod proxy;
pub mod restart;
pub mod root;
pub mod scoreboard;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod signals;
pub mod supervisor;
pub mod sys;
pub mod tls;
