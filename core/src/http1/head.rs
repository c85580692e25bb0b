//! Message heads: a request head parsed with `httparse` into boxed `http::request::Parts`,
//! with the framing of its body decided and every framing the proxy will not guess about
//! refused; and a response head written into the connection's reused buffer.

use std::{cell::RefCell, mem::MaybeUninit, time::SystemTime};

use bytes::Bytes;

use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version,
    header::{CONNECTION, CONTENT_LENGTH, DATE, EXPECT, TE, TRANSFER_ENCODING, UPGRADE},
    request::Parts,
};

use super::upstream::PassedFields;

/// The limits a request head is read under (`--max-header-bytes`, `--max-header-count`).
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Most bytes a head may have, request line included; more is answered 431.
    pub max_bytes: usize,
    /// Most header fields a head may have; more is answered 431.
    pub max_headers: usize,
}

/// Why a request head was refused; the connection closes after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The head is longer than the head limit or has more fields than allowed (431).
    #[error("request head too large")]
    TooLarge,
    /// The head is not a well-formed HTTP/1.x request head, or frames its body in a way the
    /// proxy does not guess about: obs-fold, invalid bytes, a malformed or repeated
    /// conflicting Content-Length, a Transfer-Encoding whose last coding is not chunked, or
    /// Transfer-Encoding in HTTP/1.0 (400).
    #[error("malformed request head")]
    Malformed,
}

impl HeadError {
    /// The status the client is answered with.
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Malformed => StatusCode::BAD_REQUEST,
        }
    }
}

/// How a request's body is framed (RFC 9112 §6.3; a request is never close-delimited).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    Empty,
    /// Exactly this many bytes (Content-Length).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// A parsed request head and what the connection needs to know about it.
#[derive(Debug)]
pub struct RequestHead {
    /// The request without its body, boxed here once: the request path moves it down to
    /// the upstream's writer as a pointer (a `Parts` is 224 bytes, and every move of it, and
    /// every future that held it, copied it whole).
    pub parts: Box<Parts>,
    /// How its body is framed.
    pub body: BodyFraming,
    /// The client lets the connection stay open after this request (HTTP/1.1 without
    /// `Connection: close`, HTTP/1.0 with `Connection: keep-alive`; never after CONNECT,
    /// whose following bytes may not be HTTP at all).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1: the client waits for a 100 before its body.
    pub expect_continue: bool,
    /// The client asked to switch protocols (Connection names upgrade, Upgrade is set).
    pub upgrade: bool,
    /// The client accepts trailers (`TE: trailers`).
    pub trailers: bool,
    /// The head also had a Content-Length, dropped because Transfer-Encoding frames the
    /// body: the request path refuses it (RFC 9112 §6.1) after its own Transfer-Encoding
    /// checks, so that their statuses (501 for an unknown coding) stand.
    pub both_lengths: bool,
}

/// Marks a request whose head had Content-Length and Transfer-Encoding both (a request
/// extension).
#[derive(Debug, Clone, Copy)]
pub struct BothLengths;

/// How many header fields the request path may add to a request before it is forwarded
/// (`proxy/src/forward/filter.rs`, `prepare_request`).
const HEADERS_ADDED_UPSTREAM: usize = 5;

/// Header fields parsed on the stack up to this many; a larger `--max-header-count` takes
/// a heap array for the parse.
const STACK_HEADERS: usize = 128;

/// Parses the request head at the start of `buf`: `Ok(None)` when more bytes are needed,
/// else the head and how many bytes it took (leading empty lines included).
pub fn parse_request(buf: &[u8], limits: HeadLimits) -> Result<Option<(RequestHead, usize)>, HeadError> {
    if limits.max_headers <= STACK_HEADERS {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
        parse_with(buf, limits, &mut headers[..limits.max_headers])
    } else {
        let mut headers = Vec::with_capacity(limits.max_headers);
        headers.resize_with(limits.max_headers, MaybeUninit::uninit);
        parse_with(buf, limits, &mut headers)
    }
}

fn parse_with<'b>(
    buf: &'b [u8],
    limits: HeadLimits,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<(RequestHead, usize)>, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, headers);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len > limits.max_bytes => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_bytes => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    };
    let method =
        Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| HeadError::Malformed)?;
    let version = match req.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(HeadError::Malformed),
    };
    // The head is copied once, and every field value (and the target) is a slice of the
    // copy: one allocation per head rather than one per field.
    let shared = Shared::copy(buf, len);
    let uri = match req.path.unwrap_or_default() {
        // The commonest target, without even a slice.
        "/" => Uri::from_static("/"),
        path => Uri::from_maybe_shared(shared.slice(path.as_bytes())).map_err(|_| HeadError::Malformed)?,
    };

    // Room for what the request path adds before forwarding (X-Forwarded-For, -Proto,
    // -Host, and Connection/Upgrade on an upgrade), so the map does not grow then.
    let mut map = HeaderMap::with_capacity(req.headers.len() + HEADERS_ADDED_UPSTREAM);
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding = false;
    let mut last_coding_chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut upgrade_token = false;
    let mut expect_continue = false;
    let mut trailers = false;
    for header in req.headers.iter() {
        let name = field_name(header.name.as_bytes()).ok_or(HeadError::Malformed)?;
        if name == CONTENT_LENGTH {
            let n = parse_content_length(header.value).ok_or(HeadError::Malformed)?;
            match content_length {
                Some(first) if first != n => return Err(HeadError::Malformed),
                // The same length repeated says nothing new: it is kept once, so the
                // upstream sees a single framing header.
                Some(_) => continue,
                None => content_length = Some(n),
            }
        } else if name == TRANSFER_ENCODING {
            transfer_encoding = true;
            // Only the last coding of the last field decides the framing; the request path
            // refuses every list other than a single chunked, with its own statuses.
            if let Some(last) = header.value.rsplit(|b| *b == b',').next() {
                last_coding_chunked = trim(last).eq_ignore_ascii_case(b"chunked");
            }
        } else if name == CONNECTION {
            let tokens = ConnectionTokens::of(header.value);
            close |= tokens.close;
            keep_alive_token |= tokens.keep_alive;
            upgrade_token |= tokens.upgrade;
            if tokens.only_persistence {
                continue;
            }
        } else if name == EXPECT {
            expect_continue |= trim(header.value).eq_ignore_ascii_case(b"100-continue");
        } else if name == TE {
            trailers |= header
                .value
                .split(|b| *b == b',')
                .any(|t| trim(t).eq_ignore_ascii_case(b"trailers"));
        }
        // Made only for a field that is kept: a Connection that only says whether to
        // persist, or a repeated Content-Length, never needs one (about 150 instructions).
        let value = shared.value(header.value).ok_or(HeadError::Malformed)?;
        map.append(name, value);
    }

    let mut both_lengths = false;
    let body = if transfer_encoding {
        // HTTP/1.0 has no transfer codings; a last coding other than chunked leaves the
        // length unknowable (RFC 9112 §6.3): both are refused.
        if version == Version::HTTP_10 || !last_coding_chunked {
            return Err(HeadError::Malformed);
        }
        if content_length.is_some() {
            both_lengths = true;
            map.remove(CONTENT_LENGTH);
        }
        BodyFraming::Chunked
    } else {
        match content_length {
            None | Some(0) => BodyFraming::Empty,
            Some(n) => BodyFraming::Length(n),
        }
    };
    let connect = method == Method::CONNECT;
    let keep_alive = !connect
        && !close
        && match version {
            Version::HTTP_10 => keep_alive_token,
            _ => true,
        };
    let upgrade = upgrade_token && map.contains_key(UPGRADE) && version == Version::HTTP_11;

    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = version;
    parts.headers = map;
    if both_lengths {
        parts.extensions.insert(BothLengths);
    }
    Ok(Some((
        RequestHead {
            parts: Box::new(parts),
            body,
            keep_alive,
            expect_continue: expect_continue && version == Version::HTTP_11,
            upgrade,
            trailers,
            both_lengths,
        },
        len,
    )))
}

/// A head copied once into shared memory, of which field values are slices.
pub(crate) struct Shared<'b> {
    original: &'b [u8],
    copy: Bytes,
}

impl<'b> Shared<'b> {
    /// Copies the first `len` bytes of `original` (the head): one allocation of the head's
    /// size, and a small second one when it is first sliced (`bytes` shares a copied `Vec`
    /// lazily). A fixed 1,008-byte block instead, filled in place, took one allocation but
    /// zeroed the block and moved it whole into `Bytes`' box: about 100 instructions more
    /// per head under mimalloc, whose small allocations take about 50 (callgrind).
    pub(crate) fn copy(original: &'b [u8], len: usize) -> Self {
        Self {
            original,
            copy: Bytes::copy_from_slice(&original[..len]),
        }
    }

    /// The copy of `part`, a slice of the head's original bytes.
    pub(crate) fn slice(&self, part: &[u8]) -> Bytes {
        if part.is_empty() {
            return Bytes::new();
        }
        let start = part.as_ptr() as usize - self.original.as_ptr() as usize;
        self.copy.slice(start..start + part.len())
    }

    /// A field value from `part` (validated as `HeaderValue::from_bytes` does).
    pub(crate) fn value(&self, part: &[u8]) -> Option<HeaderValue> {
        HeaderValue::from_maybe_shared(self.slice(part)).ok()
    }
}

/// The name of a field read from a head. The names nearly every request or response
/// carries are matched here first, by length and then byte by byte without case; any other
/// goes to `HeaderName::from_bytes`, which lowercases the name into a scratch buffer
/// through a table and matches the copy against each of about 90 standard names. Measured
/// with callgrind: about 150 instructions a field there, on the eight or so fields of a
/// proxied request and its response.
pub(crate) fn field_name(name: &[u8]) -> Option<HeaderName> {
    use http::header::{
        ACCEPT, ACCEPT_ENCODING, ACCEPT_LANGUAGE, ACCEPT_RANGES, AUTHORIZATION, CACHE_CONTROL,
        CONTENT_ENCODING, CONTENT_TYPE, COOKIE, ETAG, EXPIRES, HOST, LAST_MODIFIED, LOCATION, ORIGIN,
        REFERER, SERVER, SET_COOKIE, USER_AGENT, VARY,
    };
    let is = |lower: &[u8]| is_lowercase_of(name, lower);
    let known = match name.len() {
        2 if is(b"te") => TE,
        4 if is(b"host") => HOST,
        4 if is(b"date") => DATE,
        4 if is(b"etag") => ETAG,
        4 if is(b"vary") => VARY,
        6 if is(b"accept") => ACCEPT,
        6 if is(b"server") => SERVER,
        6 if is(b"cookie") => COOKIE,
        6 if is(b"expect") => EXPECT,
        6 if is(b"origin") => ORIGIN,
        7 if is(b"upgrade") => UPGRADE,
        7 if is(b"referer") => REFERER,
        7 if is(b"expires") => EXPIRES,
        8 if is(b"location") => LOCATION,
        10 if is(b"user-agent") => USER_AGENT,
        10 if is(b"connection") => CONNECTION,
        10 if is(b"set-cookie") => SET_COOKIE,
        12 if is(b"content-type") => CONTENT_TYPE,
        13 if is(b"cache-control") => CACHE_CONTROL,
        13 if is(b"last-modified") => LAST_MODIFIED,
        13 if is(b"accept-ranges") => ACCEPT_RANGES,
        13 if is(b"authorization") => AUTHORIZATION,
        14 if is(b"content-length") => CONTENT_LENGTH,
        15 if is(b"accept-encoding") => ACCEPT_ENCODING,
        15 if is(b"accept-language") => ACCEPT_LANGUAGE,
        16 if is(b"content-encoding") => CONTENT_ENCODING,
        17 if is(b"transfer-encoding") => TRANSFER_ENCODING,
        _ => return HeaderName::from_bytes(name).ok(),
    };
    Some(known)
}

/// `name` is `lower` in any case. `lower` holds lowercase letters, digits and `-` only: a
/// letter's byte has 0x40 set, and setting 0x20 in a byte of `name` then folds exactly that
/// letter's two cases onto it; any other byte must be equal. Without a branch per byte, so
/// that the loop is vectorised (half the instructions of `to_ascii_lowercase` per byte).
pub(crate) fn is_lowercase_of(name: &[u8], lower: &[u8]) -> bool {
    if name.len() != lower.len() {
        return false;
    }
    let diff = name
        .iter()
        .zip(lower)
        .fold(0, |diff, (a, b)| diff | ((a | ((b & 0x40) >> 1)) ^ b));
    diff == 0
}

/// A Content-Length value: digits only (no sign, list, or whitespace inside), no overflow.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    let value = trim(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value
        .iter()
        .try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// What a Connection field's tokens say, for both parsers (requests and responses).
pub(crate) struct ConnectionTokens {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    pub(crate) upgrade: bool,
    /// Every token is `close` or `keep-alive`: the field only says whether the connection
    /// persists, which the parser answers (`keep_alive`), so it stays out of the header map.
    /// It is this hop's, and in the map it would cost a removal before forwarding on every
    /// message that carries it (most upstreams say `keep-alive` on every response). A field
    /// naming other fields, or an upgrade, goes in for the request path to act on.
    pub(crate) only_persistence: bool,
}

impl ConnectionTokens {
    pub(crate) fn of(value: &[u8]) -> Self {
        // The two values nearly every message that has the field says, without the split.
        let persistence = |close| Self {
            close,
            keep_alive: !close,
            upgrade: false,
            only_persistence: true,
        };
        if is_lowercase_of(value, b"keep-alive") {
            return persistence(false);
        }
        if is_lowercase_of(value, b"close") {
            return persistence(true);
        }
        let mut tokens = Self {
            close: false,
            keep_alive: false,
            upgrade: false,
            only_persistence: true,
        };
        for token in value.split(|b| *b == b',').map(trim) {
            let close = token.eq_ignore_ascii_case(b"close");
            let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
            tokens.close |= close;
            tokens.keep_alive |= keep_alive;
            tokens.upgrade |= token.eq_ignore_ascii_case(b"upgrade");
            tokens.only_persistence &= close || keep_alive || token.is_empty();
        }
        tokens
    }
}

pub(crate) fn trim(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// How a response's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseFraming {
    /// No body bytes follow the head (HEAD, 1xx, 204, 304, or an empty body).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked; trailers are sent when the client accepts them.
    Chunked,
    /// The body ends when the connection closes (an HTTP/1.0 client, length unknown).
    Close,
}

/// What decides a response's framing besides the response itself.
#[derive(Debug, Clone, Copy)]
pub struct ResponseContext {
    /// The request was a HEAD.
    pub head_request: bool,
    /// The request's HTTP version.
    pub version: Version,
}

/// Decides the framing of a response whose body has `exact` bytes when known, and fixes
/// its framing headers to match: a body the head does not allow has none.
pub fn response_framing(
    status: StatusCode,
    headers: &mut HeaderMap,
    exact: Option<u64>,
    end_stream: bool,
    ctx: ResponseContext,
) -> ResponseFraming {
    // One pass over the fields finds the framing ones; each is then removed only when it is
    // there (a removal is a hashed lookup even when the name is absent, and most responses
    // have no Transfer-Encoding by now).
    let mut transfer_encoding = false;
    let mut content_length: Option<&HeaderValue> = None;
    for (name, value) in headers.iter() {
        if name == TRANSFER_ENCODING {
            transfer_encoding = true;
        } else if name == CONTENT_LENGTH && content_length.is_none() {
            content_length = Some(value);
        }
    }
    let length = content_length.map(|v| parse_content_length(v.as_bytes()));
    if transfer_encoding {
        headers.remove(TRANSFER_ENCODING);
    }
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        if length.is_some() {
            headers.remove(CONTENT_LENGTH);
        }
        return ResponseFraming::None;
    }
    // A HEAD answer and a 304 describe the body they do not carry: their Content-Length
    // stays as the upstream said it.
    if ctx.head_request || status == StatusCode::NOT_MODIFIED {
        return ResponseFraming::None;
    }
    if let Some(Some(n)) = length {
        return if n == 0 {
            ResponseFraming::None
        } else {
            ResponseFraming::Length(n)
        };
    }
    if length.is_some() {
        headers.remove(CONTENT_LENGTH);
    }
    let exact = if end_stream { Some(0) } else { exact };
    if let Some(n) = exact {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        return if n == 0 {
            ResponseFraming::None
        } else {
            ResponseFraming::Length(n)
        };
    }
    if ctx.version == Version::HTTP_11 {
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        ResponseFraming::Chunked
    } else {
        ResponseFraming::Close
    }
}

/// Writes a response head into `out` (cleared first): the status line, the headers, a
/// Date when there is none, and the connection's fate (`Connection: close`, or
/// `keep-alive` to an HTTP/1.0 client that asked for it). A 101 keeps its own Connection.
/// Returns whether the connection stays open: `keep_alive`, unless the response's own
/// Connection field says `close` (the proxy's answer to a request whose body it left
/// unread), which is noticed while the fields are written rather than looked up apart.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    keep_alive: bool,
    client_version: Version,
) -> bool {
    // One allocation for nearly every head (a connection's buffer is dropped while it
    // idles, so it grows from nothing for most responses): the status line, the fields, a
    // Date and a Connection field.
    write_status_line(out, status, head_room(headers) + 96);
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut dated = false;
    let mut asked_close = false;
    for (name, value) in headers {
        if name == CONNECTION && !switching {
            asked_close |= ConnectionTokens::of(value.as_bytes()).close;
            continue;
        }
        dated |= name == DATE;
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let keep_alive = keep_alive && !asked_close;
    end_head(out, dated, (!switching).then_some(keep_alive), client_version);
    keep_alive
}

/// How the body of a response whose fields are passed as the upstream sent them is framed
/// (such a response has a body: the upstream side keeps bodiless answers in a map): by its
/// length when known, else chunked to an HTTP/1.1 client and by the connection's close to
/// an HTTP/1.0 one.
pub fn passed_framing(exact: Option<u64>, end_stream: bool, client_version: Version) -> ResponseFraming {
    match if end_stream { Some(0) } else { exact } {
        Some(0) => ResponseFraming::None,
        Some(n) => ResponseFraming::Length(n),
        None if client_version == Version::HTTP_11 => ResponseFraming::Chunked,
        None => ResponseFraming::Close,
    }
}

/// Writes the head of a response whose fields are passed as the upstream sent them
/// (`fields`, without framing or hop-by-hop fields) into `out` (cleared first): the status
/// line, the fields, the framing field `framing` needs, a Date when there is none, and the
/// connection's fate, as [`write_response_head`] does.
pub fn write_passed_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    fields: &PassedFields,
    framing: ResponseFraming,
    keep_alive: bool,
    client_version: Version,
) {
    write_status_line(out, status, fields.lines().len() + 128);
    out.extend_from_slice(fields.lines());
    match framing {
        ResponseFraming::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa_u64(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        ResponseFraming::None => out.extend_from_slice(b"content-length: 0\r\n"),
        ResponseFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        ResponseFraming::Close => {}
    }
    end_head(out, fields.has_date(), Some(keep_alive), client_version);
}

/// Clears `out`, makes room for `room` bytes, and writes the status line.
fn write_status_line(out: &mut Vec<u8>, status: StatusCode, room: usize) {
    out.clear();
    out.reserve(room);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Ends a head: a Date unless `dated`, the connection's fate unless it is the response's
/// own (`keep_alive` None: a 101), and the empty line.
fn end_head(out: &mut Vec<u8>, dated: bool, keep_alive: Option<bool>, client_version: Version) {
    if !dated {
        out.extend_from_slice(b"date: ");
        DATE_NOW.with(|date| out.extend_from_slice(date.borrow_mut().now()));
        out.extend_from_slice(b"\r\n");
    }
    match keep_alive {
        Some(false) => out.extend_from_slice(b"connection: close\r\n"),
        Some(true) if client_version == Version::HTTP_10 => {
            out.extend_from_slice(b"connection: keep-alive\r\n")
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

/// `n` in decimal, written at the end of `buf`.
pub(crate) fn itoa_u64(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

/// Room for `headers` written as a head: a generous guess from their number, not their
/// lengths. Summing the lengths walked the map once more before writing it, naming every
/// field twice (about 25 instructions a field, on both heads of every request); a head
/// longer than the guess (long cookies) only grows its buffer once or twice.
pub(crate) fn head_room(headers: &HeaderMap) -> usize {
    headers.len() * 64
}

/// The Date header's value, formatted once a second per thread.
struct CachedDate {
    second: u64,
    value: [u8; 29],
}

impl CachedDate {
    fn now(&mut self) -> &[u8] {
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if second != self.second {
            let formatted = httpdate::fmt_http_date(now);
            if formatted.len() == self.value.len() {
                self.value.copy_from_slice(formatted.as_bytes());
                self.second = second;
            }
        }
        &self.value
    }
}

thread_local! {
    static DATE_NOW: RefCell<CachedDate> = const {
        RefCell::new(CachedDate { second: u64::MAX, value: *b"Thu, 01 Jan 1970 00:00:00 GMT" })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 1024,
        max_headers: 8,
    };

    fn parse(bytes: &[u8]) -> Result<Option<(RequestHead, usize)>, HeadError> {
        parse_request(bytes, LIMITS)
    }

    fn head(bytes: &[u8]) -> RequestHead {
        parse(bytes).expect("valid").expect("complete").0
    }

    #[test]
    fn a_head_is_parsed_and_its_length_told() {
        let bytes = b"\r\nPOST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcGET";
        let (parsed, len) = parse(bytes).expect("valid").expect("complete");
        assert_eq!(&bytes[len..], b"abcGET");
        assert_eq!(parsed.parts.method, Method::POST);
        assert_eq!(parsed.parts.uri, "/a?b");
        assert_eq!(parsed.parts.headers["host"], "x");
        assert_eq!(parsed.body, BodyFraming::Length(3));
        assert!(parsed.keep_alive);
        assert!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n").expect("valid").is_none());
        assert_eq!(
            head(b"GET / HTTP/1.1\nHost: x\n\n").parts.headers["host"],
            "x",
            "bare LF line endings"
        );
    }

    #[test]
    fn a_connection_field_that_only_says_whether_to_persist_stays_out_of_the_map() {
        for value in [
            "close",
            "keep-alive",
            "CLOSE",
            "Keep-ALIVE",
            "Keep-Alive, close",
            " close ,",
        ] {
            let head = head(format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: {value}\r\n\r\n").as_bytes());
            assert!(!head.parts.headers.contains_key(CONNECTION), "{value}");
            assert_eq!(
                head.keep_alive,
                !value.to_ascii_lowercase().contains("close"),
                "{value}"
            );
        }
        // A field naming other fields, or an upgrade, is the request path's to act on.
        for value in ["close, x-secret", "upgrade", "keep-alive, Upgrade"] {
            let head = head(
                format!("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: {value}\r\n\r\n")
                    .as_bytes(),
            );
            assert_eq!(head.parts.headers[CONNECTION], value, "{value}");
        }
        // Near misses are other tokens: they go in, and do not close.
        for value in ["closed", "keep-alives", "clos"] {
            let head = head(format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: {value}\r\n\r\n").as_bytes());
            assert_eq!(head.parts.headers[CONNECTION], value, "{value}");
            assert!(head.keep_alive, "{value}");
        }
    }

    #[test]
    fn common_field_names_are_read_as_any_other_name_is() {
        let names = [
            "te",
            "host",
            "date",
            "etag",
            "vary",
            "accept",
            "server",
            "cookie",
            "expect",
            "origin",
            "upgrade",
            "referer",
            "expires",
            "location",
            "user-agent",
            "connection",
            "set-cookie",
            "content-type",
            "cache-control",
            "last-modified",
            "accept-ranges",
            "authorization",
            "content-length",
            "accept-encoding",
            "accept-language",
            "content-encoding",
            "transfer-encoding",
            "x-request-id",
            "keep-alive",
        ];
        let mut tried = 0;
        for name in names {
            let mut variants = vec![name.to_string(), name.to_ascii_uppercase()];
            // Each byte in the other case, and each byte replaced by another token byte.
            for i in 0..name.len() {
                let mut flipped = name.as_bytes().to_vec();
                flipped[i] = flipped[i].to_ascii_uppercase();
                variants.push(String::from_utf8(flipped).unwrap());
                for other in [b'a', b'Z', b'-', b'0', b'_', b'~', b'.'] {
                    let mut changed = name.as_bytes().to_vec();
                    changed[i] = other;
                    variants.push(String::from_utf8(changed).unwrap());
                }
            }
            variants.push(format!("{name}s"));
            variants.push(name[1..].to_string());
            for variant in variants {
                let expected = HeaderName::from_bytes(variant.as_bytes()).ok();
                assert_eq!(field_name(variant.as_bytes()), expected, "{variant}");
                tried += 1;
            }
        }
        assert!(tried > 1000);
        for invalid in [
            &b"ho st"[..],
            b"h\x00st",
            b"",
            b"host:",
            b"conn\xe9ction",
            b"user\ragent",
            b"\x03lose",
        ] {
            assert_eq!(field_name(invalid), None, "{}", String::from_utf8_lossy(invalid));
        }
    }

    #[test]
    fn framing_that_cannot_be_trusted_is_refused() {
        for bad in [
            &b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\n Host: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX-A: a\x7fb\r\n\r\n",
            b"GET /a b HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse(bad).err(),
                Some(HeadError::Malformed),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn transfer_encoding_frames_the_body_and_drops_content_length() {
        let h = head(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: gzip, CHUNKED \r\n\r\n");
        assert_eq!(h.body, BodyFraming::Chunked);
        assert!(h.both_lengths);
        assert!(h.parts.extensions.get::<BothLengths>().is_some());
        assert!(!h.parts.headers.contains_key(CONTENT_LENGTH));
        let same = head(b"POST / HTTP/1.1\r\nContent-Length: 4\r\ncontent-length: 4\r\n\r\n");
        assert_eq!(same.body, BodyFraming::Length(4));
        assert_eq!(same.parts.headers.get_all(CONTENT_LENGTH).iter().count(), 1);
    }

    #[test]
    fn heads_over_the_limits_are_too_large() {
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(2000));
        assert_eq!(parse(long.as_bytes()).err(), Some(HeadError::TooLarge));
        assert_eq!(parse(&long.as_bytes()[..1500]).err(), Some(HeadError::TooLarge));
        let many: String = (0..9).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(many.as_bytes()).err(), Some(HeadError::TooLarge));
        let big = HeadLimits {
            max_bytes: 1 << 20,
            max_headers: 500,
        };
        let many: String = (0..300).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(parse_request(many.as_bytes(), big).expect("valid").is_some());
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        assert!(head(b"GET / HTTP/1.1\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.1\r\nConnection: foo, Close\r\n\r\n").keep_alive);
        assert!(!head(b"GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(!head(b"CONNECT a:1 HTTP/1.1\r\n\r\n").keep_alive);
        let up = head(b"GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
        assert!(up.upgrade);
        assert!(head(b"PUT / HTTP/1.1\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n").expect_continue);
    }

    fn framing(
        status: u16,
        headers: &[(&str, &str)],
        exact: Option<u64>,
        ctx: ResponseContext,
    ) -> (ResponseFraming, HeaderMap) {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let status = StatusCode::from_u16(status).unwrap();
        let f = response_framing(status, &mut map, exact, exact == Some(0), ctx);
        (f, map)
    }

    #[test]
    fn responses_are_framed_by_status_method_and_version() {
        let get11 = ResponseContext {
            head_request: false,
            version: Version::HTTP_11,
        };
        let head11 = ResponseContext {
            head_request: true,
            ..get11
        };
        let get10 = ResponseContext {
            version: Version::HTTP_10,
            ..get11
        };
        assert_eq!(framing(200, &[], Some(5), get11).0, ResponseFraming::Length(5));
        assert_eq!(framing(200, &[], Some(5), get11).1["content-length"], "5");
        let (f, h) = framing(200, &[], None, get11);
        assert_eq!(
            (f, h["transfer-encoding"].to_str().unwrap()),
            (ResponseFraming::Chunked, "chunked")
        );
        assert_eq!(framing(200, &[], None, get10).0, ResponseFraming::Close);
        assert_eq!(
            framing(200, &[("content-length", "7")], None, get11).0,
            ResponseFraming::Length(7)
        );
        let (f, h) = framing(200, &[("content-length", "7")], Some(0), head11);
        assert_eq!(
            (f, h["content-length"].to_str().unwrap()),
            (ResponseFraming::None, "7")
        );
        let (f, h) = framing(204, &[("content-length", "7")], None, get11);
        assert_eq!(
            (f, h.contains_key("content-length")),
            (ResponseFraming::None, false)
        );
        let (f, h) = framing(304, &[("content-length", "7")], None, get11);
        assert_eq!(
            (f, h.contains_key("content-length")),
            (ResponseFraming::None, true)
        );
        // A Content-Length that is not a number is replaced by the body's own length.
        let (f, h) = framing(
            200,
            &[("content-length", "x"), ("content-length", "9")],
            Some(3),
            get11,
        );
        assert_eq!(
            (
                f,
                h.get_all("content-length")
                    .iter()
                    .map(|v| v.to_str().unwrap())
                    .collect::<Vec<_>>()
            ),
            (ResponseFraming::Length(3), vec!["3"])
        );
        let (f, h) = framing(204, &[("transfer-encoding", "chunked")], None, get11);
        assert_eq!(
            (f, h.contains_key("transfer-encoding")),
            (ResponseFraming::None, false)
        );
        let (f, h) = framing(200, &[("transfer-encoding", "gzip, chunked")], None, get11);
        assert_eq!(
            (f, h["transfer-encoding"].to_str().unwrap()),
            (ResponseFraming::Chunked, "chunked")
        );
    }

    #[test]
    fn response_heads_say_the_connection_s_fate() {
        let mut out = Vec::new();
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("b"));
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        write_response_head(&mut out, StatusCode::OK, &headers, false, Version::HTTP_11);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\nx-a: b\r\ndate: "), "{text}");
        assert!(text.ends_with("GMT\r\nconnection: close\r\n\r\n"), "{text}");
        write_response_head(&mut out, StatusCode::OK, &headers, true, Version::HTTP_10);
        assert!(String::from_utf8_lossy(&out).ends_with("connection: keep-alive\r\n\r\n"));
        write_response_head(&mut out, StatusCode::OK, &headers, true, Version::HTTP_11);
        assert!(!String::from_utf8_lossy(&out).contains("connection"));
        // A response that says close closes the connection, whatever the caller wanted.
        let mut closing = HeaderMap::new();
        closing.insert(CONNECTION, HeaderValue::from_static("Close"));
        assert!(!write_response_head(
            &mut out,
            StatusCode::OK,
            &closing,
            true,
            Version::HTTP_11
        ));
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.matches("connection").count(), 1, "{text}");
        assert!(text.ends_with("connection: close\r\n\r\n"), "{text}");
        assert!(write_response_head(
            &mut out,
            StatusCode::OK,
            &headers,
            true,
            Version::HTTP_11
        ));
        // The upstream's Date is kept, and not said twice.
        headers.insert(DATE, HeaderValue::from_static("Sat, 05 Dec 2026 04:00:00 GMT"));
        write_response_head(&mut out, StatusCode::OK, &headers, true, Version::HTTP_11);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.matches("date: ").count(), 1, "{text}");
        assert!(text.contains("date: Sat, 05 Dec 2026 04:00:00 GMT\r\n"), "{text}");
    }

    /// A head of fields passed as sent: the upstream's lines as they are, the framing
    /// field the body needs, a Date only when the upstream sent none, and the connection's
    /// fate as for a head written from a map.
    #[test]
    fn passed_heads_carry_the_upstream_s_lines_and_the_proxy_s_framing() {
        use super::super::upstream::parse_response_into;
        let limits = HeadLimits {
            max_bytes: 1024,
            max_headers: 16,
        };
        let passed = |bytes: &[u8]| {
            parse_response_into(bytes, limits, false, &mut HeaderMap::new(), true)
                .expect("valid")
                .expect("complete")
                .0
                .passed
                .expect("passed")
        };
        let fields = passed(b"HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 12\r\nX-A: b\r\n\r\n");
        assert!(!fields.has_date());
        let mut out = Vec::new();
        let framing = passed_framing(Some(12), false, Version::HTTP_11);
        assert_eq!(framing, ResponseFraming::Length(12));
        write_passed_head(&mut out, StatusCode::OK, &fields, framing, true, Version::HTTP_11);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\nServer: up\r\nX-A: b\r\ncontent-length: 12\r\ndate: "),
            "{text}"
        );
        assert!(text.ends_with(" GMT\r\n\r\n"), "{text}");

        // An empty body says so; a body of unknown length is chunked to an HTTP/1.1 client
        // and ends with the connection to an HTTP/1.0 one, which asked to keep it or not.
        for (exact, end_stream, version, keep, framing_field, fate) in [
            (
                Some(0),
                false,
                Version::HTTP_11,
                true,
                "content-length: 0\r\n",
                "",
            ),
            (None, true, Version::HTTP_11, true, "content-length: 0\r\n", ""),
            (
                None,
                false,
                Version::HTTP_11,
                true,
                "transfer-encoding: chunked\r\n",
                "",
            ),
            (
                None,
                false,
                Version::HTTP_11,
                false,
                "transfer-encoding: chunked\r\n",
                "connection: close\r\n",
            ),
            (None, false, Version::HTTP_10, false, "", "connection: close\r\n"),
            (
                Some(3),
                false,
                Version::HTTP_10,
                true,
                "content-length: 3\r\n",
                "connection: keep-alive\r\n",
            ),
        ] {
            let framing = passed_framing(exact, end_stream, version);
            write_passed_head(&mut out, StatusCode::OK, &fields, framing, keep, version);
            let text = String::from_utf8(out.clone()).unwrap();
            assert!(
                text.contains(&format!("X-A: b\r\n{framing_field}date: ")),
                "{text}"
            );
            assert!(text.ends_with(&format!(" GMT\r\n{fate}\r\n")), "{text}");
            assert_eq!(text.matches("connection").count(), fate.len().min(1), "{text}");
        }

        // The upstream's Date is kept, and not said twice.
        let dated =
            passed(b"HTTP/1.1 200 OK\r\nDate: Sat, 05 Dec 2026 04:00:00 GMT\r\nContent-Length: 1\r\n\r\n");
        write_passed_head(
            &mut out,
            StatusCode::OK,
            &dated,
            ResponseFraming::Length(1),
            true,
            Version::HTTP_11,
        );
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(text.to_ascii_lowercase().matches("date: ").count(), 1, "{text}");
        assert!(text.contains("Date: Sat, 05 Dec 2026 04:00:00 GMT\r\n"), "{text}");
    }

    /// A head longer than the room guessed for it is written whole: its buffer grows.
    #[test]
    fn heads_longer_than_their_guessed_room_are_written_whole() {
        let mut headers = HeaderMap::new();
        let cookie = "c".repeat(10_000);
        headers.insert("cookie", HeaderValue::from_str(&cookie).expect("value"));
        headers.append("x-b", HeaderValue::from_static("1"));
        assert!(head_room(&headers) < cookie.len());
        let mut out = Vec::new();
        write_response_head(&mut out, StatusCode::OK, &headers, true, Version::HTTP_11);
        let text = String::from_utf8(out).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(text.contains(&format!("\r\ncookie: {cookie}\r\nx-b: 1\r\n")));
        assert!(text.ends_with("\r\n\r\n"));
        let mut out = Vec::new();
        crate::http1::upstream::write_request_head(
            &mut out,
            &http::Method::GET,
            "/",
            &headers,
            BodyFraming::Empty,
        );
        assert_eq!(
            String::from_utf8(out).expect("ascii"),
            format!("GET / HTTP/1.1\r\ncookie: {cookie}\r\nx-b: 1\r\n\r\n")
        );
    }
}
