//! The upload reader over in-memory bodies cut into small chunks, as a
//! network delivers them.

use std::convert::Infallible;

use http_body_util::{BodyExt, StreamBody};

use super::*;
use crate::publish::archive::fixture::{chart, tgz};
use crate::publish::prov::fixture::prov;

type TestBody =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// `bytes` as a body of `size`-byte chunks.
fn chunked(bytes: &[u8], size: usize) -> TestBody {
    let frames: Vec<_> = bytes
        .chunks(size)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames))
}

fn limits(window: u64) -> Limits {
    Limits {
        window,
        drain_bytes: 64 * 1024 * 1024,
        drain_timeout: Duration::from_secs(5),
    }
}

fn form_type() -> HeaderValue {
    HeaderValue::from_static("multipart/form-data; boundary=XyZ")
}

/// A form as helm-push writes it: parts of `(field, file name, bytes)`.
fn form(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, file, bytes) in parts {
        body.extend_from_slice(
            format!("--XyZ\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{file}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    body
}

fn id(name: &str, version: &str) -> Identity {
    Identity {
        name: name.into(),
        version: version.into(),
    }
}

/// Incompressible bytes (xorshift), so a gzip stream is as long as its input.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The parts of a forwarded form, as ChartMuseum's parser sees them.
async fn parts_of(forwarded: Forwarded) -> Vec<(String, Bytes)> {
    let ct = forwarded
        .content_type
        .expect("a form gets a new Content-Type");
    let boundary = multer::parse_boundary(ct.to_str().unwrap()).unwrap();
    let bytes = forwarded.body.collect().await.unwrap().to_bytes();
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(bytes) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut out = Vec::new();
    while let Some(field) = form.next_field().await.unwrap() {
        let name = field.name().unwrap().to_owned();
        out.push((name, field.bytes().await.unwrap()));
    }
    out
}

#[tokio::test]
async fn a_helm_push_form_with_a_temporary_file_name_is_named_by_its_archive() {
    let archive = chart("billing", "1.0.0");
    let body = form(&[("chart", "/tmp/helm-push-2934/chart-archive", &archive)]);
    let mut upload = Upload::open(
        chunked(&body, 7),
        Route::Charts,
        Some(&form_type()),
        limits(4096),
    );
    assert_eq!(upload.identity().await.unwrap(), id("billing", "1.0.0"));
    let forwarded = upload.forward();
    let verdict = forwarded.verdict.clone();
    let parts = parts_of(forwarded).await;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].0, "chart");
    assert!(
        parts[0].1 == archive,
        "the archive reached upstream changed"
    );
    assert!(verdict.refusal().is_none());
}

#[tokio::test]
async fn a_well_named_file_is_still_named_by_its_content() {
    // ChartMuseum files a form part under the name in its Chart.yaml.
    let archive = chart("other", "2.0.0");
    let body = form(&[("chart", "billing-1.0.0.tgz", &archive)]);
    let mut upload = Upload::open(
        chunked(&body, 64),
        Route::Charts,
        Some(&form_type()),
        limits(4096),
    );
    assert_eq!(upload.identity().await.unwrap(), id("other", "2.0.0"));
}

#[tokio::test]
async fn a_raw_archive_is_forwarded_byte_identical() {
    let mut archive = chart("billing-api", "0.3.0-rc.1");
    archive.extend_from_slice(&[0; 512]);
    let content_type = HeaderValue::from_static("application/gzip");
    let mut upload = Upload::open(
        chunked(&archive, 13),
        Route::Charts,
        Some(&content_type),
        limits(4096),
    );
    assert_eq!(
        upload.identity().await.unwrap(),
        id("billing-api", "0.3.0-rc.1")
    );
    let forwarded = upload.forward();
    assert!(forwarded.content_type.is_none());
    let sent = forwarded.body.collect().await.unwrap().to_bytes();
    assert!(
        sent == archive,
        "{} bytes forwarded of {}",
        sent.len(),
        archive.len()
    );
    assert!(forwarded.verdict.refusal().is_none());
}

#[tokio::test]
async fn a_provenance_upload_is_named_by_its_signed_block() {
    let file = prov("billing", "1.0.0");
    let mut upload = Upload::open(chunked(&file, 5), Route::Prov, None, limits(4096));
    assert_eq!(upload.identity().await.unwrap(), id("billing", "1.0.0"));
    let sent = upload.forward().body.collect().await.unwrap().to_bytes();
    assert!(sent == file);
}

#[tokio::test]
async fn an_upload_without_chart_yaml_is_refused_and_drained() {
    let archive = tgz(&[("billing/values.yaml", b"a: 1\n")]);
    for (body, ct) in [
        (archive.clone(), None),
        (form(&[("chart", "/tmp/x", &archive)]), Some(form_type())),
        (
            form(&[("package", "billing-1.0.0.tgz", &chart("billing", "1.0.0"))]),
            Some(form_type()),
        ),
        (b"--XyZ--\r\n".to_vec(), Some(form_type())),
    ] {
        let mut upload = Upload::open(chunked(&body, 9), Route::Charts, ct.as_ref(), limits(4096));
        let refused = upload.identity().await.unwrap_err();
        assert!(
            matches!(refused, PublishRefusal::Unreadable(_)),
            "{refused:?}"
        );
        assert!(upload.discard().await, "the refused body was not drained");
    }
}

#[tokio::test]
async fn a_chart_yaml_past_the_window_is_refused() {
    let late = tgz(&[
        ("billing/big.bin", &noise(200 * 1024)),
        ("billing/Chart.yaml", b"name: billing\nversion: 1.0.0\n"),
    ]);
    let mut upload = Upload::open(chunked(&late, 4096), Route::Charts, None, limits(64 * 1024));
    let refused = upload.identity().await.unwrap_err().to_string();
    assert!(refused.contains("first 65536 bytes"), "{refused}");
    assert!(upload.discard().await);
    // The same archive within a larger window is fine.
    let mut upload = Upload::open(
        chunked(&late, 4096),
        Route::Charts,
        None,
        limits(1024 * 1024),
    );
    assert_eq!(upload.identity().await.unwrap(), id("billing", "1.0.0"));
}

#[tokio::test]
async fn a_declined_upload_is_drained_and_never_forwarded() {
    let archive = chart("other", "1.0.0");
    let mut upload = Upload::open(chunked(&archive, 100), Route::Charts, None, limits(4096));
    assert_eq!(upload.identity().await.unwrap(), id("other", "1.0.0"));
    let out = std::mem::replace(
        &mut upload.out,
        Outbound {
            rx: mpsc::channel(1).1,
        },
    );
    assert!(upload.discard().await);
    let forwarded = out.collect().await.unwrap().to_bytes();
    assert!(
        forwarded.is_empty(),
        "{} bytes went upstream",
        forwarded.len()
    );
}

#[tokio::test]
async fn a_later_contradiction_fails_the_forwarded_body() {
    // A second part naming another chart, after the first was allowed.
    let body = form(&[
        ("chart", "/tmp/a", &chart("billing", "1.0.0")),
        ("prov", "/tmp/a.prov", &prov("other", "1.0.0")),
    ]);
    // A second Chart.yaml far into the archive, past the window.
    let archive = tgz(&[
        ("billing/Chart.yaml", b"name: billing\nversion: 1.0.0\n"),
        ("billing/big.bin", &noise(200 * 1024)),
        ("other/Chart.yaml", b"name: other\nversion: 1.0.0\n"),
    ]);
    for (body, ct, why) in [
        (body, Some(form_type()), "other"),
        (archive, None, "more than one Chart.yaml"),
    ] {
        let mut upload = Upload::open(
            chunked(&body, 1000),
            Route::Charts,
            ct.as_ref(),
            limits(64 * 1024),
        );
        assert_eq!(upload.identity().await.unwrap(), id("billing", "1.0.0"));
        let forwarded = upload.forward();
        let verdict = forwarded.verdict.clone();
        let mut out = forwarded.body;
        let mut sent = Vec::new();
        let failed = loop {
            match out.frame().await {
                Some(Ok(frame)) => sent.extend_from_slice(&frame.into_data().unwrap()),
                Some(Err(_)) => break true,
                None => break false,
            }
        };
        assert!(failed, "the forwarded body ended normally");
        assert!(!sent.ends_with(b"--\r\n"), "the form was closed");
        let refusal = verdict.refusal().expect("no verdict");
        assert!(refusal.to_string().contains(why), "{refusal}");
    }
}
