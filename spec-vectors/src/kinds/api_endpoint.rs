//! `api_endpoint_test` vectors of our node's HTTP API, in leanSpec's format plus the optional
//! fields described in [`crate::api`].
//!
//! Generation sends each request to our real axum router (`avs_node::http::router`) in-process,
//! on a fresh node state per case, and records what it answered. Checking sends the request
//! over HTTP to our router served on 127.0.0.1 (one server per node setup), through the same
//! runner client teams use against their node (`run-api`).

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use avs_node::aggregator::AggregatorController;
use avs_node::http::ApiState;
use avs_node::status::NodeStatus;
use axum::body::Body;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::Case;
use crate::Fixture;
use crate::api::{ApiTarget, ContentTypeCheck};

/// Bearer token of the `nodeSetup.adminToken` vectors.
pub const ADMIN_TOKEN: &str = "spec-vectors-admin-token";

const AGGREGATOR: &str = "/lean/v0/admin/aggregator";

/// The node configurations the vectors need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Plain,
    Token,
    NoController,
}

impl Setup {
    fn of(fixture: &Value) -> Self {
        let setup = fixture.get("nodeSetup");
        if setup.and_then(|s| s.get("adminToken")).is_some() {
            Self::Token
        } else if setup.and_then(|s| s.get("aggregatorController")) == Some(&json!(false)) {
            Self::NoController
        } else {
            Self::Plain
        }
    }

    fn state(self, initial: bool) -> ApiState {
        let mut registry = prometheus_client::registry::Registry::default();
        let aggregator =
            (self != Self::NoController).then(|| AggregatorController::new(initial, &mut registry));
        // The sender is dropped: the status stays at its default, as on a node before its
        // first step.
        let (_, status) = tokio::sync::watch::channel(NodeStatus::default());
        ApiState {
            aggregator,
            admin_token: (self == Self::Token).then(|| Arc::from(ADMIN_TOKEN)),
            registry: Arc::new(registry),
            status,
            disk: None,
        }
    }
}

/// Our router served on an ephemeral 127.0.0.1 port for the life of the process.
fn in_process(setup: Setup) -> anyhow::Result<&'static ApiTarget> {
    static PLAIN: OnceLock<ApiTarget> = OnceLock::new();
    static TOKEN: OnceLock<ApiTarget> = OnceLock::new();
    static NONE: OnceLock<ApiTarget> = OnceLock::new();
    let cell = match setup {
        Setup::Plain => &PLAIN,
        Setup::Token => &TOKEN,
        Setup::NoController => &NONE,
    };
    if let Some(target) = cell.get() {
        return Ok(target);
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::spawn(move || {
        let serve = async move {
            let listener = avs_node::http::bind("127.0.0.1:0".parse()?).await?;
            tx.send(listener.local_addr()?)?;
            let shutdown = tokio_util::sync::CancellationToken::new();
            avs_node::http::serve(listener, setup.state(false), shutdown).await
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        if let Ok(runtime) = runtime {
            let _ = runtime.block_on(serve);
        }
    });
    let addr = rx.recv().context("the in-process API did not start")?;
    let token = (setup == Setup::Token).then(|| ADMIN_TOKEN.to_owned());
    let mut target = ApiTarget::new(&format!("http://{addr}"), ContentTypeCheck::Exact, token)
        .exact_error_text();
    if setup == Setup::NoController {
        target = target.without_controller();
    }
    Ok(cell.get_or_init(|| target))
}

pub fn check(fixture: &Fixture) -> anyhow::Result<()> {
    // A fixture sets the role, then sends its request: two fixtures on one server at once
    // (libtest runs trials on parallel threads) would see each other's role.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    crate::api::check(fixture, in_process(Setup::of(&fixture.body))?)
}

/// What a case sends; the expected reply is recorded from our router.
struct Spec {
    name: &'static str,
    description: &'static str,
    method: &'static str,
    endpoint: &'static str,
    initial: bool,
    setup: Setup,
    headers: Vec<(&'static str, String)>,
    json_body: Option<Value>,
    raw_body: Option<&'static str>,
    /// Response headers to pin.
    pin: &'static [&'static str],
    body_match: Option<&'static str>,
}

fn spec(
    name: &'static str,
    description: &'static str,
    method: &'static str,
    endpoint: &'static str,
) -> Spec {
    Spec {
        name,
        description,
        method,
        endpoint,
        initial: false,
        setup: Setup::Plain,
        headers: Vec::new(),
        json_body: None,
        raw_body: None,
        pin: &[],
        body_match: None,
    }
}

/// Sends `spec` to a fresh router and records the answer as a fixture.
async fn record(spec: Spec) -> anyhow::Result<Case> {
    let router = avs_node::http::router(spec.setup.state(spec.initial));
    let mut request = axum::http::Request::builder().method(spec.method).uri(spec.endpoint);
    for (k, v) in &spec.headers {
        request = request.header(*k, v);
    }
    let body = match (&spec.raw_body, &spec.json_body) {
        (Some(raw), _) => raw.to_string(),
        (None, Some(json)) => {
            request = request.header("content-type", "application/json");
            json.to_string()
        }
        (None, None) => String::new(),
    };
    let response = router.oneshot(request.body(Body::from(body))?).await?;
    let header =
        |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let content_type = header("content-type").context("no content type")?;
    let mut pinned = serde_json::Map::new();
    for name in spec.pin {
        pinned.insert((*name).to_owned(), json!(header(name).context("pinned header missing")?));
    }
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let expected: Value = serde_json::from_slice(&bytes).context("reply is not JSON")?;

    let mut fixture = json!({
        "endpoint": spec.endpoint,
        "method": spec.method,
        "genesisParams": { "numValidators": 4, "genesisTime": 0 },
        "initialIsAggregator": spec.initial,
        "expectedStatusCode": status,
        "expectedContentType": content_type,
        "expectedBody": expected,
    });
    if let Some(json) = spec.json_body {
        fixture["requestBody"] = json;
    }
    if let Some(raw) = spec.raw_body {
        fixture["rawRequestBody"] = json!(raw);
    }
    if !spec.headers.is_empty() {
        let map: serde_json::Map<String, Value> =
            spec.headers.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        fixture["requestHeaders"] = Value::Object(map);
    }
    match spec.setup {
        Setup::Plain => {}
        Setup::Token => fixture["nodeSetup"] = json!({ "adminToken": ADMIN_TOKEN }),
        Setup::NoController => fixture["nodeSetup"] = json!({ "aggregatorController": false }),
    }
    if !pinned.is_empty() {
        fixture["expectedHeaders"] = Value::Object(pinned);
    }
    if let Some(m) = spec.body_match {
        fixture["expectedBodyMatch"] = json!(m);
    }
    Ok(Case::new(spec.name, spec.description, fixture))
}

fn specs() -> Vec<Spec> {
    let bearer = |t: &str| vec![("authorization", format!("Bearer {t}"))];
    let post = |name, description, initial, body: Value| Spec {
        initial,
        json_body: Some(body),
        ..spec(name, description, "POST", AGGREGATOR)
    };
    let bad = |name, description, raw: &'static str| Spec {
        initial: true,
        raw_body: Some(raw),
        headers: vec![("content-type", "application/json".to_owned())],
        body_match: Some("errorObject"),
        ..spec(name, description, "POST", AGGREGATOR)
    };
    vec![
        spec(
            "health",
            "Given a running node, when GET /lean/v0/health, then 200 with leanSpec's health body.",
            "GET",
            "/lean/v0/health",
        ),
        Spec {
            pin: &["allow"],
            body_match: Some("errorObject"),
            ..spec(
                "health_post_not_allowed",
                "Given a running node, when POST /lean/v0/health, then 405 with Allow: GET and an error object.",
                "POST",
                "/lean/v0/health",
            )
        },
        Spec {
            initial: true,
            ..spec(
                "aggregator_get_enabled",
                "Given an aggregating node, when GET the aggregator role, then 200 with is_aggregator true.",
                "GET",
                AGGREGATOR,
            )
        },
        spec(
            "aggregator_get_disabled",
            "Given a non-aggregating node, when GET the aggregator role, then 200 with is_aggregator false.",
            "GET",
            AGGREGATOR,
        ),
        post(
            "aggregator_enable",
            "Given a non-aggregating node, when POST {\"enabled\": true}, then 200 with the new and previous role, and the role is on.",
            false,
            json!({"enabled": true}),
        ),
        post(
            "aggregator_disable",
            "Given an aggregating node, when POST {\"enabled\": false}, then 200 with the new and previous role, and the role is off.",
            true,
            json!({"enabled": false}),
        ),
        post(
            "aggregator_enable_idempotent",
            "Given an aggregating node, when POST {\"enabled\": true}, then 200 and nothing changes.",
            true,
            json!({"enabled": true}),
        ),
        post(
            "aggregator_extra_fields_ignored",
            "Given a non-aggregating node, when POST {\"enabled\": true, \"note\": 1}, then 200: unknown fields are ignored.",
            false,
            json!({"enabled": true, "note": 1}),
        ),
        Spec {
            initial: true,
            raw_body: Some("{\"enabled\": false}"),
            headers: vec![("content-type", "text/plain".to_owned())],
            body_match: Some("errorObject"),
            ..spec(
                "aggregator_not_json_content_type_refused",
                "Given an aggregating node, when POST a valid JSON body labelled text/plain, then 415 with an error object and the role is unchanged: a body a web page can send without a CORS preflight is refused.",
                "POST",
                AGGREGATOR,
            )
        },
        bad(
            "aggregator_empty_body",
            "Given an aggregating node, when POST an empty body, then 400 with an error object and the role is unchanged.",
            "",
        ),
        bad(
            "aggregator_not_json",
            "Given an aggregating node, when POST a body that is not JSON, then 400 and the role is unchanged.",
            "enabled=false",
        ),
        bad(
            "aggregator_not_object",
            "Given an aggregating node, when POST a JSON array, then 400 and the role is unchanged.",
            "[false]",
        ),
        bad(
            "aggregator_missing_enabled",
            "Given an aggregating node, when POST {}, then 400 and the role is unchanged.",
            "{}",
        ),
        bad(
            "aggregator_enabled_number",
            "Given an aggregating node, when POST {\"enabled\": 0}, then 400: only a JSON boolean is accepted.",
            "{\"enabled\": 0}",
        ),
        bad(
            "aggregator_enabled_string",
            "Given an aggregating node, when POST {\"enabled\": \"false\"}, then 400: only a JSON boolean is accepted.",
            "{\"enabled\": \"false\"}",
        ),
        bad(
            "aggregator_enabled_null",
            "Given an aggregating node, when POST {\"enabled\": null}, then 400 and the role is unchanged.",
            "{\"enabled\": null}",
        ),
        Spec {
            pin: &["allow"],
            body_match: Some("errorObject"),
            ..spec(
                "aggregator_put_not_allowed",
                "Given a running node, when PUT the aggregator route, then 405 with Allow: GET, POST.",
                "PUT",
                AGGREGATOR,
            )
        },
        Spec {
            pin: &["allow"],
            body_match: Some("errorObject"),
            ..spec(
                "aggregator_delete_not_allowed",
                "Given a running node, when DELETE the aggregator route, then 405 with Allow: GET, POST.",
                "DELETE",
                AGGREGATOR,
            )
        },
        Spec {
            setup: Setup::NoController,
            body_match: Some("errorObject"),
            ..spec(
                "aggregator_get_no_controller",
                "Given a node with no aggregator controller, when GET the aggregator role, then 503 with an error object.",
                "GET",
                AGGREGATOR,
            )
        },
        Spec {
            setup: Setup::NoController,
            json_body: Some(json!({"enabled": true})),
            body_match: Some("errorObject"),
            ..spec(
                "aggregator_post_no_controller",
                "Given a node with no aggregator controller, when POST {\"enabled\": true}, then 503.",
                "POST",
                AGGREGATOR,
            )
        },
        Spec {
            setup: Setup::Token,
            pin: &["www-authenticate"],
            body_match: Some("errorObject"),
            ..spec(
                "aggregator_get_without_token",
                "Given a node started with an admin token, when GET the aggregator role without Authorization, then 401 with WWW-Authenticate: Bearer.",
                "GET",
                AGGREGATOR,
            )
        },
        Spec {
            setup: Setup::Token,
            initial: true,
            json_body: Some(json!({"enabled": false})),
            headers: bearer("wrong-token"),
            pin: &["www-authenticate"],
            body_match: Some("errorObject"),
            ..spec(
                "aggregator_post_wrong_token",
                "Given an aggregating node started with an admin token, when POST {\"enabled\": false} with a wrong bearer token, then 401 and the role is unchanged.",
                "POST",
                AGGREGATOR,
            )
        },
        Spec {
            setup: Setup::Token,
            initial: true,
            headers: bearer(ADMIN_TOKEN),
            ..spec(
                "aggregator_get_with_token",
                "Given an aggregating node started with an admin token, when GET the aggregator role with that bearer token, then 200.",
                "GET",
                AGGREGATOR,
            )
        },
        Spec {
            setup: Setup::Token,
            json_body: Some(json!({"enabled": true})),
            headers: bearer(ADMIN_TOKEN),
            ..spec(
                "aggregator_post_with_token",
                "Given a non-aggregating node started with an admin token, when POST {\"enabled\": true} with that token, then 200 and the role is on.",
                "POST",
                AGGREGATOR,
            )
        },
        Spec {
            body_match: Some("keys"),
            ..spec(
                "status_shape",
                "Given a running node, when GET /lean/v0/status, then 200 with exactly these keys (values depend on the node's progress).",
                "GET",
                "/lean/v0/status",
            )
        },
        Spec {
            pin: &["allow"],
            body_match: Some("errorObject"),
            ..spec(
                "status_post_not_allowed",
                "Given a running node, when POST /lean/v0/status, then 405 with Allow: GET.",
                "POST",
                "/lean/v0/status",
            )
        },
        Spec {
            body_match: Some("errorObject"),
            ..spec(
                "unknown_route",
                "Given a running node, when GET an unknown /lean/v0 route, then 404 with an error object.",
                "GET",
                "/lean/v0/no_such_route",
            )
        },
    ]
}

pub fn generate() -> anyhow::Result<Vec<Case>> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let mut cases = Vec::new();
        for spec in specs() {
            let name = spec.name;
            cases.push(record(spec).await.with_context(|| format!("case {name}"))?);
        }
        Ok(cases)
    })
}
