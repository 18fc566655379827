//! The middleware around every `/api/` request: a short pipeline of steps
//! (transport → authenticate → limit → authorize → route → call), each
//! refusing with the gate's one error type, and one place at the end that
//! adds the credential's headers and writes the request's audit row,
//! whatever happened inside.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage};

use super::anonymous::Source;
use super::authenticate::{authenticate, Authenticated, Caller};
use super::error::GateError;
use super::routes::{Access, RouteMatch};
use super::Gate;
use crate::audit::limit_note::LimitNote;
use crate::audit::writer::WriterClosed;
use crate::audit::{ApiRequest, NewAuditEvent, Outcome, RequestNote, UpstreamCall};
use crate::gateway::Api;
use crate::limits::{LimitState, Quota};
use crate::remote::ClientView;
use crate::tokens::Scope;

/// The request as seen and what the gate learnt of it, in one allocation.
pub(super) struct Pass {
    pub(super) seen: Seen,
    pub(super) trail: Trail,
}

/// What the steps learnt, for the answer's headers and the audit row.
#[derive(Default)]
pub(super) struct Trail {
    caller: Caller,
    pub(super) auth: Option<Authenticated>,
    pub(super) limit: Option<LimitState>,
    /// What the upstream did, for a forwarded request.
    upstream: Option<UpstreamCall>,
    /// The handler's word for the row ([`RequestNote`]).
    note: Option<String>,
}

/// The request as the audit row records it, read before routing (the
/// router needs the request to itself afterwards).
pub(super) struct Seen {
    method: Cow<'static, str>,
    path: String,
    user_agent: Option<String>,
    pub(super) request_id: String,
    pub(super) client: ClientView,
    /// The scope text of the matched operation, for the audit row.
    required: Option<std::sync::Arc<str>>,
    /// The route's index for the metrics (`RouteTable::counters`).
    route_label: usize,
    /// The API the request was checked against (a reload does not change it).
    api: std::sync::Arc<Api>,
}

impl Pass {
    /// The request `method path` (as the route table matches it) from
    /// `client`, about to be checked against the API in force.
    pub(super) fn of(
        gate: &Gate,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        request_id: String,
        client: ClientView,
    ) -> (Box<Self>, RouteMatch) {
        let api = gate.api.current();
        let (route, route_label) = api.routes.resolve(method, path);
        // Boxed (one small allocation) to keep the futures that hold it,
        // which actix boxes, within the allocator's per-thread cache.
        let pass = Box::new(Pass {
            seen: Seen {
                method: method_name(method),
                path: path.to_owned(),
                // Kept as the audit row keeps it: also the key of `anonymous`'s table.
                user_agent: headers
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|ua| crate::audit::clipped(ua, crate::audit::MAX_TEXT).to_owned()),
                request_id,
                client,
                required: match route {
                    RouteMatch::Operation(i) => api.routes.operation(i).required.clone(),
                    _ => None,
                },
                route_label,
                api,
            },
            trail: Trail::default(),
        });
        (pass, route)
    }
}

/// The API's middleware; see the module comment.
pub async fn api_gate(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let gate = req
        .app_data::<web::Data<Gate>>()
        .cloned()
        .ok_or_else(|| actix_web::error::ErrorInternalServerError("the gate is not registered"))?;
    let client = crate::remote::of_service_request(&req, &gate.trusted_proxies);
    let request_id = crate::request_id::of(req.request());
    let (mut pass, route) = Pass::of(&gate, req.method(), req.path(), req.headers(), request_id, client);
    let (mut response, outcome) =
        match check(&gate, &pass.seen, &route, authorization(req.headers()), &mut pass.trail).await {
            Ok(auth) => {
                if let Some(auth) = auth {
                    req.extensions_mut().insert(auth);
                }
                match crate::panics::catch(next.call(req)).await {
                    Ok(Ok(response)) => {
                        let upstream = response.response().extensions().get::<UpstreamCall>().copied();
                        pass.trail.upstream = upstream;
                        pass.trail.note = response.response().extensions().get::<RequestNote>().map(|n| n.0.clone());
                        let outcome = match upstream {
                            Some(UpstreamCall { status: None, .. }) => Outcome::UpstreamError,
                            _ if response.status().is_success() || response.status().is_redirection() => Outcome::Ok,
                            _ => Outcome::Error,
                        };
                        let response = response.map_into_boxed_body();
                        match upstream {
                            // The upstream's own answers pass through untouched.
                            Some(UpstreamCall { status: Some(_), .. }) => (response, outcome),
                            _ => (crate::error::as_json_refusal(response, &pass.seen.request_id), outcome),
                        }
                    }
                    Ok(Err(e)) => {
                        // An error no handler turned into an answer: recorded,
                        // then left to actix to answer.
                        let status = e.as_response_error().status_code().as_u16();
                        finish(&gate, *pass, Outcome::Error, status, started).await?;
                        return Err(e);
                    }
                    Err(why) => {
                        // A panic: the request went with it, so the answer is
                        // an error actix renders (500 JSON), after its row.
                        tracing::error!(panic = %why, request_id = %pass.seen.request_id, "an API request panicked");
                        let request_id = pass.seen.request_id.clone();
                        finish(&gate, *pass, Outcome::Error, 500, started).await?;
                        return Err(crate::panics::Panicked { api: true, request_id }.into());
                    }
                }
            }
            Err(refusal) => {
                slow_down(&gate, &refusal, pass.seen.client.ip).await;
                (req.into_response(refusal.response(&pass.seen.request_id)), refusal.outcome())
            }
        };
    if let Some(auth) = &pass.trail.auth {
        credential_headers(response.headers_mut(), auth, pass.trail.limit);
    }
    finish(&gate, *pass, outcome, response.status().as_u16(), started).await?;
    Ok(response)
}

/// The steps before the handler; each refusal is the gate's one error type.
/// `Ok(None)`: a public route, no credential needed.
pub(super) async fn check(
    gate: &Gate,
    seen: &Seen,
    route: &RouteMatch,
    authorization: Result<Option<&HeaderValue>, GateError>,
    trail: &mut Trail,
) -> Result<Option<Authenticated>, GateError> {
    let (api, client) = (&seen.api, seen.client);
    match route {
        // Never matched, never forwarded, and the token is not looked at.
        RouteMatch::Refused(why) => return Err(GateError::InvalidRequest(why)),
        // Public operations (the OpenAPI document, `security: []`) are for
        // anyone; they still get their audit row.
        RouteMatch::Operation(i) if api.routes.operation(*i).access == Access::Public => return Ok(None),
        _ => {}
    }
    transport(client)?;
    let auth = authenticate(gate, authorization?, client.ip, &mut trail.caller).await?;
    trail.auth = Some(auth.clone());
    gate.usage.note(&auth.credential, client.ip);
    // Every authenticated request counts, refused ones included.
    let limit = limit(gate, &auth).await;
    trail.limit = Some(limit);
    authorize(&auth, route, api)?;
    if let Some(retry_after_secs) = limit.retry_after_secs {
        // The row says which limit it was, so API Logs can tell the seller.
        let note = LimitNote { limit: limit.limit, window_secs: limit.window_secs, retry_after_secs };
        trail.note = Some(note.to_string());
        return Err(GateError::RateLimited { retry_after_secs });
    }
    match route {
        RouteMatch::NotFound => Err(GateError::NotFound),
        RouteMatch::MethodNotAllowed { allow } => Err(GateError::MethodNotAllowed { allow: allow.clone() }),
        RouteMatch::Refused(why) => Err(GateError::InvalidRequest(why)),
        RouteMatch::Operation(_) => Ok(Some(auth)),
    }
}

/// An address that keeps sending invalid tokens waits for its answers
/// (see `tarpit`).
pub(super) async fn slow_down(gate: &Gate, refusal: &GateError, ip: Option<std::net::IpAddr>) {
    if matches!(refusal, GateError::InvalidToken(_)) {
        if let Some(delay) = gate.tarpit.failed(ip) {
            Box::pin(tokio::time::sleep(delay)).await;
        }
    }
}

/// The one `Authorization` header; two are refused (RFC 6750 §2: one
/// method of sending a token per request).
pub(super) fn authorization(headers: &HeaderMap) -> Result<Option<&header::HeaderValue>, GateError> {
    let mut values = headers.get_all(header::AUTHORIZATION);
    let first = values.next();
    if values.next().is_some() {
        return Err(GateError::InvalidRequest("send one Authorization header, not several"));
    }
    Ok(first)
}

/// Plain HTTP from another machine: refused before the token is read.
fn transport(client: ClientView) -> Result<(), GateError> {
    if client.may_send_secrets() {
        Ok(())
    } else {
        Err(GateError::HttpsRequired)
    }
}

async fn limit(gate: &Gate, auth: &Authenticated) -> LimitState {
    let credential = &auth.credential;
    let per_minute = credential.rate_limit_per_minute.unwrap_or(gate.default_rate_limit);
    gate.limits.check(&credential.public_id, Quota::per_minute(per_minute)).await
}

/// The route's scopes, against what the credential may do now: its own
/// scopes (or every scope of the catalogue for a personal token), of which
/// a retired one grants nothing.
pub fn authorize(auth: &Authenticated, route: &RouteMatch, api: &Api) -> Result<(), GateError> {
    let RouteMatch::Operation(i) = route else { return Ok(()) };
    let credential = &auth.credential;
    let grants = |scope: &Scope| match credential.every_scope {
        true => api.catalogue.contains(scope),
        false => credential.scopes.grants(scope, &api.catalogue),
    };
    match api.routes.operation(*i).access.missing(grants) {
        None => Ok(()),
        Some(lacking) => Err(GateError::InsufficientScope {
            required: lacking.iter().map(Scope::as_str).collect::<Vec<_>>().join(" "),
            holder: super::authenticate::holder_of(credential),
        }),
    }
}

const CACHE_CONTROL: HeaderName = HeaderName::from_static("cache-control");
const EXPIRATION: HeaderName = HeaderName::from_static("keygate-token-expiration");
const ROTATE_BY: HeaderName = HeaderName::from_static("keygate-token-rotate-by");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// The rate-limit headers and `Keygate-Token-Expiration` / `-Rotate-By`.
/// Every answer to a credential carries them, so they are built without
/// `format!`: the dates were formatted when the row was read, the numbers
/// go through `itoa` into a buffer on the stack.
pub(super) fn credential_headers(headers: &mut HeaderMap, auth: &Authenticated, limit: Option<LimitState>) {
    let credential = &auth.credential;
    // Room for these eight at once, not a rehash of the map halfway.
    headers.reserve(8);
    let now = chrono::Utc::now();
    // Every answer to a credential is that caller's data: never cached.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(EXPIRATION, credential.expiration_header.clone());
    if let Some((due, text)) = &credential.rotate_by_header {
        if now.naive_utc() >= *due {
            headers.insert(ROTATE_BY, text.clone());
        }
    }
    if let Some(limit) = limit {
        let (policy, max_value) = quota_headers(limit.limit, limit.window_secs);
        headers.insert(RATELIMIT_POLICY, policy);
        headers.insert(X_RATELIMIT_LIMIT, max_value);
        // The three that change with every request share one buffer (one
        // allocation); each header is a slice of it.
        let (mut max, mut left, mut reset, mut reset_at) =
            (itoa::Buffer::new(), itoa::Buffer::new(), itoa::Buffer::new(), itoa::Buffer::new());
        let (max, left) = (max.format(limit.limit).as_bytes(), left.format(limit.remaining).as_bytes());
        let reset = reset.format(limit.reset_secs).as_bytes();
        let reset_at = reset_at.format(now.timestamp().max(0) as u64 + limit.reset_secs).as_bytes();
        let mut text = HeaderText::default();
        let ratelimit = text.push(&[b"limit=", max, b", remaining=", left, b", reset=", reset]);
        let remaining = text.push(&[left]);
        let reset_at = text.push(&[reset_at]);
        let text = web::Bytes::from_owner(text);
        for (name, range) in [(RATELIMIT, ratelimit), (X_RATELIMIT_REMAINING, remaining), (X_RATELIMIT_RESET, reset_at)]
        {
            headers.insert(name, header_value(text.slice(range)));
        }
    }
}

/// The rate-limit headers' text, written on the stack and handed over to
/// `Bytes` whole: digits and ASCII only, at most 96 bytes (the longest is
/// the three per-request values: 6 + 10 + 12 + 10 + 8 + 20, then 10 and 20).
struct HeaderText {
    text: [u8; 96],
    len: usize,
}

impl Default for HeaderText {
    fn default() -> Self {
        Self { text: [0; 96], len: 0 }
    }
}

impl HeaderText {
    /// Appends the parts; returns where they are. Never overflows: what
    /// would not fit is left out (it cannot happen with these numbers).
    fn push(&mut self, parts: &[&[u8]]) -> std::ops::Range<usize> {
        let start = self.len;
        for part in parts {
            let end = (self.len + part.len()).min(self.text.len());
            self.text[self.len..end].copy_from_slice(&part[..end - self.len]);
            self.len = end;
        }
        start..self.len
    }
}

impl AsRef<[u8]> for HeaderText {
    fn as_ref(&self) -> &[u8] {
        &self.text[..self.len]
    }
}

/// Text from a [`HeaderText`] as a header value (ASCII text and digits
/// only, so always a valid one), sharing its buffer.
fn header_value(text: web::Bytes) -> HeaderValue {
    HeaderValue::from_maybe_shared(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// The method as the audit row keeps it: a standard one by its static name,
/// without an allocation.
fn method_name(method: &Method) -> Cow<'static, str> {
    Cow::Borrowed(match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        other => return Cow::Owned(other.to_owned()),
    })
}

/// `RateLimit-Policy` and `X-RateLimit-Limit` depend only on the quota,
/// which is the same for every caller on the default limit: built once per
/// quota change on this thread (one entry, so bounded), then cloned (a
/// reference count) instead of built twice a request.
fn quota_headers(limit: u32, window_secs: u64) -> (HeaderValue, HeaderValue) {
    thread_local! {
        static LAST: RefCell<Option<(u32, u64, HeaderValue, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.with_borrow_mut(|last| match last {
        Some((l, w, policy, max)) if *l == limit && *w == window_secs => (policy.clone(), max.clone()),
        _ => {
            let (mut max, mut window) = (itoa::Buffer::new(), itoa::Buffer::new());
            let mut text = HeaderText::default();
            text.push(&[max.format(limit).as_bytes(), b";w=", window.format(window_secs).as_bytes()]);
            let policy = header_value(web::Bytes::from_owner(text));
            let max = HeaderValue::from(limit);
            *last = Some((limit, window_secs, policy.clone(), max.clone()));
            (policy, max)
        }
    })
}

/// The row's detail: the handler's note, and whether the caller presented
/// the secret before its token's last rotation (it works only for a grace).
fn note(trail: &Trail) -> Option<String> {
    let previous = trail.auth.as_ref().is_some_and(|auth| auth.by_previous_secret);
    match (trail.note.clone(), previous) {
        (note, false) => note,
        (None, true) => Some(PREVIOUS_SECRET.to_owned()),
        (Some(note), true) => Some(format!("{PREVIOUS_SECRET}; {note}")),
    }
}

/// The detail of a request made with a token's previous secret.
pub const PREVIOUS_SECRET: &str = "previous secret: the token was rotated, this secret works only for its grace";

/// The one place that writes the request's audit row. The answer leaves
/// only once the row is committed (group commit, see `audit::writer`).
///
/// Everything but the wait happens when this is called, so the future every
/// API request awaits holds only the wait (not the row, the request's
/// strings, nor the rare summaries' path, which is boxed).
pub(super) fn finish(
    gate: &Gate,
    Pass { seen, trail }: Pass,
    outcome: Outcome,
    status: u16,
    started: Instant,
) -> impl Future<Output = Result<(), actix_web::Error>> + '_ {
    let elapsed = started.elapsed();
    crate::metrics::global().api_request(
        seen.api.routes.counters(),
        seen.route_label,
        status,
        outcome,
        elapsed.as_secs_f64(),
    );
    let detail = note(&trail);
    let row = ApiRequest {
        seller_id: trail.caller.seller_id,
        token_id: trail.caller.token_id,
        method: seen.method,
        path: seen.path,
        status,
        outcome,
        required_scope: seen.required,
        ip: seen.client.ip.map(|ip| ip.to_string()),
        user_agent: seen.user_agent,
        latency_us: elapsed.as_micros() as i64,
        request_id: seen.request_id,
        client_id: trail.caller.client_id,
        upstream: trail.upstream,
        detail,
    };
    let mut summaries = Vec::new();
    let mut own = true;
    if trail.auth.is_none() && outcome != Outcome::Ok {
        // Refused without a valid credential: past a budget, counted into a
        // summary row instead of a row each (see `anonymous`).
        let source = Source { ip: seen.client.ip, user_agent: row.user_agent.clone(), seller_id: row.seller_id };
        own = gate.anonymous.admit(source, row.token_id.as_deref(), status, outcome, crate::db::now(), &mut summaries);
    }
    let closed = |_| {
        tracing::error!("the audit writer is closed; refusing to answer without an audit row");
        actix_web::error::ErrorServiceUnavailable("shutting down")
    };
    let written = if !summaries.is_empty() {
        // The summaries go first, then the request's own row, if it has one.
        Written::Later(Box::pin(async move {
            send_summaries(gate, summaries).await?;
            if own {
                gate.audit.record(NewAuditEvent::api(row)).await?;
            }
            Ok(())
        }))
    } else if own {
        Written::Record(gate.audit.record(NewAuditEvent::api(row)))
    } else {
        Written::Nothing
    };
    async move {
        match written {
            Written::Record(record) => record.await,
            Written::Later(later) => later.await,
            Written::Nothing => Ok(()),
        }
        .map_err(closed)
    }
}

/// What `finish` waits for.
enum Written<'a, R> {
    /// The request's row, queued, until its commit.
    Record(R),
    /// Summary rows first, then perhaps the request's own.
    Later(Pin<Box<dyn Future<Output = Result<(), WriterClosed>> + 'a>>),
    /// Counted into a summary row that is not closed yet.
    Nothing,
}

/// Summary rows the anonymous budget closed, queued before the request's own.
async fn send_summaries(gate: &Gate, finished: Vec<NewAuditEvent>) -> Result<(), WriterClosed> {
    for summary in finished {
        gate.audit.send(summary).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::tokens::store::ApiToken;
    use crate::tokens::{ScopeSet, StoredCredential, TokenKind};

    fn caller(kind: TokenKind, scopes: &str) -> Authenticated {
        let mut row = ApiToken::for_tests("abcdefghijklmnop", String::new(), crate::db::now());
        row.kind = kind;
        row.scopes = scopes.into();
        Authenticated { credential: StoredCredential::of_api_token(&row).credential, by_previous_secret: false }
    }

    /// The gate's truth table: transport, then scope against what the
    /// credential carries now.
    #[test]
    fn transport_and_scope_decide_in_order() {
        let loopback = ClientView { ip: Some("127.0.0.1".parse().unwrap()), https: false };
        let remote_plain = ClientView { ip: Some("203.0.113.9".parse().unwrap()), https: false };
        let remote_tls = ClientView { ip: Some("203.0.113.9".parse().unwrap()), https: true };
        assert_eq!(transport(loopback), Ok(()));
        assert_eq!(transport(remote_tls), Ok(()));
        assert_eq!(transport(remote_plain), Err(GateError::HttpsRequired));

        let api =
            Api::load(&crate::gateway::ApiSource::Demo, &crate::gateway::Mode::Demo, &"http://k".parse().unwrap())
                .expect("the demo API");
        let route = |method: Method, path: &str| api.routes.matches(&method, path);
        let (orders_read, orders_write) = (route(Method::GET, "/api/v1/orders"), route(Method::POST, "/api/v1/orders"));
        let service = caller(TokenKind::Service, "orders:write");
        assert_eq!(authorize(&service, &orders_read, &api), Ok(()), "write implies read");
        assert_eq!(authorize(&service, &orders_write, &api), Ok(()));
        let reader = caller(TokenKind::Service, "orders:read");
        assert_eq!(
            authorize(&reader, &orders_write, &api),
            Err(GateError::InsufficientScope {
                required: "orders:write".into(),
                holder: crate::gate::error::Holder::ApiToken
            })
        );
        let any_token = route(Method::GET, "/api/v1/token");
        assert_eq!(authorize(&reader, &any_token, &api), Ok(()), "no scope needed");
        let personal = caller(TokenKind::Personal, "");
        assert!(personal.credential.every_scope, "a personal token carries every scope of the catalogue");
        assert_eq!(authorize(&personal, &route(Method::GET, "/api/v1/reports/sales"), &api), Ok(()));
        let retired = caller(TokenKind::Service, "orders:read bogus:read");
        assert_eq!(retired.scopes(), &ScopeSet::parse("bogus:read orders:read"), "kept as stored");
        assert_eq!(authorize(&retired, &orders_read, &api), Ok(()));
        let oauth = caller(TokenKind::OAuth, "products:read");
        assert_eq!(authorize(&oauth, &route(Method::GET, "/api/v1/products"), &api), Ok(()));
        assert!(Arc::strong_count(&oauth.credential) >= 1);
    }

    /// The audit row's method: a standard one without an allocation, any
    /// other exactly as sent.
    #[test]
    fn methods_are_named_as_sent() {
        for name in ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"] {
            let named = method_name(&Method::from_bytes(name.as_bytes()).unwrap());
            assert!(matches!(named, Cow::Borrowed(n) if n == name), "{name}");
        }
        for name in ["PROPFIND", "TRACE", "get"] {
            assert_eq!(method_name(&Method::from_bytes(name.as_bytes()).unwrap()), name);
        }
    }

    /// The quota headers kept from the last caller never answer another
    /// caller with another quota: alternating limits get their own values.
    #[test]
    fn quota_headers_follow_each_callers_quota() {
        let mut headers = HeaderMap::new();
        let auth = caller(TokenKind::Service, "orders:read");
        let state = |limit, window_secs| LimitState {
            limit,
            window_secs,
            remaining: limit - 1,
            reset_secs: 1,
            retry_after_secs: None,
        };
        for (limit, window) in [(600, 60), (600, 60), (50, 60), (600, 60), (600, 3600), (50, 60)] {
            credential_headers(&mut headers, &auth, Some(state(limit, window)));
            let text = |name: &HeaderName| headers.get(name).unwrap().to_str().unwrap().to_owned();
            assert_eq!(text(&RATELIMIT_POLICY), format!("{limit};w={window}"));
            assert_eq!(text(&X_RATELIMIT_LIMIT), limit.to_string());
            assert_eq!(text(&X_RATELIMIT_REMAINING), (limit - 1).to_string());
            assert_eq!(text(&RATELIMIT), format!("limit={limit}, remaining={}, reset=1", limit - 1));
            let reset_at: i64 = text(&X_RATELIMIT_RESET).parse().unwrap();
            assert!((reset_at - (chrono::Utc::now().timestamp() + 1)).abs() <= 2, "{reset_at}");
        }
        // The longest numbers fit whole.
        let reset_secs = 9_999_999_999_999_999_999;
        let longest = LimitState {
            limit: u32::MAX,
            window_secs: 60,
            remaining: u32::MAX - 1,
            reset_secs,
            retry_after_secs: None,
        };
        credential_headers(&mut headers, &auth, Some(longest));
        assert_eq!(
            headers.get(&RATELIMIT).unwrap(),
            &format!("limit={}, remaining={}, reset={reset_secs}", u32::MAX, u32::MAX - 1)
        );
        assert_eq!(headers.get(&X_RATELIMIT_REMAINING).unwrap(), &(u32::MAX - 1).to_string());
        let reset_at = chrono::Utc::now().timestamp() as u64 + reset_secs;
        let sent: u64 = headers.get(&X_RATELIMIT_RESET).unwrap().to_str().unwrap().parse().unwrap();
        assert!(sent.abs_diff(reset_at) <= 2 && sent >= 10_000_000_000_000_000_000, "{sent}");
    }

    /// A handler that panics still gets its answer (500 JSON) and its row.
    #[actix_web::test]
    async fn a_panicking_handler_is_answered_and_audited() {
        use crate::audit::writer::{AuditWriter, Sink};
        use crate::db::schema::audit_events;
        use actix_web::http::Method;
        use actix_web::{middleware::from_fn, App, HttpResponse, HttpServer};
        use diesel::prelude::*;

        let dir = tempfile::tempdir().unwrap();
        let url = crate::db::DatabaseUrl::parse(dir.path().join("g.db").to_str().unwrap()).unwrap();
        let pool = crate::db::build_pool(&url, 2).unwrap();
        crate::db::run_migrations(&mut pool.get().unwrap()).unwrap();
        let db = crate::db::Db::new(pool.clone(), &url, 0);
        let (audit, writer) = AuditWriter::start(Sink::open(&url, Default::default()).unwrap(), 16);
        let gate = Arc::new(Gate {
            db: db.clone(),
            tokens: Arc::new(crate::tokens::cache::TokenCache::new()),
            verifier: Arc::new(super::super::Verifier::new(crate::hashing::Hasher::new(1))),
            clock: Default::default(),
            limits: crate::limits::RateLimits::local(10),
            tarpit: Default::default(),
            anonymous: Default::default(),
            usage: crate::tokens::usage::LastUsed::new(db),
            audit,
            api: Arc::new(crate::gateway::LiveApi::fixed(
                Api::of(
                    "boom",
                    Default::default(),
                    vec![super::super::Operation::new(
                        Method::GET,
                        "/api/boom",
                        super::super::Access::Public,
                        super::super::Handler::Keygate,
                    )],
                )
                .unwrap(),
                crate::gateway::Mode::Demo,
            )),
            assertions: None,
            default_rate_limit: 600,
            trusted_proxies: Vec::new(),
        });
        async fn boom() -> HttpResponse {
            panic!("boom")
        }
        let data = web::Data::from(gate);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .service(web::scope("/api").wrap(from_fn(api_gate)).route("/boom", web::get().to(boom)))
        })
        .workers(1)
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        let answer = reqwest::get(format!("http://127.0.0.1:{port}/api/boom")).await.unwrap();
        assert_eq!(answer.status(), 500);
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"], "internal_error");
        handle.stop(true).await;
        writer.shutdown().await;
        let rows: Vec<(Option<String>, Option<i32>, Outcome)> = audit_events::table
            .select((audit_events::path, audit_events::status, audit_events::outcome))
            .load(&mut pool.get().unwrap())
            .unwrap();
        assert_eq!(rows, vec![(Some("/api/boom".to_owned()), Some(500), Outcome::Error)]);
    }
}
