//! The reverse proxy (`--upstream`): what passed the gate goes to the API
//! it stands in front of, and the API's answer comes back untouched.
//!
//! - **The path as checked**: the request's path and query are forwarded
//!   exactly as they arrived (and as the route table matched them), after
//!   the upstream's base path.
//! - **Headers**: the request's, minus `Authorization`, the hop-by-hop
//!   headers (RFC 9110 §7.6.1, and any named in `Connection`), `Host` and
//!   every `Keygate-*` and `X-Forwarded-*` a client sent; plus
//!   `X-Forwarded-For` (the trusted chain and the peer), `-Proto`, `-Host`,
//!   `X-Request-Id` and the identity (`Keygate-Seller`, `-Token-Id`,
//!   `-Token-Kind`, `-Scopes`, `-Client-Id`, `-Assertion`).
//! - **Bodies stream** both ways; a request body over
//!   `--upstream-body-limit` is refused with 413 (at once when its
//!   `Content-Length` says so, else when the limit is reached).
//! - **Failures**: connection refused or reset → 502 `upstream_unavailable`;
//!   no answer within `--upstream-timeout` → 504 `upstream_timeout`; the
//!   upstream's own 4xx/5xx pass through. Only an idempotent request
//!   without a body (GET, HEAD, OPTIONS) is tried again, once, and only
//!   when sending it failed (a pooled connection the upstream had closed).
//! - **Connections** are pooled per HTTP worker (awc, actix's own client)
//!   and kept alive for a few seconds, shorter than common upstream idle
//!   timeouts (Node's is 5 s).

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::{BodyStream, SizedStream};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use crate::audit::UpstreamCall;
use crate::config::GatewayConfig;
use crate::gate::{Authenticated, Gate};

/// How long an idle pooled connection is kept.
const KEEP_ALIVE: Duration = Duration::from_secs(4);
/// How long connecting may take (within the answer's timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The upstream as configured; shared by the workers.
#[derive(Clone)]
pub struct Upstream {
    /// `scheme://host[:port]` and the base path, no trailing slash.
    base: String,
    timeout: Duration,
    body_limit: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Upstream {
    pub fn new(config: &GatewayConfig) -> anyhow::Result<Self> {
        use anyhow::Context;
        let upstream = config.upstream.as_ref().context("--upstream is not set")?;
        let tls = match (upstream.is_https(), &config.upstream_ca) {
            (false, _) => None,
            (true, ca) => Some(Arc::new(tls_config(ca.as_deref())?)),
        };
        Ok(Self {
            base: format!("{}{}", upstream.origin(), upstream.base_path()),
            timeout: config.timeout,
            body_limit: config.body_limit,
            tls,
        })
    }
}

/// Verifies the upstream against `--upstream-ca`, or the system's roots.
fn tls_config(ca: Option<&std::path::Path>) -> anyhow::Result<rustls::ClientConfig> {
    use anyhow::Context;
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("--upstream-ca {}", path.display()))?;
            let certificates = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--upstream-ca {}: not PEM certificates", path.display()))?;
            anyhow::ensure!(!certificates.is_empty(), "--upstream-ca {}: no certificate in it", path.display());
            for certificate in certificates {
                roots.add(certificate).with_context(|| format!("--upstream-ca {}", path.display()))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for certificate in found.certs {
                let _ = roots.add(certificate);
            }
            anyhow::ensure!(!roots.is_empty(), "no system root certificates found: give --upstream-ca");
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// One HTTP worker's client, with its pool of connections.
pub struct UpstreamClient {
    client: awc::Client,
    upstream: Upstream,
}

impl UpstreamClient {
    pub fn new(upstream: &Upstream) -> Self {
        let mut connector = awc::Connector::new().timeout(CONNECT_TIMEOUT).conn_keep_alive(KEEP_ALIVE);
        if let Some(tls) = &upstream.tls {
            connector = connector.rustls_0_23(tls.clone());
        }
        let client = awc::Client::builder()
            .connector(connector)
            .timeout(upstream.timeout)
            .disable_redirects()
            .no_default_headers()
            .finish();
        Self { client, upstream: upstream.clone() }
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1), never forwarded either way.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

/// The headers `Connection` names: hop-by-hop as well.
fn named_by_connection(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Whether a request header goes upstream as the client sent it.
fn forwards_request_header(name: &HeaderName, connection: &[String]) -> bool {
    let name_str = name.as_str();
    !(is_hop_by_hop(name)
        || connection.iter().any(|c| c == name_str)
        || name == header::AUTHORIZATION
        || name == header::HOST
        || name == header::CONTENT_LENGTH
        || name_str.starts_with("keygate-")
        || name_str.starts_with("x-forwarded-")
        || name_str == "x-request-id"
        || name_str == "forwarded")
}

fn refusal(req: &HttpRequest, status: StatusCode, code: &str, message: &str) -> HttpResponse {
    crate::error::json_error(status, code, message, &crate::request_id::of(req), [])
}

/// The forwarding and identity headers keygate adds.
fn added_headers(req: &HttpRequest, gate: &Gate, auth: Option<&Authenticated>) -> Vec<(HeaderName, HeaderValue)> {
    let mut added = Vec::with_capacity(12);
    let client = crate::remote::of_request(req, &gate.trusted_proxies);
    let peer = req.peer_addr().map(|a| a.ip().to_canonical());
    let peer_trusted = peer.is_some_and(|ip| gate.trusted_proxies.iter().any(|net| net.contains(&ip)));
    let mut chain: Vec<String> = Vec::new();
    if peer_trusted {
        chain.extend(
            req.headers()
                .get_all("x-forwarded-for")
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|e| e.trim().to_owned())
                .filter(|e| !e.is_empty()),
        );
    }
    chain.extend(peer.map(|peer| peer.to_string()));
    let mut text = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            added.push((HeaderName::from_static(name), value));
        }
    };
    if !chain.is_empty() {
        text("x-forwarded-for", chain.join(", "));
    }
    text("x-forwarded-proto", if client.https { "https" } else { "http" }.into());
    if let Some(host) = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()) {
        text("x-forwarded-host", host.to_owned());
    }
    text("x-request-id", crate::request_id::of(req));
    if let Some(auth) = auth {
        added.extend(crate::gate::identity::headers(auth, &gate.api.current()));
        if let Some(assertion) = gate.assertion(auth) {
            added.push((crate::gate::identity::ASSERTION, assertion));
        }
    }
    added
}

/// Sends what passed the gate upstream and streams the answer back.
pub async fn forward(
    req: HttpRequest,
    payload: web::Payload,
    client: web::Data<Option<UpstreamClient>>,
    gate: web::Data<Gate>,
) -> HttpResponse {
    let Some(client) = client.as_ref() else {
        return refusal(&req, StatusCode::NOT_FOUND, "not_found", "There is no API endpoint at this path.");
    };
    let upstream = &client.upstream;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > upstream.body_limit) {
        return too_large(&req, upstream.body_limit);
    }
    let mut target = format!("{}{}", upstream.base, req.path());
    if !req.query_string().is_empty() {
        target.push('?');
        target.push_str(req.query_string());
    }
    let auth = req.extensions().get::<Authenticated>().cloned();
    let headers = request_headers(&req, &gate, auth.as_ref());
    let build = || {
        let mut request = client.client.request(req.method().clone(), &target);
        for (name, value) in &headers {
            request = request.append_header((name.clone(), value.clone()));
        }
        request
    };
    let started = Instant::now();
    let over_limit = Rc::new(Cell::new(false));
    let has_body = declared.is_some_and(|length| length > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
    let sent = if !has_body {
        let idempotent = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
        match build().send().await {
            // A pooled connection the upstream had closed: once more.
            Err(awc::error::SendRequestError::Send(_)) if idempotent => build().send().await,
            other => other,
        }
    } else {
        let (limit, tripped, mut seen) = (upstream.body_limit, over_limit.clone(), 0u64);
        let body = payload.map(move |chunk| {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()))?;
            seen += chunk.len() as u64;
            if seen > limit {
                tripped.set(true);
                return Err(std::io::Error::other("the request body is over the limit"));
            }
            Ok::<_, std::io::Error>(chunk)
        });
        match declared {
            Some(length) => build().send_body(SizedStream::new(length, body)).await,
            None => build().send_stream(body).await,
        }
    };
    let latency_us = started.elapsed().as_micros() as i64;
    let (mut answer, status) = match sent {
        Ok(response) => {
            let status = response.status().as_u16();
            (stream_back(response, req.method()), Some(status))
        }
        Err(_) if over_limit.get() => (too_large(&req, upstream.body_limit), None),
        Err(awc::error::SendRequestError::Timeout) => {
            let message = format!("The API did not answer within {} s. Retry later.", upstream.timeout.as_secs_f32());
            (refusal(&req, StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", &message), None)
        }
        Err(e) => {
            tracing::warn!(error = %e, upstream = %upstream.base, "the upstream could not be reached");
            let message = "The API could not be reached. Retry later.";
            (refusal(&req, StatusCode::BAD_GATEWAY, "upstream_unavailable", message), None)
        }
    };
    // The gate records it in the request's audit row.
    answer.extensions_mut().insert(UpstreamCall { status, latency_us });
    answer
}

/// The request's headers as they go upstream (see the module).
fn request_headers(req: &HttpRequest, gate: &Gate, auth: Option<&Authenticated>) -> Vec<(HeaderName, HeaderValue)> {
    let connection = named_by_connection(req.headers());
    let mut headers: Vec<(HeaderName, HeaderValue)> = req
        .headers()
        .iter()
        .filter(|(name, _)| forwards_request_header(name, &connection))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    headers.extend(added_headers(req, gate, auth));
    headers
}

fn too_large(req: &HttpRequest, limit: u64) -> HttpResponse {
    refusal(
        req,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        &format!("The request body is over {limit} bytes, the most keygate forwards (--upstream-body-limit)."),
    )
}

/// The upstream's answer, streamed as it comes, minus hop-by-hop headers.
fn stream_back<S>(response: awc::ClientResponse<S>, method: &Method) -> HttpResponse
where
    S: futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>> + Unpin + 'static,
{
    let mut answer = HttpResponse::build(response.status());
    let connection = named_by_connection(response.headers());
    let mut length = None;
    for (name, value) in response.headers() {
        if name == header::CONTENT_LENGTH {
            length = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
            continue;
        }
        if !is_hop_by_hop(name) && !connection.iter().any(|c| c == name.as_str()) {
            answer.append_header((name.clone(), value.clone()));
        }
    }
    if *method == Method::HEAD {
        if let Some(length) = length {
            return answer.no_chunking(length).finish();
        }
        return answer.finish();
    }
    match length {
        Some(length) => answer.body(SizedStream::new(length, response)),
        None => answer.body(BodyStream::new(response)),
    }
}
