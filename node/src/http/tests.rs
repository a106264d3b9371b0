//! The API's wire contract, checked in-process through the router.

use super::*;
use axum::body::Body;
use axum::http::Request;
use tower::ServiceExt;

/// Where the served API is bound in these tests (loopback, as by default).
const LOCAL: &str = "127.0.0.1:5052";

struct Api {
    router: Router,
    controller: Option<AggregatorController>,
    status: watch::Sender<NodeStatus>,
}

impl Api {
    fn is_aggregator(&self) -> bool {
        self.controller.as_ref().expect("a controller").is_enabled()
    }
}

fn state(initial: Option<bool>, token: Option<&str>) -> (ApiState, watch::Sender<NodeStatus>) {
    let mut registry = Registry::default();
    let controller = initial.map(|on| AggregatorController::new(on, &mut registry));
    let (tx, rx) = watch::channel(NodeStatus { epoch: 2, view: 9, ..NodeStatus::default() });
    let state = ApiState {
        aggregator: controller,
        admin_token: token.map(Arc::from),
        registry: Arc::new(registry),
        status: rx,
        disk: None,
    };
    (state, tx)
}

/// The API as served on [`LOCAL`]: routes plus the Host/Origin guard and the timeouts.
fn api(initial: Option<bool>, token: Option<&str>) -> Api {
    api_bound(initial, token, LOCAL)
}

fn api_bound(initial: Option<bool>, token: Option<&str>, bind: &str) -> Api {
    let (state, status) = state(initial, token);
    let controller = state.aggregator.clone();
    let options = ServeOptions::new(bind.parse().unwrap());
    Api { router: app(state, None, &options), controller, status }
}

struct Reply {
    status: StatusCode,
    content_type: Option<String>,
    allow: Option<String>,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

async fn call(api: &Api, method: &str, uri: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    send(&api.router, method, uri, headers, Body::from(body.to_owned())).await
}

async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router.clone().oneshot(request.body(body).unwrap()).await.unwrap();
    let header =
        |name| response.headers().get(name).map(|v: &HeaderValue| v.to_str().unwrap().to_owned());
    let (status, content_type, allow) =
        (response.status(), header(header::CONTENT_TYPE), header(header::ALLOW));
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap().to_vec();
    Reply { status, content_type, allow, headers, body }
}

const JSON: Option<&str> = Some("application/json");
const AGGREGATOR: &str = "/lean/v0/admin/aggregator";
const JSON_BODY: (&str, &str) = ("content-type", "application/json");

#[tokio::test]
async fn health_is_unhealthy_when_the_disk_is_below_its_minimum() {
    let (mut state, status) = state(Some(false), None);
    let dir = tempfile::tempdir().unwrap();
    // A minimum no filesystem here meets, read once as the watcher would.
    let disk = Arc::new(crate::disk::DiskWatch::new(dir.path().to_owned(), u64::MAX >> 20));
    disk.read().unwrap();
    state.disk = Some(disk);
    let api = Api {
        router: app(state, None, &ServeOptions::new(LOCAL.parse().unwrap())),
        controller: None,
        status,
    };
    let r = call(&api, "GET", "/lean/v0/health", &[], "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["status"], "unhealthy");
    let reason = r.json()["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("--min-free-disk-mib"), "{reason}");
}

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
async fn malformed_json_toggles_are_400_and_change_nothing() {
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
    let content_types: [&[(&str, &str)]; 2] =
        [&[JSON_BODY], &[("content-type", "application/json; charset=utf-8")]];
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
        &[("authorization", "Bearer s3cret"), JSON_BODY],
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
    // Without an Accept for OpenMetrics: the Prometheus text format (what promtool and curl
    // read); with one, as Prometheus sends it: OpenMetrics.
    assert_eq!(r.content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(!String::from_utf8_lossy(&r.body).contains("# EOF"));
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let r = call(&api, "GET", "/metrics", &[("accept", accept)], "").await;
    assert!(r.content_type.as_deref().unwrap().starts_with("application/openmetrics-text"));
    assert!(String::from_utf8_lossy(&r.body).ends_with("# EOF\n"));
    let r = call(&api, "GET", "/lean/v0/status", &[], "").await;
    assert_eq!((r.status, r.content_type.as_deref()), (StatusCode::OK, JSON));
    let body = r.json();
    assert_eq!((body["epoch"].as_u64(), body["view"].as_u64()), (Some(2), Some(9)));
    assert!(body["seconds_since_last_certificate"].is_null());
    let r = call(&api, "GET", "/nope", &[], "").await;
    assert_eq!((r.status, r.content_type.as_deref()), (StatusCode::NOT_FOUND, JSON));
}

// ----- item by item of the security review's HTTP section (T26-T32) -----

/// T26: a body not labelled `application/json` is what a page can post with no CORS
/// preflight; it is refused before it is parsed.
#[tokio::test]
async fn a_toggle_not_labelled_json_is_415_and_changes_nothing() {
    let valid = r#"{"enabled": false}"#;
    let labels: [&[(&str, &str)]; 6] = [
        &[],
        &[("content-type", "text/plain")],
        &[("content-type", "text/plain;charset=UTF-8")],
        &[("content-type", "application/x-www-form-urlencoded")],
        &[("content-type", "multipart/form-data; boundary=x")],
        &[("content-type", "application/jsonp")],
    ];
    for headers in labels {
        let api = api(Some(true), None);
        let r = call(&api, "POST", AGGREGATOR, headers, valid).await;
        assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{headers:?}");
        assert_eq!(r.content_type.as_deref(), JSON);
        assert!(r.json()["error"].as_str().unwrap().contains("application/json"));
        assert!(api.is_aggregator(), "{headers:?} switched the role off");
    }
    for label in ["application/json", "Application/JSON; charset=utf-8"] {
        let api = api(Some(true), None);
        let r = call(&api, "POST", AGGREGATOR, &[("content-type", label)], valid).await;
        assert_eq!(r.status, StatusCode::OK, "{label}");
        assert!(!api.is_aggregator());
    }
}

/// T26: a browser page on another origin (a CSRF attempt) is refused whatever it sends.
#[tokio::test]
async fn a_foreign_origin_is_403_and_changes_nothing() {
    let valid = r#"{"enabled": false}"#;
    let foreign: [&[(&str, &str)]; 5] = [
        &[("origin", "http://evil.example"), ("host", LOCAL), JSON_BODY],
        &[("origin", "null"), ("host", LOCAL), JSON_BODY],
        &[("origin", "http://127.0.0.1:8080"), ("host", LOCAL), JSON_BODY],
        &[("origin", "https://127.0.0.1:5052"), ("host", LOCAL), JSON_BODY],
        &[("origin", "http://127.0.0.1:5052"), JSON_BODY],
    ];
    for headers in foreign {
        let api = api(Some(true), None);
        let r = call(&api, "POST", AGGREGATOR, headers, valid).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{headers:?}");
        assert_eq!(r.content_type.as_deref(), JSON);
        assert!(api.is_aggregator(), "{headers:?} switched the role off");
        let r = call(&api, "GET", "/lean/v0/status", headers, "").await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "cross-origin read {headers:?}");
    }
    // The node's own page (same origin) and clients that send no Origin are served.
    let api = api(Some(true), None);
    let own = [("origin", "http://127.0.0.1:5052"), ("host", LOCAL), JSON_BODY];
    let r = call(&api, "POST", AGGREGATOR, &own, valid).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!api.is_aggregator());
}

/// T27: a DNS-rebinding page reaches the loopback API under its own name; every route
/// refuses a Host that is not a loopback name, with 421.
#[tokio::test]
async fn a_foreign_host_is_421_on_every_route_when_bound_to_loopback() {
    let routes = [
        ("GET", "/lean/v0/health"),
        ("GET", "/lean/v0/status"),
        ("GET", "/metrics"),
        ("GET", AGGREGATOR),
        ("POST", AGGREGATOR),
        ("GET", "/nope"),
    ];
    for host in ["evil.example", "evil.example:5052", "localhost.evil.example", "10.1.2.3:5052"] {
        for (method, uri) in routes {
            let api = api(Some(true), None);
            let headers = [("host", host), JSON_BODY];
            let r = call(&api, method, uri, &headers, r#"{"enabled": false}"#).await;
            assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "{method} {uri} Host {host}");
            assert_eq!(r.content_type.as_deref(), JSON);
            assert!(api.is_aggregator(), "{method} {uri} Host {host} switched the role");
        }
    }
    let api = api(Some(true), None);
    for host in ["localhost", "localhost:8080", "127.0.0.1:5052", "127.0.0.1", "[::1]:5052"] {
        let r = call(&api, "GET", "/lean/v0/health", &[("host", host)], "").await;
        assert_eq!(r.status, StatusCode::OK, "Host {host}");
    }
    let r = call(&api, "GET", "/lean/v0/health", &[("host", LOCAL), ("host", LOCAL)], "").await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST, "two Host headers");
    // Bound beyond loopback (where config.rs requires a token) any name is served.
    let api = api_bound(Some(true), Some("t"), "0.0.0.0:5052");
    let r = call(&api, "GET", "/lean/v0/health", &[("host", "node.example:5052")], "").await;
    assert_eq!(r.status, StatusCode::OK);
}

/// T28: every wrong way of presenting the token is 401 and changes nothing; the comparison
/// is of SHA-256 digests (`admin::bearer_matches`), so a token of another length takes the
/// same path as one of the right length. (The time itself is not measured here.)
#[tokio::test]
async fn every_wrong_token_is_401_and_changes_nothing() {
    let api = api(Some(true), Some("s3cret"));
    let off = r#"{"enabled": false}"#;
    let wrong: [&[(&str, &str)]; 8] = [
        &[JSON_BODY],
        &[("authorization", "Bearer s3creT"), JSON_BODY],
        &[("authorization", "Bearer s3cre"), JSON_BODY],
        &[("authorization", "Bearer s3cret-and-more"), JSON_BODY],
        &[("authorization", "bearer s3cret"), JSON_BODY],
        &[("authorization", "Bearer "), JSON_BODY],
        &[("authorization", "Bearer s3cret"), ("authorization", "Bearer wrong"), JSON_BODY],
        &[("authorization", "Bearer s3cret"), ("authorization", "Bearer s3cret"), JSON_BODY],
    ];
    for headers in wrong {
        let r = call(&api, "POST", AGGREGATOR, headers, off).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{headers:?}");
        assert!(api.is_aggregator(), "{headers:?} switched the role off");
    }
    let right = [("authorization", "Bearer s3cret"), JSON_BODY];
    assert_eq!(call(&api, "POST", AGGREGATOR, &right, off).await.status, StatusCode::OK);
    assert!(!api.is_aggregator());
}

/// T29: a body over the limit is 413 (axum's default would read 2 MB), even when it is a valid
/// toggle; a body at the limit is read.
#[tokio::test]
async fn a_body_over_the_limit_is_413_and_changes_nothing() {
    let padded = |len: usize| {
        let head = r#"{"enabled": false, "pad": ""#;
        let tail = r#""}"#;
        format!("{head}{}{tail}", "a".repeat(len - head.len() - tail.len()))
    };
    let api = api(Some(true), None);
    let r = call(&api, "POST", AGGREGATOR, &[JSON_BODY], &padded(BODY_LIMIT + 1)).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(r.content_type.as_deref(), JSON);
    assert!(r.json()["error"].as_str().unwrap().contains("65536"));
    assert!(api.is_aggregator());
    let r = call(&api, "POST", AGGREGATOR, &[JSON_BODY], &padded(BODY_LIMIT)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!api.is_aggregator());
}

/// T29: repeated keys are refused (serde_json would keep the last, a proxy may keep the
/// first), at any depth; invalid UTF-8 is refused too.
#[tokio::test]
async fn repeated_keys_and_invalid_utf8_are_400_and_change_nothing() {
    let bodies: [&[u8]; 5] = [
        br#"{"enabled":true,"enabled":false}"#,
        br#"{"enabled":false,"enabled":false}"#,
        br#"{"enabled":false,"note":{"a":1,"a":2}}"#,
        br#"{"enabled":false,"note":[{"a":1,"a":1}]}"#,
        b"{\"enabled\":false,\"note\":\"\xff\"}",
    ];
    for body in bodies {
        let api = api(Some(true), None);
        let r =
            send(&api.router, "POST", AGGREGATOR, &[JSON_BODY], Body::from(body.to_vec())).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", String::from_utf8_lossy(body));
        assert_eq!(r.content_type.as_deref(), JSON);
        assert!(api.is_aggregator(), "{} switched the role", String::from_utf8_lossy(body));
    }
    let api = api(Some(true), None);
    let r =
        call(&api, "POST", AGGREGATOR, &[JSON_BODY], r#"{"enabled":true,"enabled":false}"#).await;
    assert!(r.json()["error"].as_str().unwrap().contains(r#"duplicate key "enabled""#));
    // Distinct keys in distinct objects are fine.
    let r = call(&api, "POST", AGGREGATOR, &[JSON_BODY], r#"{"enabled":false,"n":{"enabled":1}}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

/// L5: health follows the node's status instead of always answering "healthy".
#[tokio::test]
async fn health_is_503_with_a_reason_when_the_node_is_not_following() {
    let api = api(Some(false), None);
    let now = crate::node::now_ms();
    let silent = HealthPolicy::default().max_silence.as_millis() as u64;
    api.status.send_replace(NodeStatus { last_certificate_ms: Some(now), ..NodeStatus::default() });
    let r = call(&api, "GET", "/lean/v0/health", &[], "").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({"status": "healthy", "service": "lean-rpc-api"}));

    let stale = NodeStatus { last_certificate_ms: Some(now - 3 * silent), ..NodeStatus::default() };
    api.status.send_replace(stale);
    let r = call(&api, "GET", "/lean/v0/health", &[], "").await;
    assert_eq!((r.status, r.content_type.as_deref()), (StatusCode::SERVICE_UNAVAILABLE, JSON));
    let body = r.json();
    assert_eq!(
        (body["status"].as_str(), body["service"].as_str()),
        (Some("unhealthy"), Some("lean-rpc-api"))
    );
    assert!(body["reason"].as_str().unwrap().contains("no certificate for"), "{body}");

    let halted = NodeStatus {
        last_certificate_ms: Some(now),
        halted: Some("the store refused a write".into()),
        ..NodeStatus::default()
    };
    api.status.send_replace(halted);
    let r = call(&api, "GET", "/lean/v0/health", &[], "").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(r.json()["reason"].as_str().unwrap().contains("the store refused a write"));
}

/// T31 / L8: the dashboard forbids scripts, frames, remote resources and type sniffing.
#[tokio::test]
async fn telemetry_carries_a_strict_csp_and_nosniff() {
    let (state, status) = state(Some(false), None);
    let store = Arc::new(crate::store::MemoryStore::new());
    let pool = PoolApi {
        pool: Arc::new(crate::pool::OperatorPool::open(store).unwrap()),
        status: status.subscribe(),
        explorer_url: Arc::from("https://explorer/address/"),
        profile_url: Arc::from("https://el/operator/"),
        history: crate::status::History::default(),
        avs: None,
    };
    let router = app(state, Some(pool), &ServeOptions::new(LOCAL.parse().unwrap()));
    let r = send(&router, "GET", "/telemetry", &[], Body::empty()).await;
    assert_eq!(r.status, StatusCode::OK);
    let header = |name: &str| r.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    let csp = header("content-security-policy").expect("a CSP");
    assert!(csp.contains("default-src 'none'") && csp.contains("style-src 'unsafe-inline'"));
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(header("x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"));
    // The page uses nothing the policy forbids.
    let html = String::from_utf8(r.body).unwrap();
    assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("style=\""));
    // And every other response is marked nosniff.
    let r = send(&router, "GET", "/lean/v0/status", &[], Body::empty()).await;
    assert_eq!(r.headers.get("x-content-type-options").unwrap(), "nosniff");
}

// ----- the server itself (L4, T30), over real loopback sockets -----

/// Serves the API on an ephemeral loopback port with `connections`.
async fn serve_locally(
    connections: ConnectionLimits,
) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (state, status) = state(Some(false), None);
    // A status that follows the chain, whatever the test's duration.
    status.send_replace(NodeStatus {
        last_certificate_ms: Some(u64::MAX / 2),
        ..NodeStatus::default()
    });
    let options = ServeOptions { connections, ..ServeOptions::new(addr) };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve_with(listener, state, None, options, shutdown.clone()));
    (addr, shutdown, task)
}

const GET_HEALTH: &[u8] = b"GET /lean/v0/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

/// Reads one health response (its head, then the JSON body, which ends the response).
async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    while !seen.ends_with(b"}") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole response: {:?}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8(seen).unwrap()
}

/// Turns a hang into a failure; no duration is asserted.
async fn eventually<F: std::future::Future>(what: &str, future: F) -> F::Output {
    let guard = Duration::from_secs(60);
    tokio::time::timeout(guard, future).await.unwrap_or_else(|_| panic!("{what}: still waiting"))
}

/// T30: a client that opens a connection and never completes a request head (slowloris), or
/// sends nothing at all, is disconnected; `axum::serve` set no timer and kept both forever.
#[tokio::test]
async fn connections_that_never_finish_a_request_head_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let limits = ConnectionLimits {
        header_read_timeout: Duration::from_millis(200),
        ..ConnectionLimits::default()
    };
    let (addr, shutdown, task) = serve_locally(limits).await;
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut partial = tokio::net::TcpStream::connect(addr).await.unwrap();
    partial.write_all(b"GET /lean/v0/health HTTP/1.1\r\nHost: 127.0.0.1\r\n").await.unwrap();
    for stream in [&mut silent, &mut partial] {
        let mut rest = Vec::new();
        // EOF or a reset: either way the server let go of the socket.
        let _ = eventually("closing the connection", stream.read_to_end(&mut rest)).await;
        assert!(!String::from_utf8_lossy(&rest).contains("healthy"));
    }
    shutdown.cancel();
    eventually("shutdown", task).await.unwrap().unwrap();
}

/// T30: connections over the cap are not accepted (they wait in the kernel's backlog, costing
/// the process no descriptor) until an open one closes.
#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    use tokio::io::AsyncWriteExt;
    let limits =
        ConnectionLimits { max_connections: 1, header_read_timeout: Duration::from_secs(3600) };
    let (addr, shutdown, task) = serve_locally(limits).await;
    let mut first = tokio::net::TcpStream::connect(addr).await.unwrap();
    first.write_all(GET_HEALTH).await.unwrap();
    assert!(eventually("first response", read_response(&mut first)).await.contains(" 200 "));

    // A plain socket, so that a non-blocking read asks the kernel itself whether an answer came.
    let mut second = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut second, GET_HEALTH).unwrap();
    second.set_nonblocking(true).unwrap();
    for _ in 0..3 {
        // The server keeps serving the open connection meanwhile.
        first.write_all(GET_HEALTH).await.unwrap();
        eventually("a response on the open connection", read_response(&mut first)).await;
        let read = std::io::Read::read(&mut second, &mut [0u8; 64]);
        assert!(
            matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            "a connection over the cap was served: {read:?}"
        );
    }
    drop(first);
    let mut second = tokio::net::TcpStream::from_std(second).unwrap();
    let reply = eventually("the waiting connection's response", read_response(&mut second)).await;
    assert!(reply.contains(" 200 "), "{reply}");
    shutdown.cancel();
    eventually("shutdown", task).await.unwrap().unwrap();
}
