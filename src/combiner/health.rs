//! The combiner's `/healthcheck`: node reachability per validator.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use futures::future::join_all;
use serde_json::{json, Value};

use super::Combiner;
use crate::http::request::json_response;

/// UP when, for every validator, at least `t` of its nodes answer `/upcheck`.
pub(super) async fn healthcheck(State(c): State<Arc<Combiner>>) -> Response {
    let probes = c.nodes.iter().map(|n| {
        let url = format!("{}/upcheck", n.url.trim_end_matches('/'));
        let client = c.client.clone();
        let connect_timeout = c.connect_timeout;
        async move {
            let timeout = Duration::from_secs(2);
            match client.get(url).timeout(timeout).send().await {
                Ok(r) if r.status().is_success() => (true, String::new()),
                Ok(r) => {
                    let status = r.status();
                    let body = r.text().await.unwrap_or_default();
                    (false, super::node_error::describe_status(status, &body))
                }
                Err(e) => (
                    false,
                    super::node_error::describe_request_error_with(
                        &e,
                        timeout,
                        Some(connect_timeout),
                    ),
                ),
            }
        }
    });
    let results = join_all(probes).await;
    let node_checks: Vec<Value> = c
        .nodes
        .iter()
        .zip(&results)
        .map(|(n, (up, err))| {
            let mut v =
                json!({"id": format!("node/{}", n.name), "status": if *up {"UP"} else {"DOWN"}});
            if !up {
                v["data"] = json!({"error": err});
            }
            v
        })
        .collect();
    let short: Vec<String> = c
        .validators
        .values()
        .filter(|v| v.shares.iter().filter(|s| results[s.node].0).count() < v.threshold)
        .map(|v| v.group_pubkey.bytes().to_hex())
        .collect();
    let up = short.is_empty();
    let status = if up { "UP" } else { "DOWN" };
    let doc = json!({
        "status": status,
        "checks": [
            {"id": "default-check", "status": "UP"},
            {"id": "nodes", "status": status, "checks": node_checks,
             "data": {"validators-below-threshold": short.len()}},
        ],
        "outcome": status,
    });
    json_response(
        if up {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &doc,
    )
}
