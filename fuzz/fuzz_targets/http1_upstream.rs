//! The upstream side of the HTTP/1 codec on arbitrary bytes.
//! - A response head: no panic; a Content-Length framing agrees with the one
//!   Content-Length kept; a chunked one keeps none; a body that ends with the connection
//!   never leaves the connection open; what follows the head is never counted in it.
//!   Read again with its fields passed as sent: the same outcome, framing and connection,
//!   the passed fields are the map's end-to-end ones, and a head written from them reads
//!   back with those fields and the proxy's framing.
//! - A request the proxy's server decoded, written again for an upstream: the upstream
//!   reads the same method, target, fields and framing (nothing a client sent can frame
//!   the request differently upstream).
#![no_main]

use http::{
    HeaderMap, Version,
    header::{CONTENT_LENGTH, TRANSFER_ENCODING},
};
use libfuzzer_sys::fuzz_target;
use lockstep_core::http1::{
    BodyFraming, HOP_BY_HOP, HeadLimits, decode_request,
    head::{passed_framing, write_passed_head},
    parse_request,
    upstream::{
        ResponseBodyFraming, parse_response, parse_response_into, request_framing, write_request_head,
    },
};

const LIMITS: HeadLimits = HeadLimits {
    max_bytes: 2048,
    max_headers: 32,
};

fuzz_target!(|input: &[u8]| {
    let Some((&mode, input)) = input.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        response(input, mode & 2 != 0);
    } else {
        request_again(input);
    }
});

fn response(input: &[u8], head_request: bool) {
    let mapped = parse_response(input, LIMITS, head_request);
    let passing = parse_response_into(input, LIMITS, head_request, &mut HeaderMap::new(), true);
    match (&mapped, &passing) {
        (Ok(Some((a, a_len))), Ok(Some((b, b_len)))) => {
            assert_eq!(a_len, b_len);
            assert_eq!(a.response.status(), b.response.status());
            assert_eq!(a.body, b.body);
            assert_eq!(a.keep_alive, b.keep_alive);
            if let Some(passed) = &b.passed {
                assert!(b.response.headers().is_empty());
                passed_agrees(a.response.headers(), passed.lines());
                let mut out = Vec::new();
                let framing = passed_framing(None, false, Version::HTTP_11);
                write_passed_head(
                    &mut out,
                    b.response.status(),
                    passed,
                    framing,
                    true,
                    Version::HTTP_11,
                );
                let (again, len) = parse_response(
                    &out,
                    HeadLimits {
                        max_bytes: usize::MAX,
                        max_headers: 64,
                    },
                    false,
                )
                .expect("a written head parses")
                .expect("a written head is whole");
                assert_eq!(len, out.len());
                assert_eq!(again.body, ResponseBodyFraming::Chunked);
            }
        }
        (Ok(None), Ok(None)) | (Err(_), Err(_)) => {}
        (a, b) => panic!("the readings disagree: {a:?} and {b:?}"),
    }
    let Ok(Some((head, len))) = mapped else {
        return;
    };
    assert!(len <= input.len());
    let headers = head.response.headers();
    match head.body {
        ResponseBodyFraming::Length(n) => {
            let kept: Vec<_> = headers.get_all(CONTENT_LENGTH).iter().collect();
            assert_eq!(kept.len(), 1);
            assert_eq!(
                kept[0].to_str().ok().and_then(|v| v.trim().parse::<u64>().ok()),
                Some(n)
            );
            assert!(!headers.contains_key(TRANSFER_ENCODING));
        }
        ResponseBodyFraming::Chunked => assert!(!headers.contains_key(CONTENT_LENGTH)),
        ResponseBodyFraming::Close => assert!(!head.keep_alive),
        ResponseBodyFraming::Empty => {}
    }
    if head_request {
        assert_eq!(head.body, ResponseBodyFraming::Empty);
    }
}

fn request_again(input: &[u8]) {
    let Ok(decoded) = decode_request(input, LIMITS) else {
        return;
    };
    let request = decoded.parts();
    if decoded.head.both_lengths || request.uri.path_and_query().is_none() {
        // Refused by the request path before anything goes upstream (both lengths, or a
        // CONNECT's authority form).
        return;
    }
    let framing = request_framing(&request.headers, decoded.head.body == BodyFraming::Empty, None);
    assert_eq!(
        framing, decoded.head.body,
        "the upstream's framing is the client's"
    );
    let mut out = Vec::new();
    let target = request.uri.path_and_query().map_or("/", |p| p.as_str());
    write_request_head(&mut out, &request.method, target, &request.headers, framing);
    let limits = HeadLimits {
        max_bytes: usize::MAX,
        max_headers: 64,
    };
    let (again, len) = parse_request(&out, limits)
        .expect("a written head parses")
        .expect("a written head is whole");
    assert_eq!(len, out.len());
    assert_eq!(again.body, framing);
    assert_eq!(again.parts.method, request.method);
    assert_eq!(again.parts.uri.path_and_query(), request.uri.path_and_query());
    let mut sent = request.headers.clone();
    let mut seen = again.parts.headers.clone();
    for map in [&mut sent, &mut seen] {
        map.remove(CONTENT_LENGTH);
        map.remove(TRANSFER_ENCODING);
    }
    assert_eq!(sent, seen, "fields other than framing pass unchanged");
}

/// Passed field lines hold exactly the map's end-to-end fields (framing, hop-by-hop and
/// `proxy-` fields left out), with the same values.
fn passed_agrees(map: &HeaderMap, lines: &[u8]) {
    let mut expected: Vec<(String, Vec<u8>)> = map
        .iter()
        .filter(|(name, _)| {
            *name != CONTENT_LENGTH && !HOP_BY_HOP.contains(name) && !name.as_str().starts_with("proxy-")
        })
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let mut passed: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rest = lines;
    while !rest.is_empty() {
        let end = rest.windows(2).position(|w| w == b"\r\n").expect("a CRLF");
        let line = &rest[..end];
        rest = &rest[end + 2..];
        let colon = line.iter().position(|b| *b == b':').expect("a colon");
        let value = line[colon + 1..].strip_prefix(b" ").expect("one space");
        passed.push((
            String::from_utf8(line[..colon].to_ascii_lowercase()).expect("a name"),
            value.to_vec(),
        ));
    }
    expected.sort();
    passed.sort();
    assert_eq!(expected, passed);
}
