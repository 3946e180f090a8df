//! `Content-Type` by file extension (RFC 9110 §8.3): a sorted table of the
//! common web types, looked up by binary search. Text types say
//! `charset=utf-8`, since the files a static site serves are written so;
//! anything unknown is `application/octet-stream`, which RFC 9110 §8.3
//! suggests when the type is not known and which no browser renders.

/// Served for an extension not in the table (or a name without one).
pub const DEFAULT: &str = "application/octet-stream";

/// Longest extension in [`TYPES`], so a lookup lower-cases into a small
/// stack buffer and anything longer is unknown at once.
const MAX_EXT: usize = 11;

/// (extension, lower case; type), sorted by extension for binary search.
const TYPES: &[(&str, &str)] = &[
    ("7z", "application/x-7z-compressed"),
    ("aac", "audio/aac"),
    ("apng", "image/apng"),
    ("atom", "application/atom+xml"),
    ("avi", "video/x-msvideo"),
    ("avif", "image/avif"),
    ("bin", "application/octet-stream"),
    ("bmp", "image/bmp"),
    ("bz2", "application/x-bzip2"),
    ("css", "text/css; charset=utf-8"),
    ("csv", "text/csv; charset=utf-8"),
    ("deb", "application/vnd.debian.binary-package"),
    ("doc", "application/msword"),
    (
        "docx",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ),
    ("eot", "application/vnd.ms-fontobject"),
    ("epub", "application/epub+zip"),
    ("flac", "audio/flac"),
    ("gif", "image/gif"),
    ("gz", "application/gzip"),
    ("htm", "text/html; charset=utf-8"),
    ("html", "text/html; charset=utf-8"),
    ("ico", "image/vnd.microsoft.icon"),
    ("ics", "text/calendar; charset=utf-8"),
    ("jar", "application/java-archive"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript; charset=utf-8"),
    ("json", "application/json"),
    ("jsonld", "application/ld+json"),
    ("m4a", "audio/mp4"),
    ("m4v", "video/mp4"),
    ("manifest", "application/manifest+json"),
    ("map", "application/json"),
    ("md", "text/markdown; charset=utf-8"),
    ("mid", "audio/midi"),
    ("midi", "audio/midi"),
    ("mjs", "text/javascript; charset=utf-8"),
    ("mkv", "video/x-matroska"),
    ("mov", "video/quicktime"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("mpeg", "video/mpeg"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("ogv", "video/ogg"),
    ("opus", "audio/opus"),
    ("otf", "font/otf"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("ppt", "application/vnd.ms-powerpoint"),
    (
        "pptx",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ),
    ("rar", "application/vnd.rar"),
    ("rss", "application/rss+xml"),
    ("rtf", "application/rtf"),
    ("sh", "text/x-shellscript; charset=utf-8"),
    ("svg", "image/svg+xml"),
    ("tar", "application/x-tar"),
    ("tgz", "application/gzip"),
    ("tif", "image/tiff"),
    ("tiff", "image/tiff"),
    ("toml", "application/toml"),
    ("ts", "video/mp2t"),
    ("ttf", "font/ttf"),
    ("txt", "text/plain; charset=utf-8"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("weba", "audio/webm"),
    ("webm", "video/webm"),
    ("webmanifest", "application/manifest+json"),
    ("webp", "image/webp"),
    ("woff", "font/woff"),
    ("woff2", "font/woff2"),
    ("xhtml", "application/xhtml+xml"),
    ("xls", "application/vnd.ms-excel"),
    (
        "xlsx",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ),
    ("xml", "application/xml"),
    ("xz", "application/x-xz"),
    ("yaml", "application/yaml"),
    ("yml", "application/yaml"),
    ("zip", "application/zip"),
    ("zst", "application/zstd"),
];

/// The `Content-Type` for a file by the extension of its last path
/// component (after its last `.`), compared case-insensitively: `a.HTML`
/// is HTML. A name without an extension, or whose only dot is its first
/// byte (`.htaccess`, a hidden file, not an extension), is [`DEFAULT`].
/// Only the last extension counts: `x.tar.gz` is gzip (the file is served
/// as stored, not with `Content-Encoding`).
pub fn content_type(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = match name.rfind('.') {
        Some(i) if i > 0 => &name[i + 1..],
        _ => return DEFAULT,
    };
    if ext.is_empty() || ext.len() > MAX_EXT {
        return DEFAULT;
    }
    let mut buf = [0u8; MAX_EXT];
    let lower = &mut buf[..ext.len()];
    lower.copy_from_slice(ext.as_bytes());
    lower.make_ascii_lowercase();
    match TYPES.binary_search_by(|(e, _)| e.as_bytes().cmp(lower)) {
        Ok(i) => TYPES[i].1,
        Err(_) => DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_unique_and_lower_case() {
        for pair in TYPES.windows(2) {
            assert!(pair[0].0 < pair[1].0, "{:?} before {:?}", pair[0], pair[1]);
        }
        for (ext, ty) in TYPES {
            assert_eq!(ext.to_ascii_lowercase(), *ext);
            assert!(ext.len() <= MAX_EXT, "{ext}");
            assert!(ty.contains('/'), "{ty}");
            // Text is always labelled UTF-8, nothing else carries a charset.
            assert_eq!(
                ty.starts_with("text/"),
                ty.ends_with("; charset=utf-8"),
                "{ty}"
            );
        }
        assert!(TYPES.len() >= 70);
    }

    #[test]
    fn common_types() {
        let cases = [
            ("/index.html", "text/html; charset=utf-8"),
            ("/a/b.htm", "text/html; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/app.mjs", "text/javascript; charset=utf-8"),
            ("/data.json", "application/json"),
            ("/README.txt", "text/plain; charset=utf-8"),
            ("/feed.xml", "application/xml"),
            ("/logo.svg", "image/svg+xml"),
            ("/p.png", "image/png"),
            ("/p.jpg", "image/jpeg"),
            ("/p.jpeg", "image/jpeg"),
            ("/p.gif", "image/gif"),
            ("/p.webp", "image/webp"),
            ("/p.avif", "image/avif"),
            ("/favicon.ico", "image/vnd.microsoft.icon"),
            ("/f.woff", "font/woff"),
            ("/f.woff2", "font/woff2"),
            ("/f.ttf", "font/ttf"),
            ("/f.otf", "font/otf"),
            ("/doc.pdf", "application/pdf"),
            ("/a.zip", "application/zip"),
            ("/a.tar.gz", "application/gzip"),
            ("/a.tar", "application/x-tar"),
            ("/m.wasm", "application/wasm"),
            ("/v.mp4", "video/mp4"),
            ("/v.webm", "video/webm"),
            ("/s.mp3", "audio/mpeg"),
            ("/s.ogg", "audio/ogg"),
            ("/s.wav", "audio/wav"),
            ("/t.csv", "text/csv; charset=utf-8"),
            ("/t.md", "text/markdown; charset=utf-8"),
            ("/app.js.map", "application/json"),
            ("/site.webmanifest", "application/manifest+json"),
        ];
        for (path, want) in cases {
            assert_eq!(content_type(path), want, "{path}");
        }
    }

    #[test]
    fn case_and_odd_names() {
        assert_eq!(content_type("/INDEX.HTML"), "text/html; charset=utf-8");
        assert_eq!(content_type("/x.JpG"), "image/jpeg");
        for path in [
            "",
            "/",
            "/Makefile",
            "/.htaccess",
            "/dir.d/file",
            "/trailing.",
            "/x.unknownext",
            "/x.averyveryverylongextension",
            "/x.ht ml",
            "/x.h\u{e9}ml",
            "/x.\u{130}",
        ] {
            assert_eq!(content_type(path), DEFAULT, "{path:?}");
        }
        // A hidden file may still have an extension.
        assert_eq!(content_type("/.config.json"), "application/json");
    }
}
