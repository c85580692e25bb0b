//! Follows the HTTP/1 byte stream of a client connection closely enough to see what hyper's
//! parser does not show: whether a request head carried both Content-Length and
//! Transfer-Encoding. hyper accepts such a request (it drops the Content-Length and closes
//! the connection afterwards), but RFC 9112 §6.1 calls it a probable smuggling attempt and
//! nginx answers it 400; the proxy does the same, so it needs to know.
//!
//! The scanner sees the bytes the connection reads, in order, and frames them as hyper
//! does: a head ends at its first empty line; its body is chunked when it has a
//! Transfer-Encoding, else as long as its Content-Length, else empty. Heads are numbered
//! from 0 in the order they arrive, which is the order hyper dispatches their requests.
//! When anything does not frame (bytes hyper will refuse, CONNECT, a protocol switch the
//! upstream accepted, HTTP/2) the
//! scanner stops following: it then reports nothing more, and hyper's own framing and
//! refusals stand.

/// Heads longer than this are not followed (hyper refuses heads above its read buffer,
/// which is at most a few hundred KiB here).
const MAX_HEAD: usize = 1024 * 1024;

#[derive(Debug)]
enum State {
    /// Collecting a request head (leading empty lines skipped, as hyper skips them).
    Head,
    /// This many bytes of a Content-Length body are still to come.
    Fixed(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// This many bytes of chunk data, then its CRLF, are still to come.
    ChunkData(u64),
    /// Reading the line ending that closes a chunk's data.
    ChunkEnd,
    /// Reading trailer lines after the last chunk, up to an empty line.
    Trailers,
    /// No longer following the stream.
    Stopped,
}

/// Progress towards the empty line that ends a head: LF, then an optional CR, then LF
/// (hyper accepts bare LF line endings, so the follower does too).
#[derive(Debug, Clone, Copy)]
enum Newline {
    None,
    Lf,
    LfCr,
}

/// The framing follower of one connection.
#[derive(Debug)]
pub(crate) struct FramingScanner {
    state: State,
    /// The head (or chunk-size or trailer line) being collected.
    buf: Vec<u8>,
    /// The line endings the head being collected ended with so far.
    newline: Newline,
    /// How many heads were complete so far.
    heads: u64,
    /// The index of the first head that carried both Content-Length and Transfer-Encoding.
    conflicting: Option<u64>,
}

/// What the scanner needs from a complete head.
#[derive(Debug, Default, PartialEq, Eq)]
struct HeadFraming {
    content_length: Option<u64>,
    bad_content_length: bool,
    transfer_encoding: bool,
    /// The request is a CONNECT: what follows its head may not be HTTP/1 at all. (An
    /// Upgrade is followed on: the upstream may not switch, and then the next request is
    /// HTTP/1 like any other; the request path stops the follower when it does switch.)
    switches: bool,
}

impl Default for FramingScanner {
    fn default() -> Self {
        Self {
            state: State::Head,
            buf: Vec::new(),
            newline: Newline::None,
            heads: 0,
            conflicting: None,
        }
    }
}

impl FramingScanner {
    /// Stops following the stream (an HTTP/2 connection, for instance).
    pub(crate) fn stop(&mut self) {
        self.state = State::Stopped;
        self.buf = Vec::new();
    }

    /// Whether the head of request `index` (0 for the connection's first) had both
    /// Content-Length and Transfer-Encoding.
    pub(crate) fn had_both_lengths(&self, index: u64) -> bool {
        self.conflicting == Some(index)
    }

    /// Follows `bytes`, the next ones read from the client.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Stopped => return,
                State::Head => {
                    if self.buf.is_empty() {
                        let skip = bytes.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
                        bytes = &bytes[skip..];
                        if bytes.is_empty() {
                            return;
                        }
                    }
                    // Only the head's own bytes are copied: a read that also holds bodies
                    // or further requests is not copied again for each head in it.
                    match self.head_end(bytes) {
                        Some(end) => {
                            self.buf.extend_from_slice(&bytes[..end]);
                            bytes = &bytes[end..];
                            let head = std::mem::take(&mut self.buf);
                            self.on_head(&head);
                        }
                        None => {
                            self.buf.extend_from_slice(bytes);
                            bytes = &[];
                            if self.buf.len() > MAX_HEAD {
                                self.stop();
                            }
                        }
                    }
                }
                State::Fixed(remaining) => {
                    let n = remaining.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = match remaining - n {
                        0 => State::Head,
                        left => State::Fixed(left),
                    };
                }
                State::ChunkSize | State::ChunkEnd | State::Trailers => {
                    match bytes.iter().position(|b| *b == b'\n') {
                        Some(at) => {
                            self.buf.extend_from_slice(&bytes[..=at]);
                            bytes = &bytes[at + 1..];
                            let line = std::mem::take(&mut self.buf);
                            self.on_line(&line);
                        }
                        None => {
                            self.buf.extend_from_slice(bytes);
                            bytes = &[];
                            if self.buf.len() > MAX_HEAD {
                                self.stop();
                            }
                        }
                    }
                }
                State::ChunkData(remaining) => {
                    let n = remaining.min(bytes.len() as u64);
                    bytes = &bytes[n as usize..];
                    self.state = match remaining - n {
                        0 => State::ChunkEnd,
                        left => State::ChunkData(left),
                    };
                }
            }
        }
    }

    /// Where the head being collected ends in `bytes` (just after its empty line), carrying
    /// what the previous reads ended with in `self.newline`.
    fn head_end(&mut self, bytes: &[u8]) -> Option<usize> {
        for (i, b) in bytes.iter().enumerate() {
            self.newline = match (self.newline, b) {
                (Newline::Lf | Newline::LfCr, b'\n') => {
                    self.newline = Newline::None;
                    return Some(i + 1);
                }
                (_, b'\n') => Newline::Lf,
                (Newline::Lf, b'\r') => Newline::LfCr,
                _ => Newline::None,
            };
        }
        None
    }

    fn on_head(&mut self, head: &[u8]) {
        let index = self.heads;
        self.heads += 1;
        let framing = head_framing(head);
        if framing.transfer_encoding && (framing.content_length.is_some() || framing.bad_content_length) {
            self.conflicting.get_or_insert(index);
            // hyper closes the connection after this request: nothing more to follow.
            self.stop();
            return;
        }
        if framing.switches || framing.bad_content_length {
            self.stop();
            return;
        }
        self.state = if framing.transfer_encoding {
            State::ChunkSize
        } else {
            match framing.content_length {
                Some(0) | None => State::Head,
                Some(n) => State::Fixed(n),
            }
        };
    }

    /// A complete chunk-size, chunk-end or trailer line, with its line ending.
    fn on_line(&mut self, line: &[u8]) {
        let content = trim_line_end(line);
        self.state = match self.state {
            State::ChunkSize => {
                let digits = content.iter().take_while(|b| b.is_ascii_hexdigit()).count();
                let size = std::str::from_utf8(&content[..digits])
                    .ok()
                    .filter(|s| !s.is_empty())
                    .and_then(|s| u64::from_str_radix(s, 16).ok());
                match size {
                    None => State::Stopped,
                    Some(0) => State::Trailers,
                    Some(n) => State::ChunkData(n),
                }
            }
            // Chunk data must be followed by its line ending; anything else is a broken
            // body that hyper refuses.
            State::ChunkEnd if content.is_empty() => State::ChunkSize,
            State::ChunkEnd => State::Stopped,
            State::Trailers if content.is_empty() => State::Head,
            State::Trailers => State::Trailers,
            State::Head | State::Fixed(_) | State::ChunkData(_) | State::Stopped => State::Stopped,
        };
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Reads the framing of a complete request head (request line, header lines, empty line).
fn head_framing(head: &[u8]) -> HeadFraming {
    let mut framing = HeadFraming::default();
    let mut lines = head.split(|b| *b == b'\n').map(trim_line_end);
    let request_line = lines.next().unwrap_or_default();
    framing.switches = request_line
        .get(..8)
        .is_some_and(|m| m.eq_ignore_ascii_case(b"CONNECT "));
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], trim_ows(&line[colon + 1..]));
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (length, framing.content_length) {
                (Some(n), None) => framing.content_length = Some(n),
                (Some(n), Some(first)) if n == first => {}
                _ => framing.bad_content_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            framing.transfer_encoding = true;
        }
    }
    framing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> FramingScanner {
        let mut s = FramingScanner::default();
        for c in chunks {
            s.feed(c);
        }
        s
    }

    /// Feeds `bytes` whole and one byte at a time: the answer must not depend on how the
    /// reads split the stream.
    fn both_ways(bytes: &[u8]) -> (u64, Option<u64>) {
        let whole = scan(&[bytes]);
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        let split = scan(&bytewise);
        assert_eq!((whole.heads, whole.conflicting), (split.heads, split.conflicting));
        (whole.heads, whole.conflicting)
    }

    #[test]
    fn pipelined_requests_are_counted_through_their_bodies() {
        let stream = b"\r\nPOST /a HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nGET /\r\n\r\n\
            POST /b HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
            15;ext=1\r\nContent-Length: 1\r\n\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n\
            GET /c HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(both_ways(stream), (3, None));
    }

    #[test]
    fn both_framing_headers_are_reported_for_their_head() {
        for framing in [
            &b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n"[..],
            b"Transfer-Encoding: chunked\r\nContent-Length: 60\r\n",
            b"content-length:4\r\ntransfer-encoding:\tchunked\r\n",
        ] {
            let mut stream =
                b"GET /first HTTP/1.1\r\nHost: a\r\n\r\nPOST /x HTTP/1.1\r\nHost: a\r\n".to_vec();
            stream.extend_from_slice(framing);
            stream.extend_from_slice(b"\r\n5\r\nhello\r\n0\r\n\r\n");
            let (_, conflicting) = both_ways(&stream);
            assert_eq!(conflicting, Some(1), "{}", String::from_utf8_lossy(framing));
        }
    }

    #[test]
    fn framing_headers_inside_bodies_are_not_heads() {
        let hidden = b"POST /h HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = format!(
            "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
            hidden.len()
        )
        .into_bytes();
        stream.extend_from_slice(hidden);
        assert_eq!(both_ways(&stream), (1, None));
        let mut chunked = format!(
            "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            hidden.len()
        )
        .into_bytes();
        chunked.extend_from_slice(hidden);
        chunked.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(both_ways(&chunked), (1, None));
    }

    #[test]
    fn the_scanner_stops_at_connect_or_a_broken_body_but_follows_an_upgrade_request() {
        // An Upgrade the upstream did not honour leaves an HTTP/1 connection.
        let upgrade = b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n\
            POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(both_ways(upgrade), (2, Some(1)));
        let connect = b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\
            POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(both_ways(connect), (1, None));
        let lying = b"POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloPOST /y HTTP/1.1\r\n\
            Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(both_ways(lying), (1, None));
        let mut h2 = scan(&[]);
        h2.stop();
        h2.feed(b"POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!((h2.heads, h2.conflicting), (0, None));
    }

    #[test]
    fn head_ends_at_the_first_empty_line_with_either_line_ending() {
        let mut s = FramingScanner::default();
        assert_eq!(s.head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(s.head_end(b"GET / HTTP/1.1\n\nrest"), Some(16));
        assert_eq!(s.head_end(b"GET / HTTP/1.1\r\nA: b\r\n"), None);
        assert_eq!(
            s.head_end(b"\r\n"),
            Some(2),
            "the end carried over from the last read"
        );
        assert_eq!(s.head_end(b"GET / HTTP/1.1\r\nA: \n\rb\r\n"), None);
    }
}
