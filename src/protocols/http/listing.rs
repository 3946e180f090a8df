//! `--autoindex`: the HTML listing of a directory without `index.html`,
//! read through the root layer (the same filtering and symlink rules as
//! FTP's listings) and rendered with every name escaped. It runs as a
//! session's computation, never on an event loop: a directory read is
//! file-system work of unbounded cost.
//!
//! Bounded: at most [`LISTING_LIMIT`] entries are shown, the first by name
//! (sorted); a larger directory says how many it left out, so a directory
//! of 200,000 entries costs a connection about a megabyte, not tens. A
//! symlink that does not resolve within the root is not listed (it would
//! be a 404).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::time::UNIX_EPOCH;

use super::escape::{html_escape, percent_encode_segment};
use crate::root::{Entry, Kind, Root, VPath};

/// Most entries one listing shows.
pub const LISTING_LIMIT: usize = 5_000;

/// A directory entry ordered by its name alone.
struct ByName(Entry);

impl PartialEq for ByName {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for ByName {}

impl PartialOrd for ByName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.name.cmp(&other.0.name)
    }
}

/// The listing of `dir` as a whole HTML page; names starting with `.` are
/// left out unless `dotfiles` (see `HttpConfig::dotfiles`).
pub fn render(root: &Root, dir: &VPath, dotfiles: bool) -> io::Result<Vec<u8>> {
    let mut stream = root.open_dir(dir)?;
    // The first LISTING_LIMIT names in order, whatever order the directory
    // yields them in: a max-heap of those kept so far, whose greatest
    // gives way to a smaller name.
    let mut kept: BinaryHeap<ByName> = BinaryHeap::new();
    let mut left_out = 0u64;
    while let Some(entry) = stream.next_entry() {
        let entry = entry?;
        if !dotfiles && entry.name.starts_with('.') && entry.name != ".well-known" {
            continue;
        }
        if entry.meta.kind == Kind::Symlink {
            // A link the root layer could not follow within the root (out
            // of it, or dangling): requesting it is a 404, so it is not
            // offered.
            continue;
        }
        if kept.len() < LISTING_LIMIT {
            kept.push(ByName(entry));
            continue;
        }
        left_out += 1;
        let mut greatest = kept.peek_mut().expect("the heap is full");
        if entry.name < greatest.0.name {
            *greatest = ByName(entry);
        }
    }
    let entries: Vec<Entry> = kept.into_sorted_vec().into_iter().map(|e| e.0).collect();

    let mut html = String::with_capacity(512 + entries.len() * 160);
    let mut title = String::new();
    html_escape(dir.as_str(), &mut title);
    html.push_str("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of ");
    html.push_str(&title);
    html.push_str("</title></head>\n<body><h1>Index of ");
    html.push_str(&title);
    html.push_str("</h1>\n<table>\n");
    if !dir.is_root() {
        html.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td></tr>\n");
    }
    for e in &entries {
        let is_dir = e.meta.kind == Kind::Dir;
        html.push_str("<tr><td><a href=\"");
        percent_encode_segment(&e.name, &mut html);
        if is_dir {
            html.push('/');
        }
        html.push_str("\">");
        html_escape(&e.name, &mut html);
        if is_dir {
            html.push('/');
        }
        html.push_str("</a></td><td>");
        let secs = e
            .meta
            .modified
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            .min(super::date::MAX_SECS);
        let mut date = [0u8; super::date::IMF_FIXDATE_LEN];
        super::date::format(secs, &mut date);
        html.push_str(std::str::from_utf8(&date).unwrap_or(""));
        html.push_str("</td><td>");
        if is_dir {
            html.push('-');
        } else {
            html.push_str(&e.meta.size.to_string());
        }
        html.push_str("</td></tr>\n");
    }
    html.push_str("</table>\n");
    if left_out > 0 {
        html.push_str(&format!(
            "<p>{left_out} more entries not shown (a listing shows at most {LISTING_LIMIT}).</p>\n"
        ));
    }
    html.push_str("</body></html>\n");
    Ok(html.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_directory_shows_its_first_names_in_order_and_counts_the_rest() {
        let dir = std::env::temp_dir().join(format!("muse-listing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let extra = 50;
        let total = LISTING_LIMIT + extra;
        // Made in an order unlike the names' (the directory's order is its
        // own anyway): a stride through all of them.
        for i in 0..total {
            let n = (i * 7919) % total;
            std::fs::write(dir.join(format!("f{n:06}")), b"").unwrap();
        }
        std::os::unix::fs::symlink("/etc", dir.join("a-link-out")).unwrap();
        let root = Root::open(&dir).unwrap();
        let html = String::from_utf8(render(&root, &VPath::root(), false).unwrap()).unwrap();
        let shown: Vec<&str> = html
            .match_indices("<a href=\"f")
            .map(|(i, _)| &html[i + 9..i + 16])
            .collect();
        let expected: Vec<String> = (0..LISTING_LIMIT).map(|n| format!("f{n:06}")).collect();
        assert_eq!(shown, expected);
        assert!(
            html.contains(&format!("<p>{extra} more entries not shown")),
            "{}",
            &html[html.len() - 200..]
        );
        assert!(
            !html.contains("a-link-out"),
            "a link out of the root is not offered"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
