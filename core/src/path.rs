//! One meaning for a request path: the form routes are matched against and the upstream is
//! sent, so that routing and backend agree on which resource a request names.
//!
//! A backend that normalises (nginx, most frameworks) serves `/public/../admin` as
//! `/admin`; a proxy that matched the raw path would have applied the `/public` route's
//! rules to it. So the proxy normalises first, matches the result, and forwards the result.
//!
//! | raw path                  | normalised         | why                                           |
//! |---------------------------|--------------------|-----------------------------------------------|
//! | `/a/b`                    | `/a/b` (borrowed)  | already normal: no work, no allocation        |
//! | `/public/../admin`        | `/admin`           | dot segments removed (RFC 3986 §5.2.4)        |
//! | `/public/%2e%2e/admin`    | `/admin`           | `%2E` is `.`, decoded before dot segments     |
//! | `/%61dmin`                | `/admin`           | encoded unreserved characters decoded (§6.2.2.2) |
//! | `/a/./b/`                 | `/a/b/`            | `.` segments removed, trailing slash kept     |
//! | `/../a`                   | `/a`               | `..` never climbs above the root              |
//! | `//a///b`                 | `/a/b`             | empty segments merged (below)                 |
//! | `/a%2Fb`, `/a%2fb`        | unchanged          | an encoded slash is data, not a separator     |
//! | `/a%20b`, `/caf%C3%A9`    | unchanged          | other escapes are left alone                  |
//! | `/a%zz`, `/a%4`, `/a%`    | refused (400)      | not an escape (RFC 3986 §2.1), as nginx says  |
//!
//! Choices:
//! - `%2F` is kept encoded and is not a separator: APIs name resources with it
//!   (`/projects/group%2Fname`), so refusing it would break them, and decoding it would make
//!   two different resources one. A backend that itself decodes `%2F` into a separator sees
//!   a path the proxy did not route by: such a backend must not rely on path routes for
//!   access control (Envoy's default, `KEEP_UNCHANGED`, has the same caveat).
//! - Runs of `/` are merged into one (nginx's default `merge_slashes on`). The route table
//!   already ignores empty segments when matching, so `//admin` matched the `/admin` route;
//!   merging makes the upstream see the very path that was matched, and it keeps dot-segment
//!   removal from disagreeing with a merging backend (`/a//../b` is `/a/b` by RFC 3986 but
//!   `/b` to a backend that merges first; merged first here, it is `/b` for both).
//!
//! The order is the one a backend that normalises applies: decode unreserved characters,
//! merge slashes, remove dot segments. The query is not part of the path and is untouched.

use std::borrow::Cow;

/// A `%` in a path that does not start an escape (two hex digits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a `%` in the path is not followed by two hex digits")]
pub struct BadEscape;

/// The normalised form of `path` (an origin-form path starting with `/`, without its query).
/// Paths that do not start with `/` (`*`) are returned as they are.
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, BadEscape> {
    if !path.starts_with('/') || is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut out: Vec<&str> = Vec::new();
    let mut segments = decoded.split('/').skip(1).peekable();
    // Whether the path ends in a directory: a trailing slash, or a last `.` or `..`
    // (RFC 3986 §5.2.4 leaves `/a/b/..` as `/a/`).
    let mut trailing_slash = false;
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        match segment {
            "" => trailing_slash = last,
            "." => trailing_slash = last,
            ".." => {
                out.pop();
                trailing_slash = last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut normal = String::with_capacity(decoded.len());
    for segment in &out {
        normal.push('/');
        normal.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        normal.push('/');
    }
    Ok(Cow::Owned(normal))
}

/// Whether `path` (starting with `/`) is already normal: no `%`, no empty segment before
/// the end, no `.` or `..` segment. One pass over the bytes, no allocation.
fn is_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.contains(&b'%') {
        return false;
    }
    // Each segment starts after a `/`.
    let mut start = 1;
    while start <= bytes.len() {
        let end = bytes[start..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(bytes.len(), |i| start + i);
        let segment = &bytes[start..end];
        let at_end = end == bytes.len();
        if segment == b"." || segment == b".." || (segment.is_empty() && !at_end) {
            return false;
        }
        start = end + 1;
    }
    true
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 §2.3: `ALPHA / DIGIT / "-" / "." / "_" / "~"`, the characters whose encoded
/// and plain forms are the same URI.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `path` with `%XX` decoded where XX is an unreserved character; every other escape is
/// kept as it is. A `%` that starts no escape is refused: left alone, `%%32e` would decode
/// to `%2e` here and to `.` at a backend that decodes once more.
fn decode_unreserved(path: &str) -> Result<Cow<'_, str>, BadEscape> {
    if !path.contains('%') {
        return Ok(Cow::Borrowed(path));
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(BadEscape);
            };
            if is_unreserved(hi * 16 + lo) {
                out.push(char::from(hi * 16 + lo));
            } else {
                out.push_str(&path[i..i + 3]);
            }
            i += 3;
            continue;
        }
        // Copies up to the next `%` in one go (`%` is ASCII, so the slice is on a char
        // boundary).
        let next = bytes[i + 1..]
            .iter()
            .position(|&b| b == b'%')
            .map_or(bytes.len(), |p| i + 1 + p);
        out.push_str(&path[i..next]);
        i = next;
    }
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_table_of_the_module_doc_holds() {
        for (raw, normal) in [
            ("/a/b", "/a/b"),
            ("/", "/"),
            ("/a/b/", "/a/b/"),
            ("/public/../admin", "/admin"),
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E/admin", "/admin"),
            ("/public/.%2e/admin", "/admin"),
            ("/%61dmin", "/admin"),
            ("/%7Euser/%2D%5F", "/~user/-_"),
            ("/a/./b/", "/a/b/"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../a", "/a"),
            ("/..", "/"),
            ("/.", "/"),
            ("//a///b", "/a/b"),
            ("//", "/"),
            ("/a//../b", "/b"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb/../c", "/c"),
            ("/a%20b", "/a%20b"),
            ("/a/...", "/a/..."),
            ("/a/.b/..c", "/a/.b/..c"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("*", "*"),
        ] {
            assert_eq!(normalize_path(raw).as_deref(), Ok(normal), "{raw}");
        }
        for bad in ["/a%zz", "/a%4", "/a%", "/%%32e%%32e/admin", "/a/%g1"] {
            assert_eq!(normalize_path(bad), Err(BadEscape), "{bad}");
        }
    }

    #[test]
    fn a_normal_path_is_borrowed() {
        for path in ["/", "/a", "/a/b/", "/a/.b", "/a..", "/api/v1/items?x"] {
            assert!(matches!(normalize_path(path), Ok(Cow::Borrowed(_))), "{path}");
        }
    }

    /// Path characters a hostile client would use: separators, dots, escapes of each.
    fn hostile_path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_owned()),
            Just(".".to_owned()),
            Just("..".to_owned()),
            Just("%2e".to_owned()),
            Just("%2E".to_owned()),
            Just("%2f".to_owned()),
            Just("%2F".to_owned()),
            Just("%41".to_owned()),
            Just("%".to_owned()),
            Just("%zz".to_owned()),
            Just("%25".to_owned()),
            Just("%3".to_owned()),
            "[a-c~_-]{1,3}",
        ];
        prop::collection::vec(piece, 0..16).prop_map(|pieces| format!("/{}", pieces.concat()))
    }

    proptest! {
        #[test]
        fn normalised_paths_are_normal_and_stay_so(raw in hostile_path()) {
            let Ok(once) = normalize_path(&raw) else {
                // Refused only for a `%` that starts no escape.
                let escapes_ok = raw.split('%').skip(1).all(|rest| {
                    rest.len() >= 2 && rest.as_bytes()[..2].iter().all(u8::is_ascii_hexdigit)
                });
                prop_assert!(!escapes_ok, "{raw} refused");
                return Ok(());
            };
            let once = once.into_owned();
            prop_assert!(once.starts_with('/'));
            prop_assert!(is_normal(&once) || once.contains('%'), "{raw} -> {once}");
            // Idempotent: normalising again changes nothing.
            let twice = normalize_path(&once);
            prop_assert_eq!(twice.as_deref(), Ok(once.as_str()));
            // No segment of the result climbs or stands still.
            prop_assert!(!once.split('/').any(|s| s == "." || s == ".."), "{raw} -> {once}");
            prop_assert!(!once.contains("//"), "{raw} -> {once}");
            // Encoded slashes are never turned into separators.
            let slashes = |p: &str| p.matches("%2f").count() + p.matches("%2F").count();
            prop_assert!(slashes(&once) <= slashes(&raw));
        }
    }
}
