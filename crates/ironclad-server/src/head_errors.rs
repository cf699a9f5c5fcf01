//! The JSON error body for requests hyper refuses itself, before any router
//! runs (issue 9 #17).
//!
//! hyper 1.x answers a request head it cannot parse on its own, with no
//! hook: `Conn::on_parse_error` calls `Server::on_error`, which maps a
//! malformed method, header, path or version to 400, a head over the read
//! buffer or with too many headers to 431, and a target over 65,534 bytes
//! to 414, and writes that status with `content-length: 0` (plus `date`,
//! perhaps `connection`) and no body; then the connection closes.
//!
//! [`JsonHeadErrors`] wraps the connection's socket and recognises that
//! head in the byte stream hyper writes: one of those three statuses whose
//! only headers are `content-length: 0`, `date` and `connection`, at the
//! very end of a write (hyper writes nothing after it). No response of
//! ours looks like that: every error the router answers has a JSON body
//! and a `content-type` (`error::json_errors`). The head is swapped for the
//! same status with the API's `{"error":{code,message,details}}` body
//! (`bad_request`, `uri_too_long`, `headers_too_large`) and
//! `connection: close`; bytes before it in the same write pass unchanged.
//!
//! Limits: once a `101 Switching Protocols` has been written the wrapper
//! stands aside (WebSocket frames follow). A connection that opens with the
//! HTTP/2 preface, and one whose head times out (`header_timeout_ms`), is
//! closed by hyper without any answer, so there is nothing to rewrite. If a
//! future hyper writes its error head differently (another header, a body),
//! it passes through unchanged: bodyless, as before, never corrupted; the
//! integration tests (`tests/integration/head_errors.rs`) would then fail.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::{error_body, ApiError, ErrorCode};

/// Bytes at the end of a write searched for hyper's error head (it is
/// about 80 bytes).
const TAIL_BYTES: usize = 256;

/// A socket whose hyper-written bodyless error heads become JSON errors.
#[derive(Debug)]
pub struct JsonHeadErrors<S> {
    inner: S,
    /// A rewritten answer still to be written, and how much of it was.
    pending: Vec<u8>,
    pending_at: usize,
    /// After an upgrade: pass everything through.
    upgraded: bool,
}

impl<S> JsonHeadErrors<S> {
    /// Wraps a connection's socket.
    pub fn new(inner: S) -> Self {
        JsonHeadErrors {
            inner,
            pending: Vec::new(),
            pending_at: 0,
            upgraded: false,
        }
    }
}

/// hyper's own error head at the end of `buf`: where it starts, its status
/// and its `date` value.
fn find_error_head(buf: &[u8]) -> Option<(usize, u16, Option<&[u8]>)> {
    let from = buf.len().saturating_sub(TAIL_BYTES);
    let tail = &buf[from..];
    let start = tail.windows(7).rposition(|w| w == b"HTTP/1.")?;
    let head = &tail[start..];
    let text = head.strip_suffix(b"\r\n\r\n")?;
    let mut lines = text
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next()?;
    let status = match status_line.get(9..13)? {
        b"400 " => 400,
        b"414 " => 414,
        b"431 " => 431,
        _ => return None,
    };
    let (mut zero_length, mut date) = (false, None);
    for line in lines {
        let (name, value) = split_header(line)?;
        if name.eq_ignore_ascii_case(b"content-length") && value == b"0" {
            zero_length = true;
        } else if name.eq_ignore_ascii_case(b"date") {
            date = Some(value);
        } else if !name.eq_ignore_ascii_case(b"connection") {
            return None;
        }
    }
    zero_length.then_some((from + start, status, date))
}

fn split_header(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = line.iter().position(|&b| b == b':')?;
    let value = &line[colon + 1..];
    let skip = value.iter().take_while(|b| **b == b' ').count();
    Some((&line[..colon], &value[skip..]))
}

/// The JSON answer that replaces hyper's head for `status`.
fn json_answer(status: u16, date: Option<&[u8]>) -> Vec<u8> {
    let (code, reason, message, details) = match status {
        414 => (
            ErrorCode::UriTooLong,
            "URI Too Long",
            "the request target (path and query) is longer than the server accepts: shorten it",
            serde_json::json!({ "target_bytes_max": 65_534 }),
        ),
        431 => (
            ErrorCode::HeadersTooLarge,
            "Request Header Fields Too Large",
            "the request head is too large (over 100 headers, or about 400 KiB): send fewer, smaller headers",
            serde_json::json!({ "headers_max": 100 }),
        ),
        _ => (
            ErrorCode::BadRequest,
            "Bad Request",
            "the request is not valid HTTP/1.1 (request line, version, a header, or bytes not allowed in the path); nothing was done: fix the client",
            serde_json::json!({}),
        ),
    };
    let body = error_body(&ApiError::new(code, message).with_details(details));
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    )
    .into_bytes();
    if let Some(date) = date {
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    out
}

impl<S: AsyncWrite + Unpin> JsonHeadErrors<S> {
    /// Writes what is pending; ready when nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.pending_at < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.pending_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending_at += n;
        }
        self.pending.clear();
        self.pending_at = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonHeadErrors<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonHeadErrors<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if this.upgraded {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        // Both heads end a write; bodies (JSON, text) seldom end so.
        if buf.ends_with(b"\r\n\r\n") {
            let tail = &buf[buf.len().saturating_sub(TAIL_BYTES)..];
            if tail.windows(13).any(|w| w == b"HTTP/1.1 101 ") {
                this.upgraded = true;
            } else if let Some((start, status, date)) = find_error_head(buf) {
                // Take the whole write: what came before the head, then ours.
                let mut out = buf[..start].to_vec();
                out.extend_from_slice(&json_answer(status, date));
                this.pending = out;
                this.pending_at = 0;
                // Start writing now; what is left is written by flush.
                if let Poll::Ready(Err(e)) = this.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut filled = bufs.iter().filter(|b| !b.is_empty());
        // hyper's error head comes alone (it has no body); a write of
        // several slices is a head and its body, or body chunks.
        match (filled.next(), filled.next()) {
            (Some(one), None) => Pin::new(this).poll_write(cx, one),
            _ => {
                ready!(this.poll_pending(cx))?;
                Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_only_hyper_bodyless_error_heads() {
        let hyper = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 20:00:00 GMT\r\n\r\n";
        let found = find_error_head(hyper).map(|(s, st, d)| (s, st, d.map(<[u8]>::to_vec)));
        assert_eq!(
            found,
            Some((0, 431, Some(b"Thu, 03 Dec 2026 20:00:00 GMT".to_vec())))
        );
        let mut after_body = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        after_body.extend_from_slice(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(find_error_head(&after_body).map(|f| f.1), Some(400));
        for ours in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nx",
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n",
        ] {
            assert_eq!(find_error_head(ours), None, "{}", String::from_utf8_lossy(ours));
        }
    }

    #[test]
    fn the_answer_is_the_api_error_shape() {
        let out = json_answer(431, None);
        let text = String::from_utf8(out).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        assert_eq!(v["error"]["code"], "headers_too_large");
    }
}
