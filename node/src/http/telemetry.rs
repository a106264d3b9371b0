//! `GET /telemetry`: a server-rendered HTML dashboard of the operator pool and this node's own
//! view. Self-contained (inline CSS, no scripts, no CDN) so it works offline, and it reloads
//! itself every [`REFRESH_SECONDS`] with a `<meta http-equiv="refresh">`. Every value coming
//! from a check-in is HTML-escaped: check-ins are signed by operators, not trusted for markup.
//! The response forbids everything the page does not use ([`SECURITY_HEADERS`]), so even a
//! value that escaped the escaping could not load a script, a frame or anything remote.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::PoolApi;
use crate::pool::{Liveness, OperatorView};
use crate::status::{NodeStatus, Sample};

pub const REFRESH_SECONDS: u32 = 5;

/// The page's only resource is its inline `<style>`; the refresh is a `<meta>`, links are plain
/// navigations (which CSP does not govern). `no-referrer` keeps the node's address out of the
/// explorer's logs when a link is followed.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'",
    ),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
];

/// Escapes text for HTML content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `template` with `{address}` replaced, or `address` appended when there is no placeholder.
pub fn link(template: &str, address: &str) -> String {
    if template.contains("{address}") {
        template.replace("{address}", address)
    } else {
        format!("{template}{address}")
    }
}

pub(crate) async fn get_telemetry(State(api): State<PoolApi>) -> Response {
    let status = api.status.borrow().clone();
    let rows = api.pool.rows(crate::node::now_ms());
    let html = render(&status, &rows, &api.history.samples(), &api.explorer_url, &api.profile_url);
    let mut response = (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        html,
    )
        .into_response();
    for (name, value) in SECURITY_HEADERS {
        response
            .headers_mut()
            .insert(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    response
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;width:100%}th,td{padding:.4em .7em;border-bottom:1px solid #ddd;\
text-align:left;font-size:.9em}th{background:#f4f4f4}code{font-size:.85em}\
.Active{color:#137333;font-weight:600}.Late{color:#b06000;font-weight:600}\
.Offline{color:#c5221f;font-weight:600}.summary span{margin-right:2em}\
.charts{display:flex;gap:2em;flex-wrap:wrap;margin:1em 0}.charts figure{margin:0}\
.charts figcaption{font-size:.85em;color:#555}";

/// Width and height of a chart, in SVG user units (= CSS pixels).
const CHART_W: u64 = 420;
const CHART_H: u64 = 120;

/// An inline SVG line chart of `points` (`(x, y)`, x ascending), scaled to its own extremes,
/// with the newest value, the range and the span written beside it. No script, no resource.
pub fn chart(id: &str, title: &str, unit: &str, points: &[(u64, u64)]) -> String {
    let mut out = format!("<figure id=\"{id}\"><figcaption>{}", escape(title));
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        out.push_str(": no samples yet</figcaption></figure>");
        return out;
    };
    let (x0, x1) = (first.0, last.0.max(first.0.saturating_add(1)));
    let y0 = points.iter().map(|p| p.1).min().unwrap_or(0);
    let y1 = points.iter().map(|p| p.1).max().unwrap_or(0).max(y0.saturating_add(1));
    let _ = write!(
        out,
        ": now <b>{}</b> {unit} (range {y0}-{y1} {unit} over {} s)</figcaption>\
         <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_W}\" height=\"{CHART_H}\" \
         viewBox=\"0 0 {CHART_W} {CHART_H}\" role=\"img\" aria-label=\"{}\">\
         <rect width=\"{CHART_W}\" height=\"{CHART_H}\" fill=\"#fafafa\" stroke=\"#ddd\"/>\
         <polyline fill=\"none\" stroke=\"#1a73e8\" stroke-width=\"2\" points=\"",
        last.1,
        (x1 - x0) / 1000,
        escape(title)
    );
    let pad = 6;
    for &(x, y) in points {
        let px = pad + (x - x0) * (CHART_W - 2 * pad) / (x1 - x0);
        let py = CHART_H - pad - (y - y0) * (CHART_H - 2 * pad) / (y1 - y0);
        let _ = write!(out, "{px},{py} ");
    }
    out.push_str("\"/></svg></figure>");
    out
}

/// The two progress charts of the page: finalized height and finality latency over the
/// samples kept (the last ten minutes).
fn charts(samples: &[Sample]) -> String {
    let heights: Vec<(u64, u64)> = samples.iter().map(|s| (s.at_ms, s.finalized_height)).collect();
    let latencies: Vec<(u64, u64)> =
        samples.iter().filter_map(|s| Some((s.at_ms, s.finality_latency_ms?))).collect();
    format!(
        "<div class=\"charts\">{}{}</div>",
        chart("height-chart", "Finalized height", "", &heights),
        chart("latency-chart", "Finality latency (own NOTARIZE to final)", "ms", &latencies)
    )
}

/// The dashboard's HTML.
pub fn render(
    status: &NodeStatus,
    rows: &[OperatorView],
    samples: &[Sample],
    explorer: &str,
    profile: &str,
) -> String {
    let active = rows.iter().filter(|r| r.status == Liveness::Active).count();
    let mut html = String::with_capacity(2048 + rows.len() * 512);
    let _ = write!(
        html,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>avs-node telemetry</title><style>{STYLE}</style></head><body>\
         <h1>Operator pool</h1><p class=\"summary\" id=\"node\">\
         <span>view <b id=\"view\">{}</b></span><span>epoch <b id=\"epoch\">{}</b></span>\
         <span>finalized height <b id=\"finalized\">{}</b></span>\
         <span>peers <b>{}</b></span><span>operators <b>{}</b> ({active} active)</span>\
         <span>version <b>{}</b></span></p>{}",
        status.view,
        status.epoch,
        status.finalized_height,
        status.peers,
        rows.len(),
        env!("CARGO_PKG_VERSION"),
        charts(samples),
    );
    html.push_str(
        "<table id=\"operators\"><thead><tr><th>Address</th><th>Version</th><th>Last seen</th>\
         <th>Status</th><th>Uptime</th><th>Missed check-ins</th><th>Block</th><th>Events</th>\
         <th>Voting power</th><th>Aggregator</th><th>Remote</th></tr></thead><tbody>",
    );
    if rows.is_empty() {
        html.push_str("<tr><td colspan=\"11\">No check-ins yet.</td></tr>");
    }
    for r in rows {
        let address = escape(&r.row.address);
        let _ = write!(
            html,
            "<tr class=\"operator\" data-address=\"{address}\">\
             <td><a href=\"{}\"><code>{address}</code></a> \
             (<a href=\"{}\">EigenLayer</a>)</td>\
             <td>{}</td><td>{}</td><td class=\"{}\">{}</td><td class=\"uptime\">{}%</td>\
             <td class=\"missed\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&link(explorer, &r.row.address)),
            escape(&link(profile, &r.row.address)),
            escape(&r.row.version),
            escape(&r.last_seen),
            r.status.as_str(),
            r.status.as_str(),
            r.uptime_percent,
            r.missed_checkins,
            r.row.block_number,
            r.row.event_count,
            r.row.voting_power,
            if r.row.is_aggregator { "yes" } else { "no" },
            escape(&r.row.remote_ip),
        );
    }
    html.push_str("</tbody></table></body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::PoolRow;

    fn view(address: &str, version: &str, status: Liveness) -> OperatorView {
        OperatorView {
            row: PoolRow {
                address: address.into(),
                remote_ip: "10.0.0.1".into(),
                last_ping_ms: 0,
                checkin_timestamp_ms: 0,
                version: version.into(),
                metrics_port: 5052,
                block_number: 42,
                event_count: 9,
                peer_id: String::new(),
                voting_power: 100,
                is_aggregator: true,
                first_checkin_ms: 0,
                checkins: 9,
            },
            last_seen: "5m30s ago".into(),
            status,
            uptime_percent: 90,
            missed_checkins: 1,
        }
    }

    #[test]
    fn a_chart_spans_its_box_and_says_when_it_has_nothing() {
        let svg = chart("c", "t", "ms", &[(0, 5), (10, 15), (20, 10)]);
        // x from the left pad to the right pad, y from the bottom pad (min) to the top (max).
        assert!(svg.contains("points=\"6,114 210,6 414,60 \""), "{svg}");
        assert_eq!(
            chart("c", "t", "ms", &[]),
            "<figure id=\"c\"><figcaption>t: no samples yet</figcaption></figure>"
        );
        // One sample: no division by a zero span.
        assert!(chart("c", "t", "", &[(7, 7)]).contains("points=\"6,114 \""));
    }

    #[test]
    fn links_use_the_template_or_append_the_address() {
        assert_eq!(link("https://x/address/", "0xab"), "https://x/address/0xab");
        assert_eq!(link("https://x/{address}/info", "0xab"), "https://x/0xab/info");
    }

    #[test]
    fn the_page_lists_every_operator_escaped_and_linked_and_refreshes_itself() {
        let status = NodeStatus { epoch: 3, view: 17, finalized_height: 12, ..Default::default() };
        let rows = [
            view("0xaa", "1.0", Liveness::Active),
            view("0xbb", "<script>x</script>", Liveness::Offline),
        ];
        let samples: Vec<Sample> = (0..4u64)
            .map(|i| Sample {
                at_ms: 1_000_000 + i * 5000,
                finalized_height: 10 + i,
                finality_latency_ms: (i > 0).then_some(300 + i * 10),
            })
            .collect();
        let html =
            render(&status, &rows, &samples, "https://explorer/address/", "https://el/operator/");
        assert_eq!(html.matches("<tr class=\"operator\"").count(), 2);
        assert!(html.contains("href=\"https://explorer/address/0xaa\""));
        assert!(html.contains("href=\"https://el/operator/0xbb\""));
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(!html.contains("<script>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert!(html.contains("<b id=\"view\">17</b>") && html.contains("<b id=\"epoch\">3</b>"));
        assert!(html.contains("<b id=\"finalized\">12</b>"));
        assert!(html.contains("class=\"Offline\">Offline<") && html.contains("5m30s ago"));
        assert!(html.contains("<td class=\"uptime\">90%</td><td class=\"missed\">1</td>"));
        // Both charts, drawn inline from the samples.
        assert_eq!(html.matches("<svg ").count(), 2);
        assert!(html.contains("Finalized height: now <b>13</b>"), "{html}");
        assert!(html.contains("now <b>330</b> ms (range 310-330 ms over 10 s)"), "{html}");
        // Offline-capable: nothing is loaded from elsewhere.
        assert!(!html.contains("src=") && !html.contains("<link"));
    }
}
