//! `--autoindex`: the HTML listing of a directory without `index.html`,
//! read through the root layer (the same filtering and symlink rules as
//! FTP's listings) and rendered with every name escaped. It runs as a
//! session's computation, never on an event loop: a directory read is
//! file-system work of unbounded cost.
//!
//! Bounded: at most [`LISTING_LIMIT`] entries are shown (sorted by name);
//! a larger directory says how many it left out, so a directory of
//! 200,000 entries costs a connection about a megabyte, not tens.

use std::io;
use std::time::UNIX_EPOCH;

use super::escape::{html_escape, percent_encode_segment};
use crate::root::{Kind, Root, VPath};

/// Most entries one listing shows.
pub const LISTING_LIMIT: usize = 5_000;

/// The listing of `dir` as a whole HTML page; names starting with `.` are
/// left out unless `dotfiles` (see `HttpConfig::dotfiles`).
pub fn render(root: &Root, dir: &VPath, dotfiles: bool) -> io::Result<Vec<u8>> {
    let mut stream = root.open_dir(dir)?;
    let mut entries = Vec::new();
    let mut left_out = 0u64;
    while let Some(entry) = stream.next_entry() {
        let entry = entry?;
        if !dotfiles && entry.name.starts_with('.') && entry.name != ".well-known" {
            continue;
        }
        if entries.len() < LISTING_LIMIT {
            entries.push(entry);
        } else {
            left_out += 1;
        }
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));

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
