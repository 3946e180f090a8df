//! `kv`: an in-memory store speaking the Redis protocol (DESIGN.md §4.2).
//!
//! - [`resp`]: the request parser (RESP2 multibulk and inline commands);
//! - [`reply`]: reply writing in RESP2 or RESP3, and Redis's error words;
//! - [`engine`]: the keyspace (sixteen databases, expiry, watch versions);
//! - [`cmd`]: the command table and the commands that run on the keyspace.

pub mod aof;
pub mod cmd;
pub mod engine;
pub mod reply;
pub mod resp;
