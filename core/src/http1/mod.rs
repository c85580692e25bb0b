//! The HTTP/1.1 codec of the proxy's own HTTP/1 server and upstream client (`lockstep-proxy`'s
//! `http1` module drives connections with it): request heads parsed with `httparse` ([`head`]),
//! bodies framed by Content-Length or the chunked coding ([`chunked`]), response heads
//! framed by Content-Length, chunked, or the connection's close; and toward upstreams,
//! request heads written and response heads parsed ([`upstream`]). Pure functions on
//! bytes, so that tests and the fuzz target reach every case without a socket.
//!
//! Framing is decided here, once, and refused when it could be read two ways (RFC 9112
//! §6.1, §6.3): a Content-Length that is not one number, a Transfer-Encoding whose last
//! coding is not chunked or that comes with HTTP/1.0, obs-fold, invalid bytes, a broken
//! chunk. Content-Length with Transfer-Encoding is marked on the request for the request
//! path to refuse after its own Transfer-Encoding checks. Each refusal closes the
//! connection after the answer, so no byte after a refused head is read as a request.
//!

pub mod chunked;
pub mod head;
pub mod upstream;

use bytes::BytesMut;
use http::{
    HeaderMap, HeaderName,
    header::{CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE},
    request::Parts,
};

pub use self::{
    chunked::{Chunk, ChunkError, ChunkedDecoder},
    head::{BodyFraming, HeadError, HeadLimits, RequestHead, parse_request},
    upstream::{ResponseBodyFraming, ResponseHead, ResponseHeadError, parse_response},
};

/// The fields that describe one connection and never cross the proxy: hop-by-hop by
/// definition (RFC 9110 §7.6.1, and Keep-Alive of RFC 2068), Connection first. Besides
/// these, the fields a Connection field names and every `proxy-` field are this hop's
/// only. The request path strips them all from a map (`lockstep-proxy`'s
/// `forward::filter`); a response's fields passed as sent leave them out
/// ([`upstream::PassedFields`], whose tests go through this list).
pub static HOP_BY_HOP: [&HeaderName; 6] = [
    &CONNECTION,
    &KEEP_ALIVE,
    &TE,
    &TRAILER,
    &TRANSFER_ENCODING,
    &UPGRADE,
];

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// A request read whole from bytes, as [`decode_request`] gives it.
#[derive(Debug)]
pub struct DecodedRequest {
    /// The head.
    pub head: RequestHead,
    /// The body, decoded.
    pub body: Vec<u8>,
    /// The trailer section of a chunked body.
    pub trailers: Option<HeaderMap>,
    /// How many bytes of the input the request took (what follows is the next request).
    pub consumed: usize,
}

/// Why [`decode_request`] gave no request.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The head was refused.
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The chunked body was malformed.
    #[error(transparent)]
    Chunked(#[from] ChunkError),
    /// The input ended before the request did.
    #[error("incomplete request")]
    Incomplete,
}

/// Decodes one request (head and body) from the start of `input` exactly as a connection
/// does, for tests and the fuzz target.
pub fn decode_request(input: &[u8], limits: HeadLimits) -> Result<DecodedRequest, DecodeError> {
    let (head, len) = parse_request(input, limits)?.ok_or(DecodeError::Incomplete)?;
    let mut buf = BytesMut::from(&input[len..]);
    let mut body = Vec::new();
    let mut trailers = None;
    match head.body {
        BodyFraming::Empty => {}
        BodyFraming::Length(n) => {
            let n = usize::try_from(n).map_err(|_| DecodeError::Incomplete)?;
            if buf.len() < n {
                return Err(DecodeError::Incomplete);
            }
            body.extend_from_slice(&buf.split_to(n));
        }
        BodyFraming::Chunked => {
            let mut decoder = ChunkedDecoder::new(limits.max_bytes);
            loop {
                match decoder.decode(&mut buf)? {
                    Chunk::Data(data) => body.extend_from_slice(&data),
                    Chunk::Trailers(t) => {
                        trailers = Some(t);
                        break;
                    }
                    Chunk::End => break,
                    Chunk::NeedMore => return Err(DecodeError::Incomplete),
                }
            }
        }
    }
    let consumed = input.len() - buf.len();
    Ok(DecodedRequest {
        head,
        body,
        trailers,
        consumed,
    })
}

/// The request without its body, for callers that only look at heads.
impl DecodedRequest {
    /// The request head.
    pub fn parts(&self) -> &Parts {
        &self.head.parts
    }
}
