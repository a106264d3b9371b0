//! Refusals that protect the API from the operator's own browser (threat L of the security
//! review: a web page open next to `/telemetry`, or a DNS-rebinding page).
//!
//! - **Host** (DNS rebinding): when the API is bound to a loopback address, a request whose
//!   `Host` is not `localhost`, a loopback IP literal (`127.0.0.0/8`, `[::1]`) or the bound
//!   address is refused with **421 Misdirected Request**: this node does not serve that name.
//!   The port is not compared, so SSH tunnels (`-L 8080:localhost:5052`) keep working. A
//!   reverse proxy in front of a loopback-bound node must send `Host: localhost`. On a
//!   non-loopback bind the name is not checked: there the admin token is mandatory (see
//!   `config.rs`) and the operator chose to expose the reads.
//! - **Origin** (CSRF and cross-site reads): a request carrying an `Origin` header that is not
//!   this node's own origin, `http://<Host>`, is refused with **403**, whatever its verb.
//!   Browsers send `Origin` on every cross-origin `POST`, `no-cors` included; same-origin
//!   navigations and non-browser clients (curl, Prometheus) send none and are not affected.
//! - **Content-Type** ([`require_json`], called by each state-changing handler): the body must
//!   be labelled `application/json`, else **415**. A `text/plain`, form or unlabelled body is a
//!   CORS "simple request" that a page can send with no preflight; `application/json` forces a
//!   preflight, which fails because the API sends no CORS headers. leanSpec's vectors post
//!   with `Content-Type: application/json` (`spec-vectors/vendor/leanspec/README.md`), so no
//!   exception is needed for them.
//!
//! A request without `Host` (HTTP/1.0 tools) passes the Host check: a browser always sends
//! one, so a rebinding attack cannot omit it.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::json_error;

/// Which `Host` names the API answers, decided by the address it is bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HostGuard {
    /// True when bound to loopback: only loopback names are served.
    loopback_only: bool,
}

impl HostGuard {
    pub(crate) fn for_bind(ip: IpAddr) -> Self {
        Self { loopback_only: ip.to_canonical().is_loopback() }
    }
}

/// Middleware: the Host and Origin checks of the module doc, before any route runs.
pub(crate) async fn check_host_and_origin(
    State(guard): State<HostGuard>,
    request: Request,
    next: Next,
) -> Response {
    let host = match request_host(&request) {
        Ok(host) => host,
        Err(()) => return misdirected("the request carries more than one Host header"),
    };
    if guard.loopback_only
        && let Some(host) = &host
        && !is_loopback_name(host)
    {
        return misdirected(&format!(
            "Host {host:?} is not served: this API is bound to loopback and answers only \
             localhost, 127.0.0.1 or [::1] (a reverse proxy must send Host: localhost)"
        ));
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("<not text>");
        if !is_own_origin(origin, host.as_deref()) {
            return json_error(
                StatusCode::FORBIDDEN,
                format!(
                    "cross-origin request refused: Origin {origin:?} is not this node's origin; \
                     call the API from curl or a same-origin page, not from another site"
                ),
            );
        }
    }
    next.run(request).await
}

/// Refuses a state-changing request whose body is not labelled `application/json` (any
/// parameters, such as `charset`, allowed), with 415.
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), Box<Response>> {
    let declared = headers.get(header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("<not text>"));
    let media = declared.map(|v| v.split(';').next().unwrap_or("").trim());
    if media.is_some_and(|m| m.eq_ignore_ascii_case("application/json")) {
        return Ok(());
    }
    let got = declared.map_or_else(|| "none".to_owned(), |v| format!("{v:?}"));
    Err(Box::new(json_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("send the body with Content-Type: application/json (got {got})"),
    )))
}

/// The request's authority: its one `Host` header, or the URI's authority (absolute-form
/// requests); `Err` when `Host` is repeated.
fn request_host(request: &Request) -> Result<Option<String>, ()> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(()),
        (Some(host), None) => Ok(Some(host.to_str().unwrap_or("<not text>").to_owned())),
        (None, _) => Ok(request.uri().authority().map(|a| a.as_str().to_owned())),
    }
}

/// `localhost` or a loopback IP literal, with any port.
fn is_loopback_name(host: &str) -> bool {
    let Ok(authority) = host.parse::<Authority>() else { return false };
    if authority.as_str().contains('@') {
        return false;
    }
    let name = authority.host();
    let name = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// The browser's origin for a page served by this node under `host` is `http://<host>`.
fn is_own_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    origin.strip_prefix("http://").is_some_and(|authority| authority.eq_ignore_ascii_case(host))
}

fn misdirected(message: &str) -> Response {
    json_error(StatusCode::MISDIRECTED_REQUEST, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_with_or_without_port() {
        for host in ["localhost", "LocalHost:8080", "127.0.0.1", "127.1.2.3:5052", "[::1]:5052"] {
            assert!(is_loopback_name(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:5052",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "10.0.0.1:5052",
            "user@localhost",
            "",
            "2130706433",
        ] {
            assert!(!is_loopback_name(host), "{host}");
        }
    }

    #[test]
    fn own_origin_is_http_and_the_exact_host() {
        assert!(is_own_origin("http://127.0.0.1:5052", Some("127.0.0.1:5052")));
        assert!(is_own_origin("http://LOCALHOST:5052", Some("localhost:5052")));
        assert!(!is_own_origin("http://127.0.0.1:5053", Some("127.0.0.1:5052")));
        assert!(!is_own_origin("https://127.0.0.1:5052", Some("127.0.0.1:5052")));
        assert!(!is_own_origin("null", Some("127.0.0.1:5052")));
        assert!(!is_own_origin("http://127.0.0.1:5052", None));
    }
}
