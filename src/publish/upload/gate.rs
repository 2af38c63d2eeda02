//! The two ends of the upload reader's decision: the [`Gate`] that reports
//! the chart once and waits for the gateway's verdict, then holds every
//! later part to the same chart; and the [`Sink`] that holds the forwarded
//! body back until the gate opens.

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use super::Stop;
use crate::body::BoxError;
use crate::publish::Identity;

/// Reports the chart once, waits for the decision, and holds every later
/// part to the same chart.
pub(super) struct Gate {
    pub(super) first: Option<oneshot::Sender<Result<Identity, String>>>,
    pub(super) go: Option<oneshot::Receiver<bool>>,
    pub(super) known: Option<Identity>,
}

impl Gate {
    pub(super) async fn pass(&mut self, identity: Identity, sink: &mut Sink) -> Result<(), Stop> {
        if let Some(known) = &self.known {
            return if *known == identity {
                Ok(())
            } else {
                Err(Stop::Unreadable(format!(
                    "the upload names two charts, {known} and {identity}"
                )))
            };
        }
        if let Some(first) = self.first.take() {
            let _ = first.send(Ok(identity.clone()));
        }
        let go = match self.go.take() {
            Some(decision) => decision.await.unwrap_or(false),
            None => false,
        };
        if !go {
            return Err(Stop::Declined);
        }
        self.known = Some(identity);
        sink.open().await
    }
}

/// The forwarded body's sending end, holding chunks back until the gate
/// opens.
pub(super) struct Sink {
    pub(super) tx: Option<mpsc::Sender<Result<Bytes, BoxError>>>,
    pub(super) held: Vec<Bytes>,
    pub(super) held_bytes: u64,
    pub(super) window: u64,
    pub(super) open: bool,
}

impl Sink {
    pub(super) async fn emit(&mut self, chunk: Bytes) -> Result<(), Stop> {
        if self.open {
            return self.send(Ok(chunk)).await;
        }
        self.held_bytes += chunk.len() as u64;
        if self.held_bytes > self.window {
            return Err(Stop::Unreadable(format!(
                "the chart's name and version are not within the upload's first {} bytes",
                self.window
            )));
        }
        self.held.push(chunk);
        Ok(())
    }

    async fn open(&mut self) -> Result<(), Stop> {
        self.open = true;
        for chunk in std::mem::take(&mut self.held) {
            self.send(Ok(chunk)).await?;
        }
        Ok(())
    }

    pub(super) async fn send(&mut self, item: Result<Bytes, BoxError>) -> Result<(), Stop> {
        match &self.tx {
            Some(tx) => tx.send(item).await.map_err(|_| Stop::Gone),
            None => Err(Stop::Gone),
        }
    }
}
