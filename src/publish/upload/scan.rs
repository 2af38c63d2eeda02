//! An archive read on a blocking thread while its bytes stream by: the
//! reader ([`crate::publish::archive`]) pulls the chunks it is fed through
//! a blocking `Read`, and tells the chart as soon as it has read it.

use std::io::Read;

use bytes::{Buf, Bytes};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Stop, SCAN_DEPTH};
use crate::publish::{archive, Identity};

/// An archive being read on a blocking thread from the chunks fed to it.
pub(super) struct Scan {
    tx: Option<mpsc::Sender<Bytes>>,
    first: oneshot::Receiver<Identity>,
    task: JoinHandle<Result<Identity, String>>,
}

impl Scan {
    pub(super) fn start() -> Scan {
        let (tx, rx) = mpsc::channel(SCAN_DEPTH);
        let (first_tx, first) = oneshot::channel();
        let task = tokio::task::spawn_blocking(move || {
            let feed = Feed {
                rx,
                chunk: Bytes::new(),
            };
            archive::identity(feed, |identity| {
                let _ = first_tx.send(identity.clone());
            })
        });
        Scan {
            tx: Some(tx),
            first,
            task,
        }
    }

    /// Hands `chunk` to the reader, unless it has finished.
    pub(super) async fn feed(&mut self, chunk: Bytes) {
        if let Some(tx) = &self.tx {
            if tx.send(chunk).await.is_err() {
                self.tx = None;
            }
        }
    }

    /// The identity, if `Chart.yaml` has been read.
    pub(super) fn first(&mut self) -> Option<Identity> {
        self.first.try_recv().ok()
    }

    pub(super) fn is_done(&self) -> bool {
        self.task.is_finished()
    }

    /// The archive's identity, once the reader has seen the end.
    pub(super) async fn finish(mut self) -> Result<Identity, Stop> {
        self.tx = None;
        match self.task.await {
            Ok(read) => read.map_err(Stop::Unreadable),
            Err(e) => Err(Stop::Unreadable(format!("reading the chart failed: {e}"))),
        }
    }
}

/// A blocking `Read` over the chunks fed to a [`Scan`]; the end of the
/// feed is the end of the archive.
struct Feed {
    rx: mpsc::Receiver<Bytes>,
    chunk: Bytes,
}

impl Read for Feed {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}
