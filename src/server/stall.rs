//! Stall timeouts on downstream connections: [`Stall`] wraps an accepted
//! stream (plain or TLS) and fails it with `TimedOut` when the client stops
//! sending or stops reading. hyper then closes the connection, which drops
//! the request in flight and with it the upstream connection.
//!
//! Only stalls count, never totals: a client that drips its upload or reads
//! a large chart slowly is never cut off while bytes keep moving.

use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long each direction of a connection may stall.
#[derive(Debug, Clone, Copy)]
pub struct StallTimeouts {
    /// A pending read with nothing moving either way (a silent client).
    pub read: Duration,
    /// A pending write (a client that stopped reading).
    pub write: Duration,
}

pin_project! {
    /// One direction's clock. A stall starts at the first `Pending` after
    /// progress and ends at the next progress; the connection fails once
    /// one lasts `timeout`. Progress only clears a field, and a new stall
    /// costs one clock read: the timer keeps whatever deadline it holds and
    /// is moved only when that deadline passes during a later stall, so a
    /// busy connection re-arms it about once per `timeout`, not per request.
    #[derive(Debug)]
    struct Clock {
        timeout: Duration,
        // When the current stall began; `None` while bytes are moving.
        stalled_since: Option<Instant>,
        // The timer last polled with this waker (the connection's task).
        waker: Option<Waker>,
        // Holds this stall's deadline, or an earlier stall's, which is
        // sooner: it then fires early, once, and is moved on.
        #[pin]
        timer: Sleep,
    }
}

impl Clock {
    fn new(timeout: Duration) -> Clock {
        Clock {
            timeout,
            stalled_since: None,
            waker: None,
            // tokio registers the timer only when first polled.
            timer: tokio::time::sleep_until(Instant::now() + timeout),
        }
    }

    /// Called when an operation returned `Pending`: starts the stall if it
    /// is new, and fails once it has lasted `timeout`.
    fn poll_stalled(self: Pin<&mut Self>, cx: &mut Context<'_>, what: &str) -> io::Result<()> {
        let mut this = self.project();
        let deadline = *this.stalled_since.get_or_insert_with(Instant::now) + *this.timeout;
        // The timer wakes the task it was last polled by; while that is
        // still this task and the timer has not fired, there is nothing to
        // check, and polling it again would only cost.
        let registered = this.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if registered && !this.timer.is_elapsed() {
            return Ok(());
        }
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                *this.waker = Some(cx.waker().clone());
                return Ok(());
            }
            if this.timer.deadline() >= deadline {
                // The next attempt gets a stall of its own, as with blocking
                // socket timeouts.
                *this.stalled_since = None;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("downstream {what} stalled for {:?}", this.timeout),
                ));
            }
            // An earlier stall's deadline passed: move on to this one's.
            this.timer.as_mut().reset(deadline);
        }
    }

    fn stop(self: Pin<&mut Self>) {
        *self.project().stalled_since = None;
    }
}

pin_project! {
    /// A stream whose reads and writes fail with `TimedOut` once stalled.
    ///
    /// A read stall counts only while nothing is written either: during a
    /// long download the client legitimately sends nothing, and hyper still
    /// keeps a read pending to notice it leave. So the read clock measures a
    /// connection on which nothing moves (a silent client, a stalled upload,
    /// an idle keep-alive), and the write clock a client that stops reading.
    #[derive(Debug)]
    pub struct Stall<S> {
        #[pin]
        io: S,
        #[pin]
        read: Clock,
        #[pin]
        write: Clock,
    }
}

impl<S> Stall<S> {
    /// Wraps `io`; no timer is registered until an operation stalls.
    pub fn new(io: S, timeouts: StallTimeouts) -> Stall<S> {
        Stall {
            io,
            read: Clock::new(timeouts.read),
            write: Clock::new(timeouts.write),
        }
    }
}

impl<S: AsyncRead> AsyncRead for Stall<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let poll = this.io.poll_read(cx, buf);
        match poll {
            Poll::Pending => this.read.poll_stalled(cx, "read")?,
            Poll::Ready(_) => this.read.stop(),
        }
        poll
    }
}

impl<S: AsyncWrite> Stall<S> {
    /// Accounts for a write's outcome: bytes written end both directions'
    /// stalls (see [`Stall`]).
    fn wrote(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        match poll {
            Poll::Pending => this.write.poll_stalled(cx, "write")?,
            Poll::Ready(Ok(n)) if n > 0 => {
                this.write.stop();
                this.read.stop();
            }
            Poll::Ready(_) => {}
        }
        poll
    }

    /// Accounts for a flush or shutdown. Both callers (hyper's h1 buffer and
    /// the h2 codec) flush only once their writes have drained, so `Ready`
    /// here ends a write stall; it says nothing about the client, so the
    /// read clock keeps running.
    fn flushed(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<()>>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        match poll {
            Poll::Pending => this.write.poll_stalled(cx, "write")?,
            Poll::Ready(_) => this.write.stop(),
        }
        poll
    }
}

impl<S: AsyncWrite> AsyncWrite for Stall<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = self.as_mut().project().io.poll_write(cx, buf);
        self.wrote(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = self.as_mut().project().io.poll_write_vectored(cx, bufs);
        self.wrote(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        // hyper writes headers and body chunks in one call when it can.
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = self.as_mut().project().io.poll_flush(cx);
        self.flushed(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = self.as_mut().project().io.poll_shutdown(cx);
        self.flushed(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const T: Duration = Duration::from_millis(300);

    fn timeouts() -> StallTimeouts {
        StallTimeouts { read: T, write: T }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out_after_the_read_timeout() {
        let (ours, _theirs) = tokio::io::duplex(64);
        let mut s = Box::pin(Stall::new(ours, timeouts()));
        let start = Instant::now();
        let err = s.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_near(start.elapsed(), T);
    }

    /// Paused time advances in whole milliseconds.
    fn assert_near(elapsed: Duration, expected: Duration) {
        assert!(
            elapsed >= expected && elapsed <= expected + Duration::from_millis(2),
            "{elapsed:?} is not {expected:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_stall_is_timed_from_its_own_start() {
        // The timer still holds the first stall's deadline when the second
        // stall starts; the second must get its full timeout all the same.
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut s = Box::pin(Stall::new(ours, timeouts()));
        let start = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(T / 2).await;
            theirs.write_all(b"x").await.unwrap();
            std::future::pending::<()>().await;
        });
        s.read_exact(&mut [0u8; 1]).await.unwrap();
        assert_near(start.elapsed(), T / 2);
        let err = s.read(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_near(start.elapsed(), T / 2 + T);
        // And a further attempt gets a full timeout of its own.
        let err = s.read(&mut [0u8; 1]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_near(start.elapsed(), T / 2 + 2 * T);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dripping_peer_never_times_out() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let mut s = Box::pin(Stall::new(ours, timeouts()));
        tokio::spawn(async move {
            for b in 0..20u8 {
                tokio::time::sleep(T - Duration::from_millis(10)).await;
                theirs.write_all(&[b]).await.unwrap();
            }
        });
        let mut got = Vec::new();
        for _ in 0..20 {
            let mut byte = [0u8; 1];
            s.read_exact(&mut byte).await.unwrap();
            got.push(byte[0]);
        }
        assert_eq!(got, (0..20).collect::<Vec<u8>>());
    }

    #[tokio::test(start_paused = true)]
    async fn writes_hold_off_the_read_clock_but_not_their_own() {
        // The peer reads steadily and sends nothing: reads stay pending
        // far longer than the read timeout, yet nothing fails.
        let (ours, mut theirs) = tokio::io::duplex(16);
        let s = Stall::new(ours, timeouts());
        let (mut r, mut w) = tokio::io::split(s);
        let reader = tokio::spawn(async move { r.read(&mut [0u8; 1]).await });
        let drain = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            for _ in 0..20 {
                tokio::time::sleep(T / 3).await;
                theirs.read_exact(&mut buf).await.unwrap();
            }
            theirs
        });
        for _ in 0..20 {
            w.write_all(&[7u8; 16]).await.unwrap();
        }
        let _theirs = drain.await.unwrap();
        assert!(!reader.is_finished(), "the read clock ran during writes");
        // Now the peer stops reading: the write stalls and fails.
        let start = Instant::now();
        w.write_all(&[7u8; 16]).await.unwrap();
        let err = w.write_all(&[7u8; 16]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_near(start.elapsed(), T);
        reader.abort();
    }
}
