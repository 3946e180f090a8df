//! Fuzzes `VPath::resolve`, the one door from client input to a path.
//!
//! The first byte picks the current directory, the rest is the client's
//! input. Whatever it is, resolve either refuses it or yields a normalized
//! path: absolute, no empty, `.` or `..` components, within the length
//! limits, a fixed point of resolve, and consistent with parent/file_name/join.
#![no_main]

use libfuzzer_sys::fuzz_target;
use muse::root::{VPath, MAX_NAME, MAX_PATH};

fn check(p: &VPath) {
    let s = p.as_str();
    assert!(s.starts_with('/'), "{s:?}");
    assert!(s == "/" || !s.ends_with('/'), "{s:?}");
    assert!(s.len() <= MAX_PATH, "{}", s.len());
    assert!(!s.contains('\0') && !s.contains('\\'), "{s:?}");
    assert!(!s.chars().any(char::is_control), "{s:?}");
    for c in s.split('/').skip(1) {
        assert!(p.is_root() || !c.is_empty(), "{s:?}");
        assert!(c != "." && c != "..", "{s:?}");
        assert!(c.len() <= MAX_NAME, "{s:?}");
    }
    // Normal form is a fixed point, from any directory.
    assert_eq!(&VPath::resolve(&VPath::root(), s.as_bytes()).unwrap(), p);
    assert_eq!(&VPath::resolve(p, s.as_bytes()).unwrap(), p);
    match (p.parent(), p.file_name()) {
        (None, None) => assert!(p.is_root()),
        (Some(parent), Some(name)) => {
            assert!(!p.is_root());
            assert_eq!(&parent.join(name).unwrap(), p);
            assert_eq!(VPath::resolve(p, b"..").unwrap(), parent);
        }
        _ => panic!("parent and file_name disagree for {s:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, input)) = data.split_first() else {
        return;
    };
    let cwd = match pick % 4 {
        0 => VPath::root(),
        1 => VPath::resolve(&VPath::root(), b"/pub").unwrap(),
        2 => VPath::resolve(&VPath::root(), b"/a/b/c/d").unwrap(),
        _ => VPath::resolve(&VPath::root(), "/\u{e9}t\u{e9}/%2e%2e".as_bytes()).unwrap(),
    };
    if let Ok(p) = VPath::resolve(&cwd, input) {
        check(&p);
        // ".." never climbs above the root: resolving relative input from
        // cwd stays under "/" and has no more components than cwd plus the
        // input's names.
        if !input.starts_with(b"/") {
            let names = input
                .split(|&b| b == b'/')
                .filter(|c| !c.is_empty() && *c != b"." && *c != b"..")
                .count();
            assert!(p.components().count() <= cwd.components().count() + names);
        }
    }
    // A single name joins or is refused, and a join is always normal.
    if let Ok(name) = std::str::from_utf8(input) {
        if let Ok(p) = cwd.join(name) {
            check(&p);
            assert_eq!(p.file_name(), Some(name));
        }
    }
});
