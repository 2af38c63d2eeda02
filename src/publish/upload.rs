//! Reading the chart an upload carries while it streams, before anything
//! is forwarded: `POST /api/:repo/charts` as a raw archive or a form, and
//! `POST /api/:repo/prov`.
//!
//! A task reads the client's body. Until the chart is known it holds what
//! it would forward (at most `Limits::window` bytes; past that the upload
//! is refused), then reports the chart and waits for the gateway's
//! decision. Refused, it drains the body; allowed, it forwards what it held
//! and streams the rest, reading on to the end: the archive's every entry,
//! the form's every part. Should the rest contradict what was decided on
//! (a second `Chart.yaml`, a part naming another chart), the forwarded body
//! fails before its end, so ChartMuseum, which reads a body to its end
//! before it stores anything, stores nothing, and the [`Verdict`] says why.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use hyper::header::HeaderValue;
use tokio::sync::{mpsc, oneshot};

use super::form::{self, Encoder, Part, Parts};
use super::{prov, Identity, PublishRefusal};
use crate::body::BoxError;
use gate::{Gate, Sink};
use scan::Scan;

/// Chunks in flight to ChartMuseum.
const OUT_DEPTH: usize = 4;
/// Chunks in flight to the archive reader.
const SCAN_DEPTH: usize = 2;

/// Which upload route a body came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /api/:repo/charts`: a raw archive or a form.
    Charts,
    /// `POST /api/:repo/prov`: a raw provenance file.
    Prov,
}

/// Bounds on reading one upload.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes held back before the chart is known.
    pub window: u64,
    /// Most bytes, and longest time, read from a refused upload's body.
    pub drain_bytes: u64,
    pub drain_timeout: Duration,
}

/// An upload being read; nothing is forwarded until [`Upload::forward`].
#[derive(Debug)]
pub struct Upload {
    first: oneshot::Receiver<Result<Identity, String>>,
    go: Option<oneshot::Sender<bool>>,
    drained: oneshot::Receiver<bool>,
    out: Outbound,
    verdict: Verdict,
    content_type: Option<HeaderValue>,
}

/// An allowed upload, ready to go upstream.
#[derive(Debug)]
pub struct Forwarded {
    /// The body ChartMuseum receives (length unknown: send it chunked).
    pub body: Outbound,
    /// Set when the rest of the upload turned out refused.
    pub verdict: Verdict,
    /// The `Content-Type` to send instead of the client's (a re-encoded form).
    pub content_type: Option<HeaderValue>,
}

/// A refusal found after forwarding began, if any.
#[derive(Debug, Clone, Default)]
pub struct Verdict(Arc<Mutex<Option<String>>>);

impl Verdict {
    fn set(&self, why: String) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
    }

    /// The refusal, if the reader found one. It is set before the body
    /// fails, so it is there once the upstream exchange has failed.
    pub fn refusal(&self) -> Option<PublishRefusal> {
        let why = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        why.map(PublishRefusal::Unreadable)
    }
}

/// The body forwarded to ChartMuseum.
#[derive(Debug)]
pub struct Outbound {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
}

impl Body for Outbound {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }
}

/// How the body is read.
enum Mode {
    Archive,
    Prov,
    Form(String),
    Broken(&'static str),
}

impl Upload {
    /// Starts reading `body`, which came to `route` with `content_type`.
    pub fn open<B>(
        body: B,
        route: Route,
        content_type: Option<&HeaderValue>,
        limits: Limits,
    ) -> Upload
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let encoder = Encoder::default();
        let mode = match route {
            Route::Prov => Mode::Prov,
            Route::Charts if form::is_form(content_type) => content_type
                .and_then(|v| v.to_str().ok())
                .and_then(|v| multer::parse_boundary(v).ok())
                .map_or(
                    Mode::Broken("the form's Content-Type has no boundary"),
                    Mode::Form,
                ),
            Route::Charts => Mode::Archive,
        };
        let content_type = matches!(mode, Mode::Form(_)).then(|| encoder.content_type());
        let (out_tx, rx) = mpsc::channel(OUT_DEPTH);
        let (first_tx, first) = oneshot::channel();
        let (go, go_rx) = oneshot::channel();
        let (drained_tx, drained) = oneshot::channel();
        let verdict = Verdict::default();
        let reader = Reader {
            sink: Sink {
                tx: Some(out_tx),
                held: Vec::new(),
                held_bytes: 0,
                window: limits.window,
                open: false,
            },
            gate: Gate {
                first: Some(first_tx),
                go: Some(go_rx),
                known: None,
            },
            verdict: verdict.clone(),
        };
        tokio::spawn(reader.run(body, mode, encoder, drained_tx, limits));
        Upload {
            first,
            go: Some(go),
            drained,
            out: Outbound { rx },
            verdict,
            content_type,
        }
    }

    /// The chart the upload carries, once read.
    ///
    /// # Errors
    /// It cannot be determined within the limits.
    pub async fn identity(&mut self) -> Result<Identity, PublishRefusal> {
        match (&mut self.first).await {
            Ok(Ok(identity)) => Ok(identity),
            Ok(Err(why)) => Err(PublishRefusal::Unreadable(why)),
            Err(_) => Err(PublishRefusal::Unreadable(
                "the upload could not be read".to_owned(),
            )),
        }
    }

    /// Refuses the upload: its body is drained, nothing is forwarded.
    /// Returns whether the body ended within the drain limits.
    pub async fn discard(mut self) -> bool {
        if let Some(go) = self.go.take() {
            let _ = go.send(false);
        }
        self.drained.await.unwrap_or(false)
    }

    /// Lets the upload through.
    pub fn forward(mut self) -> Forwarded {
        if let Some(go) = self.go.take() {
            let _ = go.send(true);
        }
        Forwarded {
            body: self.out,
            verdict: self.verdict,
            content_type: self.content_type,
        }
    }
}

/// Why reading stopped early.
enum Stop {
    /// The upload is refused (before forwarding) or contradicts itself
    /// (after); the message says why.
    Unreadable(String),
    /// The gateway refused the chart.
    Declined,
    /// ChartMuseum stopped reading the forwarded body.
    Gone,
}

/// The reading task's state.
struct Reader {
    sink: Sink,
    gate: Gate,
    verdict: Verdict,
}

impl Reader {
    async fn run<B>(
        mut self,
        mut body: B,
        mode: Mode,
        encoder: Encoder,
        drained: oneshot::Sender<bool>,
        limits: Limits,
    ) where
        B: Body<Data = Bytes> + Send + Unpin,
        B::Error: Into<BoxError>,
    {
        let read = match mode {
            Mode::Archive => self.chart(&mut Source::Body(&mut body)).await,
            Mode::Prov => self.prov(&mut Source::Body(&mut body)).await,
            Mode::Form(boundary) => self.form(&mut body, boundary, encoder).await,
            Mode::Broken(why) => Err(Stop::Unreadable(why.to_owned())),
        };
        let refused = match read {
            Ok(()) => {
                self.sink.tx = None;
                return;
            }
            Err(Stop::Gone) => return,
            Err(Stop::Unreadable(why)) if self.gate.known.is_some() => {
                self.verdict.set(why.clone());
                let _ = self.sink.send(Err(why.into())).await;
                return;
            }
            Err(Stop::Unreadable(why)) => Some(why),
            Err(Stop::Declined) => None,
        };
        if let (Some(why), Some(first)) = (refused, self.gate.first.take()) {
            let _ = first.send(Err(why));
        }
        let ended = crate::body::drain(&mut body, limits.drain_bytes, limits.drain_timeout).await;
        let _ = drained.send(ended);
    }

    /// A chart archive: its identity, read on a blocking thread as the
    /// bytes stream by, and checked to its last entry.
    async fn chart<B>(&mut self, source: &mut Source<'_, '_, B>) -> Result<(), Stop>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut scan = Scan::start();
        while let Some(chunk) = source.next().await? {
            self.sink.emit(chunk.clone()).await?;
            scan.feed(chunk).await;
            if self.gate.known.is_none() {
                if let Some(identity) = scan.first() {
                    self.gate.pass(identity, &mut self.sink).await?;
                } else if scan.is_done() {
                    break;
                }
            }
        }
        let identity = scan.finish().await?;
        self.gate.pass(identity, &mut self.sink).await
    }

    /// A provenance file: read whole (it is small), then named.
    async fn prov<B>(&mut self, source: &mut Source<'_, '_, B>) -> Result<(), Stop>
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: Into<BoxError>,
    {
        let mut all = Vec::new();
        while let Some(chunk) = source.next().await? {
            if all.len() + chunk.len() > prov::MAX_PROV_BYTES {
                return Err(Stop::Unreadable(format!(
                    "the provenance file is larger than {} bytes",
                    prov::MAX_PROV_BYTES
                )));
            }
            all.extend_from_slice(&chunk);
            self.sink.emit(chunk).await?;
        }
        let identity = prov::identity(&all).map_err(Stop::Unreadable)?;
        self.gate.pass(identity, &mut self.sink).await
    }

    /// A form: each accepted part read as its kind and re-encoded; the
    /// closing delimiter only once every part has passed.
    async fn form<B>(
        &mut self,
        body: &mut B,
        boundary: String,
        mut encoder: Encoder,
    ) -> Result<(), Stop>
    where
        B: Body<Data = Bytes> + Send + Unpin,
        B::Error: Into<BoxError>,
    {
        let unreadable = |e: multer::Error| Stop::Unreadable(format!("the form is malformed: {e}"));
        let stream = futures_util::stream::poll_fn(|cx| poll_data(body, cx));
        let mut multipart = multer::Multipart::new(stream, boundary);
        let mut parts = Parts::default();
        while let Some(mut field) = multipart.next_field().await.map_err(unreadable)? {
            let part = parts
                .accept(field.name(), field.file_name())
                .map_err(Stop::Unreadable)?;
            let head = encoder.open(part, field.file_name().unwrap_or(""));
            self.sink.emit(head).await?;
            let mut source = Source::<B>::Field(&mut field);
            match part {
                Part::Chart => self.chart(&mut source).await?,
                Part::Prov => self.prov(&mut source).await?,
            }
        }
        if self.gate.known.is_none() {
            return Err(Stop::Unreadable(
                "the form holds no chart or provenance file".to_owned(),
            ));
        }
        self.sink.emit(encoder.close()).await
    }
}

/// Where a chart's or provenance file's bytes come from.
enum Source<'a, 'f, B> {
    /// The whole body.
    Body(&'a mut B),
    /// One form part.
    Field(&'a mut multer::Field<'f>),
}

impl<B> Source<'_, '_, B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    async fn next(&mut self) -> Result<Option<Bytes>, Stop> {
        match self {
            Source::Body(body) => std::future::poll_fn(|cx| poll_data(body, cx))
                .await
                .transpose()
                .map_err(|e| Stop::Unreadable(format!("the upload broke off: {e}"))),
            Source::Field(field) => field
                .chunk()
                .await
                .map_err(|e| Stop::Unreadable(format!("the form is malformed: {e}"))),
        }
    }
}

/// The next data chunk of `body`, skipping trailers.
fn poll_data<B>(body: &mut B, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BoxError>>>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    loop {
        match ready!(Pin::new(&mut *body).poll_frame(cx)) {
            None => return Poll::Ready(None),
            Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    return Poll::Ready(Some(Ok(data)));
                }
            }
        }
    }
}

mod gate;
mod scan;
#[cfg(test)]
mod tests;
