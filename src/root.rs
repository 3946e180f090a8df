//! The filesystem root: the one place where client input becomes a file.
//!
//! # Threat model
//!
//! FTP (and later HTTP) clients are strangers who send us path names. We
//! assume they will try everything: `..` in every spelling, absolute paths,
//! NUL bytes that end a C string early, backslashes, control characters that
//! forge lines in a listing, over-long names, and — the hard one — symbolic
//! links. A link inside `--root` may point outside it (planted by a local user
//! or an unpacked archive), and a directory may be swapped for such a link
//! between our check and our use. Whatever they send, no file outside the
//! root may be read, listed, created, changed or removed.
//!
//! # Design
//!
//! Two types split the work, after vsftpd's "one string API" and cap-std's
//! `Dir`:
//!
//! - [`VPath`] is a *virtual* path, pure string logic with no filesystem
//!   access: absolute, normalized, free of `.`/`..`, NUL, backslashes and
//!   control characters. [`VPath::resolve`] is how client input enters; `..`
//!   at the top is clamped to `/` as FTP servers do ([`VPath::resolve_strict`],
//!   HTTP's door, refuses it instead). Holding a `VPath` proves
//!   the string is well formed, not that it is safe: that is the kernel's job.
//! - [`Root`] owns an `O_PATH` descriptor of the root directory and is the only
//!   code that touches files. It never builds an ambient path (after
//!   [`Root::open`], which opens the operator's `--root`). Every lookup goes
//!   through `openat2(2)` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`
//!   relative to that descriptor. The kernel then refuses, atomically and
//!   during the walk itself, any step that would leave the directory: a `..`
//!   above it, an absolute symlink, a relative symlink that climbs out, a
//!   `/proc` magic link. Because the check is part of the walk, there is no
//!   check-then-use window for a rename race to exploit; a userspace walk
//!   (`lstat` each component, then open) would have exactly that window.
//!
//! Operations that *name* an entry (mkdir, rmdir, unlink, rename, create) do
//! not hand the whole path to one call. They open the **parent** directory
//! beneath the root, then apply the `*at` call (`mkdirat`, `unlinkat`,
//! `renameat`, `openat` with `O_NOFOLLOW`/`O_EXCL`) to the single final
//! component. A final component is never followed: deleting a link removes
//! the link, renaming moves it, and writing through one is refused — so a link
//! pointing outside can be tidied away but never written through.
//!
//! Uploads (`STOR`) write a file that has no name: `O_TMPFILE` in the
//! target's directory. Only when the transfer completed is it put in place:
//! linked straight to the target's name if that is free, else linked to a
//! fresh hidden temporary name and `renameat` over the target (atomic
//! replace; the name exists for the few microseconds between the two calls).
//! A failed, aborted or crashed upload therefore leaves nothing behind, never
//! destroys the file it was replacing, and readers never see half a file.
//! On a filesystem without `O_TMPFILE` the upload writes a named temporary
//! (`.muse-upload.<random>`, unguessable) and renames it at the commit. The
//! parent descriptor is kept, so the commit lands in the directory the upload
//! started in even if paths move meanwhile. An [`Upload`] dropped without a
//! commit removes its temporary file.
//!
//! Names beginning with [`UPLOAD_PREFIX`] belong to uploads in progress:
//! listings skip them, every operation that takes a client's path refuses a
//! path with such a component (`PermissionDenied`, "reserved name"), and
//! [`Root::rmdir`] removes ones a crash left behind rather than report a
//! directory that lists as empty as not empty.
//!
//! Errors are `io::Error`s. An escape attempt is `PermissionDenied`; a
//! request for a plain file that names a directory is `IsADirectory`, one
//! that names something else (FIFO, device, socket) `InvalidInput` (for
//! both, [`is_not_plain_file`] is true). `openat2` needs Linux 5.6;
//! [`Root::open`] says so plainly on an older kernel (or a seccomp filter
//! that blocks it) instead of degrading to something weaker.

use std::ffi::CString;
use std::fmt;
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{
    fstat, linkat, mkdirat, openat, openat2, renameat, statat, unlinkat, AtFlags, Dir, FileType,
    Mode, OFlags, ResolveFlags, Stat, CWD,
};
use rustix::io::Errno;

/// The longest virtual path accepted, in bytes. Linux's `PATH_MAX` (4096)
/// counts the terminating NUL, and the string handed to `openat2` is the
/// virtual path less its leading `/`, so every `VPath` stays passable to the
/// kernel in one call. Input longer than this is refused before any parsing.
pub const MAX_PATH: usize = 4095;

/// The longest single name, in bytes: `NAME_MAX` on every Linux filesystem.
pub const MAX_NAME: usize = 255;

/// Prefix of upload temporary files. They are hidden from [`Root::list`],
/// and a path with a component that starts with it is refused by every
/// operation (see [`VPath::is_reserved`]).
pub const UPLOAD_PREFIX: &str = ".muse-upload.";

/// How many names `name`, `name.1`, ... [`Root::create_unique`] tries.
const MAX_UNIQUE: u32 = 1000;

/// Why client input is not a usable path. The messages are fit for a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path contains a backslash")]
    Backslash,
    #[error("path contains a control character")]
    Control,
    #[error("path is not valid UTF-8")]
    NotUtf8,
    #[error("path is longer than {MAX_PATH} bytes")]
    TooLong,
    #[error("file name is longer than {MAX_NAME} bytes")]
    NameTooLong,
    #[error("not a single file name")]
    NotAName,
    #[error("path climbs above the root")]
    AboveRoot,
}

impl From<PathError> for io::Error {
    fn from(e: PathError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// A normalized virtual path as a client sees it: absolute (`/` is the
/// user's root), `/`-separated, no empty, `.` or `..` components, valid
/// UTF-8, no NUL, no backslash, no control characters, no trailing `/`
/// except for the root itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VPath(String);

impl VPath {
    /// The user's root, `/`.
    pub fn root() -> VPath {
        VPath("/".to_owned())
    }

    /// Resolves client input against the current directory: absolute input
    /// starts from `/`, relative input from `cwd`. `.` and empty components
    /// (repeated slashes) are dropped; `..` goes up but never above `/`.
    /// Nothing is decoded: `%2e%2e` is a literal name. Empty input is `cwd`.
    pub fn resolve(cwd: &VPath, input: &[u8]) -> Result<VPath, PathError> {
        if input.contains(&0) {
            return Err(PathError::Nul);
        }
        if input.len() > MAX_PATH {
            return Err(PathError::TooLong);
        }
        let s = std::str::from_utf8(input).map_err(|_| PathError::NotUtf8)?;
        check_chars(s)?;
        let mut parts: Vec<&str> = if s.starts_with('/') {
            Vec::new()
        } else {
            cwd.components().collect()
        };
        for c in s.split('/') {
            match c {
                "" | "." => {}
                ".." => {
                    parts.pop();
                }
                name => {
                    // Checked even if a later ".." cancels it: a name the
                    // filesystem could not hold is malformed input either way.
                    if name.len() > MAX_NAME {
                        return Err(PathError::NameTooLong);
                    }
                    parts.push(name);
                }
            }
        }
        let len = parts.iter().map(|p| p.len() + 1).sum::<usize>().max(1);
        if len > MAX_PATH {
            return Err(PathError::TooLong);
        }
        let mut out = String::with_capacity(len);
        for p in &parts {
            out.push('/');
            out.push_str(p);
        }
        if out.is_empty() {
            out.push('/');
        }
        Ok(VPath(out))
    }

    /// Resolves client input from `/` like [`VPath::resolve`], with the same
    /// refusals, except that a `..` which would climb above `/` is refused
    /// ([`PathError::AboveRoot`]) instead of clamped. This is HTTP's policy:
    /// a URL that reaches above the root is an attack or a broken link, not
    /// a user typing `cd ..` once too often as in FTP, so it gets 400 rather
    /// than silently naming some other file. Nothing is decoded (the HTTP
    /// layer percent-decodes before calling this).
    pub fn resolve_strict(input: &[u8]) -> Result<VPath, PathError> {
        let mut path = VPath(String::new());
        VPath::resolve_strict_into(input, &mut path)?;
        Ok(path)
    }

    /// [`VPath::resolve_strict`] into `out`, reusing its buffer: a server
    /// resolving a path per request allocates nothing once the buffer is
    /// big enough. On error `out` holds `/`.
    pub fn resolve_strict_into(input: &[u8], out: &mut VPath) -> Result<(), PathError> {
        let result = resolve_strict_in_place(input, &mut out.0);
        if result.is_err() || out.0.is_empty() {
            out.0.clear();
            out.0.push('/');
        }
        result
    }

    /// Appends `name` as a new last component, in place (see [`VPath::join`]).
    pub fn push(&mut self, name: &str) -> Result<(), PathError> {
        check_name(name)?;
        let sep = usize::from(!self.is_root());
        if self.0.len() + sep + name.len() > MAX_PATH {
            return Err(PathError::TooLong);
        }
        if sep == 1 {
            self.0.push('/');
        }
        self.0.push_str(name);
        Ok(())
    }

    /// The path as text, e.g. `/pub/file.txt`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `/`.
    pub fn is_root(&self) -> bool {
        self.0.len() == 1
    }

    /// True if a component starts with [`UPLOAD_PREFIX`]: the name of an
    /// upload in progress, which [`Root`] refuses to touch for a client.
    pub fn is_reserved(&self) -> bool {
        self.components().any(|c| c.starts_with(UPLOAD_PREFIX))
    }

    /// The components from the top, e.g. `["pub", "file.txt"]`; none for `/`.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// The containing directory; `None` for `/`.
    pub fn parent(&self) -> Option<VPath> {
        self.split().map(|(parent, _)| VPath(parent.to_owned()))
    }

    /// The last component; `None` for `/`.
    pub fn file_name(&self) -> Option<&str> {
        self.split().map(|(_, name)| name)
    }

    /// This path with one more component. `name` must be a single valid
    /// name: not empty, `.` or `..`, without `/`, NUL, backslash or control
    /// characters, at most [`MAX_NAME`] bytes.
    pub fn join(&self, name: &str) -> Result<VPath, PathError> {
        check_name(name)?;
        let sep = usize::from(!self.is_root());
        if self.0.len() + sep + name.len() > MAX_PATH {
            return Err(PathError::TooLong);
        }
        let mut out = self.0.clone();
        if sep == 1 {
            out.push('/');
        }
        out.push_str(name);
        Ok(VPath(out))
    }

    /// (parent, name), `None` for the root.
    fn split(&self) -> Option<(&str, &str)> {
        if self.is_root() {
            return None;
        }
        let i = self.0.rfind('/').unwrap_or(0);
        let parent = if i == 0 { "/" } else { &self.0[..i] };
        Some((parent, &self.0[i + 1..]))
    }

    /// The path relative to the root descriptor: no leading `/`, `.` for the
    /// root itself. Only this module sees it.
    fn rel(&self) -> &str {
        if self.is_root() {
            "."
        } else {
            &self.0[1..]
        }
    }
}

impl fmt::Display for VPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Refuses backslashes (a Windows client's separator, which some tools on
/// our side would also treat as one) and control characters (C0, DEL, C1),
/// which would forge lines in listings and logs.
fn check_chars(s: &str) -> Result<(), PathError> {
    for c in s.chars() {
        if c == '\\' {
            return Err(PathError::Backslash);
        }
        if c.is_control() {
            return Err(if c == '\0' {
                PathError::Nul
            } else {
                PathError::Control
            });
        }
    }
    Ok(())
}

/// A single valid component.
fn check_name(name: &str) -> Result<(), PathError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(PathError::NotAName);
    }
    check_chars(name)?;
    if name.len() > MAX_NAME {
        return Err(PathError::NameTooLong);
    }
    Ok(())
}

/// The work of [`VPath::resolve_strict_into`]: the same refusals as
/// [`VPath::resolve`], in the same order, and a `..` above `/` refused;
/// the components are written straight into `out` (a `..` truncates it at
/// its last `/`), so nothing is allocated.
fn resolve_strict_in_place(input: &[u8], out: &mut String) -> Result<(), PathError> {
    out.clear();
    if input.contains(&0) {
        return Err(PathError::Nul);
    }
    if input.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    let s = std::str::from_utf8(input).map_err(|_| PathError::NotUtf8)?;
    check_chars(s)?;
    // The result is never longer than the input with a leading `/`.
    out.reserve(input.len() + 1);
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.is_empty() {
                    return Err(PathError::AboveRoot);
                }
                let i = out.rfind('/').unwrap_or(0);
                out.truncate(i);
            }
            name => {
                if name.len() > MAX_NAME {
                    return Err(PathError::NameTooLong);
                }
                out.push('/');
                out.push_str(name);
            }
        }
    }
    Ok(())
}

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

/// What listings and `SIZE`/`MDTM`/`MLST` need to know about a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub size: u64,
    pub modified: SystemTime,
    /// Permission bits only (`0o7777`), no file type.
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
}

impl Meta {
    // `struct stat` field widths and signedness vary by architecture, so the
    // conversions below are identities on some targets and not on others.
    #[allow(clippy::useless_conversion, clippy::unnecessary_fallible_conversions)]
    fn from_stat(st: &Stat) -> Meta {
        let kind = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Other,
        };
        let secs = i64::from(st.st_mtime);
        let nanos = u32::try_from(st.st_mtime_nsec)
            .unwrap_or(0)
            .min(999_999_999);
        let modified = if secs >= 0 {
            UNIX_EPOCH.checked_add(Duration::new(secs.unsigned_abs(), nanos))
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(secs.unsigned_abs()))
                .and_then(|t| t.checked_add(Duration::from_nanos(u64::from(nanos))))
        };
        Meta {
            kind,
            size: u64::try_from(i64::from(st.st_size)).unwrap_or(0),
            modified: modified.unwrap_or(UNIX_EPOCH),
            mode: st.st_mode & 0o7777,
            nlink: u64::from(st.st_nlink),
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }
}

/// One entry of [`Root::list`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub meta: Meta,
}

/// True if `e` says "this is not a plain file" (a directory, FIFO, device or
/// socket where a regular file was needed): reply 550 "Not a plain file".
/// A directory gives kind `IsADirectory` ("Is a directory"), anything else
/// `InvalidInput` ("Not a plain file"), so a reply can say which.
pub fn is_not_plain_file(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|r| r.is::<NotPlainFile>())
}

#[derive(Debug)]
struct NotPlainFile {
    dir: bool,
}

impl fmt::Display for NotPlainFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.dir {
            "Is a directory"
        } else {
            "Not a plain file"
        })
    }
}

impl std::error::Error for NotPlainFile {}

fn not_plain() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, NotPlainFile { dir: false })
}

fn is_a_dir() -> io::Error {
    io::Error::new(io::ErrorKind::IsADirectory, NotPlainFile { dir: true })
}

fn denied(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, msg)
}

/// Refuses a path into the upload temporaries' namespace.
fn check_reserved(p: &VPath) -> io::Result<()> {
    if p.is_reserved() {
        return Err(denied("reserved name"));
    }
    Ok(())
}

/// Errors of a lookup beneath the root. `RESOLVE_BENEATH` reports an escape
/// as `EXDEV`; `ELOOP` is a link loop or a magic link. Both are refusals.
fn lookup_err(e: Errno) -> io::Error {
    match e {
        Errno::XDEV => denied("path leads outside the root"),
        Errno::LOOP => denied("symbolic link loop or link leading outside the root"),
        e => e.into(),
    }
}

/// Errors of `openat(parent, name, O_NOFOLLOW | O_WRONLY ...)`.
fn write_open_err(e: Errno) -> io::Error {
    match e {
        Errno::LOOP => denied("refusing to write through a symbolic link"),
        // A directory (EISDIR) or a FIFO nobody reads (ENXIO).
        Errno::ISDIR => is_a_dir(),
        Errno::NXIO => not_plain(),
        e => e.into(),
    }
}

/// The flags every lookup uses: stay beneath the root, follow no magic link.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_MAGICLINKS);

/// Everything beneath one directory; see the module documentation.
#[derive(Debug)]
pub struct Root {
    /// `O_PATH | O_DIRECTORY`: a handle for lookups, not for reading.
    dir: OwnedFd,
}

impl Root {
    /// Opens `path` as a root. This is the only ambient path this module
    /// opens: the operator's `--root`, so a symlink there is followed. Errors
    /// name the path ("cannot open root /x: No such file or directory") and
    /// keep the underlying kind.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fail = |e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("cannot open root {}: {e}", path.display()),
            )
        };
        let dir = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        // Probe openat2 now, so an old kernel or a seccomp filter fails at
        // startup with a clear message instead of on the first request.
        match openat2(
            &dir,
            ".",
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            RESOLVE,
        ) {
            Ok(_) => Ok(Root { dir }),
            Err(e @ (Errno::NOSYS | Errno::PERM)) => Err(fail(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("openat2 is unavailable ({e}); muse needs Linux 5.6 or later"),
            ))),
            Err(e) => Err(fail(e.into())),
        }
    }

    /// The directory `home` beneath this root, as a root of its own (a
    /// virtual user's home). Nothing beneath it can reach this root's other
    /// files, even through links.
    pub fn subroot(&self, home: &VPath) -> io::Result<Root> {
        let dir = self.lookup(home, OFlags::PATH | OFlags::DIRECTORY)?;
        Ok(Root { dir })
    }

    /// Another handle on the same root (a `dup` of its descriptor).
    pub fn try_clone(&self) -> io::Result<Root> {
        Ok(Root {
            dir: self.dir.try_clone()?,
        })
    }

    /// Metadata of `p`, following symlinks only while they stay beneath
    /// the root.
    pub fn stat(&self, p: &VPath) -> io::Result<Meta> {
        let fd = self.lookup(p, OFlags::PATH)?;
        Ok(Meta::from_stat(&fstat(&fd)?))
    }

    /// Opens a regular file for reading. Anything else is an error for which
    /// [`is_not_plain_file`] is true.
    pub fn open_read(&self, p: &VPath) -> io::Result<(File, Meta)> {
        // O_NONBLOCK so that opening a FIFO does not wait for a writer;
        // O_NOCTTY so that a terminal device never becomes ours.
        let fd = self.lookup(p, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY)?;
        // O_NONBLOCK stays: it means nothing for a regular file, and
        // clearing it would cost a system call on every download.
        let meta = plain_file(&fd, None)?;
        Ok((File::from(fd), meta))
    }

    /// Opens `p` for appending (`APPE`), creating it (mode 0644) if missing.
    /// A symlink as the final component is refused.
    pub fn open_append(&self, p: &VPath) -> io::Result<File> {
        self.open_write(p, OFlags::APPEND)
    }

    /// Opens `p` for writing at `offset` (`REST` + `STOR`): the rest of a
    /// file already there, never truncated (at 0, created if missing). A
    /// restart resumes what exists: at a later offset a missing file is
    /// `NotFound` (nothing is created), and an offset past
    /// the file's end is `InvalidInput` (no hole). A symlink as the final
    /// component is refused.
    pub fn open_write_at(&self, p: &VPath, offset: u64) -> io::Result<File> {
        let create = if offset == 0 {
            OFlags::CREATE
        } else {
            OFlags::empty()
        };
        let fd = self.open_write_fd(p, OFlags::empty(), create)?;
        let mut f = File::from(fd);
        if offset > f.metadata()?.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "restart position past the end of the file",
            ));
        }
        f.seek(SeekFrom::Start(offset))?;
        Ok(f)
    }

    fn open_write(&self, p: &VPath, extra: OFlags) -> io::Result<File> {
        self.open_write_fd(p, extra, OFlags::CREATE).map(File::from)
    }

    /// `open_write`, creating the file only with `create` set to
    /// `OFlags::CREATE`.
    fn open_write_fd(&self, p: &VPath, extra: OFlags, create: OFlags) -> io::Result<OwnedFd> {
        let (dir, name) = self.parent_of(p).ok_or_else(is_a_dir)??;
        let fd = openat(
            &dir,
            name,
            OFlags::WRONLY
                | create
                | OFlags::NOFOLLOW
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC
                | extra,
            Mode::from_raw_mode(0o644),
        )
        .map_err(write_open_err)?;
        plain_file(&fd, Some(extra & OFlags::APPEND))?;
        Ok(fd)
    }

    /// Starts a new upload into `p`: a file without a name (`O_TMPFILE`,
    /// mode 0644) in `p`'s directory, or where the filesystem cannot do
    /// that a fresh named temporary (`.muse-upload.<random>`, `O_EXCL`).
    /// Fails early if `p` is a directory. Finish with [`Root::commit_upload`]
    /// or [`Root::discard_upload`]; dropping the `Upload` also discards it.
    pub fn create_upload(&self, p: &VPath) -> io::Result<Upload> {
        self.create_upload_as(p, None)
    }

    /// [`Root::create_upload`]; `how` forces a way to name the file at the
    /// commit (`Some(None)`: a named temporary from the start).
    fn create_upload_as(&self, p: &VPath, how: Option<Option<Link>>) -> io::Result<Upload> {
        let (dir, name) = self.parent_of(p).ok_or_else(is_a_dir)??;
        // The commit would fail on a directory; say so before the client
        // sends the whole file.
        match statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                return Err(is_a_dir())
            }
            Ok(_) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let how = how.unwrap_or_else(|| link_method(&dir));
        let (fd, temp) = open_temp(&dir, how)?;
        Ok(Upload {
            file: File::from(fd),
            dir,
            temp,
            name: name.to_owned(),
            target: p.clone(),
            done: false,
        })
    }

    /// Puts the upload in place, in the directory it started in. A file
    /// without a name is linked to the target's name if that is free;
    /// otherwise (and for a named temporary) a temporary name is renamed
    /// over the target, atomically. A symlink at the target is replaced,
    /// not written through. On error no temporary remains and the old
    /// target is untouched.
    pub fn commit_upload(&self, mut up: Upload) -> io::Result<()> {
        if let Temp::Unnamed(how) = up.temp {
            match link_unnamed(&up.file, &up.dir, &up.name, how) {
                Ok(()) => {
                    up.done = true;
                    return Ok(());
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            // The target exists: name the file, then rename it over. Once
            // named, dropping `up` on an error below removes the name.
            up.temp = Temp::Named(link_temp(&up.file, &up.dir, how)?);
        }
        if let Temp::Named(tmp) = &up.temp {
            renameat(&up.dir, tmp.as_str(), &up.dir, up.name.as_str())?;
        }
        up.done = true;
        Ok(())
    }

    /// Removes the upload's temporary file; the target is untouched.
    pub fn discard_upload(&self, up: Upload) {
        drop(up);
    }

    /// Creates a new file with a name not yet taken (FTP `STOU`): `p`'s name
    /// itself if free, else `name.1`, `name.2`, ... (`O_EXCL`, mode 0644).
    /// Returns the name chosen.
    pub fn create_unique(&self, p: &VPath) -> io::Result<(VPath, File)> {
        let (dir, name) = self.parent_of(p).ok_or_else(is_a_dir)??;
        let parent = p.parent().unwrap_or_else(VPath::root);
        for i in 0..=MAX_UNIQUE {
            let candidate = if i == 0 {
                p.clone()
            } else {
                parent.join(&format!("{name}.{i}"))?
            };
            // "x" is free to use, but "x.1" may be a reserved name.
            check_reserved(&candidate)?;
            let leaf = candidate.file_name().unwrap_or(name);
            match openat(
                &dir,
                leaf,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o644),
            ) {
                Ok(fd) => return Ok((candidate, File::from(fd))),
                Err(Errno::EXIST) => {}
                Err(e) => return Err(write_open_err(e)),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no unique file name left",
        ))
    }

    /// The entries of `dir`, sorted by name, without `.` and `..`. Entries a
    /// client could not name back (not UTF-8, control characters, backslash)
    /// and upload temporaries are skipped. A symlink is reported with its
    /// target's metadata if it resolves beneath the root, else as
    /// [`Kind::Symlink`] with the link's own metadata. Holds the whole
    /// directory: for one of any size, stream it with [`Root::open_dir`].
    pub fn list(&self, dir: &VPath) -> io::Result<Vec<Entry>> {
        let mut stream = self.open_dir(dir)?;
        let mut out = Vec::new();
        while let Some(e) = stream.next_entry() {
            out.push(e?);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Opens `dir` for reading its entries one at a time, in the file
    /// system's order, with [`Root::list`]'s filtering: memory stays the
    /// same whatever the directory's size. The stream holds its own handle
    /// on the root, so it may move to another thread and outlive `self`.
    pub fn open_dir(&self, dir: &VPath) -> io::Result<DirStream> {
        let fd = self.lookup(dir, OFlags::RDONLY | OFlags::DIRECTORY)?;
        Ok(DirStream {
            dir: Dir::new(fd)?,
            root: self.try_clone()?,
            path: dir.clone(),
        })
    }

    /// Creates directory `p` (mode 0755).
    pub fn mkdir(&self, p: &VPath) -> io::Result<()> {
        let (dir, name) = self
            .parent_of(p)
            .ok_or_else(|| io::Error::from(io::ErrorKind::AlreadyExists))??;
        mkdirat(&dir, name, Mode::from_raw_mode(0o755))?;
        Ok(())
    }

    /// Removes the empty directory `p`. A symlink is not a directory
    /// (`NotADirectory`), even if it points at one. Upload temporaries
    /// (unlisted) do not count: if they are all it holds, they are removed
    /// with it, so an upload still running there in a named temporary fails
    /// at its commit, as if the directory had gone with the file unnamed.
    pub fn rmdir(&self, p: &VPath) -> io::Result<()> {
        let (dir, name) = self
            .parent_of(p)
            .ok_or_else(|| denied("cannot remove the root directory"))??;
        match unlinkat(&dir, name, AtFlags::REMOVEDIR) {
            // Not empty, though perhaps only of a crash's upload temporaries
            // (listed as empty): those go, then the directory.
            Err(e @ (Errno::NOTEMPTY | Errno::EXIST)) => {
                if !clear_stale_temps(&dir, name) {
                    return Err(e.into());
                }
                unlinkat(&dir, name, AtFlags::REMOVEDIR)?;
            }
            r => r?,
        }
        Ok(())
    }

    /// Removes the non-directory `p`. A symlink is removed itself; its
    /// target is untouched.
    pub fn remove_file(&self, p: &VPath) -> io::Result<()> {
        let (dir, name) = self
            .parent_of(p)
            .ok_or_else(|| denied("cannot remove the root directory"))??;
        unlinkat(&dir, name, AtFlags::empty())?;
        Ok(())
    }

    /// Renames `from` to `to` (replacing a file at `to`). Links are moved
    /// themselves, never followed.
    pub fn rename(&self, from: &VPath, to: &VPath) -> io::Result<()> {
        let root_err = || denied("cannot rename the root directory");
        let (from_dir, from_name) = self.parent_of(from).ok_or_else(root_err)??;
        let (to_dir, to_name) = self.parent_of(to).ok_or_else(root_err)??;
        renameat(&from_dir, from_name, &to_dir, to_name)?;
        Ok(())
    }

    /// The one lookup: `openat2` beneath the root. `rel` comes from
    /// [`VPath::rel`]; the kernel enforces the boundary regardless.
    fn beneath(&self, rel: &str, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        let mut tries = 0;
        loop {
            match openat2(&self.dir, rel, flags | OFlags::CLOEXEC, mode, RESOLVE) {
                Ok(fd) => return Ok(fd),
                // RESOLVE_BENEATH answers EAGAIN when a concurrent rename
                // might have let ".." escape; the walk is safe to retry.
                Err(Errno::AGAIN | Errno::INTR) if tries < 16 => tries += 1,
                Err(e) => return Err(lookup_err(e)),
            }
        }
    }

    /// `p` opened beneath the root, unless it is [reserved](VPath::is_reserved).
    fn lookup(&self, p: &VPath, flags: OFlags) -> io::Result<OwnedFd> {
        check_reserved(p)?;
        self.beneath(p.rel(), flags, Mode::empty())
    }

    /// The parent directory of `p`, opened beneath the root, and `p`'s final
    /// name. `None` for the root, which has no parent. A reserved path is
    /// refused.
    fn parent_of<'p>(&self, p: &'p VPath) -> Option<io::Result<(OwnedFd, &'p str)>> {
        let (parent, name) = p.split()?;
        if let Err(e) = check_reserved(p) {
            return Some(Err(e));
        }
        let rel = if parent == "/" { "." } else { &parent[1..] };
        Some(
            self.beneath(rel, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
                .map(|fd| (fd, name)),
        )
    }
}

/// A directory being read entry by entry (see [`Root::open_dir`]).
pub struct DirStream {
    dir: Dir,
    root: Root,
    path: VPath,
}

impl DirStream {
    /// The next entry, `None` at the end. Entries removed while listing are
    /// skipped.
    pub fn next_entry(&mut self) -> Option<io::Result<Entry>> {
        loop {
            let ent = match self.dir.read()? {
                Ok(ent) => ent,
                Err(e) => return Some(Err(e.into())),
            };
            let raw = ent.file_name();
            let Ok(name) = std::str::from_utf8(raw.to_bytes()) else {
                continue;
            };
            if check_name(name).is_err() || name.starts_with(UPLOAD_PREFIX) {
                continue;
            }
            let fd = match self.dir.fd() {
                Ok(fd) => fd,
                Err(e) => return Some(Err(e.into())),
            };
            // The entry itself, never followed: safe on a single name.
            let st = match statat(fd, raw, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue, // removed while we listed
                Err(e) => return Some(Err(e.into())),
            };
            let mut meta = Meta::from_stat(&st);
            if meta.kind == Kind::Symlink {
                // Follow it from the root, so that the kernel judges whether
                // its target is beneath the root, not beneath this directory.
                let target = self
                    .path
                    .join(name)
                    .ok()
                    .and_then(|path| {
                        self.root
                            .beneath(path.rel(), OFlags::PATH, Mode::empty())
                            .ok()
                    })
                    .and_then(|fd| fstat(&fd).ok());
                if let Some(st) = target {
                    meta = Meta::from_stat(&st);
                }
            }
            return Some(Ok(Entry {
                name: name.to_owned(),
                meta,
            }));
        }
    }
}

impl fmt::Debug for DirStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirStream")
            .field("path", &self.path)
            .finish()
    }
}

/// Checks that `fd` is a regular file (it was opened `O_NONBLOCK` so that a
/// FIFO could not stall the open). With `Some(keep)` it is made blocking
/// again: `keep` is the status flags it was opened with besides
/// `O_NONBLOCK` (`F_SETFL` replaces all of them at once; the access mode and
/// creation flags are not among them), so one `fcntl` does without reading
/// them first. A file only read may stay as it is: `O_NONBLOCK` has no
/// effect on a regular file's reads.
fn plain_file(fd: &OwnedFd, keep: Option<OFlags>) -> io::Result<Meta> {
    let meta = Meta::from_stat(&fstat(fd)?);
    if meta.kind == Kind::Dir {
        return Err(is_a_dir());
    }
    if meta.kind != Kind::File {
        return Err(not_plain());
    }
    if let Some(keep) = keep {
        rustix::fs::fcntl_setfl(fd.as_fd(), keep)?;
    }
    Ok(meta)
}

/// A new upload's file in `dir`: without a name (`O_TMPFILE`) if there is
/// a way to name it later and the filesystem can, else a fresh named
/// temporary.
fn open_temp(dir: &OwnedFd, how: Option<Link>) -> io::Result<(OwnedFd, Temp)> {
    if let Some(how) = how {
        match open_unnamed(dir) {
            Ok(fd) => return Ok((fd, Temp::Unnamed(how))),
            // The filesystem cannot (or an old kernel, which sees the
            // O_DIRECTORY among O_TMPFILE's bits): fall back to a name.
            Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..8 {
        let tmp = temp_name();
        match openat(dir, tmp.as_str(), flags, Mode::from_raw_mode(0o644)) {
            Ok(fd) => return Ok((fd, Temp::Named(tmp))),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Errno::EXIST.into())
}

/// `O_TMPFILE` in `dir`: a file without a name (mode 0644), linkable.
fn open_unnamed(dir: &OwnedFd) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
}

/// A fresh, unguessable temporary name.
fn temp_name() -> String {
    format!("{UPLOAD_PREFIX}{}", random_token())
}

/// How a file without a name gets one at the commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// `linkat(fd, "", dir, name, AT_EMPTY_PATH)`: needs
    /// `CAP_DAC_READ_SEARCH`, or since Linux 6.10 a file this process
    /// opened. If refused after all (privileges dropped), as `Proc`.
    EmptyPath,
    /// `linkat(AT_FDCWD, "/proc/self/fd/N", dir, name, AT_SYMLINK_FOLLOW)`:
    /// needs no capability, only procfs.
    Proc,
}

/// How this process can name an unnamed file, `None` if it cannot (then
/// uploads use named temporaries). Found out once, by trying it in `dir`
/// with a throwaway file, since a file that could not be named at the
/// commit would lose the upload. An answer that may be `dir`'s alone (no
/// `O_TMPFILE` there, no room, no write permission) is not kept.
fn link_method(dir: &OwnedFd) -> Option<Link> {
    static METHOD: OnceLock<Option<Link>> = OnceLock::new();
    if let Some(&how) = METHOD.get() {
        return how;
    }
    let mut decided = true;
    let mut found = None;
    for how in [Link::EmptyPath, Link::Proc] {
        // A file that was named once cannot be named again: one per try.
        let Ok(fd) = open_unnamed(dir) else {
            return None;
        };
        let tmp = temp_name();
        match link_as(&File::from(fd), dir, &tmp, how) {
            Ok(()) => {
                let _ = unlinkat(dir, tmp.as_str(), AtFlags::empty());
                found = Some(how);
                break;
            }
            // AT_EMPTY_PATH refused, or no procfs: this way is closed.
            Err(Errno::NOENT) => {}
            // Perhaps only here: try again with the next upload.
            Err(_) => decided = false,
        }
    }
    // Nothing worked: only for everyone if `dir` still exists.
    let gone = || fstat(dir).map_or(true, |st| st.st_nlink == 0);
    if found.is_none() && (!decided || gone()) {
        return None;
    }
    *METHOD.get_or_init(|| found)
}

/// Gives the unnamed (`O_TMPFILE`) `file` the name `name` in `dir`; `EEXIST`
/// if that is taken. `linkat` never replaces, so this is the commit that has
/// no named window at all.
fn link_unnamed(file: &File, dir: &OwnedFd, name: &str, how: Link) -> Result<(), Errno> {
    match link_as(file, dir, name, how) {
        // The kernel checks AT_EMPTY_PATH's permission first: ENOENT is a
        // refusal (or a directory gone, which /proc will find too).
        Err(Errno::NOENT) if how == Link::EmptyPath => link_as(file, dir, name, Link::Proc),
        r => r,
    }
}

fn link_as(file: &File, dir: &OwnedFd, name: &str, how: Link) -> Result<(), Errno> {
    match how {
        Link::EmptyPath => linkat(file, "", dir, name, AtFlags::EMPTY_PATH),
        Link::Proc => {
            let magic = format!("/proc/self/fd/{}", file.as_raw_fd());
            linkat(CWD, magic.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
        }
    }
}

/// Links the unnamed `file` to a fresh temporary name in `dir`, returned.
fn link_temp(file: &File, dir: &OwnedFd, how: Link) -> io::Result<String> {
    for _ in 0..8 {
        let tmp = temp_name();
        match link_unnamed(file, dir, &tmp, how) {
            Ok(()) => return Ok(tmp),
            Err(Errno::EXIST) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(Errno::EXIST.into())
}

/// After `rmdir` found the directory `name` (in `parent`) not empty: if
/// every entry is an upload temporary (a crash's leftovers; nothing a
/// client can see), removes them and says so. Anything else, or any
/// failure, leaves the directory as it is for the caller's error.
fn clear_stale_temps(parent: &OwnedFd, name: &str) -> bool {
    let Ok(fd) = openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    let Ok(mut dir) = Dir::new(fd) else {
        return false;
    };
    let mut temps: Vec<CString> = Vec::new();
    while let Some(ent) = dir.read() {
        let Ok(ent) = ent else {
            return false;
        };
        let raw = ent.file_name();
        match raw.to_bytes() {
            b"." | b".." => {}
            n if n.starts_with(UPLOAD_PREFIX.as_bytes()) => temps.push(raw.to_owned()),
            _ => return false,
        }
    }
    let Ok(fd) = dir.fd() else {
        return false;
    };
    // A directory with the prefix (planted locally) is not ours: EISDIR.
    temps.iter().all(|t| {
        matches!(
            unlinkat(fd, t.as_c_str(), AtFlags::empty()),
            Ok(()) | Err(Errno::NOENT)
        )
    })
}

/// 128 bits clients cannot guess, for temporary names. `RandomState` is
/// keyed from the OS random source; the counter, pid and clock make each
/// token distinct even across forked workers sharing the keys. `O_EXCL`
/// catches the rest.
fn random_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    if let Ok(d) = SystemTime::now().duration_since(UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    let a = h.finish();
    h.write_u8(0xa5);
    let b = h.finish();
    format!("{a:016x}{b:016x}")
}

/// An upload in progress: the temporary file to write into, and what
/// [`Root::commit_upload`] needs to put it in place. Dropping it without a
/// commit removes the temporary file.
#[derive(Debug)]
pub struct Upload {
    file: File,
    /// The target's directory, held open so that the commit lands here.
    dir: OwnedFd,
    temp: Temp,
    name: String,
    target: VPath,
    done: bool,
}

/// An upload's file as it waits for the commit.
#[derive(Debug)]
enum Temp {
    /// No name (`O_TMPFILE`); the commit names it this way.
    Unnamed(Link),
    /// A named temporary in the target's directory.
    Named(String),
}

impl Upload {
    /// The temporary file (`&File` implements `Write`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Another descriptor for the temporary file, e.g. to hand to a data
    /// transfer while this `Upload` waits for the commit.
    pub fn try_clone_file(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// The path the upload will replace on commit.
    pub fn target(&self) -> &VPath {
        &self.target
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // An unnamed file vanishes with its last descriptor.
        if let (false, Temp::Named(tmp)) = (self.done, &self.temp) {
            let _ = unlinkat(&self.dir, tmp.as_str(), AtFlags::empty());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    use std::path::PathBuf;

    const SECRET: &[u8] = b"TOP SECRET outside the root\n";

    /// A scratch tree, removed on drop:
    ///
    /// ```text
    /// base/secret                      the prize
    /// base/outside/inner_secret        a directory outside
    /// base/root/hello.txt  "hello"
    /// base/root/sub/deep.txt "deep!!"
    /// base/root/sub/up_secret  -> ../../secret
    /// base/root/sub/to_hello   -> ../hello.txt  (inside root, outside subroot sub)
    /// base/root/empty/
    /// base/root/abs_secret     -> base/secret (absolute)
    /// base/root/rel_secret     -> ../secret
    /// base/root/passwd         -> /etc/passwd
    /// base/root/outdir         -> base/outside (absolute)
    /// base/root/outdir_rel     -> ../outside
    /// base/root/loop_a <-> loop_b, self_loop -> self_loop
    /// base/root/good_link      -> hello.txt
    /// base/root/good_dir_link  -> sub
    /// base/root/dangling       -> nothing
    /// ```
    struct Tree {
        base: PathBuf,
        root: Root,
    }

    /// The links through which nothing outside may be reached.
    const EVIL: &[&str] = &[
        "abs_secret",
        "rel_secret",
        "passwd",
        "outdir",
        "outdir_rel",
        "sub/up_secret",
        "loop_a",
        "self_loop",
    ];

    impl Tree {
        fn new() -> Tree {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let base = std::env::temp_dir().join(format!(
                "muse-root-test-{}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed),
                random_token()
            ));
            let r = base.join("root");
            std::fs::create_dir_all(r.join("sub")).unwrap();
            std::fs::create_dir_all(r.join("empty")).unwrap();
            std::fs::create_dir_all(base.join("outside")).unwrap();
            std::fs::write(base.join("secret"), SECRET).unwrap();
            std::fs::write(base.join("outside/inner_secret"), SECRET).unwrap();
            std::fs::write(r.join("hello.txt"), b"hello").unwrap();
            std::fs::write(r.join("sub/deep.txt"), b"deep!!").unwrap();
            symlink(base.join("secret"), r.join("abs_secret")).unwrap();
            symlink("../secret", r.join("rel_secret")).unwrap();
            symlink("/etc/passwd", r.join("passwd")).unwrap();
            symlink(base.join("outside"), r.join("outdir")).unwrap();
            symlink("../outside", r.join("outdir_rel")).unwrap();
            symlink("../../secret", r.join("sub/up_secret")).unwrap();
            symlink("../hello.txt", r.join("sub/to_hello")).unwrap();
            symlink("loop_b", r.join("loop_a")).unwrap();
            symlink("loop_a", r.join("loop_b")).unwrap();
            symlink("self_loop", r.join("self_loop")).unwrap();
            symlink("hello.txt", r.join("good_link")).unwrap();
            symlink("sub", r.join("good_dir_link")).unwrap();
            symlink("nothing", r.join("dangling")).unwrap();
            let root = Root::open(&r).unwrap();
            Tree { base, root }
        }

        fn real(&self, rel: &str) -> PathBuf {
            self.base.join(rel)
        }

        /// Everything outside root is exactly as created.
        fn assert_outside_intact(&self) {
            assert_eq!(std::fs::read(self.real("secret")).unwrap(), SECRET);
            assert_eq!(
                std::fs::read(self.real("outside/inner_secret")).unwrap(),
                SECRET
            );
            let mut outside: Vec<_> = std::fs::read_dir(self.real("outside"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            outside.sort();
            assert_eq!(outside, vec![std::ffi::OsString::from("inner_secret")]);
            let mut top: Vec<_> = std::fs::read_dir(&self.base)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            top.sort();
            assert_eq!(
                top,
                ["outside", "root", "secret"].map(std::ffi::OsString::from)
            );
        }

        /// No upload temporaries left anywhere under root.
        fn assert_no_temp(&self) {
            fn walk(p: &Path) {
                for e in std::fs::read_dir(p).unwrap() {
                    let e = e.unwrap();
                    let name = e.file_name();
                    assert!(
                        !name.as_bytes().starts_with(UPLOAD_PREFIX.as_bytes()),
                        "temp left: {:?}",
                        e.path()
                    );
                    if e.file_type().unwrap().is_dir() {
                        walk(&e.path());
                    }
                }
            }
            walk(&self.real("root"));
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    fn v(s: &str) -> VPath {
        VPath::resolve(&VPath::root(), s.as_bytes()).unwrap()
    }

    fn res(cwd: &str, input: &[u8]) -> Result<String, PathError> {
        VPath::resolve(&v(cwd), input).map(|p| p.as_str().to_owned())
    }

    #[track_caller]
    fn assert_denied<T: fmt::Debug>(r: io::Result<T>) {
        match r {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}"),
            Ok(x) => panic!("expected PermissionDenied, got Ok({x:?})"),
        }
    }

    /// The invariants of every VPath.
    #[track_caller]
    fn assert_normal(p: &VPath) {
        let s = p.as_str();
        assert!(s.starts_with('/'), "{s:?}");
        assert!(!s.contains("//"), "{s:?}");
        assert!(!s.contains("/./") && !s.contains("/../"), "{s:?}");
        assert!(!s.ends_with("/.") && !s.ends_with("/.."), "{s:?}");
        assert!(s == "/" || !s.ends_with('/'), "{s:?}");
        assert!(s.len() <= MAX_PATH);
        assert!(
            !s.contains('\\') && !s.chars().any(char::is_control),
            "{s:?}"
        );
        assert!(p.components().all(|c| c.len() <= MAX_NAME));
        // Normal form is a fixed point.
        assert_eq!(&VPath::resolve(&VPath::root(), s.as_bytes()).unwrap(), p);
    }

    #[test]
    fn resolve_normalizes_and_clamps() {
        let cases: &[(&str, &str, &str)] = &[
            ("/", "", "/"),
            ("/a/b", "", "/a/b"),
            ("/", "..", "/"),
            ("/", "../..", "/"),
            ("/a", "../..", "/"),
            ("/a/b", "..", "/a"),
            ("/", "/../../etc/passwd", "/etc/passwd"),
            ("/x/y", "/../../etc/passwd", "/etc/passwd"),
            ("/", "a/../../b", "/b"),
            ("/c", "a/../../b", "/b"),
            ("/c/d", "a/../../b", "/c/b"),
            ("/", "//a///b", "/a/b"),
            ("/", "./a/./b", "/a/b"),
            ("/", "a/b/..", "/a"),
            ("/", "a/b/../", "/a"),
            ("/", "a/b/.", "/a/b"),
            ("/", "a/", "/a"),
            ("/q", "a", "/q/a"),
            ("/q", "/a", "/a"),
            ("/q", ".", "/q"),
            ("/q", "./", "/q"),
            ("/", "...", "/..."),
            ("/", ".hidden", "/.hidden"),
            ("/", "..a/a..", "/..a/a.."),
            ("/", " .. ", "/ .. "),
            ("/", "%2e%2e/%2e%2e", "/%2e%2e/%2e%2e"),
            ("/", "%2e%2e%2f%2e%2e%2fetc", "/%2e%2e%2f%2e%2e%2fetc"),
            ("/", "..%2f..%2fetc", "/..%2f..%2fetc"),
            ("/", "%00", "/%00"),
            ("/", "héllo/wörld", "/héllo/wörld"),
            ("/", "////", "/"),
        ];
        for (cwd, input, want) in cases {
            let got = res(cwd, input.as_bytes());
            assert_eq!(got.as_deref(), Ok(*want), "resolve({cwd:?}, {input:?})");
            assert_normal(&v(want));
        }
    }

    #[test]
    fn resolve_refuses_bad_bytes() {
        let cases: &[(&[u8], PathError)] = &[
            (b"a\0b", PathError::Nul),
            (b"\0", PathError::Nul),
            (b"../\0/etc/passwd", PathError::Nul),
            (b"a\\b", PathError::Backslash),
            (b"..\\..\\etc\\passwd", PathError::Backslash),
            (b"\\", PathError::Backslash),
            (b"a\rb", PathError::Control),
            (b"a\nb", PathError::Control),
            (b"a\tb", PathError::Control),
            (b"\x1b[31m", PathError::Control),
            (b"a\x7fb", PathError::Control),
            ("a\u{85}b".as_bytes(), PathError::Control),
            (b"\xff", PathError::NotUtf8),
            (b"a/\xc0\xae\xc0\xae/b", PathError::NotUtf8), // overlong "..": not UTF-8
            (b"\xed\xa0\x80", PathError::NotUtf8),         // a surrogate
            (b"abc\xe2\x82", PathError::NotUtf8),          // truncated sequence
        ];
        for (input, want) in cases {
            assert_eq!(
                VPath::resolve(&VPath::root(), input),
                Err(want.clone()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn resolve_strict_refuses_climbing_above_root() {
        let ok: &[(&str, &str)] = &[
            ("/", "/"),
            ("", "/"),
            ("/a/b/../c", "/a/c"),
            ("/a/..", "/"),
            ("/a/../b/./c/", "/b/c"),
            ("a/b", "/a/b"),
            ("//a//b//", "/a/b"),
            ("/%2e%2e/x", "/%2e%2e/x"),
            ("/.../x", "/.../x"),
        ];
        for (input, want) in ok {
            let got = VPath::resolve_strict(input.as_bytes());
            assert_eq!(got.as_ref().map(VPath::as_str), Ok(*want), "{input:?}");
            // Where nothing climbs, strict and clamping agree.
            assert_eq!(got, VPath::resolve(&VPath::root(), input.as_bytes()));
        }
        for input in [
            "/..",
            "..",
            "/../etc/passwd",
            "/a/../..",
            "/a/b/../../../c",
            "/./..",
        ] {
            assert_eq!(
                VPath::resolve_strict(input.as_bytes()),
                Err(PathError::AboveRoot),
                "{input:?}"
            );
            // FTP's resolve still clamps the same input.
            assert!(VPath::resolve(&VPath::root(), input.as_bytes()).is_ok());
        }
        // resolve's own refusals come first and are unchanged.
        assert_eq!(
            VPath::resolve_strict(b"/../a\\b"),
            Err(PathError::Backslash)
        );
        assert_eq!(VPath::resolve_strict(b"/a\0"), Err(PathError::Nul));
        assert_eq!(VPath::resolve_strict(b"/\xc0\xae"), Err(PathError::NotUtf8));
        assert_eq!(
            VPath::resolve_strict(&vec![b'a'; MAX_NAME + 1]),
            Err(PathError::NameTooLong)
        );
    }

    #[test]
    fn resolve_length_limits() {
        let name = "n".repeat(MAX_NAME);
        assert_eq!(res("/", name.as_bytes()).unwrap().len(), MAX_NAME + 1);
        let long = "n".repeat(MAX_NAME + 1);
        assert_eq!(res("/", long.as_bytes()), Err(PathError::NameTooLong));
        assert_eq!(
            res("/", format!("{long}/..").as_bytes()),
            Err(PathError::NameTooLong)
        );
        // Input over MAX_PATH is refused even if it would normalize short.
        let over = "./".repeat(MAX_PATH / 2 + 1);
        assert_eq!(res("/", over.as_bytes()), Err(PathError::TooLong));
        assert_eq!(res("/", &vec![b'/'; MAX_PATH + 1]), Err(PathError::TooLong));
        assert_eq!(res("/", &vec![b'/'; MAX_PATH]).as_deref(), Ok("/"));
        // Exactly MAX_PATH bytes of result is fine; one more is not.
        let seg = format!("/{}", "d".repeat(MAX_NAME)); // 256 bytes
        let mut deep = seg.repeat(MAX_PATH / 256); // 15 * 256 = 3840
        deep.push('/');
        deep.push_str(&"e".repeat(MAX_PATH - deep.len()));
        assert_eq!(deep.len(), MAX_PATH);
        let p = v(&deep);
        assert_normal(&p);
        assert_eq!(p.join("f"), Err(PathError::TooLong));
        // A relative input that fits, resolved in a deep cwd, does not.
        assert_eq!(
            VPath::resolve(&p, b"x"),
            Err(PathError::TooLong),
            "cwd + input over MAX_PATH"
        );
    }

    /// Every prefix of a hostile input resolves to a normal path (or to the
    /// error its bad byte deserves), and resolving it one component at a
    /// time, as a client doing CWD after CWD, lands in the same place.
    #[test]
    fn resolve_byte_at_a_time_and_step_by_step() {
        let inputs: &[&[u8]] = &[
            b"/../../etc/passwd",
            b"a/../../b",
            b"//a///b",
            b"./a/./b",
            b"a/b/..",
            b"../../../../../../../../../../etc/shadow",
            b"%2e%2e/%2e%2e/secret",
            b"x/y/z/../../../../../..",
            "d\u{e9}j\u{e0}/vu/..".as_bytes(),
            b"a/..\\../b",
            b"a/b\0/../..",
        ];
        for cwd in ["/", "/x", "/x/y/z"] {
            let cwd = v(cwd);
            for input in inputs {
                for n in 0..=input.len() {
                    let prefix = &input[..n];
                    match VPath::resolve(&cwd, prefix) {
                        Ok(p) => assert_normal(&p),
                        Err(e) => {
                            // Only the bad bytes or a split UTF-8 sequence.
                            let ok_err = match e {
                                PathError::Nul => prefix.contains(&0),
                                PathError::Backslash => prefix.contains(&b'\\'),
                                PathError::NotUtf8 => std::str::from_utf8(prefix).is_err(),
                                _ => false,
                            };
                            assert!(ok_err, "{prefix:?}: {e}");
                        }
                    }
                }
                let Ok(whole) = VPath::resolve(&cwd, input) else {
                    continue;
                };
                let mut step = cwd.clone();
                let absolute = input.starts_with(b"/");
                if absolute {
                    step = VPath::root();
                }
                for part in input.split(|&b| b == b'/') {
                    step = VPath::resolve(&step, part).unwrap();
                }
                assert_eq!(step, whole, "{input:?}");
            }
        }
    }

    /// 10,000 random byte strings from a fixed-seed xorshift, biased toward
    /// the characters that matter: resolve() errors or yields a normal path.
    #[test]
    fn resolve_random_inputs() {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        const ALPHABET: &[u8] = b"//////......aaab%2e\\\0\xff\xc3\xa9\n ";
        let cwds = [VPath::root(), v("/x"), v("/x/y/z")];
        let (mut oks, mut errs) = (0, 0);
        for i in 0..10_000 {
            let len = (next() % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = next();
                    if r % 16 == 0 {
                        (r >> 8) as u8 // any byte at all
                    } else {
                        ALPHABET[(r >> 8) as usize % ALPHABET.len()]
                    }
                })
                .collect();
            let cwd = &cwds[i % cwds.len()];
            match VPath::resolve(cwd, &bytes) {
                Ok(p) => {
                    oks += 1;
                    assert_normal(&p);
                    let s = p.as_str();
                    assert!(!s.contains("/../") && !s.contains("/./") && !s.contains("//"));
                    // The path never climbs: each ".." only undoes a name.
                    if !bytes.starts_with(b"/") {
                        let depth = bytes
                            .split(|&b| b == b'/')
                            .filter(|c| !c.is_empty() && *c != b".")
                            .count();
                        assert!(p.components().count() <= cwd.components().count() + depth);
                    }
                }
                Err(_) => errs += 1,
            }
        }
        // The generator exercises both outcomes.
        assert!(oks > 1000 && errs > 1000, "oks {oks} errs {errs}");
    }

    #[test]
    fn vpath_parent_name_join() {
        let root = VPath::root();
        assert!(root.is_root());
        assert_eq!(root.as_str(), "/");
        assert_eq!(root.to_string(), "/");
        assert_eq!(root.parent(), None);
        assert_eq!(root.file_name(), None);
        assert_eq!(root.components().count(), 0);
        let a = root.join("a").unwrap();
        assert_eq!(a.as_str(), "/a");
        assert_eq!(a.parent(), Some(VPath::root()));
        assert_eq!(a.file_name(), Some("a"));
        let ab = a.join("b.txt").unwrap();
        assert_eq!(format!("{ab}"), "/a/b.txt");
        assert_eq!(ab.parent(), Some(a.clone()));
        assert_eq!(ab.file_name(), Some("b.txt"));
        assert_eq!(ab.components().collect::<Vec<_>>(), ["a", "b.txt"]);
        for bad in ["", ".", "..", "a/b", "/", "a\0", "a\\b", "a\nb"] {
            assert!(a.join(bad).is_err(), "{bad:?}");
        }
        assert_eq!(a.join(&"n".repeat(256)), Err(PathError::NameTooLong));
        assert_eq!(a.join("%2e%2e").unwrap().as_str(), "/a/%2e%2e");
        // PathError is usable in a reply and as an io::Error.
        assert_eq!(PathError::Nul.to_string(), "path contains a NUL byte");
        let e: io::Error = PathError::Backslash.into();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn open_errors_name_the_path() {
        let e = Root::open(Path::new("/nonexistent/muse-root")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(
            e.to_string(),
            "cannot open root /nonexistent/muse-root: No such file or directory (os error 2)"
        );
        let t = Tree::new();
        let e = Root::open(&t.real("root/hello.txt")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotADirectory);
        assert!(e.to_string().contains("root/hello.txt"), "{e}");
    }

    /// The kernel is the backstop even if a malformed relative path ever
    /// reached the lookup.
    #[test]
    fn lookup_refuses_raw_escapes() {
        let t = Tree::new();
        for raw in [
            "..",
            "../secret",
            "sub/../../secret",
            "/etc/passwd",
            "abs_secret",
        ] {
            assert_denied(t.root.beneath(raw, OFlags::RDONLY, Mode::empty()));
        }
        assert!(t
            .root
            .beneath("sub/../hello.txt", OFlags::PATH, Mode::empty())
            .is_ok());
    }

    #[test]
    fn reads_refuse_every_escape() {
        let t = Tree::new();
        let r = &t.root;
        let mut paths: Vec<String> = EVIL.iter().map(|p| format!("/{p}")).collect();
        paths.extend(
            [
                "/outdir/inner_secret",
                "/outdir_rel/inner_secret",
                "/loop_a/x",
                "/good_dir_link/up_secret",
            ]
            .map(String::from),
        );
        for p in &paths {
            let p = v(p);
            assert_denied(r.stat(&p));
            assert_denied(r.open_read(&p));
            assert_denied(r.list(&p));
            assert_denied(r.subroot(&p));
        }
        // Client spellings of escapes stay inside: "/../secret" is "/secret".
        for input in [
            "../secret",
            "/../../secret",
            "%2e%2e/secret",
            "sub/../../secret",
        ] {
            let p = VPath::resolve(&v("/sub"), input.as_bytes()).unwrap();
            assert_eq!(
                r.stat(&p).unwrap_err().kind(),
                io::ErrorKind::NotFound,
                "{p}"
            );
        }
        let p = VPath::resolve(&VPath::root(), b"/../../etc/passwd").unwrap();
        assert_eq!(r.open_read(&p).unwrap_err().kind(), io::ErrorKind::NotFound);
        t.assert_outside_intact();
    }

    #[test]
    fn legit_links_work() {
        let t = Tree::new();
        let r = &t.root;
        let m = r.stat(&v("/good_link")).unwrap();
        assert_eq!((m.kind, m.size), (Kind::File, 5));
        let (mut f, m) = r.open_read(&v("/good_link")).unwrap();
        assert_eq!(m.size, 5);
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert_eq!(r.stat(&v("/good_dir_link")).unwrap().kind, Kind::Dir);
        let (mut f, _) = r.open_read(&v("/good_dir_link/deep.txt")).unwrap();
        s.clear();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "deep!!");
        // A link climbing out of sub but staying inside root is fine here.
        assert_eq!(r.stat(&v("/sub/to_hello")).unwrap().size, 5);
        assert_eq!(
            r.stat(&v("/dangling")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // open_read leaves O_NONBLOCK set (clearing it costs a system call
        // per download); on a regular file it changes nothing: a read from
        // the start gets the whole file.
        let flags = rustix::fs::fcntl_getfl(&f).unwrap();
        assert!(flags.contains(OFlags::NONBLOCK));
        let mut again = String::new();
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(0)).unwrap();
        f.read_to_string(&mut again).unwrap();
        assert_eq!(again, "deep!!");
    }

    #[test]
    fn open_read_wants_a_plain_file() {
        let t = Tree::new();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            t.real("root/fifo"),
            Mode::from_raw_mode(0o644),
        )
        .unwrap();
        // A directory says so; anything else is just not a plain file.
        for p in ["/", "/sub", "/good_dir_link"] {
            let e = t.root.open_read(&v(p)).unwrap_err();
            assert!(is_not_plain_file(&e), "{p}: {e}");
            assert_eq!(e.kind(), io::ErrorKind::IsADirectory, "{p}");
            assert_eq!(e.to_string(), "Is a directory");
        }
        let e = t.root.open_read(&v("/fifo")).unwrap_err();
        assert!(is_not_plain_file(&e), "{e}");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(e.to_string(), "Not a plain file");
        // Writes say the same: APPE, REST + STOR and STOR.
        let r = &t.root;
        for (p, kind, text) in [
            ("/sub", io::ErrorKind::IsADirectory, "Is a directory"),
            ("/fifo", io::ErrorKind::InvalidInput, "Not a plain file"),
        ] {
            for e in [
                r.open_append(&v(p)).unwrap_err(),
                r.open_write_at(&v(p), 0).unwrap_err(),
                r.open_write_at(&v(p), 9).unwrap_err(),
            ] {
                assert!(is_not_plain_file(&e), "{p}: {e}");
                assert_eq!((e.kind(), e.to_string().as_str()), (kind, text), "{p}");
            }
        }
        for how in HOW {
            let e = r.create_upload_as(&v("/sub"), Some(how)).unwrap_err();
            assert!(is_not_plain_file(&e), "{e}");
            assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
            assert_eq!(e.to_string(), "Is a directory");
        }
        // Through a link to a directory too (a write never follows it, and
        // an upload would replace the link, but a directory it is not).
        let e = r.open_read(&v("/good_dir_link")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
        t.assert_no_temp();
        assert!(!is_not_plain_file(&io::Error::from(
            io::ErrorKind::InvalidInput
        )));
    }

    #[test]
    fn list_sorts_and_reports() {
        let t = Tree::new();
        std::fs::write(t.real("root/a_big"), vec![7u8; 1234]).unwrap();
        // Names a client could not name back are skipped.
        std::fs::write(
            t.real("root")
                .join(std::ffi::OsStr::from_bytes(b"bad\xffname")),
            b"x",
        )
        .unwrap();
        std::fs::write(t.real("root/evil\r\n226 done"), b"x").unwrap();
        std::fs::write(t.real("root/back\\slash"), b"x").unwrap();
        let list = t.root.list(&VPath::root()).unwrap();
        let names: Vec<&str> = list.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "a_big",
                "abs_secret",
                "dangling",
                "empty",
                "good_dir_link",
                "good_link",
                "hello.txt",
                "loop_a",
                "loop_b",
                "outdir",
                "outdir_rel",
                "passwd",
                "rel_secret",
                "self_loop",
                "sub",
            ]
        );
        let get = |n: &str| &list.iter().find(|e| e.name == n).unwrap().meta;
        assert_eq!((get("a_big").kind, get("a_big").size), (Kind::File, 1234));
        assert_eq!(
            (get("hello.txt").kind, get("hello.txt").size),
            (Kind::File, 5)
        );
        assert_eq!(get("hello.txt").mode & 0o400, 0o400);
        assert!(get("hello.txt").modified > UNIX_EPOCH);
        assert_eq!(get("sub").kind, Kind::Dir);
        assert_eq!(get("empty").kind, Kind::Dir);
        // A link that resolves beneath the root shows its target...
        assert_eq!(
            (get("good_link").kind, get("good_link").size),
            (Kind::File, 5)
        );
        assert_eq!(get("good_dir_link").kind, Kind::Dir);
        // ...one that leaves, loops or dangles shows only itself.
        for n in [
            "abs_secret",
            "rel_secret",
            "passwd",
            "outdir",
            "outdir_rel",
            "loop_a",
            "self_loop",
            "dangling",
        ] {
            assert_eq!(get(n).kind, Kind::Symlink, "{n}");
            assert_ne!(get(n).size, SECRET.len() as u64, "{n}");
        }
        // In a subdirectory, links are judged from the root: "../hello.txt"
        // in sub is fine, "../../secret" is not.
        let sub = t.root.list(&v("/sub")).unwrap();
        let names: Vec<_> = sub.iter().map(|e| (e.name.as_str(), e.meta.kind)).collect();
        assert_eq!(
            names,
            [
                ("deep.txt", Kind::File),
                ("to_hello", Kind::File),
                ("up_secret", Kind::Symlink)
            ]
        );
        assert_eq!(t.root.list(&v("/good_dir_link")).unwrap(), sub);
        assert_eq!(t.root.list(&v("/empty")).unwrap(), vec![]);
        assert_eq!(
            t.root.list(&v("/hello.txt")).unwrap_err().kind(),
            io::ErrorKind::NotADirectory
        );
    }

    /// Everything a stream yields, sorted: `list` without its sort.
    fn streamed(mut stream: DirStream) -> Vec<Entry> {
        let mut out = Vec::new();
        while let Some(e) = stream.next_entry() {
            out.push(e.unwrap());
        }
        assert!(stream.next_entry().is_none(), "stays at the end");
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    #[test]
    fn dir_stream_matches_list() {
        fn send_and_static<T: Send + 'static>() {}
        send_and_static::<DirStream>();
        let t = Tree::new();
        let r = &t.root;
        std::fs::write(t.real(&format!("root/{UPLOAD_PREFIX}stale")), b"x").unwrap();
        std::fs::write(t.real("root/bad\name"), b"x").unwrap();
        // Symlinks as `list` has them: followed beneath the root, else the
        // link itself; judged from the root, also in a subdirectory.
        for dir in ["/", "/sub", "/good_dir_link", "/empty"] {
            let dir = v(dir);
            assert_eq!(streamed(r.open_dir(&dir).unwrap()), r.list(&dir).unwrap());
        }
        let sub = streamed(r.open_dir(&v("/sub")).unwrap());
        let kinds: Vec<_> = sub.iter().map(|e| (e.name.as_str(), e.meta.kind)).collect();
        assert_eq!(
            kinds,
            [
                ("deep.txt", Kind::File),
                ("to_hello", Kind::File),
                ("up_secret", Kind::Symlink)
            ]
        );
        assert_eq!(
            r.open_dir(&v("/hello.txt")).unwrap_err().kind(),
            io::ErrorKind::NotADirectory
        );
        assert_denied(r.open_dir(&v("/outdir")));
        t.assert_outside_intact();
    }

    /// A big directory, streamed on another thread after the root that
    /// opened it is gone; entries removed meanwhile are skipped.
    #[test]
    fn dir_stream_of_5000_entries() {
        const N: usize = 5000;
        let t = Tree::new();
        std::fs::create_dir(t.real("root/big")).unwrap();
        for i in 0..N {
            let p = t.real(&format!("root/big/f{i:05}"));
            if i % 10 == 0 {
                symlink(if i % 20 == 0 { "f00001" } else { "/etc/passwd" }, p).unwrap();
            } else {
                std::fs::write(p, vec![b'x'; i % 7]).unwrap();
            }
        }
        let root = Root::open(&t.real("root")).unwrap();
        let list = root.list(&v("/big")).unwrap();
        assert_eq!(list.len(), N);
        let mut stream = root.open_dir(&v("/big")).unwrap();
        drop(root);
        let first = stream.next_entry().unwrap().unwrap();
        let (first_name, removed) = (first.name.clone(), t.real("root/big/f04999"));
        let gone = removed.file_name().unwrap().to_str().unwrap().to_owned();
        let rest = std::thread::spawn(move || {
            // Removed after the stream began: either not seen or seen.
            let _ = std::fs::remove_file(&removed);
            let mut out = vec![first];
            out.extend(streamed(stream));
            out.sort_by(|a, b| a.name.cmp(&b.name));
            out
        })
        .join()
        .unwrap();
        let mut want = list.clone();
        let had_gone = rest.iter().any(|e| e.name == gone);
        if !had_gone {
            want.retain(|e| e.name != gone);
        }
        assert_eq!(rest, want, "first entry {first_name}");
        let get = |n: &str| &list.iter().find(|e| e.name == n).unwrap().meta;
        assert_eq!((get("f00020").kind, get("f00020").size), (Kind::File, 1));
        assert_eq!(get("f00010").kind, Kind::Symlink);
        assert_eq!((get("f00013").kind, get("f00013").size), (Kind::File, 6));
    }

    #[test]
    fn writes_never_go_through_links() {
        let t = Tree::new();
        let r = &t.root;
        for l in EVIL {
            let p = v(l);
            assert_denied(r.open_append(&p));
            assert_denied(r.open_write_at(&p, 0));
            assert_denied(r.open_write_at(&p, 3));
        }
        // Nor through the inner legit link: writes never follow a final link.
        assert_denied(r.open_append(&v("/good_link")));
        assert_eq!(std::fs::read(t.real("root/hello.txt")).unwrap(), b"hello");
        assert_denied(r.open_append(&v("/dangling")));
        assert!(!t.real("root/nothing").exists());
        t.assert_outside_intact();
    }

    #[test]
    fn nothing_created_outside() {
        let t = Tree::new();
        let r = &t.root;
        for dir in ["/outdir", "/outdir_rel", "/loop_a", "/abs_secret"] {
            let p = v(dir).join("planted").unwrap();
            assert_denied(r.open_append(&p));
            assert_denied(r.open_write_at(&p, 0));
            assert_denied(r.create_upload(&p));
            assert_denied(r.create_unique(&p));
            assert_denied(r.mkdir(&p));
            assert_denied(r.rmdir(&p));
            assert_denied(r.remove_file(&p));
            assert_denied(r.rename(&v("/hello.txt"), &p));
            assert_denied(r.rename(&p, &v("/stolen")));
        }
        for victim in ["/outdir/inner_secret", "/outdir_rel/inner_secret"] {
            assert_denied(r.remove_file(&v(victim)));
            assert_denied(r.rename(&v(victim), &v("/stolen")));
            assert_denied(r.create_upload(&v(victim)));
        }
        assert!(r.stat(&v("/stolen")).is_err());
        assert_eq!(std::fs::read(t.real("root/hello.txt")).unwrap(), b"hello");
        t.assert_outside_intact();
        t.assert_no_temp();
    }

    /// Deleting, renaming or replacing an escaping link affects the link
    /// only, never its target.
    #[test]
    fn links_themselves_can_be_tidied() {
        let t = Tree::new();
        let r = &t.root;
        // rmdir on a link to a directory: not a directory.
        assert_eq!(
            r.rmdir(&v("/outdir")).unwrap_err().kind(),
            io::ErrorKind::NotADirectory
        );
        r.rename(&v("/abs_secret"), &v("/moved")).unwrap();
        assert_denied(r.stat(&v("/moved")));
        r.remove_file(&v("/moved")).unwrap();
        r.remove_file(&v("/rel_secret")).unwrap();
        r.remove_file(&v("/outdir")).unwrap();
        r.remove_file(&v("/loop_a")).unwrap();
        // An upload over a link replaces the link with a file.
        let up = r.create_upload(&v("/passwd")).unwrap();
        up.file().write_all(b"mine").unwrap();
        r.commit_upload(up).unwrap();
        assert_eq!(std::fs::read(t.real("root/passwd")).unwrap(), b"mine");
        assert!(std::fs::symlink_metadata(t.real("root/passwd"))
            .unwrap()
            .is_file());
        let up = r.create_upload(&v("/sub/up_secret")).unwrap();
        up.file().write_all(b"also mine").unwrap();
        r.commit_upload(up).unwrap();
        assert_eq!(r.stat(&v("/sub/up_secret")).unwrap().size, 9);
        t.assert_outside_intact();
        t.assert_no_temp();
    }

    #[test]
    fn the_root_itself_is_not_an_entry() {
        let t = Tree::new();
        let r = &t.root;
        let root = VPath::root();
        assert_denied(r.rmdir(&root));
        assert_denied(r.remove_file(&root));
        assert_denied(r.rename(&root, &v("/x")));
        assert_denied(r.rename(&v("/hello.txt"), &root));
        assert_eq!(
            r.mkdir(&root).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(is_not_plain_file(&r.open_append(&root).unwrap_err()));
        assert!(is_not_plain_file(&r.open_write_at(&root, 0).unwrap_err()));
        assert!(is_not_plain_file(&r.create_upload(&root).unwrap_err()));
        assert!(is_not_plain_file(&r.create_unique(&root).unwrap_err()));
        assert_eq!(r.stat(&root).unwrap().kind, Kind::Dir);
        assert_eq!(std::fs::read(t.real("root/hello.txt")).unwrap(), b"hello");
    }

    /// The named fallback (a filesystem without `O_TMPFILE`).
    #[test]
    fn named_upload_commit_replaces_atomically() {
        let t = Tree::new();
        let r = &t.root;
        let target = v("/hello.txt");
        let up = r.create_upload_as(&target, NAMED).unwrap();
        assert!(matches!(up.temp, Temp::Named(_)));
        assert_eq!(up.target(), &target);
        let mut clone = up.try_clone_file().unwrap();
        clone.write_all(b"new ").unwrap();
        up.file().write_all(b"contents").unwrap();
        // Until the commit, readers see the old file, whole; the temp is
        // there on disk but not in listings.
        assert_eq!(std::fs::read(t.real("root/hello.txt")).unwrap(), b"hello");
        let temps: Vec<_> = std::fs::read_dir(t.real("root"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(UPLOAD_PREFIX))
            .collect();
        assert_eq!(temps.len(), 1);
        assert_eq!(temps[0].len(), UPLOAD_PREFIX.len() + 32);
        let meta = std::fs::metadata(t.real("root").join(&temps[0])).unwrap();
        assert!(std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o133 == 0);
        assert!(!r
            .list(&VPath::root())
            .unwrap()
            .iter()
            .any(|e| e.name.starts_with(UPLOAD_PREFIX)));
        // An old reader keeps its file across the commit.
        let (mut old, _) = r.open_read(&target).unwrap();
        r.commit_upload(up).unwrap();
        let mut s = String::new();
        old.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert_eq!(
            std::fs::read(t.real("root/hello.txt")).unwrap(),
            b"new contents"
        );
        t.assert_no_temp();
        // A new file, in a subdirectory.
        let up = r.create_upload_as(&v("/sub/fresh"), NAMED).unwrap();
        up.file().write_all(b"fresh").unwrap();
        r.commit_upload(up).unwrap();
        assert_eq!(std::fs::read(t.real("root/sub/fresh")).unwrap(), b"fresh");
        // Two uploads get distinct temporaries; the last commit wins.
        let a = r.create_upload_as(&v("/race"), NAMED).unwrap();
        let b = r.create_upload_as(&v("/race"), NAMED).unwrap();
        a.file().write_all(b"a").unwrap();
        b.file().write_all(b"b").unwrap();
        r.commit_upload(a).unwrap();
        r.commit_upload(b).unwrap();
        assert_eq!(std::fs::read(t.real("root/race")).unwrap(), b"b");
        t.assert_no_temp();
        // Into a missing directory: NotFound, nothing left behind.
        assert_eq!(
            r.create_upload_as(&v("/nodir/x"), NAMED)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn upload_discard_and_drop_leave_target() {
        for how in HOW {
            let t = Tree::new();
            let r = &t.root;
            let create = |p: &str| r.create_upload_as(&v(p), Some(how)).unwrap();
            let up = create("/hello.txt");
            up.file().write_all(b"half an upl").unwrap();
            r.discard_upload(up);
            assert_eq!(std::fs::read(t.real("root/hello.txt")).unwrap(), b"hello");
            t.assert_no_temp();
            {
                let up = create("/hello.txt");
                up.file().write_all(b"aborted").unwrap();
                // Session died: dropped without commit.
            }
            assert_eq!(std::fs::read(t.real("root/hello.txt")).unwrap(), b"hello");
            t.assert_no_temp();
            let up = create("/never");
            drop(up);
            assert!(!t.real("root/never").exists());
            t.assert_no_temp();
            // A commit that cannot land (target became a directory) fails
            // and leaves no temporary.
            let up = create("/late");
            std::fs::create_dir(t.real("root/late")).unwrap();
            std::fs::write(t.real("root/late/x"), b"x").unwrap();
            let e = r.commit_upload(up).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::IsADirectory, "{e}");
            t.assert_no_temp();
            assert!(t.real("root/late/x").exists());
            // Nor one whose directory went away meanwhile.
            std::fs::create_dir(t.real("root/gone")).unwrap();
            let up = create("/gone/f");
            up.file().write_all(b"lost").unwrap();
            if how.is_some() {
                // Nothing named in it, so the directory can go.
                r.rmdir(&v("/gone")).unwrap();
            } else {
                std::fs::remove_dir_all(t.real("root/gone")).unwrap();
            }
            assert_eq!(
                r.commit_upload(up).unwrap_err().kind(),
                io::ErrorKind::NotFound
            );
            t.assert_no_temp();
        }
    }

    /// Names of the entries in `dir`, as the filesystem has them.
    fn names_on_disk(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    /// Every way an upload can go: each way of naming an unnamed file at
    /// the commit, and a named temporary from the start.
    const HOW: [Option<Link>; 3] = [Some(Link::EmptyPath), Some(Link::Proc), None];
    const NAMED: Option<Option<Link>> = Some(None);

    /// An upload has no name until its commit: a crash leaves nothing.
    #[test]
    fn unnamed_upload_never_shows() {
        let t = Tree::new();
        let dir = t.root.beneath(".", OFlags::PATH, Mode::empty()).unwrap();
        if link_method(&dir).is_none() {
            eprintln!("no O_TMPFILE, or no way to link it here: skipped");
            return;
        }
        // What create_upload chooses here, and each way by force.
        for how in [None, Some(Some(Link::EmptyPath)), Some(Some(Link::Proc))] {
            unnamed_upload_never_shows_with(how);
        }
    }

    fn unnamed_upload_never_shows_with(how: Option<Option<Link>>) {
        let t = Tree::new();
        let r = &t.root;
        std::fs::create_dir(t.real("root/up")).unwrap();
        std::fs::write(t.real("root/up/old"), b"old").unwrap();
        let create = |p: &str| r.create_upload_as(&v(p), how).unwrap();
        let up = create("/up/new");
        assert!(matches!(up.temp, Temp::Unnamed(_)), "{how:?}");
        // The clone is what a session hands to the data transfer.
        let mut clone = up.try_clone_file().unwrap();
        clone.write_all(b"brand ").unwrap();
        up.file().write_all(b"new").unwrap();
        let st = fstat(up.file()).unwrap();
        assert_eq!(st.st_nlink, 0);
        assert_eq!(st.st_mode & 0o133, 0, "{:o}", st.st_mode);
        let replace = create("/up/old");
        replace.file().write_all(b"replaced").unwrap();
        // Nothing in the directory while both are under way.
        assert_eq!(names_on_disk(&t.real("root/up")), ["old"]);
        assert_eq!(std::fs::read(t.real("root/up/old")).unwrap(), b"old");
        // A commit that creates: linked straight to its name.
        r.commit_upload(up).unwrap();
        assert_eq!(names_on_disk(&t.real("root/up")), ["new", "old"]);
        assert_eq!(std::fs::read(t.real("root/up/new")).unwrap(), b"brand new");
        // A commit that replaces: an old reader keeps the old file.
        let (mut old, _) = r.open_read(&v("/up/old")).unwrap();
        r.commit_upload(replace).unwrap();
        let mut s = String::new();
        old.read_to_string(&mut s).unwrap();
        assert_eq!(s, "old");
        assert_eq!(std::fs::read(t.real("root/up/old")).unwrap(), b"replaced");
        assert_eq!(names_on_disk(&t.real("root/up")), ["new", "old"]);
        // The same through a symlink at the target: replaced, not followed.
        let up = create("/abs_secret");
        up.file().write_all(b"mine").unwrap();
        r.commit_upload(up).unwrap();
        assert!(std::fs::symlink_metadata(t.real("root/abs_secret"))
            .unwrap()
            .is_file());
        // Two uploads to one new name: the last commit wins.
        let a = create("/up/race");
        let b = create("/up/race");
        a.file().write_all(b"a").unwrap();
        b.file().write_all(b"b").unwrap();
        r.commit_upload(a).unwrap();
        r.commit_upload(b).unwrap();
        assert_eq!(std::fs::read(t.real("root/up/race")).unwrap(), b"b");
        // A discarded one leaves the directory as it was.
        let up = create("/up/discarded");
        up.file().write_all(b"x").unwrap();
        r.discard_upload(up);
        assert_eq!(names_on_disk(&t.real("root/up")), ["new", "old", "race"]);
        t.assert_no_temp();
        t.assert_outside_intact();
    }

    /// The commit's link without `AT_EMPTY_PATH` (which needs a capability
    /// or Linux 6.10): through `/proc/self/fd`.
    #[test]
    fn unnamed_upload_links_through_proc() {
        let t = Tree::new();
        let dir = t.root.beneath("sub", OFlags::PATH, Mode::empty()).unwrap();
        let Ok((fd, Temp::Unnamed(_))) = open_temp(&dir, Some(Link::Proc)) else {
            eprintln!("this filesystem has no O_TMPFILE: skipped");
            return;
        };
        let file = File::from(fd);
        (&file).write_all(b"via proc").unwrap();
        link_unnamed(&file, &dir, "linked", Link::Proc).unwrap();
        assert_eq!(
            std::fs::read(t.real("root/sub/linked")).unwrap(),
            b"via proc"
        );
        assert_eq!(
            link_unnamed(&file, &dir, "deep.txt", Link::Proc),
            Err(Errno::EXIST)
        );
        assert_eq!(
            std::fs::read(t.real("root/sub/deep.txt")).unwrap(),
            b"deep!!"
        );
        let tmp = link_temp(&file, &dir, Link::Proc).unwrap();
        assert!(tmp.starts_with(UPLOAD_PREFIX));
        assert_eq!(fstat(&file).unwrap().st_nlink, 2);
    }

    /// Leftovers of a crash (named temporaries) do not keep RMD from
    /// removing a directory that lists as empty; anything else does.
    #[test]
    fn rmdir_clears_stale_temps() {
        let t = Tree::new();
        let r = &t.root;
        let stale = |dir: &str| t.real(&format!("root/{dir}/{UPLOAD_PREFIX}0123abcd"));
        std::fs::create_dir(t.real("root/d")).unwrap();
        std::fs::write(stale("d"), b"half").unwrap();
        std::fs::write(t.real(&format!("root/d/{UPLOAD_PREFIX}x")), b"").unwrap();
        assert_eq!(r.list(&v("/d")).unwrap(), vec![]);
        r.rmdir(&v("/d")).unwrap();
        assert!(!t.real("root/d").exists());
        // A crash in the fallback path, for real: a named upload dropped
        // without its Drop running.
        std::fs::create_dir(t.real("root/f")).unwrap();
        std::mem::forget(r.create_upload_as(&v("/f/x"), NAMED).unwrap());
        assert_eq!(names_on_disk(&t.real("root/f")).len(), 1);
        r.rmdir(&v("/f")).unwrap();
        // With a real entry beside it: not empty, and the temp stays.
        std::fs::create_dir(t.real("root/e")).unwrap();
        std::fs::write(stale("e"), b"half").unwrap();
        std::fs::write(t.real("root/e/real"), b"").unwrap();
        assert_eq!(
            r.rmdir(&v("/e")).unwrap_err().kind(),
            io::ErrorKind::DirectoryNotEmpty
        );
        assert!(stale("e").exists());
        // A directory with the prefix is not an upload's: left alone.
        std::fs::create_dir(t.real("root/g")).unwrap();
        std::fs::create_dir(stale("g")).unwrap();
        assert_eq!(
            r.rmdir(&v("/g")).unwrap_err().kind(),
            io::ErrorKind::DirectoryNotEmpty
        );
        assert!(stale("g").is_dir());
        // A link to a directory holding only temps is still not one.
        std::fs::create_dir(t.real("root/h")).unwrap();
        std::fs::write(stale("h"), b"").unwrap();
        symlink("h", t.real("root/h_link")).unwrap();
        assert_eq!(
            r.rmdir(&v("/h_link")).unwrap_err().kind(),
            io::ErrorKind::NotADirectory
        );
        assert!(stale("h").exists());
    }

    /// Upload temporaries are out of clients' reach, whatever the operation
    /// and wherever the reserved component.
    #[test]
    fn reserved_names_are_refused() {
        let t = Tree::new();
        let r = &t.root;
        let stale = format!("{UPLOAD_PREFIX}0123abcd");
        std::fs::write(t.real(&format!("root/{stale}")), b"half").unwrap();
        std::fs::create_dir(t.real(&format!("root/sub/{UPLOAD_PREFIX}d"))).unwrap();
        let paths = [
            format!("/{stale}"),
            format!("/{UPLOAD_PREFIX}new"),
            format!("/sub/{UPLOAD_PREFIX}d"),
            format!("/sub/{UPLOAD_PREFIX}d/inner"),
            UPLOAD_PREFIX.to_owned(),
        ];
        for p in &paths {
            let p = v(p);
            assert!(p.is_reserved(), "{p}");
            let check = |what: &str, e: io::Error| {
                assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{what} {p}");
                assert_eq!(e.to_string(), "reserved name", "{what} {p}");
            };
            check("stat", r.stat(&p).unwrap_err());
            check("open_read", r.open_read(&p).unwrap_err());
            check("open_append", r.open_append(&p).unwrap_err());
            check("open_write_at", r.open_write_at(&p, 0).unwrap_err());
            check("create_upload", r.create_upload(&p).unwrap_err());
            check("create_unique", r.create_unique(&p).unwrap_err());
            check("mkdir", r.mkdir(&p).unwrap_err());
            check("rmdir", r.rmdir(&p).unwrap_err());
            check("remove_file", r.remove_file(&p).unwrap_err());
            check("rename from", r.rename(&p, &v("/got")).unwrap_err());
            check("rename to", r.rename(&v("/hello.txt"), &p).unwrap_err());
            check("list", r.list(&p).unwrap_err());
            check("open_dir", r.open_dir(&p).unwrap_err());
            check("subroot", r.subroot(&p).unwrap_err());
        }
        // Near misses are ordinary names...
        for ok in [".muse-upload", "muse-upload.x", "x.muse-upload.y"] {
            let p = v(ok);
            assert!(!p.is_reserved(), "{p}");
            r.mkdir(&p).unwrap();
            r.rmdir(&p).unwrap();
        }
        // ...but STOU must not pick a reserved one for a suffix.
        let near = v(".muse-upload");
        r.create_unique(&near).unwrap();
        let e = r.create_unique(&near).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        // Nothing was made, moved or removed.
        assert_eq!(
            std::fs::read(t.real(&format!("root/{stale}"))).unwrap(),
            b"half"
        );
        assert_eq!(std::fs::read(t.real("root/hello.txt")).unwrap(), b"hello");
        assert!(t.real(&format!("root/sub/{UPLOAD_PREFIX}d")).is_dir());
        assert!(!t.real(&format!("root/{UPLOAD_PREFIX}new")).exists());
        assert!(!t.real("root/got").exists());
        let on_disk = names_on_disk(&t.real("root"));
        assert_eq!(
            on_disk
                .iter()
                .filter(|n| n.starts_with(UPLOAD_PREFIX))
                .count(),
            1
        );
    }

    #[test]
    fn append_and_resume() {
        let t = Tree::new();
        let r = &t.root;
        let mut f = r.open_append(&v("/hello.txt")).unwrap();
        f.write_all(b", world").unwrap();
        drop(f);
        assert_eq!(
            std::fs::read(t.real("root/hello.txt")).unwrap(),
            b"hello, world"
        );
        let mut f = r.open_append(&v("/sub/new.log")).unwrap();
        f.write_all(b"one").unwrap();
        let mut f = r.open_append(&v("/sub/new.log")).unwrap();
        f.write_all(b"two").unwrap();
        assert_eq!(
            std::fs::read(t.real("root/sub/new.log")).unwrap(),
            b"onetwo"
        );
        assert!(!rustix::fs::fcntl_getfl(&f)
            .unwrap()
            .contains(OFlags::NONBLOCK));
        // Resume: no truncation, positioned at the offset.
        let mut f = r.open_write_at(&v("/hello.txt"), 7).unwrap();
        f.write_all(b"W").unwrap();
        drop(f);
        assert_eq!(
            std::fs::read(t.real("root/hello.txt")).unwrap(),
            b"hello, World"
        );
        let mut f = r.open_write_at(&v("/resumed"), 0).unwrap();
        f.write_all(b"start").unwrap();
        let mut f = r.open_write_at(&v("/resumed"), 5).unwrap();
        f.write_all(b"+rest").unwrap();
        assert_eq!(
            std::fs::read(t.real("root/resumed")).unwrap(),
            b"start+rest"
        );
        // A restart past the end would leave a hole, and one into a file
        // that is not there would make it: both refused, nothing changed.
        let e = r.open_write_at(&v("/resumed"), 11).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e}");
        assert_eq!(
            std::fs::read(t.real("root/resumed")).unwrap(),
            b"start+rest"
        );
        let e = r.open_write_at(&v("/absent"), u64::MAX).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}");
        assert!(!t.real("root/absent").exists());
        // At the end exactly: an append.
        r.open_write_at(&v("/resumed"), 10)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        assert_eq!(
            std::fs::read(t.real("root/resumed")).unwrap(),
            b"start+rest!"
        );
    }

    #[test]
    fn create_unique_picks_free_names() {
        let t = Tree::new();
        let r = &t.root;
        let (p, f) = r.create_unique(&v("/sub/report")).unwrap();
        assert_eq!(p.as_str(), "/sub/report");
        (&f).write_all(b"0").unwrap();
        let (p, _) = r.create_unique(&v("/sub/report")).unwrap();
        assert_eq!(p.as_str(), "/sub/report.1");
        let (p, _) = r.create_unique(&v("/sub/report")).unwrap();
        assert_eq!(p.as_str(), "/sub/report.2");
        let (p, _) = r.create_unique(&v("/hello.txt")).unwrap();
        assert_eq!(p.as_str(), "/hello.txt.1");
        assert_eq!(std::fs::read(t.real("root/hello.txt")).unwrap(), b"hello");
        // A link (even dangling) occupies its name and is not written through.
        let (p, _) = r.create_unique(&v("/abs_secret")).unwrap();
        assert_eq!(p.as_str(), "/abs_secret.1");
        let (p, _) = r.create_unique(&v("/dangling")).unwrap();
        assert_eq!(p.as_str(), "/dangling.1");
        assert!(!t.real("root/nothing").exists());
        // No room for a suffix on a maximal name.
        let long = v(&"n".repeat(MAX_NAME));
        r.create_unique(&long).unwrap();
        assert_eq!(
            r.create_unique(&long).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        t.assert_outside_intact();
    }

    #[test]
    fn mkdir_rmdir_remove_rename() {
        let t = Tree::new();
        let r = &t.root;
        r.mkdir(&v("/newdir")).unwrap();
        let meta = r.stat(&v("/newdir")).unwrap();
        assert_eq!(meta.kind, Kind::Dir);
        assert_eq!(meta.mode & 0o700, 0o700);
        assert_eq!(
            r.mkdir(&v("/newdir")).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        // A link occupies its name: no mkdir through it.
        assert_eq!(
            r.mkdir(&v("/dangling")).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert!(!t.real("root/nothing").exists());
        r.mkdir(&v("/newdir/inner")).unwrap();
        assert_eq!(
            r.rmdir(&v("/newdir")).unwrap_err().kind(),
            io::ErrorKind::DirectoryNotEmpty
        );
        r.rename(&v("/hello.txt"), &v("/newdir/inner/moved.txt"))
            .unwrap();
        assert_eq!(r.stat(&v("/newdir/inner/moved.txt")).unwrap().size, 5);
        assert_eq!(
            r.stat(&v("/hello.txt")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            r.remove_file(&v("/newdir")).unwrap_err().kind(),
            io::ErrorKind::IsADirectory
        );
        assert_eq!(
            r.rmdir(&v("/sub/deep.txt")).unwrap_err().kind(),
            io::ErrorKind::NotADirectory
        );
        r.remove_file(&v("/newdir/inner/moved.txt")).unwrap();
        r.rmdir(&v("/newdir/inner")).unwrap();
        r.rename(&v("/newdir"), &v("/renamed")).unwrap();
        r.rmdir(&v("/renamed")).unwrap();
        assert_eq!(
            r.remove_file(&v("/gone")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        // Through a legit link to a directory, beneath the root.
        r.mkdir(&v("/good_dir_link/viadir")).unwrap();
        assert!(t.real("root/sub/viadir").is_dir());
        t.assert_outside_intact();
    }

    #[test]
    fn subroot_is_a_root() {
        let t = Tree::new();
        let sub = t.root.subroot(&v("/sub")).unwrap();
        let names: Vec<_> = sub
            .list(&VPath::root())
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.meta.kind))
            .collect();
        // From inside sub, "../hello.txt" leaves the subroot: only the link.
        assert_eq!(
            names,
            [
                ("deep.txt".to_owned(), Kind::File),
                ("to_hello".to_owned(), Kind::Symlink),
                ("up_secret".to_owned(), Kind::Symlink),
            ]
        );
        assert_denied(sub.stat(&v("/to_hello")));
        assert_denied(sub.open_read(&v("/up_secret")));
        let p = VPath::resolve(&VPath::root(), b"../hello.txt").unwrap();
        assert_eq!(sub.stat(&p).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(sub.stat(&v("/deep.txt")).unwrap().size, 6);
        assert_denied(sub.rename(&v("/deep.txt"), &v("/to_hello/x")));
        let via_link = t.root.subroot(&v("/good_dir_link")).unwrap();
        assert_eq!(via_link.stat(&v("/deep.txt")).unwrap().size, 6);
        assert_eq!(
            t.root.subroot(&v("/hello.txt")).unwrap_err().kind(),
            io::ErrorKind::NotADirectory
        );
        let clone = sub.try_clone().unwrap();
        assert_eq!(clone.stat(&v("/deep.txt")).unwrap().size, 6);
        t.assert_outside_intact();
    }

    /// A directory swapped for a link to the outside, over and over, while
    /// we read, list and write through its path: never a byte from outside,
    /// never a file created outside.
    #[test]
    fn swapping_dir_for_link_races_safely() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let t = Tree::new();
        std::fs::create_dir(t.real("root/real")).unwrap();
        std::fs::write(t.real("root/real/inner_secret"), b"inside").unwrap();
        symlink(t.real("outside"), t.real("root/evil")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let stop = Arc::clone(&stop);
            let (real, evil, race) = (
                t.real("root/real"),
                t.real("root/evil"),
                t.real("root/race"),
            );
            std::thread::spawn(move || {
                let mut swaps = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for from in [&real, &evil] {
                        if std::fs::rename(from, &race).is_ok() {
                            let _ = std::fs::rename(&race, from);
                            swaps += 1;
                        }
                    }
                }
                swaps
            })
        };
        let r = &t.root;
        let (mut seen_inside, mut refused) = (0, 0);
        for i in 0..3000 {
            match r.open_read(&v("/race/inner_secret")) {
                Ok((mut f, _)) => {
                    let mut buf = Vec::new();
                    f.read_to_end(&mut buf).unwrap();
                    assert_eq!(buf, b"inside");
                    seen_inside += 1;
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::PermissionDenied {
                        refused += 1;
                    }
                }
            }
            if let Ok(list) = r.list(&v("/race")) {
                assert!(list.iter().all(|e| e.meta.size != SECRET.len() as u64));
            }
            let name = format!("/race/planted{i}");
            if let Ok(mut f) = r.open_append(&v(&name)) {
                let _ = f.write_all(b"x");
            }
            if let Ok(up) = r.create_upload(&v(&name)) {
                let _ = r.commit_upload(up);
            }
            let _ = r.mkdir(&v(&format!("/race/dir{i}")));
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        assert!(swaps > 0);
        // Not required for safety, but shows the race was exercised.
        eprintln!("race: {swaps} swaps, {seen_inside} inside reads, {refused} refused");
        t.assert_outside_intact();
        t.assert_no_temp();
    }
}
