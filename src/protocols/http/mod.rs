//! `http`: HTTP/1.1 static files from `--root` (DESIGN.md §4.4), as a
//! sans-IO session that every architecture runs unchanged.
//!
//! The pure pieces parse and decide: [`head`] reads a request head,
//! [`target`] maps its target to a path beneath the root (through
//! `root.rs`, the same door FTP uses, with HTTP's stricter policy), [`range`]
//! judges validators and ranges, [`date`] and [`mime`] format what a
//! response says, [`escape`] makes names safe in a listing. The session
//! (`session.rs`) strings them together: it reads heads, answers each
//! request in order on the connection's output queue (the head as bytes,
//! the body as a file range the driver sends with `sendfile`), and owns the
//! connection's deadlines. [`files`] keeps the files a serving thread opened
//! in its current turn, so that popular files are opened once per turn.

pub mod access_log;
pub mod date;
pub mod escape;
mod files;
pub mod head;
mod listing;
pub mod mime;
pub mod range;
mod response;
mod session;
pub mod target;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::root::Root;
use crate::session::{ConnInfo, Protocol, Session};

pub use access_log::AccessLog;
pub use session::HttpSession;

/// How long a client may take to send a whole request head, from its first
/// byte (from the connection's start for the first request), unless
/// `--header-timeout` says otherwise: nginx's `client_header_timeout` is 60
/// s; a static server has no reason to wait that long for a few hundred
/// bytes, and a slowloris client holds a blocking worker this long at most.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTP protocol's per-server settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// How long a request head may take to arrive ([`DEFAULT_HEADER_TIMEOUT`]);
    /// past it the client gets 408 and the connection closes (`None`: for
    /// ever).
    pub header_timeout: Option<Duration>,
    /// How long a keep-alive connection may wait for its next request
    /// (`None`: for ever).
    pub idle_timeout: Option<Duration>,
    /// Answer a directory without `index.html` with an HTML listing
    /// (`--autoindex`) instead of 404.
    pub autoindex: bool,
    /// Serve `NAME.gz` beside `NAME` with `Content-Encoding: gzip` to
    /// clients that accept it (`--gzip-static`, nginx's `gzip_static`).
    pub gzip_static: bool,
    /// Where the access log goes (`--access-log`), if anywhere.
    pub access_log: Option<Arc<AccessLog>>,
    /// Serve names starting with `.` (`--dotfiles`). Off, they are 404 and
    /// left out of listings (all but `.well-known`), so serving a checkout
    /// never hands out its `.git` or a `.env`.
    pub dotfiles: bool,
}

/// Whether `path` is hidden from clients when dotfiles are not served: a
/// component starts with `.`, other than `.well-known` (RFC 8615's
/// well-known URIs, such as ACME challenges and `security.txt`).
pub(crate) fn is_hidden(path: &crate::root::VPath) -> bool {
    path.components()
        .any(|c| c.starts_with('.') && c != ".well-known")
}

/// What every session of one server shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub root: Root,
    pub config: HttpConfig,
}

/// The HTTP protocol: the root served and the settings.
pub struct Http {
    shared: Arc<Shared>,
}

impl Http {
    /// Serves `root` with `config`.
    pub fn new(root: Root, config: HttpConfig) -> Http {
        Http {
            shared: Arc::new(Shared { root, config }),
        }
    }
}

/// The answer to a connection refused at `--max-connections`.
const REFUSAL: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nServer: muse\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 24\r\nRetry-After: 1\r\n\
Connection: close\r\n\r\n503 Service Unavailable\n";

impl Protocol for Http {
    fn name(&self) -> &'static str {
        "http"
    }

    fn new_session(&self, info: &ConnInfo, now: Instant) -> Box<dyn Session> {
        Box::new(HttpSession::new(Arc::clone(&self.shared), info, now))
    }

    fn refusal(&self) -> &[u8] {
        REFUSAL
    }
}
