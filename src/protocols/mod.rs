//! The protocols muse serves, each a sans-IO session (see `session.rs`),
//! and the table that builds one from the command line's name.

pub mod echo;

use std::time::Duration;

use crate::session::Protocol;

/// The protocols `muse serve` knows, by command-line name.
pub const NAMES: &[&str] = &["echo"];

/// Settings every protocol understands.
#[derive(Clone, Debug)]
pub struct Common {
    /// Close connections idle this long (`None`: never).
    pub idle_timeout: Option<Duration>,
}

/// Builds the protocol named `name`.
pub fn build(name: &str, common: &Common) -> Option<Box<dyn Protocol>> {
    match name {
        "echo" => Some(Box::new(echo::Echo {
            idle_timeout: common.idle_timeout,
        })),
        _ => None,
    }
}
