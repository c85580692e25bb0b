//! The server side of an HTTP/1.1 connection: reads request heads, hands each request to
//! the request path with a body the connection reads on demand, writes the response head
//! and frames its body, and keeps the connection for the next request or closes it.
//!
//! Requests are answered in order: the next head is parsed (from what is already buffered,
//! for a pipelining client) only once the previous response is written and its request
//! body read to its end; a body nobody reads to its end closes the connection instead.
//!
//! Memory between requests: a connection waiting for its next head holds no read or write
//! buffer. The next head's first read goes to a buffer on the stack, and a heap buffer is
//! made only when bytes arrive; both buffers are dropped again whenever the connection
//! finds nothing more to read.

use std::{
    future::poll_fn,
    io,
    mem::MaybeUninit,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Method, Response, StatusCode, Version, header};
use http_body::{Body, Frame};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    sync::oneshot,
};

use lockstep_core::http1::{
    chunked::{Chunk, ChunkedDecoder},
    head::{self, BodyFraming, HeadLimits, RequestHead, ResponseContext, ResponseFraming},
};

use super::{
    body::{self, BodyError, Channel, Http1Body, Shared},
    outgoing::Outgoing,
    upgrade::{OnUpgrade, Upgraded},
};
use crate::forward::{
    Proxy,
    body::ProxyBody,
    client::{ClientConnection, Transport},
    request_body::ClientBody,
};

/// The first read of a head goes to a stack buffer this large: most heads fit.
const FIRST_READ: usize = 2048;
/// What an HTTP/2 connection with prior knowledge starts with (RFC 9113 §3.4).
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long a closing connection keeps reading (and discarding) what the client still
/// sends, so that closing with unread bytes does not reset the connection and lose the
/// answer: at most this long in all, and until the client is quiet for [`LINGER_QUIET`].
const LINGER: Duration = Duration::from_secs(2);
const LINGER_QUIET: Duration = Duration::from_millis(500);

/// How the body of the request being answered is read.
enum Reader {
    None,
    Length {
        shared: Shared,
        remaining: u64,
    },
    Chunked {
        shared: Shared,
        decoder: Box<ChunkedDecoder>,
    },
}

/// The bytes of a `100 Continue` still to write (the client waits for it before its body).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

struct Exchange {
    reader: Reader,
    /// Bytes of [`CONTINUE`] written so far; None when none is owed.
    continue_at: Option<usize>,
    /// The request body failed or the connection broke while reading it.
    broken: bool,
}

impl Exchange {
    fn shared(&self) -> Option<&Shared> {
        match &self.reader {
            Reader::None => None,
            Reader::Length { shared, .. } | Reader::Chunked { shared, .. } => Some(shared),
        }
    }

    /// The request body was read to its end (or there was none).
    fn body_finished(&self) -> bool {
        self.shared().is_none_or(|s| body::lock(s).finished())
    }
}

struct Conn<S> {
    io: S,
    buf: BytesMut,
    out: Outgoing,
    limits: HeadLimits,
    client: Arc<ClientConnection>,
    /// Bytes that may complete a head arrived since the last parse. A head ends at a line
    /// feed, so a head trickled a byte at a time is parsed once per line, not once per
    /// byte (each parse starts over from the head's first byte).
    parse_due: bool,
    /// What was read so far may still be the start of HTTP/2's preface: true until the
    /// connection's first bytes show otherwise, when it may speak HTTP/2 with prior
    /// knowledge.
    preface_possible: bool,
}

enum HeadRead {
    Head(RequestHead),
    Refused(head::HeadError),
    /// The client closed (or the server is closing) between requests.
    Done,
    /// The connection's first bytes are HTTP/2's whole preface: they are in the buffer.
    Http2Preface,
}

/// How far a connection's first bytes match HTTP/2's preface.
#[derive(Debug, PartialEq, Eq)]
enum Preface {
    /// They start with the whole preface.
    Whole,
    /// They are its start: more bytes decide.
    Partial,
    /// They are not (an HTTP/1 head).
    Not,
}

impl Preface {
    fn of(first: &[u8]) -> Self {
        let common = first.len().min(HTTP2_PREFACE.len());
        if first[..common] != HTTP2_PREFACE[..common] {
            Preface::Not
        } else if common == HTTP2_PREFACE.len() {
            Preface::Whole
        } else {
            Preface::Partial
        }
    }
}

/// How an HTTP/1 connection's service ended.
pub(crate) enum Ended<S> {
    /// The connection closed, or was handed over after a 101.
    Closed,
    /// The client spoke HTTP/2 with prior knowledge: its stream, the bytes read from it
    /// (the preface and whatever followed), and what serves it, for an HTTP/2 server.
    Http2 {
        io: S,
        read: Bytes,
        proxy: Arc<Proxy>,
        client: Arc<ClientConnection>,
    },
}

/// Serves one HTTP/1 client connection with `proxy`'s request path until the client
/// closes, the connection fails, or the server asks it to close
/// ([`ClientConnection::close_after_response`]; then after the response in flight).
/// `http2_preface`: the connection may speak HTTP/2 with prior knowledge (a plain one, or
/// TLS without ALPN), which its first bytes tell; it is then handed back for HTTP/2
/// ([`Ended::Http2`]). Told here rather than by a read of its own before HTTP/1 starts,
/// so that an HTTP/1 connection's first head is read once, into the stack buffer that
/// every head's first read uses.
///
/// A function returning an `async move` block, so that its arguments are held once (in the
/// connection), not twice as an `async fn` holds them, by every idle connection.
pub(crate) fn serve<S>(
    io: S,
    proxy: Arc<Proxy>,
    client: Arc<ClientConnection>,
    limits: HeadLimits,
    http2_preface: bool,
) -> impl Future<Output = io::Result<Ended<S>>> + Send
where
    S: ClientStream,
{
    let mut conn = Conn {
        io,
        buf: BytesMut::new(),
        out: Outgoing::default(),
        limits,
        client,
        parse_due: false,
        preface_possible: http2_preface,
    };
    async move {
        loop {
            let head = match poll_fn(|cx| conn.poll_head(cx)).await? {
                HeadRead::Head(head) => head,
                HeadRead::Done => return Ok(Ended::Closed),
                HeadRead::Refused(error) => {
                    tracing::debug!(client = %conn.client.remote, %error, "request head refused");
                    Box::pin(conn.refuse(error.status())).await?;
                    return Ok(Ended::Closed);
                }
                HeadRead::Http2Preface => {
                    return Ok(Ended::Http2 {
                        io: conn.io,
                        read: conn.buf.freeze(),
                        proxy,
                        client: conn.client,
                    });
                }
            };
            let Dispatched {
                mut answer,
                mut exchange,
                switch,
                ctx,
                keep_alive,
                trailers,
            } = dispatch(head, &proxy, &conn.client, limits);
            // The response, and then its body and writer, live in blocks of their own: a future
            // keeps room for every value it held until the value's scope ends, even once moved
            // on, and a response is 184 bytes that every idle connection would carry. The body
            // is dropped as its block ends, before the request body is read on.
            let (switching, written) = {
                let (keep, switching, mut writer, mut body) = {
                    let response = poll_fn(|cx| {
                        let _ = conn.pump(cx, &mut exchange);
                        answer.as_mut().poll(cx)
                    })
                    .await;
                    drop(answer);
                    let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS && switch.is_some();
                    let (keep, writer, body) =
                        conn.start_response(response, ctx, keep_alive, trailers, switching, &mut exchange);
                    (keep, switching, writer, body)
                };
                let written = poll_fn(|cx| {
                    // A 100 partly written when the response came is finished before the response.
                    ready!(conn.poll_continue(cx, &mut exchange))?;
                    let _ = conn.pump(cx, &mut exchange);
                    conn.poll_write_body(cx, &mut writer, &mut body)
                })
                .await;
                (switching, written.map(|()| keep && !writer.short()))
            };
            let keep = match written {
                Ok(keep) => keep,
                Err(error) => {
                    tracing::debug!(client = %conn.client.remote, %error, "response not sent whole");
                    return Ok(Ended::Closed);
                }
            };
            if switching {
                let Some(switch) = switch else {
                    return Ok(Ended::Closed);
                };
                let Conn { io, buf, .. } = conn;
                let _ = switch.send(Upgraded::new(Box::new(io), buf.freeze()));
                return Ok(Ended::Closed);
            }
            // The request body is read to its end before the next head (or the close), as long
            // as someone reads it: an upload may go on after its response.
            if !exchange.body_finished() && !exchange.broken {
                poll_fn(|cx| {
                    if conn.client.is_closing() {
                        return Poll::Ready(());
                    }
                    conn.pump(cx, &mut exchange)
                })
                .await;
            }
            if !keep || exchange.broken || !exchange.body_finished() {
                // An exchange that ended cleanly (the request read whole, nothing after it) has
                // nothing for the client to be still sending: the connection closes at once
                // unless bytes are already waiting, as nginx's lingering close decides.
                if exchange.broken || !exchange.body_finished() || !conn.buf.is_empty() || conn.unread() {
                    Box::pin(conn.linger()).await;
                } else if let Transport::Tls { .. } = conn.client.transport {
                    // TLS announces the close (close_notify), which tells a body that runs to
                    // the close from a truncated one; a plain socket's close sends its FIN by
                    // itself, without a shutdown call of its own.
                    let _ = conn.io.shutdown().await;
                }
                return Ok(Ended::Closed);
            }
        }
    }
}

/// A client connection as the server reads and writes it.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether the client has sent bytes not read yet (they are read and dropped): looks
    /// without waiting, and without arranging to be woken.
    fn has_unread(&mut self) -> bool;
}

/// A request handed to the request path.
struct Dispatched {
    /// The request path's answer. Boxed: the request path's state lives only while a
    /// request does, not in every idle connection.
    answer: Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>,
    exchange: Exchange,
    /// Hands the connection over after a 101, when the client asked to switch.
    switch: Option<oneshot::Sender<Upgraded>>,
    ctx: ResponseContext,
    keep_alive: bool,
    trailers: bool,
}

/// Makes the request of a head, with a body read through the connection, and starts the
/// request path on it. (Not async: its locals stay out of the connection's future.)
fn dispatch(
    head: RequestHead,
    proxy: &Arc<Proxy>,
    client: &Arc<ClientConnection>,
    limits: HeadLimits,
) -> Dispatched {
    let RequestHead {
        mut parts,
        body: framing,
        keep_alive,
        expect_continue,
        upgrade,
        trailers,
        ..
    } = head;
    let ctx = ResponseContext {
        head_request: parts.method == Method::HEAD,
        version: parts.version,
    };
    let (reader, body) = match framing {
        BodyFraming::Empty => (Reader::None, Http1Body::empty()),
        BodyFraming::Length(n) => {
            let shared = Shared::default();
            let body = Http1Body::new(shared.clone(), Some(n));
            (Reader::Length { shared, remaining: n }, body)
        }
        BodyFraming::Chunked => {
            let shared = Shared::default();
            let body = Http1Body::new(shared.clone(), None);
            let decoder = Box::new(ChunkedDecoder::new(limits.max_bytes));
            (Reader::Chunked { shared, decoder }, body)
        }
    };
    let exchange = Exchange {
        continue_at: (expect_continue && !matches!(reader, Reader::None)).then_some(0),
        reader,
        broken: false,
    };
    let switch = upgrade.then(|| {
        let (sender, on_upgrade) = OnUpgrade::channel();
        parts.extensions.insert(on_upgrade);
        sender
    });
    Dispatched {
        answer: Box::pin(
            proxy
                .clone()
                .handle(client.clone(), parts, ClientBody::Http1(body)),
        ),
        exchange,
        switch,
        ctx,
        keep_alive,
        trailers,
    }
}

impl<S> Conn<S>
where
    S: ClientStream,
{
    /// Reads and parses the next request head.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<HeadRead>> {
        loop {
            if !self.buf.is_empty() {
                if self.preface_possible {
                    match Preface::of(&self.buf) {
                        Preface::Whole => return Poll::Ready(Ok(HeadRead::Http2Preface)),
                        // Not a head to parse yet: "PRI * HTTP/2.0" is not HTTP/1.
                        Preface::Partial => self.parse_due = false,
                        Preface::Not => {
                            self.preface_possible = false;
                            self.parse_due = true;
                        }
                    }
                }
                if std::mem::take(&mut self.parse_due) {
                    match head::parse_request(&self.buf, self.limits) {
                        Ok(Some((head, len))) => {
                            self.buf.advance(len);
                            // What follows may hold the next head already (pipelining).
                            self.parse_due = true;
                            return Poll::Ready(Ok(HeadRead::Head(head)));
                        }
                        Ok(None) => {}
                        Err(error) => return Poll::Ready(Ok(HeadRead::Refused(error))),
                    }
                }
                // The rest of a head that has started: read into the heap buffer.
                self.buf.reserve(FIRST_READ.max(self.buf.len()));
                let before = self.buf.len();
                let read = ready!(tokio_util::io::poll_read_buf(
                    Pin::new(&mut self.io),
                    cx,
                    &mut self.buf
                ))?;
                if read == 0 {
                    // Closed in the middle of a head: nothing to answer.
                    return Poll::Ready(Ok(HeadRead::Done));
                }
                self.parse_due =
                    self.buf[before..].contains(&b'\n') || self.buf.len() > self.limits.max_bytes;
                continue;
            }
            if self.client.is_closing() {
                return Poll::Ready(Ok(HeadRead::Done));
            }
            let mut first = [MaybeUninit::<u8>::uninit(); FIRST_READ];
            let mut read = ReadBuf::uninit(&mut first);
            match Pin::new(&mut self.io).poll_read(cx, &mut read) {
                Poll::Pending => {
                    // Idle: hold no buffer while waiting.
                    self.buf = BytesMut::new();
                    self.out = Outgoing::default();
                    return Poll::Pending;
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(HeadRead::Done)),
                Poll::Ready(Ok(())) => {
                    // Most heads arrive whole in the first read: parsed where they were read,
                    // the connection needs no heap buffer for them at all.
                    let filled = read.filled();
                    if self.preface_possible {
                        if Preface::of(filled) != Preface::Not {
                            // The preface, or its start: the buffered path above decides.
                            self.buf.extend_from_slice(filled);
                            continue;
                        }
                        self.preface_possible = false;
                    }
                    match head::parse_request(filled, self.limits) {
                        Ok(Some((head, len))) => {
                            self.buf.extend_from_slice(&filled[len..]);
                            self.parse_due = !self.buf.is_empty();
                            return Poll::Ready(Ok(HeadRead::Head(head)));
                        }
                        Ok(None) => {
                            self.buf.extend_from_slice(filled);
                            self.parse_due = false;
                        }
                        Err(error) => return Poll::Ready(Ok(HeadRead::Refused(error))),
                    }
                }
            }
        }
    }

    /// Writes what is left of an owed `100 Continue`.
    fn poll_continue(&mut self, cx: &mut Context<'_>, exchange: &mut Exchange) -> Poll<io::Result<()>> {
        while let Some(at) = exchange.continue_at {
            if at == CONTINUE.len() {
                exchange.continue_at = None;
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                break;
            }
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &CONTINUE[at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            exchange.continue_at = Some(at + n);
        }
        Poll::Ready(Ok(()))
    }

    /// Reads the request body as far as its reader wants it: ready once nothing more will
    /// be read (the body ended, failed, or was dropped).
    fn pump(&mut self, cx: &mut Context<'_>, exchange: &mut Exchange) -> Poll<()> {
        let Some(shared) = exchange.shared().cloned() else {
            return Poll::Ready(());
        };
        loop {
            {
                let mut chan = body::lock(&shared);
                if chan.end.is_some() || chan.dropped {
                    return Poll::Ready(());
                }
                if !chan.want || chan.frame.is_some() {
                    chan.park_conn(cx);
                    return Poll::Pending;
                }
            }
            if exchange.continue_at.is_some()
                && self.buf.is_empty()
                && let Err(error) = ready!(self.poll_continue(cx, exchange))
            {
                fail(&shared, &mut exchange.broken, BodyError::Io, &error);
                return Poll::Ready(());
            }
            // Bytes have come: a 100 would now arrive after them.
            exchange.continue_at = exchange.continue_at.filter(|_| self.buf.is_empty());
            match decode(&mut exchange.reader, &mut self.buf) {
                Ok(Some((frame, end))) => {
                    let mut chan = body::lock(&shared);
                    chan.frame = frame;
                    if end {
                        chan.end = Some(Ok(()));
                    }
                    chan.want = false;
                    chan.wake_body();
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    fail(&shared, &mut exchange.broken, error, &"malformed body");
                    return Poll::Ready(());
                }
            }
            let want = match &exchange.reader {
                Reader::Length { remaining, .. } => (*remaining).clamp(1, 64 * 1024) as usize,
                _ => 16 * 1024,
            };
            self.buf.reserve(want);
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => {
                    fail(&shared, &mut exchange.broken, BodyError::Incomplete, &"eof");
                    return Poll::Ready(());
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(error)) => {
                    fail(&shared, &mut exchange.broken, BodyError::Io, &error);
                    return Poll::Ready(());
                }
            }
        }
    }

    /// Puts the response's head in the outgoing buffer and says how its body is written,
    /// and whether the connection may stay open after it (if the body comes whole). Not
    /// async: its locals (the response, taken apart) stay out of the connection's future.
    fn start_response(
        &mut self,
        response: Response<ProxyBody>,
        ctx: ResponseContext,
        keep_alive: bool,
        trailers: bool,
        switching: bool,
        exchange: &mut Exchange,
    ) -> (bool, BodyWriter, ProxyBody) {
        // A response is on its way: a 100 not sent by now is not owed any more; one partly
        // written is finished before the head (`poll_continue`, first in the writing).
        if exchange.continue_at == Some(0) {
            exchange.continue_at = None;
        }
        let (parts, mut body) = response.into_parts();
        let mut headers = parts.headers;
        // Fields passed as the upstream sent them: the map holds none of them (nothing
        // changes such a response's fields, see `ClientTakes`), and a 101 is never passed.
        let passed = body.take_passed_fields();
        let framing = if passed.is_some() {
            debug_assert!(
                headers.is_empty(),
                "a field added to a passed response: {headers:?}"
            );
            head::passed_framing(body.size_hint().exact(), body.is_end_stream(), ctx.version)
        } else if switching {
            ResponseFraming::None
        } else {
            head::response_framing(
                parts.status,
                &mut headers,
                body.size_hint().exact(),
                body.is_end_stream(),
                ctx,
            )
        };
        let keep =
            switching || (keep_alive && framing != ResponseFraming::Close && !self.client.is_closing());
        let keep = match &passed {
            Some(fields) => {
                head::write_passed_head(
                    &mut self.out.bytes,
                    parts.status,
                    fields,
                    framing,
                    keep,
                    ctx.version,
                );
                keep
            }
            // A response that says `Connection: close` closes the connection too.
            None => head::write_response_head(&mut self.out.bytes, parts.status, &headers, keep, ctx.version),
        };
        (keep, BodyWriter::new(framing, trailers), body)
    }

    fn poll_write_body(
        &mut self,
        cx: &mut Context<'_>,
        w: &mut BodyWriter,
        body: &mut ProxyBody,
    ) -> Poll<Result<(), Box<dyn std::error::Error + Send + Sync>>> {
        loop {
            w.body_pending = false;
            if !w.done && self.out.has_room() {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => w.body_pending = true,
                    Poll::Ready(None) => {
                        w.done = true;
                        if w.framing == ResponseFraming::Chunked {
                            self.out.bytes.extend_from_slice(b"0\r\n\r\n");
                        }
                    }
                    Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                    Poll::Ready(Some(Ok(frame))) => {
                        w.frame(frame, &mut self.out);
                        continue;
                    }
                }
            }
            // Write what is gathered: head and framing bytes, then a large frame's data.
            if !ready!(self.out.poll_write(cx, &mut self.io))? {
                continue;
            }
            if w.done || w.body_pending {
                // Whatever the body has sent so far reaches the client before waiting on
                // the upstream for more.
                ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                if w.done {
                    return Poll::Ready(Ok(()));
                }
                return Poll::Pending;
            }
        }
    }

    /// Answers a refused head and closes.
    async fn refuse(&mut self, status: StatusCode) -> io::Result<()> {
        let text = format!(
            "{} {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("error")
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(header::CONTENT_LENGTH, http::HeaderValue::from(text.len()));
        head::write_response_head(&mut self.out.bytes, status, &headers, false, Version::HTTP_11);
        self.out.bytes.extend_from_slice(text.as_bytes());
        self.io.write_all(&self.out.bytes).await?;
        self.io.flush().await?;
        self.linger().await;
        Ok(())
    }

    /// Whether the client has sent bytes not read yet: looks without waiting.
    fn unread(&mut self) -> bool {
        self.io.has_unread()
    }

    /// Closes the connection's sending side, then reads and discards what the client still
    /// sends for a little while: closing a socket with unread bytes resets it, and the
    /// client may lose the answer it was just sent.
    async fn linger(&mut self) {
        self.out = Outgoing::default();
        self.buf = BytesMut::new();
        if self.io.shutdown().await.is_err() {
            return;
        }
        let until = tokio::time::Instant::now() + LINGER;
        let mut scratch = vec![0u8; 16 * 1024];
        while tokio::time::Instant::now() < until {
            match tokio::time::timeout(LINGER_QUIET, self.io.read(&mut scratch)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
        }
    }
}

/// Records a failed body read: the body's reader gets the error, the connection closes.
fn fail(shared: &Shared, broken: &mut bool, error: BodyError, why: &dyn std::fmt::Display) {
    tracing::debug!(%why, %error, "request body failed");
    *broken = true;
    let mut chan: std::sync::MutexGuard<'_, Channel> = body::lock(shared);
    chan.end = Some(Err(error));
    chan.wake_body();
}

/// A step of a request body: the frame read (if any) and whether the body ends with it.
type Step = (Option<Frame<Bytes>>, bool);

/// The next step of a request body from the buffer: `None` when more bytes are needed.
fn decode(reader: &mut Reader, buf: &mut BytesMut) -> Result<Option<Step>, BodyError> {
    match reader {
        Reader::None => Ok(Some((None, true))),
        Reader::Length { remaining, .. } => {
            if *remaining == 0 {
                return Ok(Some((None, true)));
            }
            if buf.is_empty() {
                return Ok(None);
            }
            let n = (*remaining).min(buf.len() as u64);
            *remaining -= n;
            let data = buf.split_to(n as usize).freeze();
            Ok(Some((Some(Frame::data(data)), *remaining == 0)))
        }
        Reader::Chunked { decoder, .. } => match decoder.decode(buf)? {
            Chunk::Data(data) => Ok(Some((Some(Frame::data(data)), false))),
            Chunk::Trailers(trailers) => Ok(Some((Some(Frame::trailers(trailers)), true))),
            Chunk::End => Ok(Some((None, true))),
            Chunk::NeedMore => Ok(None),
        },
    }
}

/// Where the response body's writing is.
struct BodyWriter {
    framing: ResponseFraming,
    /// Bytes still owed by a Content-Length.
    remaining: u64,
    /// The client accepts trailers.
    trailers: bool,
    done: bool,
    body_pending: bool,
}

impl BodyWriter {
    fn new(framing: ResponseFraming, trailers: bool) -> Self {
        Self {
            framing,
            remaining: match framing {
                ResponseFraming::Length(n) => n,
                _ => 0,
            },
            trailers,
            done: framing == ResponseFraming::None,
            body_pending: false,
        }
    }

    fn frame(&mut self, frame: Frame<Bytes>, out: &mut Outgoing) {
        match frame.into_data() {
            Ok(mut data) => {
                if data.is_empty() {
                    return;
                }
                match self.framing {
                    // No body on the wire (HEAD, 204, 304).
                    ResponseFraming::None => return,
                    ResponseFraming::Length(_) => {
                        // More than the Content-Length said is cut; the connection then
                        // closes (see `short`).
                        let n = self.remaining.min(data.len() as u64);
                        if n < data.len() as u64 {
                            data.truncate(n as usize);
                            self.remaining = u64::MAX;
                            self.done = true;
                        } else {
                            self.remaining -= n;
                        }
                    }
                    ResponseFraming::Chunked | ResponseFraming::Close => {}
                }
                out.push_data(data, self.framing == ResponseFraming::Chunked);
            }
            Err(frame) => {
                if let (Ok(trailers), ResponseFraming::Chunked) = (frame.into_trailers(), self.framing) {
                    let out = &mut out.bytes;
                    out.extend_from_slice(b"0\r\n");
                    if self.trailers {
                        for (name, value) in &trailers {
                            if matches!(
                                *name,
                                header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::HOST
                            ) {
                                continue;
                            }
                            out.extend_from_slice(name.as_str().as_bytes());
                            out.extend_from_slice(b": ");
                            out.extend_from_slice(value.as_bytes());
                            out.extend_from_slice(b"\r\n");
                        }
                    }
                    out.extend_from_slice(b"\r\n");
                    // Trailers end the body: nothing may follow the last chunk.
                    self.framing = ResponseFraming::None;
                }
            }
        }
    }

    /// The body did not match its Content-Length (too short, or cut): the connection cannot
    /// carry another response.
    fn short(&self) -> bool {
        matches!(self.framing, ResponseFraming::Length(_)) && self.remaining != 0
            || self.framing == ResponseFraming::Close
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{options::ProxyOptions, state::ProxyState};

    /// A connection's first bytes are HTTP/2 only once the whole preface came; its start
    /// waits for more, and any other byte is HTTP/1 (a `POST` starts like the preface).
    #[test]
    fn the_preface_is_told_from_a_head_by_the_first_bytes() {
        assert_eq!(Preface::of(HTTP2_PREFACE), Preface::Whole);
        assert_eq!(
            Preface::of(&[&HTTP2_PREFACE[..], b"\0\0\0\x04"].concat()),
            Preface::Whole
        );
        assert_eq!(Preface::of(b"P"), Preface::Partial);
        assert_eq!(Preface::of(&HTTP2_PREFACE[..23]), Preface::Partial);
        assert_eq!(Preface::of(b"PO"), Preface::Not);
        assert_eq!(Preface::of(b"GET / HTTP/1.1\r\n"), Preface::Not);
        assert_eq!(Preface::of(b"PRI * HTTP/1.1\r\n\r\n"), Preface::Not);
    }

    impl ClientStream for tokio::io::DuplexStream {
        fn has_unread(&mut self) -> bool {
            false
        }
    }

    /// Every idle keep-alive connection holds this future: the request's state (the request
    /// path, a lingering close) is boxed and held only while needed. 760 bytes in the test
    /// build while the response was kept in it for the whole exchange and `serve` was an
    /// `async fn` (which holds its arguments twice); 632 since; 584 since the response's
    /// body and writer are scoped to its writing (they were kept across the reads after it);
    /// 432 since an HTTP/1 upstream body is boxed (the response body 208 bytes to 72 in a
    /// release build).
    #[tokio::test]
    async fn a_connection_s_future_stays_small_between_requests() {
        let proxy = Proxy::new(ProxyState::new("test"), ProxyOptions::default());
        let client = Arc::new(ClientConnection::plain_for_tests());
        let (io, _) = tokio::io::duplex(64);
        let limits = HeadLimits {
            max_bytes: 1024,
            max_headers: 10,
        };
        let future = serve(io, proxy, client, limits, true);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 450, "{size} bytes");
    }
}
