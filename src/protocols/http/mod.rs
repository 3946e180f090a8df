//! HTTP/1.1 static files (DESIGN.md §4.4): the pure, sans-IO pieces the
//! session builds on. Nothing here does I/O or reads a clock.

pub mod date;
pub mod escape;
pub mod head;
pub mod mime;
pub mod range;
pub mod target;
