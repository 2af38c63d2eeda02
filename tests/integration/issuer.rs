//! The token endpoint over HTTP: the seed's exact request, the superset, and
//! every refusal with its RFC 6749 body.

use bytes::Bytes;
use hyper::Request;

use crate::common::*;

fn post(
    url: String,
    auth: Option<&str>,
    content_type: Option<&str>,
    body: &'static str,
) -> Request<TestBody> {
    let mut b = Request::post(url);
    if let Some(a) = auth {
        b = b.header("authorization", a);
    }
    if let Some(ct) = content_type {
        b = b.header("content-type", ct);
    }
    b.body(full(Bytes::from_static(body.as_bytes()))).unwrap()
}

#[tokio::test]
async fn the_seed_curl_line_gets_a_full_token_reply() {
    let (_up, gw) = setup().await;
    // curl -s -X POST -H "Authorization: Bearer $KEY" "$REALM?grant_type=client_credentials&scope=$SCOPE"
    let url = gw.url(
        "/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull",
    );
    let bearer = format!("Bearer {MASTER_KEY}");
    let r = send(post(url, Some(&bearer), None, "")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), "application/json; charset=utf-8");
    assert_eq!(r.header("cache-control"), "no-store");
    let body = r.json();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(body["token"], token);
    assert_eq!(body["expires_in"], 300);
    assert_eq!(body["scope"], "artifact-repository:org1/repo1:pull");
    let issued_at = body["issued_at"].as_str().unwrap();
    assert!(
        issued_at.ends_with('Z') && issued_at.contains('T'),
        "RFC 3339: {issued_at}"
    );

    let (header, claims) = decode_parts(token);
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["kid"].as_str().unwrap().len(), 43);
    assert_eq!(claims["iss"], "chartgate");
    assert_eq!(claims["sub"], "master");
    assert_eq!(claims["aud"], "localhost:8080");
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(claims["exp"].as_u64().unwrap(), iat + 300);
    assert_eq!(claims["nbf"].as_u64().unwrap(), iat);
    assert_eq!(claims["jti"].as_str().unwrap().len(), 36);
    assert_eq!(
        claims["access"],
        serde_json::json!([{"type": "artifact-repository", "name": "org1/repo1", "actions": ["pull"]}])
    );
}

#[tokio::test]
async fn form_body_basic_credentials_and_several_scopes() {
    let (_up, gw) = setup().await;
    let basic = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("master:{MASTER_KEY}")
        )
    );
    let r = send(post(
        gw.url("/oauth/token?scope=artifact-repository:org2/repo2:push"),
        Some(&basic),
        Some("application/x-www-form-urlencoded"),
        "grant_type=client_credentials&scope=artifact-repository%3Aorg1%2Frepo1%3Apull%2Cpush+artifact-repository%3Arepo%3Apull",
    ))
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["scope"],
        "artifact-repository:org2/repo2:push artifact-repository:org1/repo1:pull,push artifact-repository:repo:pull"
    );
    let (_, claims) = decode_parts(r.json()["access_token"].as_str().unwrap());
    assert_eq!(claims["access"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn refusals_follow_the_seed_order_and_rfc_6749() {
    let (_up, gw) = setup().await;
    let good = format!("Bearer {MASTER_KEY}");
    let seed =
        "/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull";
    let cases: Vec<(Request<TestBody>, u16, &str)> = vec![
        (post(gw.url(seed), None, None, ""), 401, "invalid_client"),
        (post(gw.url(seed), Some("Bearer wrong-key-wrong-key-1234"), None, ""), 401, "invalid_client"),
        (post(gw.url(seed), Some(MASTER_KEY), None, ""), 401, "invalid_client"),
        (post(gw.url(seed), Some(&format!("bearer {MASTER_KEY}x")), None, ""), 401, "invalid_client"),
        // Credentials are checked before anything else, as in the seed.
        (post(gw.url("/oauth/token?grant_type=authorization_code"), Some("Bearer nope"), None, ""), 401, "invalid_client"),
        (post(gw.url("/oauth/token?grant_type=authorization_code"), Some(&good), None, ""), 400, "unsupported_grant_type"),
        (post(gw.url("/oauth/token?scope=artifact-repository:org1/repo1:pull"), Some(&good), None, ""), 400, "invalid_request"),
        (post(gw.url("/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1"), Some(&good), None, ""), 400, "invalid_scope"),
        (post(gw.url("/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/..:pull"), Some(&good), None, ""), 400, "invalid_scope"),
        (post(gw.url("/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:delete"), Some(&good), None, ""), 400, "invalid_scope"),
        (post(gw.url("/oauth/token?grant_type=client_credentials&grant_type=client_credentials"), Some(&good), None, ""), 400, "invalid_request"),
        (post(gw.url("/oauth/token?grant_type=client_credentials&client_secret=x"), Some(&good), None, ""), 400, "invalid_request"),
    ];
    for (req, status, code) in cases {
        let what = format!("{} {:?}", req.uri(), req.headers().get("authorization"));
        let r = send(req).await;
        assert_eq!(r.status, status, "{what}: {}", r.text());
        assert_eq!(r.json()["error"], code, "{what}");
        assert_eq!(r.header("cache-control"), "no-store", "{what}");
    }
}

#[tokio::test]
async fn a_wrong_key_is_never_echoed() {
    let (_up, gw) = setup().await;
    let url = gw.url(
        "/oauth/token?grant_type=client_credentials&scope=artifact-repository:org1/repo1:pull",
    );
    let r = send(post(
        url,
        Some("Bearer %s%d-guess-of-the-master-key"),
        None,
        "",
    ))
    .await;
    assert_eq!(r.status, 401);
    assert!(!r.text().contains("guess"), "{}", r.text());
    assert_eq!(r.header("www-authenticate"), "Basic realm=\"chartgate\"");
}

#[tokio::test]
async fn other_methods_are_refused() {
    let (_up, gw) = setup().await;
    let req = Request::put(gw.url("/oauth/token?grant_type=client_credentials"))
        .header("authorization", format!("Bearer {MASTER_KEY}"))
        .body(full(Bytes::new()))
        .unwrap();
    let r = send(req).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), "GET, POST");
}

#[tokio::test]
async fn an_oversized_form_is_refused() {
    let (_up, gw) = setup().await;
    let big: &'static str = Box::leak(
        format!("grant_type=client_credentials&pad={}", "x".repeat(9000)).into_boxed_str(),
    );
    let r = send(post(
        gw.url("/oauth/token"),
        Some(&format!("Bearer {MASTER_KEY}")),
        Some("application/x-www-form-urlencoded"),
        big,
    ))
    .await;
    assert_eq!(r.status, 413);
}
