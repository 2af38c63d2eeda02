//! Form uploads (`multipart/form-data`, as helm-push and `curl -F` send
//! them) when a publish rule applies: which parts are accepted, and the
//! form re-encoded for ChartMuseum.
//!
//! ChartMuseum files every `chart` and `prov` file part (and those of its
//! configurable field names) under the name it reads from the content, and
//! Go's form parser differs from ours in corners (line endings, encoded
//! parameters, quoted-printable parts). So only `chart` and `prov` file
//! parts are accepted, at most one of each, and ChartMuseum receives a
//! form written here, with a fresh boundary: it parses exactly the bytes
//! that were checked, and its closing delimiter, which starts ChartMuseum's
//! work, is written only once every part has passed.

use bytes::Bytes;
use hyper::header::HeaderValue;

/// A form part ChartMuseum files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Field `chart`: a chart archive.
    Chart,
    /// Field `prov`: a provenance file.
    Prov,
}

/// Whether ChartMuseum treats a request with `content_type` as a form:
/// gin compares the media type, cut at the first space or `;`, exactly
/// (`gin@v1.10.0:context.go`, `filterFlags`).
pub fn is_form(content_type: Option<&HeaderValue>) -> bool {
    content_type.is_some_and(|v| {
        v.as_bytes()
            .split(|b| *b == b' ' || *b == b';')
            .next()
            .is_some_and(|media| media == b"multipart/form-data")
    })
}

/// The parts seen so far, and the next one's verdict.
#[derive(Debug, Default)]
pub struct Parts {
    chart: bool,
    prov: bool,
}

impl Parts {
    /// Accepts a part named `name` with file name `file`.
    ///
    /// # Errors
    /// Not a `chart` or `prov` file part, or a second one; safe to show.
    pub fn accept(&mut self, name: Option<&str>, file: Option<&str>) -> Result<Part, String> {
        let (part, seen) = match name {
            Some("chart") => (Part::Chart, &mut self.chart),
            Some("prov") => (Part::Prov, &mut self.prov),
            other => {
                return Err(format!(
                    "form field {:?} is not accepted here: send a chart and its provenance as the file fields chart and prov",
                    other.unwrap_or("")
                ))
            }
        };
        if file.is_none_or(str::is_empty) {
            return Err(format!(
                "form field {name:?} is not a file",
                name = name.unwrap_or("")
            ));
        }
        if std::mem::replace(seen, true) {
            return Err(format!("form field {:?} is sent twice", name.unwrap_or("")));
        }
        Ok(part)
    }
}

/// Writes the form ChartMuseum receives.
#[derive(Debug)]
pub struct Encoder {
    boundary: String,
    parts: usize,
}

impl Default for Encoder {
    fn default() -> Encoder {
        Encoder {
            boundary: format!("chartgate-{}", uuid::Uuid::new_v4().simple()),
            parts: 0,
        }
    }
}

impl Encoder {
    /// The request's new `Content-Type`.
    pub fn content_type(&self) -> HeaderValue {
        // The boundary is ASCII letters, digits and `-`.
        HeaderValue::from_str(&format!("multipart/form-data; boundary={}", self.boundary))
            .unwrap_or(HeaderValue::from_static("multipart/form-data"))
    }

    /// The delimiter and headers that open `part`. The file name keeps only
    /// the last path segment of the client's, in safe bytes (ChartMuseum
    /// does not use it; the audit trail shows it).
    pub fn open(&mut self, part: Part, file: &str) -> Bytes {
        let base = file.rsplit(['/', '\\']).next().unwrap_or("");
        let safe: String = base
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '-'))
            .collect();
        let (field, fallback) = match part {
            Part::Chart => ("chart", "chart.tgz"),
            Part::Prov => ("prov", "chart.tgz.prov"),
        };
        let file = if safe.is_empty() { fallback } else { &safe };
        let lead = if self.parts == 0 { "" } else { "\r\n" };
        self.parts += 1;
        Bytes::from(format!(
            "{lead}--{b}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            b = self.boundary
        ))
    }

    /// The closing delimiter.
    pub fn close(&self) -> Bytes {
        Bytes::from(format!("\r\n--{}--\r\n", self.boundary))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_detection_follows_gin() {
        let is = |v: &'static str| is_form(Some(&HeaderValue::from_static(v)));
        assert!(is("multipart/form-data; boundary=x"));
        assert!(is("multipart/form-data"));
        assert!(!is("Multipart/Form-Data; boundary=x"));
        assert!(!is("multipart/form-datax; boundary=x"));
        assert!(!is("application/gzip"));
        assert!(!is_form(None));
    }

    #[test]
    fn only_one_chart_and_one_prov_file_part() {
        let mut parts = Parts::default();
        assert_eq!(parts.accept(Some("chart"), Some("/tmp/x")), Ok(Part::Chart));
        assert_eq!(parts.accept(Some("prov"), Some("x.prov")), Ok(Part::Prov));
        assert!(parts.accept(Some("chart"), Some("y")).is_err());
        let mut parts = Parts::default();
        assert!(parts.accept(Some("package"), Some("x.tgz")).is_err());
        assert!(parts.accept(None, Some("x.tgz")).is_err());
        assert!(parts.accept(Some("chart"), None).is_err());
        assert!(parts.accept(Some("chart"), Some("")).is_err());
    }

    #[tokio::test]
    async fn the_encoded_form_parses_back() {
        let mut e = Encoder::default();
        let mut body = Vec::new();
        body.extend_from_slice(&e.open(Part::Chart, "/tmp/helm-push-1/a\"b.tgz"));
        body.extend_from_slice(b"\x1f\x8bchart");
        body.extend_from_slice(&e.open(Part::Prov, ""));
        body.extend_from_slice(b"-----BEGIN PGP");
        body.extend_from_slice(&e.close());
        let ct = e.content_type();
        let boundary = multer::parse_boundary(ct.to_str().unwrap()).unwrap();
        let stream = futures_util::stream::once(async move {
            Ok::<_, std::convert::Infallible>(Bytes::from(body))
        });
        let mut form = multer::Multipart::new(stream, boundary);
        let chart = form.next_field().await.unwrap().unwrap();
        assert_eq!(
            (chart.name(), chart.file_name()),
            (Some("chart"), Some("ab.tgz"))
        );
        assert_eq!(chart.bytes().await.unwrap(), &b"\x1f\x8bchart"[..]);
        let prov = form.next_field().await.unwrap().unwrap();
        assert_eq!(prov.file_name(), Some("chart.tgz.prov"));
        assert_eq!(prov.bytes().await.unwrap(), &b"-----BEGIN PGP"[..]);
        assert!(form.next_field().await.unwrap().is_none());
    }
}
