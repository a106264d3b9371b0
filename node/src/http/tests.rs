//! The API's wire contract, checked in-process through the router.

use super::*;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

struct Api {
    router: Router,
    controller: Option<AggregatorController>,
    _status: watch::Sender<NodeStatus>,
}

fn api(initial: Option<bool>, token: Option<&str>) -> Api {
    let mut registry = Registry::default();
    let controller = initial.map(|on| AggregatorController::new(on, &mut registry));
    let (tx, rx) = watch::channel(NodeStatus { epoch: 2, view: 9, ..NodeStatus::default() });
    let state = ApiState {
        aggregator: controller.clone(),
        admin_token: token.map(Arc::from),
        registry: Arc::new(registry),
        status: rx,
    };
    Api { router: router(state), controller, _status: tx }
}

struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    allow: Option<String>,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

async fn call(api: &Api, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = api
        .router
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let header =
        |name| response.headers().get(name).map(|v: &HeaderValue| v.to_str().unwrap().to_owned());
    let (status, content_type, allow) =
        (response.status(), header(header::CONTENT_TYPE), header(header::ALLOW));
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec();
    Reply { status, content_type, allow, body }
}

const JSON: Option<&str> = Some("application/json");

#[tokio::test]
async fn health_is_leanspec_exact() {
    let api = api(Some(false), None);
    let r = call(&api, "GET", "/lean/v0/health", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.content_type.as_deref(), JSON);
    assert_eq!(r.json(), json!({"status": "healthy", "service": "lean-rpc-api"}));
}

#[tokio::test]
async fn get_and_post_aggregator_follow_leanspec() {
    for initial in [false, true] {
        for enabled in [false, true] {
            let api = api(Some(initial), None);
            let r = call(&api, "GET", "/lean/v0/admin/aggregator", &[], "").await;
            assert_eq!((r.status, r.content_type.as_deref()), (StatusCode::OK, JSON));
            assert_eq!(r.json(), json!({"is_aggregator": initial}));

            let body = json!({"enabled": enabled}).to_string();
            let r = call(
                &api,
                "POST",
                "/lean/v0/admin/aggregator",
                &[("content-type", "application/json")],
                &body,
            )
            .await;
            assert_eq!((r.status, r.content_type.as_deref()), (StatusCode::OK, JSON));
            assert_eq!(r.json(), json!({"is_aggregator": enabled, "previous": initial}));
            assert_eq!(api.controller.as_ref().unwrap().is_enabled(), enabled);
        }
    }
}

#[tokio::test]
async fn malformed_toggles_are_400_whatever_the_content_type_and_change_nothing() {
    let bodies = [
        "",
        "   ",
        "not json",
        "[]",
        "true",
        "\"enabled\"",
        "{}",
        r#"{"enable": true}"#,
        r#"{"enabled": 1}"#,
        r#"{"enabled": 0}"#,
        r#"{"enabled": "true"}"#,
        r#"{"enabled": null}"#,
        r#"{"enabled": [true]}"#,
        r#"{"enabled": true"#,
    ];
    let content_types: [&[(&str, &str)]; 3] =
        [&[], &[("content-type", "text/plain")], &[("content-type", "application/json")]];
    for body in bodies {
        for headers in content_types {
            let api = api(Some(true), None);
            let r = call(&api, "POST", "/lean/v0/admin/aggregator", headers, body).await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "body {body:?} headers {headers:?}");
            assert_eq!(r.content_type.as_deref(), JSON);
            assert!(r.json()["error"].is_string());
            assert!(
                api.controller.as_ref().unwrap().is_enabled(),
                "refused {body:?} changed the role"
            );
        }
    }
}

#[tokio::test]
async fn other_verbs_are_405_with_allow() {
    let api = api(Some(false), None);
    for method in ["PUT", "DELETE", "PATCH"] {
        let r = call(&api, method, "/lean/v0/admin/aggregator", &[], r#"{"enabled": true}"#).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(r.content_type.as_deref(), JSON);
        assert_eq!(r.allow.as_deref(), Some("GET, POST"));
    }
    let r = call(&api, "POST", "/lean/v0/health", &[], "").await;
    assert_eq!((r.status, r.allow.as_deref()), (StatusCode::METHOD_NOT_ALLOWED, Some("GET")));
    assert!(!api.controller.as_ref().unwrap().is_enabled());
}

#[tokio::test]
async fn no_controller_is_503() {
    let api = api(None, None);
    let r = call(&api, "GET", "/lean/v0/admin/aggregator", &[], "").await;
    assert_eq!((r.status, r.content_type.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, JSON));
    let r = call(&api, "POST", "/lean/v0/admin/aggregator", &[], r#"{"enabled": true}"#).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn admin_token_guards_admin_routes_only() {
    let api = api(Some(false), Some("s3cret"));
    let toggle = r#"{"enabled": true}"#;
    for headers in
        [&[][..], &[("authorization", "Bearer wrong")][..], &[("authorization", "s3cret")][..]]
    {
        let r = call(&api, "POST", "/lean/v0/admin/aggregator", headers, toggle).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert_eq!(r.content_type.as_deref(), JSON);
        assert!(!api.controller.as_ref().unwrap().is_enabled());
    }
    let r = call(
        &api,
        "POST",
        "/lean/v0/admin/aggregator",
        &[("authorization", "Bearer s3cret")],
        toggle,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(api.controller.as_ref().unwrap().is_enabled());
    let r = call(&api, "GET", "/lean/v0/health", &[], "").await;
    assert_eq!(r.status, StatusCode::OK, "health stays open");
}

#[tokio::test]
async fn metrics_and_status_are_served() {
    let api = api(Some(true), None);
    let r = call(&api, "GET", "/metrics", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&r.body).contains("lean_is_aggregator 1"));
    let r = call(&api, "GET", "/lean/v0/status", &[], "").await;
    assert_eq!((r.status, r.content_type.as_deref()), (StatusCode::OK, JSON));
    let body = r.json();
    assert_eq!((body["epoch"].as_u64(), body["view"].as_u64()), (Some(2), Some(9)));
    assert!(body["seconds_since_last_certificate"].is_null());
    let r = call(&api, "GET", "/nope", &[], "").await;
    assert_eq!((r.status, r.content_type.as_deref()), (StatusCode::NOT_FOUND, JSON));
}
