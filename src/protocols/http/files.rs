//! The open-file cache of a serving thread: a file opened for one request
//! is reused by the requests for the same path that the same thread answers
//! in the same turn of its loop, as h2o's per-loop file cache does.
//!
//! A keep-alive `GET` would otherwise cost `openat2`, `fstat` and `close`
//! beside the `recv`, `pread` and `send` that carry it: half of its system
//! calls. A reactor answers dozens of requests per turn, mostly for a few
//! popular files, so one open per file per turn serves them all. What a
//! response says of the file is worked out once per turn with it (its
//! `Content-Type`, `Last-Modified` and `ETag`), and a small file's bytes
//! (at most [`INLINE_MAX`]) are read once, by the first request of the
//! turn that sends them, and copied from there into every response: one
//! `pread` per file per turn instead of one per response.
//!
//! Staleness is bounded by the turn: a turn is known by the driver's `now`
//! (read once per turn of an evented loop, once per wake-up of a blocking
//! one), and the first lookup with a different `now` closes every cached
//! file. A file replaced or changed on disk is therefore seen by the next
//! turn at the latest, within the microseconds a turn lasts; within a turn
//! every response for a file carries the same metadata and bytes. At most
//! [`MAX_FILES`] descriptors are held per thread, and an idle thread holds
//! those of its last turn until its next request.
//!
//! Only regular files opened successfully are cached (errors, directories
//! and listings go to the root each time). Steady traffic allocates
//! nothing on a hit; a miss allocates the entry's shared handle.

use std::cell::{OnceCell, RefCell};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use super::{date, mime, range};
use crate::root::{Meta, Root, VPath};
use crate::session::INLINE_MAX;

/// The most files one thread keeps open from one turn to its next lookup.
pub const MAX_FILES: usize = 32;

/// A regular file opened for reading, with what a response says of it.
pub struct Opened {
    pub file: Arc<File>,
    pub meta: Meta,
    /// By the path's extension.
    pub content_type: &'static str,
    /// The modification time in whole seconds since the epoch (0 before
    /// it), at most [`date::MAX_SECS`]: what `If-Modified-Since` and
    /// `If-Range` compare with.
    pub modified: u64,
    /// `Last-Modified`: [`Opened::modified`] formatted.
    pub last_modified: [u8; date::IMF_FIXDATE_LEN],
    etag: [u8; range::ETAG_MAX],
    etag_len: usize,
    /// The whole file, once read (`None` inside: larger than
    /// [`INLINE_MAX`], or it could not be read whole).
    bytes: OnceCell<Option<Box<[u8]>>>,
}

impl Opened {
    fn new(file: File, meta: Meta, path: &VPath) -> Opened {
        let (secs, nanos) = match meta.modified.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => (-(e.duration().as_secs() as i64), 0),
        };
        let mut etag = [0u8; range::ETAG_MAX];
        let etag_len = range::etag(secs, nanos, meta.size, &mut etag).len();
        let modified = u64::try_from(secs).unwrap_or(0).min(date::MAX_SECS);
        let mut last_modified = [0u8; date::IMF_FIXDATE_LEN];
        date::format(modified, &mut last_modified);
        Opened {
            file: Arc::new(file),
            content_type: mime::content_type(path.as_str()),
            meta,
            modified,
            last_modified,
            etag,
            etag_len,
            bytes: OnceCell::new(),
        }
    }

    /// The strong `ETag` (see [`range::etag`]).
    pub fn etag(&self) -> &[u8] {
        &self.etag[..self.etag_len]
    }

    /// The file's [`Meta::size`] bytes, read on the first call, if the file
    /// is small enough to be copied into responses ([`INLINE_MAX`]) and
    /// could be read whole; otherwise its ranges go out by `sendfile`.
    pub fn bytes(&self) -> Option<&[u8]> {
        self.bytes
            .get_or_init(|| {
                let size = usize::try_from(self.meta.size).ok()?;
                if size > INLINE_MAX {
                    return None;
                }
                let mut buf = vec![0u8; size].into_boxed_slice();
                self.file.read_exact_at(&mut buf, 0).ok()?;
                Some(buf)
            })
            .as_deref()
    }
}

struct Entry {
    /// Which server's root (its address): tests run several in a process.
    root: usize,
    path: String,
    file: Option<Rc<Opened>>,
}

#[derive(Default)]
struct Cache {
    turn: Option<Instant>,
    /// `entries[..live]` hold files; the rest keep their path buffers.
    entries: Vec<Entry>,
    live: usize,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Opens `path` beneath `root` for reading, or reuses the file this thread
/// opened for it earlier in the turn `now`.
pub fn open(root: &Root, path: &VPath, now: Instant) -> io::Result<Rc<Opened>> {
    let id = root as *const Root as usize;
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        let cache = &mut *cache;
        if cache.turn != Some(now) {
            for e in &mut cache.entries[..cache.live] {
                e.file = None;
            }
            cache.live = 0;
            cache.turn = Some(now);
        }
        let key = path.as_str();
        for e in &cache.entries[..cache.live] {
            if e.root == id && e.path == key {
                if let Some(opened) = &e.file {
                    return Ok(Rc::clone(opened));
                }
            }
        }
        let (file, meta) = root.open_read(path)?;
        let opened = Rc::new(Opened::new(file, meta, path));
        if cache.live < MAX_FILES {
            if cache.live == cache.entries.len() {
                cache.entries.push(Entry {
                    root: 0,
                    path: String::new(),
                    file: None,
                });
            }
            let e = &mut cache.entries[cache.live];
            e.root = id;
            e.path.clear();
            e.path.push_str(key);
            e.file = Some(Rc::clone(&opened));
            cache.live += 1;
        }
        Ok(opened)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    #[test]
    fn a_file_is_reused_within_a_turn_and_seen_anew_in_the_next() {
        let dir = std::env::temp_dir().join(format!("muse-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.txt"), b"one").unwrap();
        let root = Root::open(&dir).unwrap();
        let path = VPath::root().join("a.txt").unwrap();
        let t0 = Instant::now();
        let first = open(&root, &path, t0).unwrap();
        let again = open(&root, &path, t0).unwrap();
        assert!(Rc::ptr_eq(&first, &again), "one open per turn");
        assert_eq!(first.bytes(), Some(&b"one"[..]));
        // Replaced on disk: the same turn still has the old file, the next
        // turn sees the new one.
        std::fs::write(dir.join("b.txt"), b"two!").unwrap();
        std::fs::rename(dir.join("b.txt"), dir.join("a.txt")).unwrap();
        let same = open(&root, &path, t0).unwrap();
        assert!(Rc::ptr_eq(&first, &same));
        assert_eq!(same.meta.size, 3);
        assert_eq!(same.bytes(), Some(&b"one"[..]));
        let next = open(&root, &path, t0 + Duration::from_micros(1)).unwrap();
        assert!(!Rc::ptr_eq(&first, &next));
        assert_eq!(next.meta.size, 4);
        assert_eq!(next.bytes(), Some(&b"two!"[..]));
        let mut text = String::new();
        (&*next.file).read_to_string(&mut text).unwrap();
        assert_eq!(text, "two!");
        // A missing file is not cached: it is an error each time, and a
        // file made meanwhile is found.
        let missing = VPath::root().join("c.txt").unwrap();
        assert!(open(&root, &missing, t0 + Duration::from_micros(1)).is_err());
        std::fs::write(dir.join("c.txt"), b"c").unwrap();
        assert!(open(&root, &missing, t0 + Duration::from_micros(1)).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_a_small_file_is_read_into_memory() {
        let dir = std::env::temp_dir().join(format!("muse-files-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("small"), vec![b's'; INLINE_MAX]).unwrap();
        std::fs::write(dir.join("big"), vec![b'b'; INLINE_MAX + 1]).unwrap();
        let root = Root::open(&dir).unwrap();
        let t0 = Instant::now();
        let small = open(&root, &VPath::root().join("small").unwrap(), t0).unwrap();
        assert_eq!(small.bytes().map(<[u8]>::len), Some(INLINE_MAX));
        let big = open(&root, &VPath::root().join("big").unwrap(), t0).unwrap();
        assert_eq!(big.bytes(), None);
        assert_eq!(big.content_type, mime::DEFAULT);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn at_most_max_files_are_held() {
        let dir = std::env::temp_dir().join(format!("muse-files-max-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let root = Root::open(&dir).unwrap();
        let t0 = Instant::now();
        for i in 0..MAX_FILES + 8 {
            std::fs::write(dir.join(format!("{i}")), b"x").unwrap();
            open(&root, &VPath::root().join(&i.to_string()).unwrap(), t0).unwrap();
        }
        CACHE.with(|c| assert_eq!(c.borrow().live, MAX_FILES));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
