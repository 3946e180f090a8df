//! The open-file cache of a serving thread: a file opened for one request
//! is reused by the requests for the same path that the same thread answers
//! in the same turn of its loop, as h2o's per-loop file cache does.
//!
//! A keep-alive `GET` would otherwise cost `openat2`, `fstat` and `close`
//! beside the `recv`, `pread` and `send` that carry it: half of its system
//! calls. A reactor answers dozens of requests per turn, mostly for a few
//! popular files, so one open per file per turn serves them all.
//!
//! Staleness is bounded by the turn: a turn is known by the driver's `now`
//! (read once per turn of an evented loop, once per wake-up of a blocking
//! one), and the first lookup with a different `now` closes every cached
//! file. A file replaced or changed on disk is therefore seen by the next
//! turn at the latest, within the microseconds a turn lasts. At most
//! [`MAX_FILES`] descriptors are held per thread, and an idle thread holds
//! those of its last turn until its next request.
//!
//! Only regular files opened successfully are cached (errors, directories
//! and listings go to the root each time). Steady traffic allocates
//! nothing on a hit; a miss allocates the entry's shared handle.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::Instant;

use crate::root::{Meta, Root, VPath};

/// The most files one thread keeps open from one turn to its next lookup.
pub const MAX_FILES: usize = 32;

struct Entry {
    /// Which server's root (its address): tests run several in a process.
    root: usize,
    path: String,
    file: Option<(Arc<File>, Meta)>,
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
pub fn open(root: &Root, path: &VPath, now: Instant) -> io::Result<(Arc<File>, Meta)> {
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
                if let Some((file, meta)) = &e.file {
                    return Ok((Arc::clone(file), meta.clone()));
                }
            }
        }
        let (file, meta) = root.open_read(path)?;
        let file = Arc::new(file);
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
            e.file = Some((Arc::clone(&file), meta.clone()));
            cache.live += 1;
        }
        Ok((file, meta))
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
        let (first, _) = open(&root, &path, t0).unwrap();
        let (again, _) = open(&root, &path, t0).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "one open per turn");
        // Replaced on disk: the same turn still has the old file, the next
        // turn sees the new one.
        std::fs::write(dir.join("b.txt"), b"two!").unwrap();
        std::fs::rename(dir.join("b.txt"), dir.join("a.txt")).unwrap();
        let (same, meta) = open(&root, &path, t0).unwrap();
        assert!(Arc::ptr_eq(&first, &same));
        assert_eq!(meta.size, 3);
        let (next, meta) = open(&root, &path, t0 + Duration::from_micros(1)).unwrap();
        assert!(!Arc::ptr_eq(&first, &next));
        assert_eq!(meta.size, 4);
        let mut text = String::new();
        (&*next).read_to_string(&mut text).unwrap();
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
