//! The HTTP API of a node (axum, HTTP/1.1).
//!
//! - `GET|PUT|DELETE /buckets/{bucket}/keys/{key}` with `n, r, w, pr, pw, dw,
//!   timeout_ms` as query parameters; the causal context travels in the
//!   `X-Norn-Context` header (hex, opaque). A GET answers 200 with the value,
//!   404 when not found, or 300 Multiple Choices with every sibling as JSON
//!   (`{"siblings": [{"value": "..."} | {"value_hex": "..."}], "deleted": n}`).
//!   A write answers 204 with its receipt in `X-Norn-Acked`, `X-Norn-Sent`,
//!   `X-Norn-Primaries`, `X-Norn-Fallbacks` (`fallback=primary,...`) and
//!   `X-Norn-Synced`; a missed quorum is a 503 with the same headers.
//! - `/health` and `/health/live`: 200 while the node runs (liveness).
//!   `/health/ready`: 200 when the node serves, 503 with the reasons when
//!   not (no ring, an older ring than a peer's, fewer than a quorum of the
//!   ring's members seen up, a transfer failed on its storage). None of the
//!   three asks for the bearer token: probes carry none.
//! - `/ring`, `/members` (JSON), `/metrics` (Prometheus text).
//! - `/pbs?n=&read_repair_percent=&trials=&seed=` (JSON): staleness
//!   predictions from this node's own measurements (its round trips to its
//!   peers, and its own service times standing in for theirs); `norn admin
//!   pbs` pools every node's.
//! - Errors are JSON `{"code": "...", "message": "..."}` with stable codes.
//!
//! It listens on loopback unless configured otherwise; anywhere else it
//! requires `Authorization: Bearer <http.bearer_token>` (checked at load,
//! compared in constant time).
//!
//! Slow and abusive clients: [`serve`] accepts at most
//! `http.max_connections` connections at once (more are closed at accept,
//! and counted), closes a connection that does not send a request head
//! within `http.header_timeout_ms`, refuses a body whose declared length is
//! over the limit before reading it (413), and answers 408 to a body not
//! received within `http.body_timeout_ms`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::get;
use axum::Router;
use norn_clock::Sibling;
use norn_core::Caller;
use norn_proto::view::SiblingView;
use norn_proto::{codec, ErrorCode, GetReply, QuorumOptions, Request, Response, WriteReceipt};
use serde::{Deserialize, Serialize};

use crate::node::Node;

/// Query parameters of the key routes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyQuery {
    n: Option<u8>,
    r: Option<u8>,
    w: Option<u8>,
    pr: Option<u8>,
    pw: Option<u8>,
    dw: Option<u8>,
    timeout_ms: Option<u64>,
}

impl KeyQuery {
    fn options(&self) -> QuorumOptions {
        QuorumOptions {
            n: self.n,
            r: self.r,
            w: self.w,
            pr: self.pr,
            pw: self.pw,
            dw: self.dw,
        }
    }
}

const CONTEXT_HEADER: &str = "x-norn-context";

/// The stable code of an error, in JSON bodies.
fn code_name(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::BadRequest => "bad_request",
        ErrorCode::Storage => "storage",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::Forbidden => "forbidden",
        ErrorCode::Conflict => "conflict",
        ErrorCode::QuorumNotMet => "quorum_not_met",
        ErrorCode::TooManySiblings => "too_many_siblings",
        ErrorCode::Timeout => "timeout",
        ErrorCode::TooLarge => "too_large",
    }
}

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::Conflict | ErrorCode::TooManySiblings => StatusCode::CONFLICT,
        ErrorCode::QuorumNotMet | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::Storage => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Debug, Serialize)]
struct ErrorBody<'a> {
    code: &'a str,
    message: &'a str,
}

fn json_error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    (status, axum::Json(ErrorBody { code, message })).into_response()
}

/// The API's routes, for `node`.
pub(crate) fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route(
            "/buckets/{bucket}/keys/{key}",
            get(get_key).put(put_key).delete(delete_key),
        )
        .route("/health", get(health))
        .route("/health/live", get(health))
        .route("/health/ready", get(ready))
        .route("/ring", get(ring))
        .route("/members", get(members))
        .route("/metrics", get(metrics))
        .route("/pbs", get(pbs))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            read_body,
        ))
        .layer(axum::middleware::from_fn_with_state(
            node.clone(),
            authorize,
        ))
        // The extractor's own limit (2 MiB unless set) must not be below
        // the one `read_body` holds.
        .layer(axum::extract::DefaultBodyLimit::max(
            node.config.data.max_value_bytes + 1,
        ))
        .with_state(node)
}

/// What the accept loop counted; `/metrics` shows it.
#[derive(Debug, Default)]
pub(crate) struct HttpCounters {
    /// Connections closed at accept because `http.max_connections` were open.
    pub(crate) refused_connections: AtomicU64,
    pub(crate) open_connections: AtomicU64,
}

impl HttpCounters {
    pub(crate) fn render(&self) -> String {
        format!(
            "# HELP norn_http_connections_refused_total HTTP connections closed at accept: too many open.\n\
             # TYPE norn_http_connections_refused_total counter\n\
             norn_http_connections_refused_total {}\n\
             # HELP norn_http_connections_open HTTP connections open.\n\
             # TYPE norn_http_connections_open gauge\n\
             norn_http_connections_open {}\n",
            self.refused_connections.load(Ordering::Relaxed),
            self.open_connections.load(Ordering::Relaxed),
        )
    }
}

/// Serves `app` on `listener` until the task is aborted, with the
/// connection limit and header timeout of `node`'s config.
pub(crate) async fn serve(listener: tokio::net::TcpListener, app: Router, node: Arc<Node>) {
    let config = &node.config.http;
    let slots = Arc::new(tokio::sync::Semaphore::new(config.max_connections));
    let header_timeout = Duration::from_millis(config.header_timeout_ms);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, say: back off instead of spinning.
                tracing::warn!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            node.http_counters
                .refused_connections
                .fetch_add(1, Ordering::Relaxed);
            drop(stream);
            continue;
        };
        let (app, counters) = (app.clone(), node.http_counters.clone());
        tokio::spawn(async move {
            counters.open_connections.fetch_add(1, Ordering::Relaxed);
            let service = hyper_util::service::TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = connection.await;
            counters.open_connections.fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// Reads the request body whole before the handler runs: refused (413)
/// when its declared length is over the limit, before a byte of it is
/// read; 408 when it does not arrive within `http.body_timeout_ms`.
async fn read_body(
    State(node): State<Arc<Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    // One byte over the value limit, so that the node's own check answers
    // an oversized value with its JSON error.
    let limit = node.config.data.max_value_bytes + 1;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!("a value holds at most {} bytes", limit - 1),
        )
    };
    if declared.is_some_and(|length| length > limit as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let timeout = Duration::from_millis(node.config.http.body_timeout_ms);
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(_)) => return too_large(),
        Err(_) => {
            let mut response = json_error(
                StatusCode::REQUEST_TIMEOUT,
                "timeout",
                "the request body did not arrive in time",
            );
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                HeaderValue::from_static("close"),
            );
            return response;
        }
    };
    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Requires the bearer token, when one is configured, on every route but
/// the health probes.
async fn authorize(
    State(node): State<Arc<Node>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    let Some(token) = node.config.http.bearer_token.as_deref() else {
        return next.run(request).await;
    };
    if matches!(
        request.uri().path(),
        "/health" | "/health/live" | "/health/ready"
    ) {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get("authorization")
        .map(HeaderValue::as_bytes)
        .unwrap_or_default();
    let expected = format!("Bearer {token}");
    if bool::from(subtle::ConstantTimeEq::ct_eq(
        presented,
        expected.as_bytes(),
    )) {
        next.run(request).await
    } else {
        json_error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required",
        )
    }
}

/// The context a write sends back, if any; a malformed one is refused.
fn context_of(headers: &HeaderMap) -> Result<Option<norn_clock::Context>, String> {
    let Some(value) = headers.get(CONTEXT_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| "X-Norn-Context is not text".to_string())?;
    codec::context_from_hex(text)
        .map(Some)
        .map_err(|e| format!("X-Norn-Context: {e}"))
}

fn with_context(mut response: HttpResponse, reply: &GetReply) -> HttpResponse {
    if let Ok(hex) = codec::context_to_hex(&reply.context) {
        if let Ok(value) = HeaderValue::from_str(&hex) {
            response.headers_mut().insert(CONTEXT_HEADER, value);
        }
    }
    if let Some(warning) = reply
        .warning
        .as_deref()
        .and_then(|w| HeaderValue::from_str(w).ok())
    {
        response.headers_mut().insert("x-norn-warning", warning);
    }
    response
}

#[derive(Debug, Serialize)]
struct SiblingsJson {
    siblings: Vec<SiblingView>,
    /// Tombstones among the siblings (deletes concurrent with the values).
    deleted: usize,
}

fn error_response(response: Response) -> HttpResponse {
    match response {
        Response::Error(e) => json_error(status_of(e.code), code_name(e.code), &e.message),
        other => json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &format!("unexpected reply {other:?}"),
        ),
    }
}

async fn get_key(
    State(node): State<Arc<Node>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<KeyQuery>,
) -> HttpResponse {
    let request = Request::Get {
        bucket: bucket.into_bytes(),
        key: key.into_bytes(),
        options: query.options(),
        timeout_ms: query.timeout_ms,
    };
    let reply = match node.driver.call(Caller::Http, request).await {
        Response::Value(reply) => reply,
        other => return error_response(other),
    };
    let live: Vec<&Vec<u8>> = reply
        .siblings
        .iter()
        .filter_map(|s| {
            if let Sibling::Value(v) = s {
                Some(v)
            } else {
                None
            }
        })
        .collect();
    let response = match live.as_slice() {
        [] => json_error(StatusCode::NOT_FOUND, "not_found", "no live value"),
        [value] => (
            StatusCode::OK,
            [("content-type", "application/octet-stream")],
            Body::from((*value).clone()),
        )
            .into_response(),
        values => {
            let siblings = values.iter().map(|v| SiblingView::of_value(v)).collect();
            let deleted = reply.siblings.len() - values.len();
            (
                StatusCode::MULTIPLE_CHOICES,
                axum::Json(SiblingsJson { siblings, deleted }),
            )
                .into_response()
        }
    };
    with_context(response, &reply)
}

fn receipt_headers(response: &mut HttpResponse, receipt: &WriteReceipt) {
    let join = |items: Vec<String>| items.join(",");
    let headers = [
        ("x-norn-acked", receipt.acked().to_string()),
        ("x-norn-sent", receipt.sent.to_string()),
        (
            "x-norn-primaries",
            join(receipt.primaries.iter().map(|p| p.to_string()).collect()),
        ),
        (
            "x-norn-fallbacks",
            join(
                receipt
                    .fallbacks
                    .iter()
                    .map(|(f, p)| format!("{f}={p}"))
                    .collect(),
            ),
        ),
        ("x-norn-synced", receipt.synced.to_string()),
    ];
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
}

async fn write_key(
    node: Arc<Node>,
    bucket: String,
    key: String,
    value: Option<Vec<u8>>,
    headers: HeaderMap,
    query: KeyQuery,
) -> HttpResponse {
    let context = match context_of(&headers) {
        Ok(context) => context,
        Err(message) => return json_error(StatusCode::BAD_REQUEST, "bad_request", &message),
    };
    let request = Request::Put {
        bucket: bucket.into_bytes(),
        key: key.into_bytes(),
        value,
        context,
        options: query.options(),
        timeout_ms: query.timeout_ms,
        forwarded: false,
    };
    let reply = node.driver.call(Caller::Http, request).await;
    match reply {
        Response::Written(written) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            receipt_headers(&mut response, &written.receipt);
            if let Some(warning) = written
                .warning
                .as_deref()
                .and_then(|w| HeaderValue::from_str(w).ok())
            {
                response.headers_mut().insert("x-norn-warning", warning);
            }
            response
        }
        Response::WriteFailed { receipt, message } => {
            let mut response =
                json_error(StatusCode::SERVICE_UNAVAILABLE, "quorum_not_met", &message);
            receipt_headers(&mut response, &receipt);
            response
        }
        other => error_response(other),
    }
}

async fn put_key(
    State(node): State<Arc<Node>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> HttpResponse {
    write_key(node, bucket, key, Some(body.to_vec()), headers, query).await
}

async fn delete_key(
    State(node): State<Arc<Node>>,
    Path((bucket, key)): Path<(String, String)>,
    Query(query): Query<KeyQuery>,
    headers: HeaderMap,
) -> HttpResponse {
    write_key(node, bucket, key, None, headers, query).await
}

async fn health(State(node): State<Arc<Node>>) -> HttpResponse {
    let ring_version = node.ring().await.map_or(0, |r| r.version());
    axum::Json(serde_json::json!({ "status": "ok", "node": node.id().to_string(), "ring_version": ring_version })).into_response()
}

async fn ready(State(node): State<Arc<Node>>) -> HttpResponse {
    let Some(status) = node.status().await else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the node is shutting down",
        );
    };
    let code = if status.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // Only the verdict: the probe needs no token, and the rest of the
    // status is for admins (`norn admin status`).
    let body = serde_json::json!({
        "ready": status.is_ready(),
        "not_ready": status.not_ready,
    });
    (code, axum::Json(body)).into_response()
}

async fn ring(State(node): State<Arc<Node>>) -> HttpResponse {
    match node.ring().await {
        Some(ring) => axum::Json(&*ring).into_response(),
        None => json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "this node holds no ring yet",
        ),
    }
}

async fn members(State(node): State<Arc<Node>>) -> HttpResponse {
    axum::Json(node.members().await).into_response()
}

/// Query parameters of `/pbs`; each defaults to this node's config.
#[derive(Debug, Deserialize)]
struct PbsQuery {
    n: Option<u8>,
    read_repair_percent: Option<u8>,
    trials: Option<u32>,
    seed: Option<u64>,
}

async fn pbs(State(node): State<Arc<Node>>, Query(query): Query<PbsQuery>) -> HttpResponse {
    let Some(measured) = node.latencies().await else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the node is shutting down",
        );
    };
    let seed = query.seed.unwrap_or(1);
    let n = query.n.unwrap_or(node.config.ring.default_n);
    let members = node.ring().await.map_or(0, |ring| ring.members().len());
    let every_node_a_replica = members <= usize::from(n);
    let live = norn_model::live::wars(std::slice::from_ref(&measured), every_node_a_replica, seed);
    let (latencies, samples) = match live {
        Ok(live) => live,
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", &e),
    };
    let read_repair_percent = query
        .read_repair_percent
        .unwrap_or(node.config.data.read_repair_percent);
    let trials = query.trials.unwrap_or(100_000);
    match norn_model::pbs::table(&latencies, n, read_repair_percent, trials, seed) {
        Ok(predictions) => axum::Json(serde_json::json!({
            "node": node.id().to_string(),
            "samples": samples,
            "read_repair_percent": read_repair_percent,
            "predictions": predictions,
        }))
        .into_response(),
        Err(e) => json_error(StatusCode::BAD_REQUEST, "bad_request", &e),
    }
}

async fn metrics(State(node): State<Arc<Node>>) -> HttpResponse {
    let text = node.metrics().await;
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        text,
    )
        .into_response()
}
