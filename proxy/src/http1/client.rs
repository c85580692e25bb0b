//! The client side of an HTTP/1.1 upstream connection: writes a request head and streams
//! its body (Content-Length or chunked), reads the response head, and hands back a
//! response whose body reads the connection as the caller polls it. No task per
//! connection and none per request: the request's own future drives the connection, and
//! after the response head the response body does (it also finishes sending a request
//! body the upstream answered before reading whole).
//!
//! A connection is reusable only when the exchange ended exactly: the request sent whole,
//! the response read to the end of its framing with no byte after it, and neither side
//! said `close`. Anything else (an early answer, a body the client stopped reading, bytes
//! the upstream sent beyond its response) closes it, so a later request never reads what
//! belongs to an earlier one.
//!
//! While idle in the pool a connection holds no read or write buffer.

use std::{
    future::poll_fn,
    io,
    mem::MaybeUninit,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Response, StatusCode, request::Parts};
use http_body::{Body, Frame, SizeHint};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};

use lockstep_core::http1::{
    BodyFraming, ChunkError, HeadLimits,
    chunked::{Chunk, ChunkedDecoder},
    upstream::{self, ResponseBodyFraming, ResponseHeadError},
};

use super::{outgoing::Outgoing, read_now, upgrade::Upgraded};

/// Errors of a request or response body, whichever side made them.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The limits a response head is read under: far above what backends send (nginx's
/// `proxy_buffer_size` is 4 or 8 KiB), low enough that a hostile backend cannot make the
/// proxy hold much per request.
pub(crate) const RESPONSE_HEAD_LIMITS: HeadLimits = HeadLimits {
    max_bytes: 64 * 1024,
    max_headers: 128,
};
/// How many informational (1xx) responses may come before the final one.
const MAX_INFORMATIONAL: usize = 8;
/// How much a read of a response head asks for: most heads, and small bodies after them,
/// fit.
const HEAD_READ_SIZE: usize = 8 * 1024;
/// How much a read of a response body asks for at most.
const READ_SIZE: usize = 16 * 1024;

/// Why an exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// Reading from or writing to the upstream failed.
    #[error("upstream connection failed: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before a whole response head.
    #[error("upstream closed the connection before a response")]
    ClosedBeforeHead,
    /// The response head was refused.
    #[error("{0}")]
    Head(#[from] ResponseHeadError),
    /// More informational responses than [`MAX_INFORMATIONAL`].
    #[error("too many informational responses")]
    TooManyInformational,
    /// The upstream closed the connection before the end of the response body.
    #[error("upstream closed the connection before the end of the response body")]
    ClosedInBody,
    /// The chunked response body was malformed.
    #[error("malformed chunked response body: {0}")]
    Chunked(#[from] ChunkError),
    /// The request body failed while it was being sent (its client went away or sent a
    /// malformed body), or it was not as long as its Content-Length.
    #[error("request body: {0}")]
    RequestBody(BoxError),
}

/// An upstream connection's transport.
pub(crate) enum UpstreamIo {
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(io) => Pin::new(io).poll_read(cx, buf),
            UpstreamIo::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamIo::Tcp(io) => Pin::new(io).poll_write(cx, buf),
            UpstreamIo::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(io) => Pin::new(io).poll_flush(cx),
            UpstreamIo::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamIo::Tcp(io) => Pin::new(io).poll_shutdown(cx),
            UpstreamIo::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An HTTP/1.1 connection to an upstream, between exchanges.
pub(crate) struct Connection {
    io: UpstreamIo,
}

impl Connection {
    pub(crate) fn new(io: UpstreamIo) -> Self {
        Self { io }
    }

    /// Whether the connection can carry a request: the upstream has neither closed it nor
    /// sent anything while it was idle (bytes nobody asked for would be read as the next
    /// response). Looks without waiting: one read that finds nothing.
    pub(crate) fn is_usable(&mut self) -> bool {
        read_now(&mut self.io, &mut [MaybeUninit::uninit(); 1]).is_pending()
    }
}

/// Why an exchange gave no response.
pub(crate) enum Failure<B> {
    /// A reused connection ended before any byte of a response, and nothing of the
    /// request's body was taken: the upstream most likely closed it as idle just as the
    /// request went out. The request is handed back; an idempotent one may go again on
    /// another connection.
    Stale(Box<Parts>, B, Http1Error),
    /// The exchange failed.
    Failed(Http1Error),
}

/// Sends `request` over `conn` and reads the response head. `reused`: the connection
/// carried an exchange before (a failure before any response byte may then be a close
/// the upstream made while it idled). `pass_fields`: the response goes to an HTTP/1 client
/// unchanged, and its fields may stay as the upstream sent them
/// ([`ResponseBody::take_passed_fields`]).
///
/// A function returning an `async move` block that holds the request's parts once (an
/// `async fn` would hold the request and its parts).
pub(crate) fn exchange<B>(
    mut conn: Connection,
    mut parts: Box<Parts>,
    body: B,
    reused: bool,
    pass_fields: bool,
) -> impl Future<Output = Result<Response<ResponseBody<B>>, Failure<B>>> + Send
where
    B: Body<Data = Bytes> + Unpin + Send,
    B::Error: Into<BoxError>,
{
    let head_request = parts.method == Method::HEAD;
    let mut writer = RequestWriter::new(&parts, body);
    async move {
        let mut reader = HeadReader {
            pass_fields,
            ..HeadReader::default()
        };
        let mut write_failed = None;
        // The request's field map, written out already, lends its memory to the response's:
        // a response head ends any chance to send the request again (see `Failure::Stale`).
        let head = poll_fn(|cx| {
            // The response first: an upstream may answer before it read the whole request.
            match reader.poll(cx, &mut conn.io, head_request, &mut parts.headers) {
                Poll::Ready(result) => return Poll::Ready(result),
                Poll::Pending => {}
            }
            if write_failed.is_none()
                && !writer.finished
                && let Poll::Ready(Err(error)) = writer.poll(cx, &mut conn.io)
            {
                // The response may still be readable (an upstream that answered and closed);
                // the read side decides.
                write_failed = Some(error);
                return reader.poll(cx, &mut conn.io, head_request, &mut parts.headers);
            }
            Poll::Pending
        })
        .await;
        let head = match head {
            Ok(head) => head,
            Err(error) => {
                let error = match (error, write_failed) {
                    (Http1Error::ClosedBeforeHead, Some(write)) => write,
                    (error, _) => error,
                };
                if reused && reader.received == 0 && !writer.took_body && parts.method.is_idempotent() {
                    let body = writer.body.take();
                    if let Some(body) = body {
                        return Err(Failure::Stale(parts, body, error));
                    }
                }
                return Err(Failure::Failed(error));
            }
        };
        let upstream::ResponseHead {
            response,
            body: framing,
            keep_alive,
            passed,
        } = head;
        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        let state = match framing {
            ResponseBodyFraming::Empty => BodyState::Done,
            ResponseBodyFraming::Length(n) => BodyState::Length(n),
            ResponseBodyFraming::Chunked => {
                BodyState::Chunked(Box::new(ChunkedDecoder::new(RESPONSE_HEAD_LIMITS.max_bytes)))
            }
            ResponseBodyFraming::Close => BodyState::Close,
        };
        let mut body = ResponseBody {
            conn: Some(conn),
            buf: reader.buf,
            writer: (!writer.finished && write_failed.is_none()).then(|| Box::new(writer)),
            request_broken: write_failed.is_some(),
            state,
            keep_alive: keep_alive && !switching,
            switching,
            idle: None,
            passed,
        };
        if matches!(body.state, BodyState::Done) && !switching {
            body.end();
        }
        Ok(response.map(|()| body))
    }
}

/// Reads response heads until a final one (1xx other than 101 are read and dropped).
#[derive(Default)]
struct HeadReader {
    buf: BytesMut,
    /// Response bytes read in all.
    received: usize,
    parse_due: bool,
    informational: usize,
    /// How many times a head was parsed.
    parses: usize,
    /// The final head's fields may stay as sent (see `exchange`).
    pass_fields: bool,
}

impl HeadReader {
    fn poll<R: AsyncRead + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut R,
        head_request: bool,
        fields: &mut HeaderMap,
    ) -> Poll<Result<upstream::ResponseHead, Http1Error>> {
        loop {
            if std::mem::take(&mut self.parse_due)
                && let Some((head, len)) = {
                    self.parses += 1;
                    upstream::parse_response_into(
                        &self.buf,
                        RESPONSE_HEAD_LIMITS,
                        head_request,
                        fields,
                        self.pass_fields,
                    )?
                }
            {
                self.buf.advance(len);
                match self.final_head(head)? {
                    Some(head) => return Poll::Ready(Ok(head)),
                    None => continue,
                }
            }
            if self.buf.is_empty() {
                // Most responses' heads (and small bodies) come whole in the first read:
                // read on the stack, such a response needs only a buffer the size of what
                // follows its head, not one of HEAD_READ_SIZE on every response (under glibc,
                // an allocation that took its slow path and consolidated its fast bins).
                let mut first = [MaybeUninit::<u8>::uninit(); HEAD_READ_SIZE];
                let mut read = ReadBuf::uninit(&mut first);
                ready!(Pin::new(&mut *io).poll_read(cx, &mut read))?;
                let filled = read.filled();
                if filled.is_empty() {
                    return Poll::Ready(Err(Http1Error::ClosedBeforeHead));
                }
                self.received += filled.len();
                self.parses += 1;
                match upstream::parse_response_into(
                    filled,
                    RESPONSE_HEAD_LIMITS,
                    head_request,
                    fields,
                    self.pass_fields,
                )? {
                    Some((head, len)) => {
                        self.buf.extend_from_slice(&filled[len..]);
                        match self.final_head(head)? {
                            Some(head) => return Poll::Ready(Ok(head)),
                            None => continue,
                        }
                    }
                    None => {
                        self.buf.extend_from_slice(filled);
                        continue;
                    }
                }
            }
            self.buf.reserve(HEAD_READ_SIZE);
            let before = self.buf.len();
            let n = ready!(tokio_util::io::poll_read_buf(
                Pin::new(&mut *io),
                cx,
                &mut self.buf
            ))?;
            if n == 0 {
                return Poll::Ready(Err(Http1Error::ClosedBeforeHead));
            }
            self.received += n;
            // A head ends at a line feed: parsed again only when one arrived (each parse
            // starts over from the head's first byte), or when it grew past the limit.
            self.parse_due =
                self.buf[before..].contains(&b'\n') || self.buf.len() > RESPONSE_HEAD_LIMITS.max_bytes;
        }
    }

    /// A parsed head: the final one, or None for an informational (1xx other than 101) one,
    /// which is dropped (what follows it, already buffered, is parsed next).
    fn final_head(
        &mut self,
        head: upstream::ResponseHead,
    ) -> Result<Option<upstream::ResponseHead>, Http1Error> {
        let status = head.response.status();
        if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
            self.informational += 1;
            if self.informational > MAX_INFORMATIONAL {
                return Err(Http1Error::TooManyInformational);
            }
            self.parse_due = !self.buf.is_empty();
            return Ok(None);
        }
        Ok(Some(head))
    }
}

/// Sends a request: its head, then its body as the body yields it.
struct RequestWriter<B> {
    out: Outgoing,
    /// The body; None once it ended.
    body: Option<B>,
    framing: BodyFraming,
    /// Bytes a Content-Length body still owes.
    remaining: u64,
    /// A frame was taken from the body: the request cannot be sent again.
    took_body: bool,
    /// Every byte of the request was written and flushed.
    finished: bool,
}

impl<B> RequestWriter<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    fn new(parts: &Parts, body: B) -> Self {
        let framing =
            upstream::request_framing(&parts.headers, body.is_end_stream(), body.size_hint().exact());
        let mut out = Outgoing::default();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        upstream::write_request_head(&mut out.bytes, &parts.method, target, &parts.headers, framing);
        Self {
            out,
            // A bodiless request keeps its body only so that it can be handed back.
            body: Some(body),
            framing,
            remaining: match framing {
                BodyFraming::Length(n) => n,
                _ => 0,
            },
            took_body: false,
            finished: false,
        }
    }

    fn body_open(&self) -> bool {
        self.framing != BodyFraming::Empty && self.body.is_some()
    }

    /// Writes what it can; ready once the whole request is written and flushed.
    fn poll(&mut self, cx: &mut Context<'_>, io: &mut UpstreamIo) -> Poll<Result<(), Http1Error>> {
        loop {
            let mut body_pending = false;
            if self.body_open() && self.out.has_room() {
                let body = self.body.as_mut().expect("open");
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => body_pending = true,
                    Poll::Ready(None) => self.end()?,
                    Poll::Ready(Some(Err(error))) => {
                        return Poll::Ready(Err(Http1Error::RequestBody(error.into())));
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        self.took_body = true;
                        self.frame(frame)?;
                        continue;
                    }
                }
            }
            if !ready!(self.out.poll_write(cx, io))? {
                continue;
            }
            if body_pending {
                // Waiting for the client: what is written must not wait in a buffer.
                ready!(Pin::new(&mut *io).poll_flush(cx))?;
                return Poll::Pending;
            }
            if !self.body_open() {
                ready!(Pin::new(&mut *io).poll_flush(cx))?;
                self.finished = true;
                // Nothing of a bodiless request was taken: it is kept for a retry.
                if self.took_body {
                    self.body = None;
                }
                return Poll::Ready(Ok(()));
            }
        }
    }

    fn frame(&mut self, frame: Frame<Bytes>) -> Result<(), Http1Error> {
        let data = match frame.into_data() {
            Ok(data) => data,
            // Trailers end the body; HTTP/1 sends them only in the chunked coding.
            Err(frame) => {
                if self.framing == BodyFraming::Chunked
                    && let Ok(trailers) = frame.into_trailers()
                {
                    self.out.bytes.extend_from_slice(b"0\r\n");
                    write_fields(&mut self.out.bytes, &trailers);
                    self.out.bytes.extend_from_slice(b"\r\n");
                    self.framing = BodyFraming::Empty;
                    return Ok(());
                }
                return self.end();
            }
        };
        if data.is_empty() {
            return Ok(());
        }
        let chunked = match self.framing {
            BodyFraming::Length(_) => {
                let len = data.len() as u64;
                if len > self.remaining {
                    return Err(length_mismatch());
                }
                self.remaining -= len;
                // The last byte ends the body: the body's own end (an HTTP/2 stream's
                // END_STREAM) is not waited for.
                if self.remaining == 0 {
                    self.framing = BodyFraming::Empty;
                }
                false
            }
            BodyFraming::Chunked => true,
            BodyFraming::Empty => return Ok(()),
        };
        self.out.push_data(data, chunked);
        Ok(())
    }

    /// The body ended: the chunked coding's last chunk, or a check that the Content-Length
    /// was met.
    fn end(&mut self) -> Result<(), Http1Error> {
        match self.framing {
            BodyFraming::Chunked => self.out.bytes.extend_from_slice(b"0\r\n\r\n"),
            BodyFraming::Length(_) if self.remaining != 0 => return Err(length_mismatch()),
            _ => {}
        }
        self.framing = BodyFraming::Empty;
        Ok(())
    }
}

fn length_mismatch() -> Http1Error {
    Http1Error::RequestBody("the body's length differs from its Content-Length".into())
}

fn write_fields(out: &mut Vec<u8>, fields: &HeaderMap) {
    for (name, value) in fields {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

enum BodyState {
    Length(u64),
    Chunked(Box<ChunkedDecoder>),
    Close,
    Done,
}

/// A response body read from its upstream connection as it is polled.
pub(crate) struct ResponseBody<B> {
    /// None once the body ended or failed.
    conn: Option<Connection>,
    /// Bytes read past the head.
    buf: BytesMut,
    /// The request body, still being sent (the upstream answered before reading it all).
    writer: Option<Box<RequestWriter<B>>>,
    /// Sending the request failed or was cut short: the connection is not reused.
    request_broken: bool,
    state: BodyState,
    keep_alive: bool,
    switching: bool,
    /// The connection, once the exchange ended so that it can carry another.
    idle: Option<Connection>,
    /// The response's fields as the upstream sent them, when they were passed.
    passed: Option<upstream::PassedFields>,
}

impl<B> ResponseBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// The connection, if the exchange ended exactly and it may carry another (taken once).
    pub(crate) fn take_idle(&mut self) -> Option<Connection> {
        self.idle.take()
    }

    /// The response's fields as the upstream sent them, when `exchange` was asked to pass
    /// them and could (the response's map is then empty). Taken once, by the HTTP/1 server.
    pub(crate) fn take_passed_fields(&mut self) -> Option<upstream::PassedFields> {
        self.passed.take()
    }

    /// The connection after a 101, with the bytes the upstream sent after its head.
    pub(crate) fn take_upgrade(&mut self) -> Option<Upgraded> {
        if !self.switching {
            return None;
        }
        self.switching = false;
        let conn = self.conn.take()?;
        let prefix = std::mem::take(&mut self.buf).freeze();
        Some(Upgraded::new(Box::new(conn.io), prefix))
    }

    /// The body ended: the connection goes idle if the whole exchange ended exactly.
    fn end(&mut self) {
        self.state = BodyState::Done;
        let conn = self.conn.take();
        if self.keep_alive && self.writer.is_none() && !self.request_broken && self.buf.is_empty() {
            self.idle = conn;
        }
        self.buf = BytesMut::new();
    }

    fn fail(&mut self, error: Http1Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.state = BodyState::Done;
        self.conn = None;
        self.writer = None;
        Poll::Ready(Some(Err(Box::new(error))))
    }

    /// Reads more of the body into `buf`: false at the end of the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<Result<bool, Http1Error>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(false));
        };
        self.buf.reserve(want.clamp(1, READ_SIZE));
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut conn.io),
            cx,
            &mut self.buf
        ))?;
        Poll::Ready(Ok(n > 0))
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let (Some(writer), Some(conn)) = (this.writer.as_mut(), this.conn.as_mut()) {
            match writer.poll(cx, &mut conn.io) {
                Poll::Ready(Ok(())) => this.writer = None,
                Poll::Ready(Err(error)) => {
                    tracing::debug!(%error, "request body not sent whole after the response began");
                    this.writer = None;
                    this.request_broken = true;
                }
                Poll::Pending => {}
            }
        }
        loop {
            match &mut this.state {
                BodyState::Done => return Poll::Ready(None),
                BodyState::Length(remaining) => {
                    if !this.buf.is_empty() {
                        let n = (*remaining).min(this.buf.len() as u64);
                        // All that was read belongs to the body (the usual case): the buffer
                        // is handed on whole, which costs no allocation (a split does).
                        let data = if n == this.buf.len() as u64 {
                            std::mem::take(&mut this.buf).freeze()
                        } else {
                            this.buf.split_to(n as usize).freeze()
                        };
                        *remaining -= n;
                        if *remaining == 0 {
                            this.end();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    let want = usize::try_from(*remaining).unwrap_or(usize::MAX);
                    match ready!(this.poll_fill(cx, want)) {
                        Ok(true) => {}
                        Ok(false) => return this.fail(Http1Error::ClosedInBody),
                        Err(error) => return this.fail(error),
                    }
                }
                BodyState::Chunked(decoder) => match decoder.decode(&mut this.buf) {
                    Ok(Chunk::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Chunk::Trailers(trailers)) => {
                        this.end();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Chunk::End) => {
                        this.end();
                        return Poll::Ready(None);
                    }
                    Ok(Chunk::NeedMore) => match ready!(this.poll_fill(cx, READ_SIZE)) {
                        Ok(true) => {}
                        Ok(false) => return this.fail(Http1Error::ClosedInBody),
                        Err(error) => return this.fail(error),
                    },
                    Err(error) => return this.fail(error.into()),
                },
                BodyState::Close => {
                    if !this.buf.is_empty() {
                        let data = std::mem::take(&mut this.buf).freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    match ready!(this.poll_fill(cx, READ_SIZE)) {
                        Ok(true) => {}
                        Ok(false) => {
                            this.end();
                            return Poll::Ready(None);
                        }
                        Err(error) => return this.fail(error),
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, BodyState::Done | BodyState::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            BodyState::Done => SizeHint::with_exact(0),
            BodyState::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    /// Hands out its bytes one per read, as a backend trickling its answer does.
    struct Trickle(Vec<u8>, usize);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            if let Some(&byte) = self.0.get(self.1) {
                buf.put_slice(&[byte]);
                self.1 += 1;
            }
            Poll::Ready(Ok(()))
        }
    }

    /// A head trickled a byte at a time is parsed once per line, not once per byte (each
    /// parse starts over from the head's first byte: per byte, a hostile backend would
    /// make the proxy scan a 64 KiB head 64 Ki times).
    #[test]
    fn a_trickled_response_head_is_parsed_once_per_line() {
        let head = format!(
            "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 0\r\n\r\n",
            "a".repeat(4000)
        );
        let mut io = Trickle(head.into_bytes(), 0);
        let mut reader = HeadReader::default();
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Ok(parsed)) = reader.poll(&mut cx, &mut io, false, &mut HeaderMap::new()) else {
            panic!("the whole head was there to read");
        };
        assert_eq!(parsed.response.status(), StatusCode::OK);
        assert!(reader.parses <= 5, "parsed {} times", reader.parses);
    }

    /// A response whose head and small body come in one read is parsed where it was read:
    /// what stays buffered is what follows the final head (here a 100 Continue came first),
    /// not a buffer of HEAD_READ_SIZE.
    #[test]
    fn a_response_read_whole_keeps_only_what_follows_its_head() {
        let mut io: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";
        let mut reader = HeadReader::default();
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Ok(parsed)) = reader.poll(&mut cx, &mut io, false, &mut HeaderMap::new()) else {
            panic!("the whole response was there to read");
        };
        assert_eq!(parsed.response.status(), StatusCode::OK);
        assert_eq!(&reader.buf[..], b"ok\n");
        assert!(
            reader.buf.capacity() < 1024,
            "{} bytes buffered for 3",
            reader.buf.capacity()
        );
    }
}
