//! `calc`: the calculator server (DESIGN.md §4.5), muse's CPU-bound
//! protocol. One arithmetic expression per line over arbitrary-precision
//! integers, answered by the exact integer or `ERR <reason>`, in order.
//!
//! - [`expr`]: the parser and the evaluator (pure, bounded before computing);
//! - [`session`]: one connection: lines in, answers out, heavy lines run as
//!   a computation off the event loop.
//!
//! The per-server half, [`Calc`], holds the limits and the bound on
//! computations under way at once ([`ComputeGate`]): a [`Gate`](crate::gate::Gate)'s
//! places in memory shared across `fork`, with no per-address bound, so a
//! prefork server's workers together run no more than one computation per
//! CPU, and clients past that wait their turn holding no thread.

pub mod expr;
pub mod session;

use std::time::{Duration, Instant};

use crate::gate::{Gate, Permit, WaitTurn, MAX_TOTAL};
use crate::session::{ConnInfo, Protocol, Session};

/// calc's per-server settings.
#[derive(Clone, Debug)]
pub struct CalcConfig {
    /// The most decimal digits a result may have (`--max-digits`).
    pub max_digits: u32,
    /// Close a connection on which nothing moved for this long (`None`:
    /// never).
    pub idle_timeout: Option<Duration>,
}

/// The calc protocol.
#[derive(Debug)]
pub struct Calc {
    config: CalcConfig,
    gate: ComputeGate,
}

impl Calc {
    /// The protocol with `config`; the gate's places are mapped now, before
    /// any fork, so that every worker shares them.
    pub fn new(config: CalcConfig) -> std::io::Result<Calc> {
        Ok(Calc {
            config,
            gate: ComputeGate::new(ComputeGate::default_places())?,
        })
    }
}

impl Protocol for Calc {
    fn name(&self) -> &'static str {
        "calc"
    }

    fn new_session(&self, info: &ConnInfo, now: Instant) -> Box<dyn Session> {
        Box::new(session::CalcSession::new(
            self.config.clone(),
            self.gate,
            info.peer.ip(),
            now,
        ))
    }
}

/// The bound on calc computations under way at once in the whole server,
/// whatever its processes and threads (see the module documentation).
#[derive(Clone, Copy, Debug)]
pub struct ComputeGate(Gate);

/// One place at the [`ComputeGate`], given back when dropped (moved into
/// the computation, it is given back wherever that ends).
#[derive(Debug)]
pub struct ComputePermit(#[allow(dead_code)] Permit);

impl ComputeGate {
    /// One place per CPU: more computations than cores only share the
    /// cores, each finishing later, and memory grows with each.
    pub fn default_places() -> usize {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpus.clamp(1, MAX_TOTAL)
    }

    /// A gate of `places` (1 to [`MAX_TOTAL`]), in memory
    /// shared with every process forked afterwards.
    pub fn new(places: usize) -> std::io::Result<ComputeGate> {
        // Every place may go to one address: calc's work is bounded per
        // line, and a bench (or a proxy) brings every client from one.
        Gate::new(places, places).map(ComputeGate)
    }

    /// A place, if fewer than `places` are held by the whole server.
    pub fn try_acquire(&self, ip: std::net::IpAddr) -> Option<ComputePermit> {
        self.0.try_acquire(ip).map(ComputePermit)
    }

    /// A place, in turn: a session not yet waiting lets those waiting go
    /// first (see [`Gate::try_acquire_in_turn`]).
    pub fn try_acquire_in_turn(
        &self,
        ip: std::net::IpAddr,
        turn: &mut Option<WaitTurn>,
    ) -> Option<ComputePermit> {
        self.0.try_acquire_in_turn(ip, turn).map(ComputePermit)
    }

    /// Places held now, by any process.
    pub fn held(&self) -> usize {
        self.0.held()
    }
}
