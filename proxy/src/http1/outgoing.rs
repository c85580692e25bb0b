//! What one HTTP/1 connection has gathered to write, on either side: a head and framing
//! bytes, with small body frames copied behind them so that both go in one write, then one
//! large frame written without a copy, then that chunk's CRLF. The server writes responses
//! with it and the upstream client writes requests.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Buf, Bytes};
use tokio::io::AsyncWrite;

use lockstep_core::http1::chunked;

/// A body frame up to this size is copied behind its head or chunk-size line, so both go in
/// one write.
const COALESCE: usize = 8 * 1024;

#[derive(Default)]
pub(crate) struct Outgoing {
    /// Head, framing bytes and small frames; written from `at`.
    pub(crate) bytes: Vec<u8>,
    at: usize,
    /// A large frame, written after `bytes`.
    data: Bytes,
    /// A chunk's CRLF follows `data`.
    crlf_after_data: bool,
}

impl Outgoing {
    /// Whether another frame may be gathered before writing: no large frame waits, and what
    /// is gathered is still small.
    pub(crate) fn has_room(&self) -> bool {
        self.data.is_empty() && self.bytes.len() - self.at < COALESCE
    }

    /// Gathers a body frame, as a chunk (its size line before it, CRLF after) when
    /// `chunked`. An empty frame is nothing: in the chunked coding it would end the body.
    pub(crate) fn push_data(&mut self, data: Bytes, chunked: bool) {
        if data.is_empty() {
            return;
        }
        if chunked {
            chunked::write_chunk_size(&mut self.bytes, data.len());
        }
        if data.len() <= COALESCE {
            self.bytes.extend_from_slice(&data);
            if chunked {
                self.bytes.extend_from_slice(b"\r\n");
            }
        } else {
            self.data = data;
            self.crlf_after_data = chunked;
        }
    }

    /// Writes what is gathered (not flushed). Ready with true once all of it is written;
    /// with false when a large chunk's CRLF was gathered behind it instead, so that the
    /// caller may gather the next frame with it before writing again.
    pub(crate) fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        cx: &mut Context<'_>,
        io: &mut W,
    ) -> Poll<io::Result<bool>> {
        while self.at < self.bytes.len() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.bytes[self.at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.at += n;
        }
        self.bytes.clear();
        self.at = 0;
        while !self.data.is_empty() {
            let n = ready!(Pin::new(&mut *io).poll_write(cx, &self.data))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.data.advance(n);
        }
        if std::mem::take(&mut self.crlf_after_data) {
            self.bytes.extend_from_slice(b"\r\n");
            return Poll::Ready(Ok(false));
        }
        Poll::Ready(Ok(true))
    }
}
