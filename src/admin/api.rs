//! The admin endpoint's routes: `GET /metrics`, the JSON API under
//! `/api/v1/` and the `GET /stats` page, with the browser checks
//! ([`super::guard`]), bearer-token checks and JSON errors. The bounds (time,
//! concurrency, body size) are tower layers around the whole router; the
//! header count, header size and header time are hyper's, set where the
//! connections are served (`super::serve`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use tower::ServiceBuilder;

use super::control::{BackendChange, Control, DEFAULT_DECISIONS};
use super::guard::{AllowedHosts, guard};
use super::stats_page::{self, DEFAULT_REFRESH_SECS, MAX_REFRESH_SECS, PAGE_DECISIONS};
use super::{AdminConfig, ApiError, Limits};
use crate::backend::AdminState;
use crate::pool::RECENT_DECISIONS;

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The router's pools and counters, to read and steer.
    pub control: Control,
    /// Renders `/metrics`; `None` when another recorder owns the process
    /// (an embedding program's): the route then answers 404.
    pub metrics: Option<PrometheusHandle>,
    /// The bearer token writes (and reads with `token_for_reads`) need.
    pub token: Option<String>,
    pub token_for_reads: bool,
    /// The `Host` names a request without the token may use.
    pub hosts: AllowedHosts,
}

impl Endpoint {
    /// Whether the request carries `Authorization: Bearer TOKEN` with the
    /// configured token (never, without one).
    pub fn token_matches(&self, headers: &HeaderMap) -> bool {
        match (self.token.as_deref(), bearer(headers)) {
            (Some(token), Some(given)) => constant_time_eq(given.as_bytes(), token.as_bytes()),
            _ => false,
        }
    }
}

/// The handlers' state: one `Endpoint` for every connection.
pub(crate) type Shared = Arc<Endpoint>;

/// The admin endpoint's whole service: routes, auth, JSON errors, bounds.
pub(crate) fn router(
    control: Control,
    metrics: Option<PrometheusHandle>,
    config: &AdminConfig,
    limits: &Limits,
) -> Router {
    let state = Arc::new(Endpoint {
        control,
        metrics,
        token: config.token.clone(),
        token_for_reads: config.token_for_reads,
        hosts: AllowedHosts::new(config.bind.ip(), &config.allowed_hosts),
    });
    let api = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/api/v1/pools", get(pools))
        .route("/api/v1/pools/{pool}/backends", get(backends))
        .route("/api/v1/pools/{pool}/backends/{backend}", post(set_backend))
        .route("/api/v1/pools/{pool}/affinity", get(lookup).delete(forget))
        .route("/api/v1/pools/{pool}/decisions", get(decisions))
        .route("/api/v1/stats", get(stats))
        .route("/api/v1/reload", post(reload).get(last_reload))
        .route("/stats", get(stats_html))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        // Outside the token check: a page on another site is refused
        // whatever it sends.
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state);
    let timeout = limits.request_timeout;
    api.layer(
        ServiceBuilder::new()
            // Outermost: whatever a layer below answers, the client gets a
            // JSON error.
            .layer(middleware::map_response(json_errors))
            .layer(axum::error_handling::HandleErrorLayer::new(
                move |e: tower::BoxError| async move { overloaded_or_slow(e, timeout) },
            ))
            .timeout(limits.request_timeout)
            .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
                limits.concurrent_requests,
            ))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                limits.max_body_bytes,
            )),
    )
}

fn overloaded_or_slow(e: tower::BoxError, timeout: Duration) -> ApiError {
    if e.is::<tower::timeout::error::Elapsed>() {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            format!("request not complete within {} ms", timeout.as_millis()),
        )
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("admin endpoint: {e}"),
        )
    }
}

/// Errors made outside our handlers (the body limit's 413, hyper's and
/// axum's own) get the same JSON shape as ours.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.is_success() || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "request body too large".to_string(),
        s => s.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    ApiError::new(status, message).into_response()
}

/// Writes need the token when one is set; reads too with
/// `token_for_reads`.
async fn authorize(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    let Some(token) = s.token.as_deref() else {
        return next.run(req).await;
    };
    if read && !s.token_for_reads {
        return next.run(req).await;
    }
    match bearer(req.headers()) {
        Some(t) if constant_time_eq(t.as_bytes(), token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::new(StatusCode::UNAUTHORIZED, "wrong bearer token").into_response(),
        None => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this request needs `Authorization: Bearer TOKEN` (the [admin] token)",
            )
            .into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().unwrap());
            r
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Compares without an early exit, so the time taken says nothing of how
/// much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn not_found() -> ApiError {
    ApiError::not_found(
        "no such resource: see docs/operations.md for /metrics, /stats and the /api/v1/ routes",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this resource",
    )
}

async fn metrics_text(State(s): State<Shared>) -> Result<Response, ApiError> {
    let Some(handle) = &s.metrics else {
        return Err(ApiError::not_found(
            "metrics are not recorded by this router (another recorder owns the process)",
        ));
    };
    s.control.publish();
    let text = handle.render();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        Body::from(text),
    )
        .into_response())
}

/// Re-reads the configuration file: 200 with what changed; 400 with the
/// file's mistakes under `reload` (the running configuration keeps
/// serving); 409 when
/// the router was started from flags and has no file to re-read.
async fn reload(State(s): State<Shared>) -> Result<Response, ApiError> {
    // The file is read and sockets bound: off the endpoint's runtime.
    let done = tokio::task::spawn_blocking(move || s.control.reload())
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the reload panicked"))?;
    match done {
        Ok(outcome) => Ok(Json(outcome).into_response()),
        Err(e) => match e.outcome() {
            Some(outcome) => {
                let error = format!(
                    "reload refused, the running configuration keeps serving:\n{}",
                    outcome.errors.join("\n")
                );
                let body = serde_json::json!({ "error": error, "status": 400, "reload": outcome });
                Ok((StatusCode::BAD_REQUEST, Json(body)).into_response())
            }
            None => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        },
    }
}

/// The last reload's outcome since the start (`null` before the first).
async fn last_reload(State(s): State<Shared>) -> impl IntoResponse {
    Json(serde_json::json!({ "last": s.control.last_reload() }))
}

async fn pools(State(s): State<Shared>) -> impl IntoResponse {
    Json(serde_json::json!({ "pools": s.control.pools() }))
}

async fn backends(
    State(s): State<Shared>,
    Path(pool): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let backends = s.control.backends(&pool)?;
    Ok(Json(
        serde_json::json!({ "pool": pool, "backends": backends }),
    ))
}

/// The body of a backend change. Unknown fields are refused, so a typo is
/// a 400 rather than a silent no-op.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBody {
    state: Option<String>,
    weight: Option<u32>,
}

async fn set_backend(
    State(s): State<Shared>,
    Path((pool, backend)): Path<(String, String)>,
    JsonBody(body): JsonBody<ChangeBody>,
) -> Result<impl IntoResponse, ApiError> {
    let state = match body.state.as_deref() {
        None => None,
        Some(name) => Some(AdminState::parse(name).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown state `{name}`: expected \"up\", \"drain\" or \"maint\""
            ))
        })?),
    };
    let view = s.control.set_backend(
        &pool,
        &backend,
        BackendChange {
            state,
            weight: body.weight,
        },
    )?;
    Ok(Json(view))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AffinityQuery {
    key: Option<String>,
    client: Option<String>,
}

enum Target {
    Key(String),
    Client(String),
}

fn target(
    q: Result<Query<AffinityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Target, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    match (q.key, q.client) {
        (Some(k), None) => Ok(Target::Key(k)),
        (None, Some(c)) => Ok(Target::Client(c)),
        _ => Err(ApiError::bad_request(
            "give exactly one of ?key=HEX and ?client=IP",
        )),
    }
}

async fn lookup(
    State(s): State<Shared>,
    Path(pool): Path<String>,
    q: Result<Query<AffinityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    Ok(match target(q)? {
        Target::Key(k) => Json(s.control.lookup_key(&pool, &k)?).into_response(),
        Target::Client(c) => Json(s.control.lookup_client(&pool, &c)?).into_response(),
    })
}

async fn forget(
    State(s): State<Shared>,
    Path(pool): Path<String>,
    q: Result<Query<AffinityQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    Ok(match target(q)? {
        Target::Key(k) => Json(s.control.forget_key(&pool, &k)?).into_response(),
        Target::Client(c) => Json(s.control.forget_client(&pool, &c)?).into_response(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionsQuery {
    limit: Option<usize>,
}

async fn decisions(
    State(s): State<Shared>,
    Path(pool): Path<String>,
    q: Result<Query<DecisionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_DECISIONS);
    if limit == 0 || limit > RECENT_DECISIONS {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {RECENT_DECISIONS}"
        )));
    }
    let decisions = s.control.decisions(&pool, limit)?;
    Ok(Json(
        serde_json::json!({ "pool": pool, "decisions": decisions }),
    ))
}

async fn stats(State(s): State<Shared>) -> impl IntoResponse {
    Json(s.control.stats())
}

/// `GET /stats?refresh=N`. Unknown parameters are refused: in particular
/// `?token=`, since a token in a URL ends up in browser history and logs;
/// the page takes the same `Authorization` header as every other read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    refresh: Option<u32>,
}

/// What the page's answer says besides its type: never cached (the figures
/// are live), and, as it needs no script and loads nothing, a policy that
/// allows only its own inline style, so markup that slipped past the
/// escaping could still run nothing.
const PAGE_HEADERS: [(header::HeaderName, &str); 5] = [
    (header::CONTENT_TYPE, "text/html; charset=utf-8"),
    (header::CACHE_CONTROL, "no-store"),
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

async fn stats_html(
    State(s): State<Shared>,
    q: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let refresh = q.refresh.unwrap_or(DEFAULT_REFRESH_SECS);
    if refresh > MAX_REFRESH_SECS {
        return Err(ApiError::bad_request(format!(
            "refresh must be between 0 (off) and {MAX_REFRESH_SECS} seconds"
        )));
    }
    let html = stats_page::render(&s.control.overview(PAGE_DECISIONS), refresh);
    Ok((PAGE_HEADERS, html).into_response())
}

/// `Json`, with its rejections (bad JSON, wrong content type, a body over
/// the limit) answered as JSON errors with their own status.
struct JsonBody<T>(T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(JsonBody(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    let status = e.status();
    // Over-long bodies surface as a failed buffering with 413.
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "request body too large".to_string()
    } else {
        e.body_text()
    };
    let status = if status.is_client_error() {
        status
    } else {
        StatusCode::BAD_REQUEST
    };
    // 422 is axum's answer for JSON of the wrong shape; the contract's is 400.
    let status = if status == StatusCode::UNPROCESSABLE_ENTITY {
        StatusCode::BAD_REQUEST
    } else {
        status
    };
    ApiError::new(status, message)
}
