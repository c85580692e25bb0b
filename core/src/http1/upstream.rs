//! The upstream side of the codec: a request head written for an upstream, and the
//! upstream's response head parsed with `httparse`, its body's framing decided once and
//! every framing the proxy will not guess about refused (the request is then answered 502
//! and the connection closed).
//!
//! Response framing (RFC 9112 §6.1, §6.3), in the RFC's error readings: stricter than nginx
//! 1.22, which forwarded each framing refused below when tried on the development machine
//! (only obs-fold was a 502 there), because the proxy re-frames every body it forwards and
//! cannot pass on a coding it does not decode:
//! - a response to HEAD, a 1xx, 204 and 304 have no body, whatever their fields say;
//! - `Transfer-Encoding` must be exactly `chunked`: another coding or a list (the client
//!   would get coded bytes with no field saying so), Transfer-Encoding in an HTTP/1.0
//!   response ("faulty framing", §6.1), and Transfer-Encoding with Content-Length ("ought
//!   to be handled as an error", §6.3: a response splitting attempt) are refused;
//! - `Content-Length` must be one number (the same number repeated is read once);
//! - otherwise the body ends when the upstream closes, and the connection is not reused.
//!
//! obs-fold, invalid bytes and status codes outside 100-999 are refused by `httparse` or
//! here.

use std::mem::MaybeUninit;

use http::{
    HeaderMap, Method, Response, StatusCode, Version,
    header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING},
};

use super::head::{
    BodyFraming, ConnectionTokens, HeadLimits, Shared, field_name, head_room, is_lowercase_of, itoa_u64,
    parse_content_length, trim,
};

/// Why a response head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResponseHeadError {
    /// The head is longer than the limit or has more fields than allowed.
    #[error("response head too large")]
    TooLarge,
    /// Not a well-formed HTTP/1.x response head (a bad status line, obs-fold, invalid
    /// bytes in a field).
    #[error("malformed response head")]
    Malformed,
    /// The body's length could be read two ways: Content-Length with Transfer-Encoding,
    /// conflicting or malformed Content-Length, a Transfer-Encoding other than a single
    /// `chunked`, or Transfer-Encoding in HTTP/1.0.
    #[error("ambiguous or unsupported response framing")]
    Framing,
}

/// How a response's body is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBodyFraming {
    /// No body follows the head.
    Empty,
    /// Exactly this many bytes (Content-Length).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// The body ends when the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    /// The response, without its body.
    pub response: Response<()>,
    /// How its body is framed.
    pub body: ResponseBodyFraming,
    /// The upstream keeps the connection open after this response (HTTP/1.1 without
    /// `Connection: close`, HTTP/1.0 with `Connection: keep-alive`; never when the body
    /// ends with the connection).
    pub keep_alive: bool,
    /// The fields as the upstream sent them, when they were asked for and could be passed
    /// (the response's map is then empty).
    pub passed: Option<PassedFields>,
}

/// A response's end-to-end fields as the upstream sent them, each written `name: value`
/// and CRLF, for an HTTP/1 client the proxy passes them to unchanged (its server copies
/// them into the head it writes). The framing fields (Content-Length, Transfer-Encoding)
/// and the hop-by-hop ones are left out: the proxy frames the body itself. Building,
/// stripping, writing and dropping a map of the same fields cost about 2,250 instructions
/// per proxied request (callgrind, a five-field response; docs/design.md).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassedFields {
    lines: Vec<u8>,
    dated: bool,
}

impl PassedFields {
    /// The field lines, each ending in CRLF.
    pub fn lines(&self) -> &[u8] {
        &self.lines
    }

    /// One of the fields is Date.
    pub fn has_date(&self) -> bool {
        self.dated
    }
}

/// Header fields parsed on the stack up to this many.
const STACK_HEADERS: usize = 128;

/// Parses the response head at the start of `buf`, the answer to a request whose method
/// was HEAD when `head_request`: `Ok(None)` when more bytes are needed, else the head and
/// how many bytes it took. A 1xx is returned like any head; its framing is `Empty`.
pub fn parse_response(
    buf: &[u8],
    limits: HeadLimits,
    head_request: bool,
) -> Result<Option<(ResponseHead, usize)>, ResponseHeadError> {
    parse_response_into(buf, limits, head_request, &mut HeaderMap::new(), false)
}

/// [`parse_response`], with the fields put in `storage`'s memory once a whole head came
/// (`storage` is then left empty; whatever it held is dropped): the request's own field
/// map, no longer needed once its answer arrives, saves the response two allocations.
///
/// `pass`: the response goes to a client that takes its fields as the upstream sent them
/// (an HTTP/1 client, no filter on the response). A response with a body then keeps its
/// fields as [`PassedFields`] and an empty map, unless a Connection field names other
/// fields (they are looked up in a map, as for any other client). Bodiless answers (to
/// HEAD, 1xx, 204, 304) always get a map: their Content-Length describes a body the proxy
/// does not frame.
pub fn parse_response_into(
    buf: &[u8],
    limits: HeadLimits,
    head_request: bool,
    storage: &mut HeaderMap,
    pass: bool,
) -> Result<Option<(ResponseHead, usize)>, ResponseHeadError> {
    let max_headers = limits.max_headers.min(STACK_HEADERS);
    let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let headers = &mut headers[..max_headers];
    let mut res = httparse::Response::new(&mut []);
    let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, headers);
    let len = match parsed {
        Ok(httparse::Status::Complete(len)) if len > limits.max_bytes => {
            return Err(ResponseHeadError::TooLarge);
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > limits.max_bytes => {
            return Err(ResponseHeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ResponseHeadError::TooLarge),
        Err(_) => return Err(ResponseHeadError::Malformed),
    };
    let version = match res.version {
        Some(0) => Version::HTTP_10,
        Some(1) => Version::HTTP_11,
        _ => return Err(ResponseHeadError::Malformed),
    };
    let status = res
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(ResponseHeadError::Malformed)?;
    let bodiless = head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;

    let passed = if pass && !bodiless {
        pass_fields(res.headers, len)?
    } else {
        None
    };
    let (map, framing, passed) = match passed {
        Some((passed, framing)) => (HeaderMap::new(), framing, Some(passed)),
        None => {
            let (map, framing) = map_fields(res.headers, buf, len, storage)?;
            (map, framing, None)
        }
    };

    let body = if bodiless {
        ResponseBodyFraming::Empty
    } else if framing.transfer_encoding {
        if !framing.only_chunked || version == Version::HTTP_10 || framing.content_length.is_some() {
            return Err(ResponseHeadError::Framing);
        }
        ResponseBodyFraming::Chunked
    } else {
        match framing.content_length {
            Some(0) => ResponseBodyFraming::Empty,
            Some(n) => ResponseBodyFraming::Length(n),
            None => ResponseBodyFraming::Close,
        }
    };
    let keep_alive = body != ResponseBodyFraming::Close
        && !framing.close
        && match version {
            Version::HTTP_10 => framing.keep_alive_token,
            _ => true,
        };
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = map;
    Ok(Some((
        ResponseHead {
            response,
            body,
            keep_alive,
            passed,
        },
        len,
    )))
}

/// What a response head's fields say about its framing and its connection.
#[derive(Default)]
struct FramingFields {
    content_length: Option<u64>,
    transfer_encoding: bool,
    only_chunked: bool,
    close: bool,
    keep_alive_token: bool,
}

impl FramingFields {
    /// A Content-Length field: false for a repeat of the same number, which is read once.
    fn content_length(&mut self, value: &[u8]) -> Result<bool, ResponseHeadError> {
        let n = parse_content_length(value).ok_or(ResponseHeadError::Framing)?;
        match self.content_length {
            Some(first) if first != n => Err(ResponseHeadError::Framing),
            Some(_) => Ok(false),
            None => {
                self.content_length = Some(n);
                Ok(true)
            }
        }
    }

    fn transfer_encoding(&mut self, value: &[u8]) {
        // A second field makes a list, which is refused like one.
        self.only_chunked = !self.transfer_encoding && trim(value).eq_ignore_ascii_case(b"chunked");
        self.transfer_encoding = true;
    }

    fn connection(&mut self, value: &[u8]) -> ConnectionTokens {
        let tokens = ConnectionTokens::of(value);
        self.close |= tokens.close;
        self.keep_alive_token |= tokens.keep_alive;
        tokens
    }
}

/// The fields put in a map (`storage`'s memory) whose values share one copy of the head.
fn map_fields(
    fields: &[httparse::Header<'_>],
    buf: &[u8],
    len: usize,
    storage: &mut HeaderMap,
) -> Result<(HeaderMap, FramingFields), ResponseHeadError> {
    // One copy of the head; every field value is a slice of it.
    let shared = Shared::copy(buf, len);
    let mut map = std::mem::take(storage);
    map.clear();
    map.reserve(fields.len());
    let mut framing = FramingFields::default();
    for header in fields {
        let name = field_name(header.name.as_bytes()).ok_or(ResponseHeadError::Malformed)?;
        if name == CONTENT_LENGTH {
            if !framing.content_length(header.value)? {
                continue;
            }
        } else if name == TRANSFER_ENCODING {
            framing.transfer_encoding(header.value);
        } else if name == CONNECTION {
            // A 101's `upgrade` is not only persistence: it goes in, for the switch.
            if framing.connection(header.value).only_persistence {
                continue;
            }
        }
        // Made only for a field that is kept: a Connection that only says whether to
        // persist, or a repeated Content-Length, never needs one (about 150 instructions).
        let value = shared.value(header.value).ok_or(ResponseHeadError::Malformed)?;
        map.append(name, value);
    }
    Ok((map, framing))
}

/// The fields as they are passed on, or None when a Connection field names other fields
/// (which a map then finds and the request path removes).
fn pass_fields(
    fields: &[httparse::Header<'_>],
    len: usize,
) -> Result<Option<(PassedFields, FramingFields)>, ResponseHeadError> {
    // Each line gains at most a space and a CR over its form in the head.
    let mut passed = PassedFields {
        lines: Vec::with_capacity(len + 2 * fields.len()),
        dated: false,
    };
    let mut framing = FramingFields::default();
    for header in fields {
        let name = header.name.as_bytes();
        match PassedName::of(name) {
            PassedName::EndToEnd => {}
            PassedName::Date => passed.dated = true,
            PassedName::HopByHop => continue,
            PassedName::ContentLength => {
                framing.content_length(header.value)?;
                continue;
            }
            PassedName::TransferEncoding => {
                framing.transfer_encoding(header.value);
                continue;
            }
            PassedName::Connection => {
                if framing.connection(header.value).only_persistence {
                    continue;
                }
                return Ok(None);
            }
        }
        // Not checked again as `HeaderValue` checks a value: httparse has refused every
        // byte it refuses (a control byte other than HTAB, DEL), as the tests pin.
        passed.lines.extend_from_slice(name);
        passed.lines.extend_from_slice(b": ");
        passed.lines.extend_from_slice(header.value);
        passed.lines.extend_from_slice(b"\r\n");
    }
    Ok(Some((passed, framing)))
}

/// What a field's name makes of it when fields are passed as sent.
enum PassedName {
    EndToEnd,
    Date,
    /// Hop-by-hop by definition (RFC 9110 §7.6.1), Keep-Alive, and any `proxy-` field: left
    /// out, as the request path strips them from a map.
    HopByHop,
    ContentLength,
    TransferEncoding,
    Connection,
}

impl PassedName {
    fn of(name: &[u8]) -> Self {
        let is = |lower: &[u8]| is_lowercase_of(name, lower);
        match name.len() {
            2 if is(b"te") => Self::HopByHop,
            4 if is(b"date") => Self::Date,
            7 if is(b"trailer") || is(b"upgrade") => Self::HopByHop,
            10 if is(b"connection") => Self::Connection,
            10 if is(b"keep-alive") => Self::HopByHop,
            14 if is(b"content-length") => Self::ContentLength,
            17 if is(b"transfer-encoding") => Self::TransferEncoding,
            n if n > 6 && is_lowercase_of(&name[..6], b"proxy-") => Self::HopByHop,
            _ => Self::EndToEnd,
        }
    }
}

/// How a request's body is framed toward the upstream: empty when the body has already
/// ended (`end_stream`: nearly every GET; no Content-Length can promise bytes that will not
/// come, and none is looked up), else by the Content-Length the request carries, else by the
/// body's own length when it is known (`exact`), else chunked.
pub fn request_framing(headers: &HeaderMap, end_stream: bool, exact: Option<u64>) -> BodyFraming {
    if end_stream {
        return BodyFraming::Empty;
    }
    if let Some(n) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| parse_content_length(v.as_bytes()))
    {
        return if n == 0 {
            BodyFraming::Empty
        } else {
            BodyFraming::Length(n)
        };
    }
    match exact {
        Some(0) => BodyFraming::Empty,
        Some(n) => BodyFraming::Length(n),
        None => BodyFraming::Chunked,
    }
}

/// Writes a request head for an upstream into `out` (appended): the request line in
/// origin form, the fields, and the framing fields `framing` needs when the request does
/// not carry them (Content-Length, or `Transfer-Encoding: chunked`; `Content-Length: 0`
/// for a bodiless POST, PUT or PATCH, which some servers insist on). Transfer-Encoding
/// and Content-Length from `headers` are written only when they agree with `framing`.
pub fn write_request_head(
    out: &mut Vec<u8>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    framing: BodyFraming,
) {
    out.reserve(head_room(headers) + target.len() + 64);
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut has_length = false;
    for (name, value) in headers {
        if name == TRANSFER_ENCODING {
            continue;
        }
        if name == CONTENT_LENGTH {
            if framing == BodyFraming::Chunked || has_length {
                continue;
            }
            has_length = true;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        BodyFraming::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        BodyFraming::Length(n) if !has_length => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa_u64(n, &mut [0; 20]));
            out.extend_from_slice(b"\r\n");
        }
        BodyFraming::Empty
            if !has_length
                && (method == Method::POST || method == Method::PUT || method == Method::PATCH) =>
        {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_bytes: 1024,
        max_headers: 8,
    };

    /// Parses `bytes` into a map, and again with its fields passed as sent: both readings
    /// must agree on the outcome, the framing and the connection, and the passed fields
    /// must be the map's minus what the request path strips from a map (hop-by-hop and
    /// `proxy-` fields; Content-Length, which the proxy writes from the framing).
    fn parse(bytes: &[u8]) -> Result<ResponseHead, ResponseHeadError> {
        parse_within(bytes, LIMITS)
    }

    fn parse_within(bytes: &[u8], limits: HeadLimits) -> Result<ResponseHead, ResponseHeadError> {
        let mapped = parse_response(bytes, limits, false).map(|r| r.expect("complete").0);
        let passing = parse_response_into(bytes, limits, false, &mut HeaderMap::new(), true)
            .map(|r| r.expect("complete").0);
        match (&mapped, &passing) {
            (Ok(mapped), Ok(passing)) => {
                assert_eq!(mapped.response.status(), passing.response.status());
                assert_eq!(mapped.body, passing.body);
                assert_eq!(mapped.keep_alive, passing.keep_alive);
                assert!(mapped.passed.is_none());
                if let Some(passed) = &passing.passed {
                    assert!(passing.response.headers().is_empty());
                    assert_eq!(sorted_lines(passed), end_to_end(mapped.response.headers()));
                    assert_eq!(passed.has_date(), mapped.response.headers().contains_key("date"));
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b),
            (a, b) => panic!("the readings disagree: {a:?} and {b:?}"),
        }
        mapped
    }

    /// Passed field lines as lowercase names and values, sorted.
    fn sorted_lines(passed: &PassedFields) -> Vec<(String, Vec<u8>)> {
        let text = passed.lines();
        assert!(text.is_empty() || text.ends_with(b"\r\n"));
        let mut lines: Vec<(String, Vec<u8>)> = text
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = line.strip_suffix(b"\r").expect("CRLF");
                let colon = line.iter().position(|b| *b == b':').expect("a colon");
                let value = line[colon + 1..].strip_prefix(b" ").expect("one space");
                (
                    String::from_utf8(line[..colon].to_ascii_lowercase()).expect("a name"),
                    value.to_vec(),
                )
            })
            .collect();
        lines.sort();
        lines
    }

    /// A map's fields that a client is sent, as [`sorted_lines`] gives them.
    fn end_to_end(map: &HeaderMap) -> Vec<(String, Vec<u8>)> {
        let mut lines: Vec<(String, Vec<u8>)> = map
            .iter()
            .filter(|(name, _)| {
                *name != CONTENT_LENGTH
                    && !super::super::HOP_BY_HOP.contains(name)
                    && !name.as_str().starts_with("proxy-")
            })
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect();
        lines.sort();
        lines
    }

    #[test]
    fn fields_passed_as_sent_are_the_end_to_end_ones_with_their_bytes() {
        let bytes = b"HTTP/1.1 200 OK\r\nServer: up\r\nDATE: Sun, 06 Dec 2026 17:00:00 GMT\r\n\
            Content-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
            Proxy-Authenticate: Basic\r\nTE: trailers\r\nTrailer: x\r\nX-Mixed-Case:  a\tb\r\n\
            Set-Cookie: a=1\r\nX-Other: \xe9\r\nSet-Cookie: b=2\r\n\r\nok";
        let limits = HeadLimits {
            max_bytes: 1024,
            max_headers: 16,
        };
        let head = parse_response_into(bytes, limits, false, &mut HeaderMap::new(), true)
            .expect("valid")
            .expect("complete")
            .0;
        let passed = head.passed.expect("passed");
        assert_eq!(
            passed.lines(),
            &b"Server: up\r\nDATE: Sun, 06 Dec 2026 17:00:00 GMT\r\nX-Mixed-Case: a\tb\r\n\
               Set-Cookie: a=1\r\nX-Other: \xe9\r\nSet-Cookie: b=2\r\n"[..],
            "the upstream's names, order and values; framing and hop-by-hop fields left out"
        );
        assert!(passed.has_date());
        assert_eq!(head.body, ResponseBodyFraming::Length(2));
        assert!(head.keep_alive);
        parse_within(bytes, limits).expect("valid");
    }

    /// The hop-by-hop list the request path strips from a map, in any case, and any
    /// `proxy-` field: none is passed.
    #[test]
    fn every_hop_by_hop_field_is_left_out_of_passed_fields() {
        let names = super::super::HOP_BY_HOP.iter().map(|name| name.as_str());
        for name in names.chain(["proxy-authenticate"]) {
            for name in [name.to_owned(), name.to_ascii_uppercase()] {
                let (value, length) = match name.to_ascii_lowercase().as_str() {
                    "connection" => ("close", "Content-Length: 0\r\n"),
                    "transfer-encoding" => ("chunked", ""),
                    _ => ("x", "Content-Length: 0\r\n"),
                };
                let bytes = format!("HTTP/1.1 200 OK\r\n{name}: {value}\r\n{length}X-Kept: 1\r\n\r\n");
                let head = parse_response_into(bytes.as_bytes(), LIMITS, false, &mut HeaderMap::new(), true)
                    .expect("valid")
                    .expect("complete")
                    .0;
                assert_eq!(head.passed.expect("passed").lines(), b"X-Kept: 1\r\n", "{name}");
                parse(bytes.as_bytes()).expect("valid");
            }
        }
    }

    #[test]
    fn fields_are_put_in_a_map_where_they_cannot_pass_as_sent() {
        let pass = |bytes: &[u8], head_request: bool| {
            parse_response_into(bytes, LIMITS, head_request, &mut HeaderMap::new(), true)
                .expect("valid")
                .expect("complete")
                .0
        };
        // Bodiless answers: their Content-Length describes a body the proxy does not frame.
        for bytes in [
            &b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        ] {
            let head = pass(bytes, false);
            assert!(head.passed.is_none(), "{}", String::from_utf8_lossy(bytes));
            assert!(!head.response.headers().is_empty());
        }
        let head = pass(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true);
        assert!(head.passed.is_none());
        assert_eq!(
            head.response.headers()[CONTENT_LENGTH],
            "5",
            "a HEAD answer keeps its length"
        );
        // A Connection field naming another field: the request path finds both in a map.
        let head = pass(
            b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert!(head.passed.is_none());
        assert_eq!(head.response.headers()["x-secret"], "1");
        assert_eq!(head.response.headers()[CONNECTION], "x-secret");
    }

    /// Every byte a field value may hold, passed or mapped: the same answer (the passed
    /// reading relies on httparse to refuse what `HeaderValue` refuses).
    #[test]
    fn passed_values_are_refused_where_a_map_refuses_them() {
        for byte in 0..=u8::MAX {
            let mut bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A: a".to_vec();
            bytes.push(byte);
            bytes.extend_from_slice(b"b\r\n\r\n");
            let _ = parse(&bytes);
        }
    }

    #[test]
    fn a_connection_field_that_only_says_whether_to_persist_stays_out_of_the_map() {
        for value in ["close", "keep-alive", "Keep-Alive, close"] {
            let head = parse(
                format!("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: {value}\r\n\r\n").as_bytes(),
            )
            .expect("valid");
            assert!(!head.response.headers().contains_key(CONNECTION), "{value}");
            assert_eq!(head.keep_alive, !value.contains("close"), "{value}");
        }
        // A 101's `Connection: upgrade` is the switch the client asked for; a field naming
        // another field is the request path's to strip with it.
        for (status, value) in [
            ("101 Switching Protocols", "Upgrade"),
            ("200 OK", "close, x-secret"),
        ] {
            let head = parse(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: {value}\r\n\r\n").as_bytes(),
            )
            .expect("valid");
            assert_eq!(head.response.headers()[CONNECTION], value, "{value}");
        }
    }

    #[test]
    fn a_response_head_is_parsed_and_its_length_told() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nokHTTP";
        let (head, len) = parse_response(bytes, LIMITS, false)
            .expect("valid")
            .expect("complete");
        assert_eq!(&bytes[len..], b"okHTTP");
        assert_eq!(head.response.status(), StatusCode::OK);
        assert_eq!(head.response.headers()["x-a"], "b");
        assert_eq!(head.body, ResponseBodyFraming::Length(2));
        assert!(head.keep_alive);
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Le", LIMITS, false)
                .expect("valid")
                .is_none()
        );
    }

    /// The request's field map lends its memory to the response: the response holds its
    /// own fields only, and the map is taken only once a whole head came.
    #[test]
    fn a_response_head_takes_the_memory_of_the_map_it_is_given() {
        let mut request_fields = HeaderMap::with_capacity(16);
        request_fields.insert("x-request", HeaderValue::from_static("yes"));
        request_fields.insert(CONTENT_LENGTH, HeaderValue::from_static("7"));
        let capacity = request_fields.capacity();

        let partial = parse_response_into(
            b"HTTP/1.1 200 OK\r\nX-A",
            LIMITS,
            false,
            &mut request_fields,
            false,
        );
        assert!(partial.expect("valid").is_none());
        assert_eq!(request_fields.len(), 2, "a partial head leaves the map alone");

        let (head, _) = parse_response_into(
            b"HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\n\r\nok",
            LIMITS,
            false,
            &mut request_fields,
            false,
        )
        .expect("valid")
        .expect("complete");
        let fields = head.response.headers();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields["x-a"], "b");
        assert_eq!(fields[CONTENT_LENGTH], "2");
        assert!(!fields.contains_key("x-request"));
        assert_eq!(
            fields.capacity(),
            capacity,
            "the request map's memory, not a new one"
        );
        assert!(request_fields.is_empty());
    }

    #[test]
    fn bodiless_answers_have_no_body_whatever_they_say() {
        for bytes in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        ] {
            assert_eq!(parse(bytes).expect("valid").body, ResponseBodyFraming::Empty);
        }
        let head = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", LIMITS, true)
            .expect("valid")
            .expect("complete")
            .0;
        assert_eq!(head.body, ResponseBodyFraming::Empty);
        assert_eq!(
            head.response.headers()[CONTENT_LENGTH],
            "5",
            "a HEAD answer keeps its length"
        );
    }

    #[test]
    fn framing_that_reads_two_ways_is_refused() {
        for bytes in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(
                parse(bytes).map(|h| h.body),
                Err(ResponseHeadError::Framing),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding:  Chunked \r\n\r\n").map(|h| h.body),
            Ok(ResponseBodyFraming::Chunked)
        );
        let repeated =
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n").expect("valid");
        assert_eq!(repeated.body, ResponseBodyFraming::Length(5));
        assert_eq!(
            repeated.response.headers().get_all(CONTENT_LENGTH).iter().count(),
            1
        );
    }

    #[test]
    fn malformed_heads_are_refused() {
        for bytes in [
            &b"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/2.0 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX A: b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: b\0c\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
        ] {
            assert_eq!(
                parse(bytes).map(|h| h.body),
                Err(ResponseHeadError::Malformed),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let long = format!("HTTP/1.1 200 OK\r\nX-A: {}\r\n\r\n", "a".repeat(2000));
        assert_eq!(
            parse(long.as_bytes()).map(|h| h.body),
            Err(ResponseHeadError::TooLarge)
        );
        let many: String = (0..9).map(|i| format!("X-{i}: a\r\n")).collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            parse(many.as_bytes()).map(|h| h.body),
            Err(ResponseHeadError::TooLarge)
        );
    }

    #[test]
    fn the_connection_is_kept_only_when_the_upstream_says_so_and_the_body_is_framed() {
        let keep = |bytes: &[u8]| parse(bytes).expect("valid").keep_alive;
        assert!(keep(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keep(
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!keep(b"HTTP/1.1 200 OK\r\n\r\n"), "close-delimited");
        assert!(!keep(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(keep(
            b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"
        ));
    }

    #[test]
    fn request_heads_carry_one_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("a.test"));
        let head = |method: Method, headers: &HeaderMap, framing| {
            let mut out = Vec::new();
            write_request_head(&mut out, &method, "/p?q", headers, framing);
            String::from_utf8(out).expect("ascii")
        };
        assert_eq!(
            head(Method::GET, &headers, BodyFraming::Empty),
            "GET /p?q HTTP/1.1\r\nhost: a.test\r\n\r\n"
        );
        assert_eq!(
            head(Method::POST, &headers, BodyFraming::Empty),
            "POST /p?q HTTP/1.1\r\nhost: a.test\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(
            head(Method::POST, &headers, BodyFraming::Length(1234567)),
            "POST /p?q HTTP/1.1\r\nhost: a.test\r\ncontent-length: 1234567\r\n\r\n"
        );
        let mut both = headers.clone();
        both.insert(CONTENT_LENGTH, HeaderValue::from_static("7"));
        both.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert_eq!(
            head(Method::POST, &both, BodyFraming::Chunked),
            "POST /p?q HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(
            head(Method::POST, &both, BodyFraming::Length(7)),
            "POST /p?q HTTP/1.1\r\nhost: a.test\r\ncontent-length: 7\r\n\r\n"
        );
        assert_eq!(request_framing(&both, false, None), BodyFraming::Length(7));
        assert_eq!(request_framing(&headers, false, None), BodyFraming::Chunked);
        assert_eq!(request_framing(&headers, false, Some(3)), BodyFraming::Length(3));
        assert_eq!(request_framing(&headers, true, None), BodyFraming::Empty);
        // A body that has already ended is sent empty, whatever Content-Length says.
        assert_eq!(request_framing(&both, true, None), BodyFraming::Empty);
    }
}
