//! The audit trail: one JSON event for every push, delete and token
//! request, allowed or refused. Events go to their own file (JSON lines,
//! appended by a writer thread so the runtime never waits on the disk) or
//! to the log stream under target `audit`. docs/OPERATIONS.md has the schema
//! and queries.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use anyhow::Context;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What was done.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A chart or provenance upload.
    Push,
    /// A chart version deletion.
    Delete,
    /// A token request.
    Token,
}

/// One audit event. Absent facts are left out, never guessed.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// RFC 3339, UTC, when the event was written.
    pub time: String,
    pub action: Action,
    /// `allowed` (forwarded or issued) or `refused` (by the gateway).
    pub outcome: &'static str,
    /// Why it was refused, from the same set as the metrics' reasons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    pub request_id: String,
    pub trace_id: String,
    /// The client's address.
    pub client: String,
    /// The account or token subject, `-` when none was proven.
    pub subject: String,
    /// How the credential was presented.
    pub credential: &'static str,
    /// The `jti` of the token used, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_jti: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Uploaded file name (the multipart part's, as sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// SHA-256 of the uploaded chart (or the whole body when it is not
    /// multipart), computed while it streamed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// The status the client got: ChartMuseum's when forwarded.
    pub status: u16,
    /// Token requests: the grant form, and the scopes asked and granted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes_requested: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes_granted: Option<Vec<String>>,
    /// The `jti` of the token issued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_jti: Option<String>,
}

impl Event {
    /// An event stamped now, with the request's identity; the rest is
    /// filled in by the caller.
    pub fn new(action: Action, request_id: &str, trace_id: &str, client: String) -> Event {
        Event {
            time: OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
            action,
            outcome: "allowed",
            reason: None,
            request_id: request_id.to_owned(),
            trace_id: trace_id.to_owned(),
            client,
            subject: "-".to_owned(),
            credential: "none",
            token_jti: None,
            repo: None,
            chart: None,
            version: None,
            file: None,
            sha256: None,
            size: None,
            status: 0,
            grant: None,
            scopes_requested: None,
            scopes_granted: None,
            issued_jti: None,
        }
    }
}

/// Where events go.
#[derive(Debug)]
pub enum Audit {
    /// To the log stream, target `audit`.
    Log,
    /// To a file, through a writer thread.
    File {
        path: PathBuf,
        lines: mpsc::Sender<String>,
    },
}

impl Audit {
    /// Events to the log stream (`file` = `None`) or appended to `file`.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub fn open(file: Option<&Path>) -> anyhow::Result<Audit> {
        let Some(path) = file else {
            return Ok(Audit::Log);
        };
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("audit.file: cannot append to {}", path.display()))?;
        let (lines, rx) = mpsc::channel::<String>();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("chartgate-audit".into())
            .spawn(move || {
                // Ends when every sender is gone (the gateway was replaced).
                for line in rx {
                    if let Err(e) = out
                        .write_all(line.as_bytes())
                        .and_then(|()| out.flush())
                    {
                        tracing::error!(file = %shown, error = %e, "audit: write failed; event lost");
                    }
                }
            })
            .context("audit: starting the writer thread")?;
        Ok(Audit::File {
            path: path.to_owned(),
            lines,
        })
    }

    /// Records `event`.
    pub fn record(&self, event: &Event) {
        let json = match serde_json::to_string(event) {
            Ok(json) => json,
            Err(e) => {
                tracing::error!(error = %e, "audit: cannot encode an event");
                return;
            }
        };
        match self {
            Audit::Log => tracing::info!(target: "audit", event = %json, "audit"),
            Audit::File { path, lines } => {
                if lines.send(json + "\n").is_err() {
                    tracing::error!(file = %path.display(), "audit: writer thread gone; event lost");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_appended_as_json_lines() {
        let path =
            std::env::temp_dir().join(format!("chartgate-audit-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let audit = Audit::open(Some(&path)).unwrap();
        let mut event = Event::new(Action::Push, "rid-1", "trace", "127.0.0.1".into());
        event.chart = Some("mychart".into());
        event.status = 201;
        audit.record(&event);
        event.request_id = "rid-2".into();
        audit.record(&event);
        drop(audit);
        let mut text = String::new();
        for _ in 0..100 {
            text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() == 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["action"], "push");
        assert_eq!(lines[0]["chart"], "mychart");
        assert_eq!(lines[1]["request_id"], "rid-2");
        assert!(
            lines[0].get("sha256").is_none(),
            "absent facts are left out"
        );
        std::fs::remove_file(&path).unwrap();
    }
}
