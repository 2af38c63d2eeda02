//! The audit events of the proxied routes that change the repository:
//! which routes they are, and what each event says, completed with the
//! upload inspector's findings once ChartMuseum has answered; and the
//! refusal of such a request, recorded before its body is drained.

use std::time::Duration;

use hyper::Request;

use super::{Exchange, Gateway, Refusal, DRAIN_TIMEOUT};
use crate::auth::authn::Principal;
use crate::auth::route::Handler;
use crate::error::GatewayError;
use crate::proxy::inspect::Upload;
use crate::telemetry::audit::{self, Event};

/// How long an audit event waits, after ChartMuseum answered, for the
/// upload inspector to finish hashing.
const INSPECT_WAIT: Duration = Duration::from_secs(5);

impl Gateway {
    /// Writes `event` once the upload inspector (if any) has its answer,
    /// without holding up the response.
    pub(super) fn finish_event(
        &self,
        mut event: Box<Event>,
        inspected: Option<tokio::task::JoinHandle<Option<Upload>>>,
    ) {
        let audit = self.audit.clone();
        tokio::spawn(async move {
            if let Some(task) = inspected {
                if let Ok(Ok(Some(upload))) = tokio::time::timeout(INSPECT_WAIT, task).await {
                    // The publish stage's reading of the archive wins over a
                    // name taken from the file name.
                    if let (None, Some((chart, version))) = (&event.chart, upload.chart_version()) {
                        event.chart = Some(chart);
                        event.version = Some(version);
                    }
                    event.file = upload.file;
                    event.sha256 = Some(upload.sha256);
                    event.size = Some(upload.size);
                }
            }
            audit.record(&event);
        });
    }

    /// Refuses a request with `error`: records its `event` as refused, then
    /// reads the body (bounded) so a client still uploading sees the answer
    /// rather than a reset (helm-push reports "broken pipe").
    pub(super) async fn refuse<B>(
        &self,
        body: B,
        event: Option<Box<Event>>,
        error: GatewayError,
    ) -> Refusal
    where
        B: http_body::Body + Unpin,
    {
        let limit = self.upstream.max_upload_bytes();
        self.refuse_with(crate::body::drain(body, limit, DRAIN_TIMEOUT), event, error)
            .await
    }

    /// [`Gateway::refuse`], with the body drained by `drained`, which says
    /// whether it ended within bounds.
    pub(super) async fn refuse_with(
        &self,
        drained: impl std::future::Future<Output = bool>,
        event: Option<Box<Event>>,
        error: GatewayError,
    ) -> Refusal {
        if let Some(mut event) = event {
            refused(&mut event, &error);
            self.audit.record(&event);
        }
        Refusal {
            error,
            close: !drained.await,
        }
    }

    /// An audit event for this request, with what is known before auth.
    pub(super) fn event<B>(
        &self,
        action: audit::Action,
        req: &Request<B>,
        x: &Exchange<'_>,
    ) -> Box<Event> {
        // Boxed: the event rides in request futures that every pull moves
        // whole, and most requests carry none.
        let mut event = Box::new(Event::new(
            action,
            x.request_id.to_str().unwrap_or("-"),
            &x.trace.id().to_string(),
            x.conn.peer.ip().to_string(),
        ));
        event.repo.clone_from(&x.access.repo);
        if action == audit::Action::Delete {
            // `/api/:repo/charts/:name/:version`
            let mut segments = req.uri().path().rsplit('/');
            event.version = segments.next().map(str::to_owned);
            event.chart = segments.next().map(str::to_owned);
        }
        event
    }
}

/// Marks `event` refused by `error`, with the reason the metrics give it
/// or, for a publish rule, the rule's.
pub(super) fn refused(event: &mut Event, error: &GatewayError) {
    event.outcome = "refused";
    event.reason = match error {
        GatewayError::Publish(refusal) => Some(refusal.reason()),
        e => e.decision().map(|d| d.labels().1),
    };
    event.status = error.status().as_u16();
}

/// Which routes the audit trail records.
pub(super) fn audited_action(handler: Option<Handler>) -> Option<audit::Action> {
    match handler? {
        Handler::ApiUpload | Handler::ApiProvenance => Some(audit::Action::Push),
        Handler::ApiDelete => Some(audit::Action::Delete),
        _ => None,
    }
}

pub(super) fn token_jti(principal: &Principal) -> Option<String> {
    match principal {
        Principal::Token(claims) => claims.jti.clone(),
        _ => None,
    }
}
