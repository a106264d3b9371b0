//! `api_endpoint_test`: HTTP request in, status, content type and JSON body out, run against
//! any node URL.
//!
//! Each fixture is independent: before sending its request the runner sets the node's
//! aggregator role to `initialIsAggregator` through the admin endpoint itself
//! (`POST /lean/v0/admin/aggregator`), which is how a client team can reset a live node too.

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

/// A node's HTTP API under test.
pub struct ApiTarget {
    base: String,
    agent: ureq::Agent,
    content_type: ContentTypeCheck,
    admin_token: Option<String>,
}

/// One HTTP reply, reduced to what fixtures check.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
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
        Self { base: base_url.trim_end_matches('/').to_owned(), agent, content_type, admin_token }
    }

    /// Sends `method` to `path` with an optional JSON body.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Reply> {
        let url = format!("{}{path}", self.base);
        let auth = self.admin_token.as_ref().map(|t| format!("Bearer {t}"));
        let result = match (method, body) {
            ("GET", None) => {
                let mut request = self.agent.get(&url);
                if let Some(auth) = &auth {
                    request = request.header("authorization", auth);
                }
                request.call()
            }
            (method, body) => {
                let text = body.map(Value::to_string).unwrap_or_default();
                let mut request = match method {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    "PATCH" => self.agent.patch(&url),
                    "DELETE" => self.agent.delete(&url).force_send_body(),
                    other => bail!("unsupported method {other}"),
                };
                if body.is_some() {
                    request = request.header("content-type", "application/json");
                }
                if let Some(auth) = &auth {
                    request = request.header("authorization", auth);
                }
                request.send(text)
            }
        };
        let mut response = result.with_context(|| format!("{method} {url}"))?;
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body = response.body_mut().read_to_string().context("reading the response body")?;
        Ok(Reply { status: response.status().as_u16(), content_type, body })
    }

    /// Sets the node's aggregator role, as each fixture requires before its request.
    pub fn set_aggregator(&self, enabled: bool) -> anyhow::Result<()> {
        let reply =
            self.send("POST", "/lean/v0/admin/aggregator", Some(&json!({ "enabled": enabled })))?;
        ensure!(
            reply.status == 200,
            "setting the aggregator role answered {}: {}",
            reply.status,
            reply.body
        );
        Ok(())
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

/// Runs one `api_endpoint_test` fixture against `target`.
pub fn check(fixture: &Fixture, target: &ApiTarget) -> anyhow::Result<()> {
    ensure!(fixture.format()? == "api_endpoint_test", "not an api_endpoint_test fixture");
    let endpoint = fixture.field("/endpoint")?.as_str().context("endpoint is not a string")?;
    let method = fixture.field("/method")?.as_str().context("method is not a string")?;
    let initial = fixture
        .field("/initialIsAggregator")?
        .as_bool()
        .context("initialIsAggregator is not a boolean")?;
    let expected_status = fixture.field("/expectedStatusCode")?.as_u64().context("status")?;
    let expected_type =
        fixture.field("/expectedContentType")?.as_str().context("expectedContentType")?;
    let expected_body = fixture.field("/expectedBody")?;
    let body = fixture.body.get("requestBody");

    target.set_aggregator(initial)?;
    let reply = target.send(method, endpoint, body)?;
    ensure!(
        u64::from(reply.status) == expected_status,
        "{method} {endpoint}: status {} (body {}), expected {expected_status}",
        reply.status,
        reply.body
    );
    ensure!(
        target.content_type_matches(reply.content_type.as_deref(), expected_type),
        "{method} {endpoint}: content type {:?}, expected {expected_type:?}",
        reply.content_type
    );
    let actual: Value = serde_json::from_str(&reply.body)
        .with_context(|| format!("{method} {endpoint}: body is not JSON: {}", reply.body))?;
    ensure!(
        &actual == expected_body,
        "{method} {endpoint}: body {actual}, expected {expected_body}"
    );
    Ok(())
}
