//! placeholder

use super::Command;

/// The commands of this family.
pub const COMMANDS: &[Command] = &[];
