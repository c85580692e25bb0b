//! The chunked transfer coding (RFC 9112 §7.1): a body decoded from the connection's
//! buffer as bytes arrive, and the chunk-size line written for a body being sent. Chunk data is handed on without a copy (split off
//! the buffer); size lines, extensions and trailers are bounded, and anything that does not
//! frame exactly is an error, after which the connection closes.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};

/// Most bytes of one chunk-size line (size, extensions, line ending).
const MAX_SIZE_LINE: usize = 4096;
/// Most bytes of chunk extensions over a whole body (hyper's limit too): a body of tiny
/// chunks with long extensions must not cost more to read than its data.
const MAX_EXTENSIONS: usize = 16 * 1024;
/// Most trailer fields.
const MAX_TRAILERS: usize = 64;

/// Why a chunked body could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// A chunk-size line that is not hex digits (at most 16), optional extensions and a
    /// line ending, or that is too long.
    #[error("invalid chunk size line")]
    BadSize,
    /// Chunk data not followed by CRLF: the size lied.
    #[error("chunk data not followed by CRLF")]
    BadChunkEnd,
    /// Chunk extensions over the body's limit.
    #[error("chunk extensions too long")]
    TooManyExtensions,
    /// Trailer fields that are malformed, too many, or too long.
    #[error("invalid trailer section")]
    BadTrailers,
}

/// What one step of decoding gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk {
    /// Body bytes.
    Data(Bytes),
    /// The trailer section (the body ends with it).
    Trailers(HeaderMap),
    /// The body ended (no trailers).
    End,
    /// More bytes are needed.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

/// Decodes one chunked body.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: State,
    extensions: usize,
    max_trailer_bytes: usize,
}

impl ChunkedDecoder {
    /// A decoder whose trailer section may take up to `max_trailer_bytes` (the head limit).
    pub fn new(max_trailer_bytes: usize) -> Self {
        Self {
            state: State::Size,
            extensions: 0,
            max_trailer_bytes,
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from the front of `buf`, taking what it uses.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Chunk, ChunkError> {
        loop {
            match self.state {
                State::Done => return Ok(Chunk::End),
                State::Size => {
                    let Some(lf) = buf.iter().take(MAX_SIZE_LINE).position(|b| *b == b'\n') else {
                        return if buf.len() >= MAX_SIZE_LINE {
                            Err(ChunkError::BadSize)
                        } else {
                            Ok(Chunk::NeedMore)
                        };
                    };
                    let (size, ext) = size_line(&buf[..lf])?;
                    self.extensions += ext;
                    if self.extensions > MAX_EXTENSIONS {
                        return Err(ChunkError::TooManyExtensions);
                    }
                    buf.advance(lf + 1);
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(Chunk::NeedMore);
                    }
                    let n = remaining.min(buf.len() as u64);
                    let data = buf.split_to(n as usize).freeze();
                    self.state = match remaining - n {
                        0 => State::DataEnd,
                        left => State::Data(left),
                    };
                    return Ok(Chunk::Data(data));
                }
                State::DataEnd => {
                    match buf.len() {
                        0 => return Ok(Chunk::NeedMore),
                        1 if buf[0] == b'\r' => return Ok(Chunk::NeedMore),
                        _ if buf.starts_with(b"\r\n") => buf.advance(2),
                        _ => return Err(ChunkError::BadChunkEnd),
                    }
                    self.state = State::Size;
                }
                State::Trailers => {
                    // The section ends at the first empty line; an immediate one means none.
                    let end = if buf.starts_with(b"\r\n") {
                        Some(2)
                    } else if buf.starts_with(b"\n") {
                        Some(1)
                    } else {
                        find_empty_line(buf)
                    };
                    let Some(end) = end else {
                        return if buf.len() > self.max_trailer_bytes {
                            Err(ChunkError::BadTrailers)
                        } else {
                            Ok(Chunk::NeedMore)
                        };
                    };
                    if end > self.max_trailer_bytes {
                        return Err(ChunkError::BadTrailers);
                    }
                    let section = buf.split_to(end);
                    self.state = State::Done;
                    if end <= 2 {
                        return Ok(Chunk::End);
                    }
                    return parse_trailers(&section).map(Chunk::Trailers);
                }
            }
        }
    }
}

/// A chunk-size line without its LF: the size and how many bytes of extensions it had.
fn size_line(line: &[u8]) -> Result<(u64, usize), ChunkError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(ChunkError::BadSize);
    }
    let size = line[..digits]
        .iter()
        .fold(0u64, |n, d| (n << 4) | u64::from(hex_value(*d)));
    let mut rest = &line[digits..];
    while let [b' ' | b'\t', tail @ ..] = rest {
        rest = tail;
    }
    match rest {
        [] => Ok((size, 0)),
        // Extensions are not interpreted, only bounded; no control bytes (a bare CR above
        // all, which some parsers take for a line end).
        [b';', ext @ ..] if ext.iter().all(|b| *b == b'\t' || (*b >= 0x20 && *b != 0x7f)) => {
            Ok((size, rest.len()))
        }
        _ => Err(ChunkError::BadSize),
    }
}

fn hex_value(d: u8) -> u8 {
    match d {
        b'0'..=b'9' => d - b'0',
        b'a'..=b'f' => d - b'a' + 10,
        _ => d - b'A' + 10,
    }
}

/// Where the empty line that ends a trailer section ends (CRLF or bare LF line endings).
fn find_empty_line(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    while let Some(lf) = buf[at..].iter().position(|b| *b == b'\n') {
        let next = at + lf + 1;
        match &buf[next..] {
            [b'\n', ..] => return Some(next + 1),
            [b'\r', b'\n', ..] => return Some(next + 2),
            _ => at = next,
        }
    }
    None
}

fn parse_trailers(section: &[u8]) -> Result<HeaderMap, ChunkError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    match httparse::parse_headers(section, &mut headers) {
        Ok(httparse::Status::Complete((_, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for field in fields {
                let name =
                    HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ChunkError::BadTrailers)?;
                let value = HeaderValue::from_bytes(field.value).map_err(|_| ChunkError::BadTrailers)?;
                map.append(name, value);
            }
            Ok(map)
        }
        _ => Err(ChunkError::BadTrailers),
    }
}

/// Writes the chunk-size line of a chunk of `len` bytes into `out` (appended).
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut n = len;
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `bytes` whole and fed one byte at a time: the same body either way.
    fn decode_all(bytes: &[u8]) -> Result<(Vec<u8>, Option<HeaderMap>, usize), ChunkError> {
        let whole = decode_split(bytes, bytes.len().max(1))?;
        let bytewise = decode_split(bytes, 1)?;
        assert_eq!(whole, bytewise);
        Ok(whole)
    }

    fn decode_split(bytes: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>, usize), ChunkError> {
        let mut decoder = ChunkedDecoder::new(1024);
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Chunk::Data(d) => body.extend_from_slice(&d),
                Chunk::Trailers(t) => return Ok((body, Some(t), buf.len() + bytes.len() - fed)),
                Chunk::End => return Ok((body, None, buf.len() + bytes.len() - fed)),
                Chunk::NeedMore => {
                    if fed == bytes.len() {
                        return Err(ChunkError::BadSize);
                    }
                    let n = step.min(bytes.len() - fed);
                    buf.extend_from_slice(&bytes[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunks_extensions_and_trailers_decode_and_the_rest_stays() {
        let (body, trailers, left) =
            decode_all(b"5;name=value\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nGET /").unwrap();
        assert_eq!(body, b"hello0123456789");
        assert_eq!(trailers.unwrap()["x-t"], "1");
        assert_eq!(left, 5);
        let (body, trailers, left) = decode_all(b"3\nabc\r\n0\n\n").unwrap();
        assert_eq!((body.as_slice(), trailers, left), (&b"abc"[..], None, 0));
    }

    #[test]
    fn bad_sizes_lying_sizes_and_bad_trailers_are_errors() {
        for (bad, error) in [
            (&b"x\r\n"[..], ChunkError::BadSize),
            (b"-1\r\n", ChunkError::BadSize),
            (b"+5\r\nhello\r\n0\r\n\r\n", ChunkError::BadSize),
            (b"0x5\r\nhello\r\n0\r\n\r\n", ChunkError::BadSize),
            (b"11111111111111111\r\n", ChunkError::BadSize),
            (b"5 5\r\nhello\r\n", ChunkError::BadSize),
            (b"5;a\rb\r\nhello\r\n", ChunkError::BadSize),
            (b"5\r\nhelloGET / HTTP/1.1\r\n", ChunkError::BadChunkEnd),
            (b"5\r\nhello\n0\r\n\r\n", ChunkError::BadChunkEnd),
            (b"0\r\nX-T: 1\r\n folded\r\n\r\n", ChunkError::BadTrailers),
            (b"0\r\nX T: 1\r\n\r\n", ChunkError::BadTrailers),
        ] {
            assert_eq!(
                decode_all(bad).err(),
                Some(error),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = format!("1;{}\r\na\r\n", "e".repeat(MAX_SIZE_LINE));
        assert_eq!(decode_all(long_ext.as_bytes()).err(), Some(ChunkError::BadSize));
        let many: String = (0..20)
            .map(|_| format!("1;{}\r\na\r\n", "e".repeat(1000)))
            .collect();
        assert_eq!(
            decode_all(many.as_bytes()).err(),
            Some(ChunkError::TooManyExtensions)
        );
        let big_trailers = format!("0\r\nX-T: {}\r\n\r\n", "t".repeat(2000));
        assert_eq!(
            decode_all(big_trailers.as_bytes()).err(),
            Some(ChunkError::BadTrailers)
        );
    }

    #[test]
    fn a_huge_size_is_read_as_a_number_not_a_buffer() {
        let mut decoder = ChunkedDecoder::new(1024);
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nabc"[..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Ok(Chunk::Data(Bytes::from_static(b"abc")))
        );
        assert_eq!(decoder.decode(&mut buf), Ok(Chunk::NeedMore));
    }

    #[test]
    fn chunk_sizes_are_hex() {
        for (len, line) in [
            (0, "0\r\n"),
            (10, "a\r\n"),
            (4096, "1000\r\n"),
            (usize::MAX, "ffffffffffffffff\r\n"),
        ] {
            let mut out = Vec::new();
            write_chunk_size(&mut out, len);
            assert_eq!(out, line.as_bytes());
        }
    }
}
