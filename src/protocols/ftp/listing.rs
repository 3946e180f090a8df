//! Directory listings (`LIST`, `NLST`, `MLSD`, `STAT path`) made in bounded
//! batches off the event loop.
//!
//! Reading a directory is file-system work: a 200,000-entry directory takes
//! seconds cold, and its listing is megabytes. So the session never lists
//! itself. It asks its driver to run a [`Request::Compute`] whose work is a
//! batch made here: the first one opens the directory (its error decides
//! between `150` and `550`) and formats up to [`CHUNK`] bytes; each later
//! one, asked for once the previous chunk is on the data connection, formats
//! the next. Memory per session is one chunk plus the directory stream,
//! whatever the directory's size.
//!
//! A directory of at most [`SORT_LIMIT`] entries is listed sorted by name;
//! a larger one in the file system's order (sorting it would need it whole).
//!
//! [`Request::Compute`]: crate::session::Request::Compute

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use crate::protocols::ftp::users::Perms;
use crate::protocols::ftp::wire::{self, ListEntry};
use crate::root::{DirStream, Entry, Kind, Meta, Root, VPath};

/// Bytes of listing one batch makes before handing them to the driver.
pub const CHUNK: usize = 64 * 1024;

/// Directories up to this many entries are listed sorted by name (the
/// entries are held while they are counted); larger ones stream unsorted.
pub const SORT_LIMIT: usize = 1024;

/// Entries `STAT path` shows on the control connection before it stops
/// with a note (the reply is held whole in the session's output).
pub const STAT_LIMIT: usize = 1000;

/// How entries are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `ls -l` lines (`LIST`, and `STAT path` on the control connection).
    Long,
    /// Names only (`NLST`).
    Names,
    /// RFC 3659 facts (`MLSD`), with the user's permissions.
    Facts(Perms),
}

/// A listing under way: the directory stream and what is needed to print.
pub struct Listing {
    stream: Option<DirStream>,
    /// Entries read ahead (the first batch, while deciding whether to sort).
    held: std::vec::IntoIter<Entry>,
    format: Format,
    /// The wall clock when the listing began (`ls -l` shows the time of
    /// recent files, the year of older ones).
    wall: SystemTime,
}

/// What one batch made.
pub struct Batch {
    /// Listing text, at most about [`CHUNK`] bytes.
    pub chunk: Vec<u8>,
    /// The rest of the listing (`None`: this was the last batch).
    pub rest: Option<Box<Listing>>,
}

/// The result of the first batch's computation (what the session downcasts).
pub type Opened = io::Result<Batch>;

/// Opens `path` and makes the first batch. `path` may be a file (listed as
/// one line) unless `dir_only` (MLSD). Runs where blocking is allowed.
pub fn open(root: &Arc<Root>, path: &VPath, format: Format, dir_only: bool) -> Opened {
    let wall = SystemTime::now();
    let meta = root.stat(path)?;
    if meta.kind != Kind::Dir {
        if dir_only {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "MLSD needs a directory",
            ));
        }
        let name = path.file_name().unwrap_or("/").to_string();
        let mut chunk = Vec::new();
        print(&mut chunk, &name, &meta, format, wall);
        return Ok(Batch { chunk, rest: None });
    }
    let mut stream = root.open_dir(path)?;
    let mut first = Vec::new();
    let mut ended = false;
    while first.len() <= SORT_LIMIT {
        match stream.next_entry() {
            Some(e) => first.push(e?),
            None => {
                ended = true;
                break;
            }
        }
    }
    if ended {
        first.sort_by(|a, b| a.name.cmp(&b.name));
    }
    let listing = Listing {
        stream: (!ended).then_some(stream),
        held: first.into_iter(),
        format,
        wall,
    };
    Ok(Box::new(listing).next_batch())
}

impl Listing {
    /// Makes the next batch. Runs where blocking is allowed. A read error
    /// mid-listing ends the listing there (the client has had `150` and
    /// the entries so far; the error is logged by the caller's `Done`).
    pub fn next_batch(mut self: Box<Self>) -> Batch {
        let mut chunk = Vec::with_capacity(CHUNK + 512);
        while chunk.len() < CHUNK {
            let entry = match self.held.next() {
                Some(e) => e,
                None => match self.stream.as_mut().and_then(DirStream::next_entry) {
                    Some(Ok(e)) => e,
                    Some(Err(e)) => {
                        crate::log::warn(format_args!("ftp: listing stopped: {e}"));
                        self.stream = None;
                        break;
                    }
                    None => {
                        self.stream = None;
                        break;
                    }
                },
            };
            print(&mut chunk, &entry.name, &entry.meta, self.format, self.wall);
        }
        let more = self.stream.is_some() || self.held.len() > 0;
        Batch {
            chunk,
            rest: more.then_some(self),
        }
    }
}

/// One entry's line(s), CRLF-terminated.
fn print(out: &mut Vec<u8>, name: &str, meta: &Meta, format: Format, wall: SystemTime) {
    let e = entry(name, meta);
    match format {
        Format::Names => {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Format::Facts(perms) => {
            let perm = perms.mlst_perm(matches!(meta.kind, Kind::Dir));
            wire::mlsx_facts(out, &e, &perm, name);
        }
        Format::Long => wire::list_line(out, &e, wall),
    }
}

/// `STAT path`: the `ls -l` lines of `path` (a directory's entries, or the
/// file itself), at most [`STAT_LIMIT`] of them, and how many more there
/// were. Runs where blocking is allowed.
pub fn stat_lines(root: &Arc<Root>, path: &VPath) -> io::Result<(Vec<u8>, usize)> {
    let wall = SystemTime::now();
    let meta = root.stat(path)?;
    let mut body = Vec::new();
    if meta.kind != Kind::Dir {
        let name = path.file_name().unwrap_or("/").to_string();
        wire::list_line(&mut body, &entry(&name, &meta), wall);
        return Ok((body, 0));
    }
    let mut stream = root.open_dir(path)?;
    let mut entries = Vec::new();
    let mut more = 0;
    while let Some(e) = stream.next_entry() {
        let e = e?;
        if entries.len() < STAT_LIMIT {
            entries.push(e);
        } else {
            more += 1;
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    for e in &entries {
        wire::list_line(&mut body, &entry(&e.name, &e.meta), wall);
    }
    Ok((body, more))
}

/// The wire's view of an entry.
pub fn entry<'a>(name: &'a str, meta: &Meta) -> ListEntry<'a> {
    ListEntry {
        name,
        is_dir: matches!(meta.kind, Kind::Dir),
        is_symlink: matches!(meta.kind, Kind::Symlink),
        size: meta.size,
        modified: meta.modified,
        mode: meta.mode,
        nlink: meta.nlink,
        uid: meta.uid,
        gid: meta.gid,
    }
}
