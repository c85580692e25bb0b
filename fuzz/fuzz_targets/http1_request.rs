//! The HTTP/1 request decoder of the proxy's own server on arbitrary bytes (a head, its
//! body, whatever follows): no panic; a decoded body is exactly as long as its framing
//! says; a chunked body decodes to the same bytes however the reads split it; and a head
//! with both Content-Length and Transfer-Encoding is never handed on with its
//! Content-Length.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use lockstep_core::http1::{BodyFraming, Chunk, ChunkedDecoder, HeadLimits, decode_request, parse_request};

const LIMITS: HeadLimits = HeadLimits {
    max_bytes: 2048,
    max_headers: 32,
};

fuzz_target!(|input: &[u8]| {
    // The first byte is how many bytes each read delivers when the body is fed again.
    let Some((&stride, input)) = input.split_first() else {
        return;
    };
    let Ok(decoded) = decode_request(input, LIMITS) else {
        return;
    };
    assert!(decoded.consumed <= input.len());
    let head = &decoded.head;
    if head.both_lengths {
        assert_eq!(head.body, BodyFraming::Chunked);
    }
    if head.body == BodyFraming::Chunked {
        assert!(!head.parts.headers.contains_key(http::header::CONTENT_LENGTH));
    }
    match head.body {
        BodyFraming::Empty => assert!(decoded.body.is_empty() && decoded.trailers.is_none()),
        BodyFraming::Length(n) => assert_eq!(decoded.body.len() as u64, n),
        BodyFraming::Chunked => {
            let (_, head_len) = parse_request(input, LIMITS)
                .expect("parsed before")
                .expect("complete before");
            let wire = &input[head_len..decoded.consumed];
            let stride = usize::from(stride).max(1);
            let mut decoder = ChunkedDecoder::new(LIMITS.max_bytes);
            let mut buf = BytesMut::new();
            let mut body = Vec::new();
            let mut fed = 0;
            loop {
                match decoder.decode(&mut buf).expect("decoded whole, so decodes split") {
                    Chunk::Data(data) => body.extend_from_slice(&data),
                    Chunk::Trailers(_) | Chunk::End => break,
                    Chunk::NeedMore => {
                        assert!(fed < wire.len(), "decoded whole from these bytes before");
                        let n = stride.min(wire.len() - fed);
                        buf.extend_from_slice(&wire[fed..fed + n]);
                        fed += n;
                    }
                }
            }
            assert_eq!(body, decoded.body);
            assert_eq!(fed - buf.len(), wire.len(), "the body ends where it ended whole");
        }
    }
});
