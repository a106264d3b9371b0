//! `api_endpoint_test`: HTTP request in, status, content type and JSON body out, run against
//! any node URL.
//!
//! Each fixture is independent: before sending its request the runner sets the node's
//! aggregator role to `initialIsAggregator` through the admin endpoint itself
//! (`POST /lean/v0/admin/aggregator`), which is how a client team can reset a live node too.
//!
//! Our vectors extend leanSpec's format with optional fields (all absent in leanSpec's files,
//! which keep their meaning): `nodeSetup` (`adminToken`: the node runs with that bearer token;
//! `aggregatorController: false`: the node has no aggregator role to switch), `requestHeaders`,
//! `rawRequestBody` (sent verbatim instead of `requestBody`), `expectedHeaders` and
//! `expectedBodyMatch` (`"exact"` by default, `"errorObject"` or `"keys"`). The README
//! documents each one.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::Fixture;

/// How strictly `Content-Type` is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentTypeCheck {
    /// The whole header must equal the expected value (leanSpec's "wire contract").
    Exact,
    /// Only the media type (before `;`) is compared, case-insensitively.
    MediaType,
}

/// A node's HTTP API under test, and what the caller declares about its configuration.
pub struct ApiTarget {
    base: String,
    agent: ureq::Agent,
    content_type: ContentTypeCheck,
    /// The bearer token the node was started with, if any.
    admin_token: Option<String>,
    /// False when the node has no aggregator controller (its admin routes answer 503).
    has_controller: bool,
    /// Compare `{"error": ...}` texts exactly (our node) instead of only their shape.
    exact_error_text: bool,
}

/// One HTTP reply, reduced to what fixtures check.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    /// Every header, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A request as a fixture describes it.
#[derive(Debug, Default)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
}

impl ApiTarget {
    pub fn new(
        base_url: &str,
        content_type: ContentTypeCheck,
        admin_token: Option<String>,
    ) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Self {
            base: base_url.trim_end_matches('/').to_owned(),
            agent,
            content_type,
            admin_token,
            has_controller: true,
            exact_error_text: false,
        }
    }

    /// Declares that the node has no aggregator controller.
    pub fn without_controller(mut self) -> Self {
        self.has_controller = false;
        self
    }

    /// Requires error texts to match exactly (for our own node).
    pub fn exact_error_text(mut self) -> Self {
        self.exact_error_text = true;
        self
    }

    /// Sends one request.
    pub fn send(&self, request: &Request<'_>) -> anyhow::Result<Reply> {
        let url = format!("{}{}", self.base, request.path);
        let headers = &request.headers;
        let result = match (request.method, &request.body) {
            ("GET", None) => {
                let mut r = self.agent.get(&url);
                for (k, v) in headers {
                    r = r.header(k, v);
                }
                r.call()
            }
            (method, body) => {
                let mut r = match method {
                    "GET" => self.agent.get(&url).force_send_body(),
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    "DELETE" => self.agent.delete(&url).force_send_body(),
                    other => bail!("unsupported method {other}"),
                };
                for (k, v) in headers {
                    r = r.header(k, v);
                }
                r.send(body.clone().unwrap_or_default())
            }
        };
        let mut response = result.with_context(|| format!("{} {url}", request.method))?;
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter_map(|(k, v)| {
                Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned()))
            })
            .collect();
        let content_type =
            headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone());
        let body = response.body_mut().read_to_string().context("reading the response body")?;
        Ok(Reply { status: response.status().as_u16(), content_type, headers, body })
    }

    fn auth(&self) -> Vec<(String, String)> {
        self.admin_token
            .iter()
            .map(|t| ("authorization".to_owned(), format!("Bearer {t}")))
            .collect()
    }

    /// Sets the node's aggregator role, as each fixture requires before its request.
    pub fn set_aggregator(&self, enabled: bool) -> anyhow::Result<()> {
        let mut headers = self.auth();
        headers.push(("content-type".into(), "application/json".into()));
        let body = Some(json!({ "enabled": enabled }).to_string());
        let reply = self.send(&Request { method: "POST", path: AGGREGATOR, headers, body })?;
        ensure!(
            reply.status == 200,
            "setting the aggregator role answered {}: {}",
            reply.status,
            reply.body
        );
        Ok(())
    }

    /// The node's aggregator role, read through the admin endpoint.
    fn aggregator(&self) -> anyhow::Result<bool> {
        let reply = self.send(&Request {
            method: "GET",
            path: AGGREGATOR,
            headers: self.auth(),
            body: None,
        })?;
        let value: Value = serde_json::from_str(&reply.body).context("role reply is not JSON")?;
        value
            .get("is_aggregator")
            .and_then(Value::as_bool)
            .context("role reply lacks is_aggregator")
    }

    fn content_type_matches(&self, actual: Option<&str>, expected: &str) -> bool {
        let Some(actual) = actual else { return false };
        match self.content_type {
            ContentTypeCheck::Exact => actual == expected,
            ContentTypeCheck::MediaType => {
                let media = |s: &str| s.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                media(actual) == media(expected)
            }
        }
    }
}

const AGGREGATOR: &str = "/lean/v0/admin/aggregator";

/// Why a fixture cannot run against `target` as declared (its `nodeSetup` asks for another
/// node configuration), or `None` when it applies.
pub fn skip_reason(fixture: &Fixture, target: &ApiTarget) -> Option<String> {
    let setup = fixture.body.get("nodeSetup");
    let token = setup.and_then(|s| s.get("adminToken")).and_then(Value::as_str);
    let controller =
        setup.and_then(|s| s.get("aggregatorController")).and_then(Value::as_bool).unwrap_or(true);
    if controller != target.has_controller {
        return Some(format!("needs a node with aggregatorController = {controller}"));
    }
    match (token, target.admin_token.as_deref()) {
        (Some(want), Some(have)) if want != have => Some(format!("needs admin token {want:?}")),
        (Some(want), None) => Some(format!("needs a node started with admin token {want:?}")),
        _ => None,
    }
}

/// Runs one `api_endpoint_test` fixture against `target` (see [`skip_reason`] first).
pub fn check(fixture: &Fixture, target: &ApiTarget) -> anyhow::Result<()> {
    ensure!(fixture.format()? == "api_endpoint_test", "not an api_endpoint_test fixture");
    if let Some(reason) = skip_reason(fixture, target) {
        bail!("this fixture does not apply to the target: {reason}");
    }
    let f = &fixture.body;
    let endpoint = fixture.field("/endpoint")?.as_str().context("endpoint is not a string")?;
    let method = fixture.field("/method")?.as_str().context("method is not a string")?;
    let initial =
        fixture.field("/initialIsAggregator")?.as_bool().context("initialIsAggregator")?;
    let expected_status = fixture.field("/expectedStatusCode")?.as_u64().context("status")?;
    let expected_type =
        fixture.field("/expectedContentType")?.as_str().context("expectedContentType")?;
    let expected_body = fixture.field("/expectedBody")?;
    let tests_auth = f.pointer("/nodeSetup/adminToken").is_some();

    let mut headers: Vec<(String, String)> = match f.get("requestHeaders") {
        None => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                Ok((k.to_ascii_lowercase(), v.as_str().context("header value")?.to_owned()))
            })
            .collect::<anyhow::Result<_>>()?,
        Some(other) => bail!("requestHeaders is not an object: {other}"),
    };
    // A fixture that does not test authentication still runs against a token-protected node.
    if !tests_auth {
        headers.extend(target.auth());
    }
    let body = match (f.get("rawRequestBody"), f.get("requestBody")) {
        (Some(raw), _) => Some(raw.as_str().context("rawRequestBody is not a string")?.to_owned()),
        (None, Some(json)) => {
            if !headers.iter().any(|(k, _)| k == "content-type") {
                headers.push(("content-type".into(), "application/json".into()));
            }
            Some(json.to_string())
        }
        (None, None) => None,
    };

    if target.has_controller {
        target.set_aggregator(initial)?;
    }
    let reply = target.send(&Request { method, path: endpoint, headers, body })?;
    let what = format!("{method} {endpoint}");
    ensure!(
        u64::from(reply.status) == expected_status,
        "{what}: status {} (body {}), expected {expected_status}",
        reply.status,
        reply.body
    );
    ensure!(
        target.content_type_matches(reply.content_type.as_deref(), expected_type),
        "{what}: content type {:?}, expected {expected_type:?}",
        reply.content_type
    );
    if let Some(Value::Object(expected)) = f.get("expectedHeaders") {
        for (name, value) in expected {
            let actual = reply.headers.iter().find(|(k, _)| k == &name.to_ascii_lowercase());
            ensure!(
                actual.map(|(_, v)| v.as_str()) == value.as_str(),
                "{what}: header {name} is {:?}, expected {value}",
                actual.map(|(_, v)| v)
            );
        }
    }
    let actual: Value = serde_json::from_str(&reply.body)
        .with_context(|| format!("{what}: body is not JSON: {}", reply.body))?;
    let matching = f.get("expectedBodyMatch").and_then(Value::as_str).unwrap_or("exact");
    match matching {
        "errorObject" if !target.exact_error_text => {
            let ok = actual.as_object().is_some_and(|m| {
                m.len() == 1
                    && m.get("error").and_then(Value::as_str).is_some_and(|s| !s.is_empty())
            });
            ensure!(ok, "{what}: body {actual} is not {{\"error\": <non-empty string>}}");
        }
        "keys" => {
            let keys = |v: &Value| v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>());
            ensure!(
                keys(&actual) == keys(expected_body),
                "{what}: body keys {:?}, expected {:?}",
                keys(&actual),
                keys(expected_body)
            );
        }
        "exact" | "errorObject" => {
            ensure!(&actual == expected_body, "{what}: body {actual}, expected {expected_body}");
        }
        other => bail!("unknown expectedBodyMatch {other:?}"),
    }
    // A toggle leaves the role at `enabled`; a refused one leaves it unchanged.
    if endpoint == AGGREGATOR && method != "GET" && target.has_controller {
        let want = if expected_status == 200 {
            expected_body.get("is_aggregator").and_then(Value::as_bool).unwrap_or(initial)
        } else {
            initial
        };
        let role = target.aggregator()?;
        ensure!(role == want, "{what}: the node's role is now {role}, expected {want}");
    }
    Ok(())
}
