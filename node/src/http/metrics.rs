//! `GET /metrics` in the format the scraper asks for.
//!
//! `prometheus-client` writes OpenMetrics text, which Prometheus asks for first in its `Accept`
//! header. Every other reader (older Prometheus servers, VictoriaMetrics, `curl`, Prometheus's
//! own `promtool check metrics`) reads the Prometheus text format 0.0.4, where a counter's
//! `HELP` and `TYPE` lines name its samples (`x_total`) and there is no `UNIT` or `EOF` line.
//! [`to_prometheus_text`] rewrites the one into the other; the samples are the same.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{ApiState, json_error};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) async fn get_metrics(State(state): State<ApiState>, headers: HeaderMap) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}"));
    }
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (content_type, body) = if wants_openmetrics {
        (OPENMETRICS, text)
    } else {
        (PROMETHEUS_TEXT, to_prometheus_text(&text))
    };
    ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response()
}

/// OpenMetrics text as `prometheus-client` writes it, in the Prometheus text format 0.0.4:
/// counters' `HELP`/`TYPE` lines take the `_total` their samples carry, `info` families become
/// gauges named `_info`, and `UNIT` and `EOF` lines go. Sample lines are kept as they are.
pub(crate) fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    // Family name -> the name its HELP/TYPE lines must carry.
    let renamed = |name: &str, kind: &str| -> String {
        // prometheus-client names a counter's samples `<name>_total` and an info's
        // `<name>_info`, always (a family already named `x_total` has samples `x_total_total`).
        match kind {
            "counter" => format!("{name}_total"),
            "info" => format!("{name}_info"),
            _ => name.to_owned(),
        }
    };
    // The TYPE line follows the HELP line in prometheus-client's output, so a HELP line is
    // held until the family's type is known.
    let mut held_help: Option<(&str, &str)> = None;
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            held_help = Some((name, help));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let new_name = renamed(name, kind);
            if let Some((help_name, help)) = held_help.take() {
                let help_name = if help_name == name { new_name.as_str() } else { help_name };
                out.push_str(&format!("# HELP {help_name} {help}\n"));
            }
            let kind = match kind {
                "info" | "stateset" => "gauge",
                "unknown" | "gaugehistogram" => "untyped",
                other => other,
            };
            out.push_str(&format!("# TYPE {new_name} {kind}\n"));
            continue;
        }
        if let Some((name, help)) = held_help.take() {
            out.push_str(&format!("# HELP {name} {help}\n"));
        }
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some((name, help)) = held_help {
        out.push_str(&format!("# HELP {name} {help}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_units_and_eof_are_rewritten_samples_are_not() {
        let om = "# HELP avs_node_evidence Equivocations observed.\n\
                  # TYPE avs_node_evidence counter\n\
                  avs_node_evidence_total 0\n\
                  # HELP libp2p_ping_rtt_seconds Round-trip time.\n\
                  # TYPE libp2p_ping_rtt_seconds histogram\n\
                  # UNIT libp2p_ping_rtt_seconds seconds\n\
                  libp2p_ping_rtt_seconds_sum 0.5\n\
                  libp2p_ping_rtt_seconds_count 1\n\
                  libp2p_ping_rtt_seconds_bucket{le=\"+Inf\"} 1\n\
                  # HELP build Build.\n\
                  # TYPE build info\n\
                  build_info{version=\"0.1.0\"} 1\n\
                  # HELP lean_is_aggregator 1 while aggregating.\n\
                  # TYPE lean_is_aggregator gauge\n\
                  lean_is_aggregator 1\n\
                  # EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP avs_node_evidence_total Equivocations observed.\n\
             # TYPE avs_node_evidence_total counter\n\
             avs_node_evidence_total 0\n\
             # HELP libp2p_ping_rtt_seconds Round-trip time.\n\
             # TYPE libp2p_ping_rtt_seconds histogram\n\
             libp2p_ping_rtt_seconds_sum 0.5\n\
             libp2p_ping_rtt_seconds_count 1\n\
             libp2p_ping_rtt_seconds_bucket{le=\"+Inf\"} 1\n\
             # HELP build_info Build.\n\
             # TYPE build_info gauge\n\
             build_info{version=\"0.1.0\"} 1\n\
             # HELP lean_is_aggregator 1 while aggregating.\n\
             # TYPE lean_is_aggregator gauge\n\
             lean_is_aggregator 1\n"
        );
    }
}
