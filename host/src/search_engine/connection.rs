//! One connection's life on the engine's server: accepted under a cap,
//! its request head read under a timer, its answers written under a stall
//! limit, and drained on shutdown.

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io::{self, Write};
use std::net::Shutdown;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};

/// How much a client may hold of the server. A client that opens
/// connections and never finishes its headers or its body would otherwise
/// hold a task and a socket each for ever.
#[derive(Clone, Copy, Debug)]
pub struct ServeLimits {
    /// From the first byte of a request's head (or from the previous
    /// answer on a kept-alive connection) to its last header. A head cut
    /// short is answered 408; a quiet kept-alive connection just closes.
    pub header_read_timeout: Duration,
    /// From the head to the answer, the body's reading included.
    pub request_timeout: Duration,
    /// How long an answer's write may make no progress (a client that
    /// sends requests but reads no answers) before the connection is cut.
    pub write_stall_timeout: Duration,
    /// Open connections; further clients wait in the listen backlog. Each
    /// holds two descriptors (one kept for the 408 above).
    pub max_connections: usize,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            write_stall_timeout: Duration::from_secs(30),
            max_connections: 512,
        }
    }
}

/// axum's own `serve` sets no header-read timeout and no connection cap,
/// hence this loop: HTTP/1.1 with hyper's timer, one permit per connection.
pub(super) async fn accept_loop(
    listener: TcpListener,
    app: Router,
    limits: ServeLimits,
    mut stopped: oneshot::Receiver<()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&permits).acquire_owned() => permit.expect("never closed"),
            _ = &mut stopped => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, say: back off rather than spin.
                    tracing::warn!(%err, "search engine: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let (stream, spare) = match with_spare(stream) {
            Ok(pair) => pair,
            Err(err) => {
                tracing::warn!(%err, "search engine: could not take a connection");
                continue;
            }
        };
        let part_read = Arc::new(AtomicBool::new(false));
        let conn = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .serve_connection(
                TokioIo::new(Watched::new(
                    stream,
                    limits.write_stall_timeout,
                    Arc::clone(&part_read),
                )),
                TowerToHyperService::new(app.clone()),
            );
        let conn = graceful.watch(conn);
        let header_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "search engine: connection ended");
                // hyper closes a head cut short by its timer without a word.
                if err.is_timeout()
                    && part_read.load(Ordering::Relaxed)
                    && let Some(spare) = &spare
                {
                    answer_head_timeout(spare, header_timeout);
                }
            }
            drop(spare);
            drop(permit);
        });
    }
    // Answers in flight finish; idle connections close at once.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("search engine: connections still open after the shutdown grace");
    }
}

const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A connection's stream as the server watches it:
/// - its writes fail once they have made no progress for `limit`: hyper has
///   a timer for reading a request's head but none for writing an answer,
///   so a client that stops reading would hold its connection;
/// - `part_read` says whether part of a request has been read and no answer
///   begun since: what a connection holds when the header timer fires
///   mid-head, as against a kept-alive connection that just went quiet.
struct Watched<S> {
    inner: S,
    limit: Duration,
    /// Armed when a write first finds the socket full; cleared on progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    part_read: Arc<AtomicBool>,
}

impl<S> Watched<S> {
    fn new(inner: S, limit: Duration, part_read: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            limit,
            stalled: None,
            part_read,
        }
    }

    /// An answer has begun once any of it is written.
    fn wrote(&self, result: &Poll<io::Result<usize>>) {
        if matches!(result, Poll::Ready(Ok(n)) if *n > 0) {
            self.part_read.store(false, Ordering::Relaxed);
        }
    }

    /// Passes `result` on, turning a stall past the limit into an error.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        result: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        if result.is_ready() {
            self.stalled = None;
            return result;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stalled.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the client read nothing for {} s", limit.as_secs_f64()),
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.part_read.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(&result);
        self.watch(cx, result)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(&result);
        self.watch(cx, result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, result)
    }
}

/// The stream, and a second handle on its socket to answer on once hyper
/// has given the stream up (none when out of descriptors: the connection is
/// served anyway, only without that 408).
fn with_spare(stream: TcpStream) -> io::Result<(TcpStream, Option<std::net::TcpStream>)> {
    let stream = stream.into_std()?;
    let spare = stream.try_clone().ok();
    Ok((TcpStream::from_std(stream)?, spare))
}

/// Best effort: the socket is fresh from a read, so its send buffer has
/// room for these few bytes, and a client gone away is no one's loss.
fn answer_head_timeout(spare: &std::net::TcpStream, limit: Duration) {
    let body = format!(
        "the request head was not read within {} s",
        limit.as_secs_f64()
    );
    let answer = format!(
        "HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut socket = spare;
    if let Err(err) = socket.write_all(answer.as_bytes()) {
        tracing::debug!(%err, "search engine: the 408 was not sent");
    }
    let _ = spare.shutdown(Shutdown::Write);
}
