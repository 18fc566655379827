//! The OAuth server's endpoints in the OpenAPI document: `/oauth/token`,
//! `/oauth/revoke`, `/oauth/introspect`, `/oauth/device_authorization`
//! (form-encoded, RFC 6749, 7009, 7662, 8628) and the RFC 8414 metadata
//! document. `/oauth/authorize` and `/device` are browser pages (login and
//! consent), not API calls, and are left out.

use serde_json::{json, Map, Value};

use crate::oauth_endpoints::metadata;

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn header(name: &str) -> Value {
    json!({"$ref": format!("#/components/headers/{name}")})
}

fn answer(description: &str, schema: Value, headers: &[&str]) -> Value {
    let mut map = Map::new();
    map.insert("X-Request-Id".into(), header("X-Request-Id"));
    for name in headers {
        map.insert((*name).into(), header(name));
    }
    json!({"description": description, "headers": map, "content": {"application/json": {"schema": schema}}})
}

/// The answers every form endpoint shares, besides its 200.
fn refusals() -> Map<String, Value> {
    let error = || reference("OAuthError");
    let mut map = Map::new();
    map.insert(
        "400".into(),
        answer(
            "`invalid_request`, `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`, `invalid_scope` (RFC 6749 §5.2); for the device grant `authorization_pending`, `slow_down`, `access_denied`, `expired_token` (RFC 8628 §3.5)",
            error(),
            &[],
        ),
    );
    map.insert(
        "401".into(),
        json!({
            "description": "`invalid_client`: unknown client or wrong secret; `WWW-Authenticate: Basic` when the client authenticated with Basic",
            "headers": {
                "X-Request-Id": header("X-Request-Id"),
                "WWW-Authenticate": {"description": "`Basic realm=\"keygate\"`, after Basic client authentication", "schema": {"type": "string"}},
            },
            "content": {"application/json": {"schema": error()}},
        }),
    );
    map.insert("405".into(), answer("The endpoint takes POST only", error(), &["Allow"]));
    map.insert("413".into(), answer("The body is over 256 KiB", error(), &[]));
    map.insert(
        "429".into(),
        answer("`slow_down`: over the client's or the address's limit", error(), &["Retry-After"]),
    );
    map.insert("500".into(), answer("`server_error`", error(), &[]));
    map.insert("503".into(), answer("`temporarily_unavailable`", error(), &["Retry-After"]));
    map
}

fn client_fields() -> Map<String, Value> {
    let mut map = Map::new();
    map.insert(
        "client_id".into(),
        json!({"type": "string", "description": "The app's client id (client_secret_post, or a public client); with Basic it may be left out."}),
    );
    map.insert(
        "client_secret".into(),
        json!({"type": "string", "description": "The app's secret (client_secret_post); not with Basic."}),
    );
    map
}

fn form_operation(summary: &str, description: &str, id: &str, form: &str, ok: Value) -> Value {
    let mut responses = refusals();
    responses.insert("200".into(), ok);
    json!({
        "summary": summary,
        "description": description,
        "operationId": id,
        "tags": ["oauth"],
        "security": [{"clientBasic": []}, {}],
        "requestBody": {
            "required": true,
            "content": {"application/x-www-form-urlencoded": {"schema": reference(form)}},
        },
        "responses": responses,
    })
}

pub fn add(paths: &mut Map<String, Value>) {
    paths.insert(
        "/oauth/token".into(),
        json!({"post": form_operation(
            "Exchange an authorization code or a device code, or refresh",
            "RFC 6749 §4.1.3 (with PKCE, RFC 7636) and §6, and RFC 8628 §3.4 (grant_type urn:ietf:params:oauth:grant-type:device_code). The client authenticates with Basic, in the form, or (public client) with client_id alone.",
            "postOauthToken",
            "TokenRequest",
            answer("A new access and refresh token", reference("TokenPair"), &[]),
        )}),
    );
    paths.insert(
        "/oauth/device_authorization".into(),
        json!({"post": form_operation(
            "Start the device flow",
            "RFC 8628 §3.1: a device code for the app to poll /oauth/token with, and a user code for the seller to type at verification_uri. The app must have the device flow turned on (else `unauthorized_client`).",
            "postOauthDeviceAuthorization",
            "DeviceAuthorizationRequest",
            answer("The codes, where to type the user code, and the polling interval", reference("DeviceAuthorization"), &[]),
        )}),
    );
    paths.insert(
        "/oauth/revoke".into(),
        json!({"post": form_operation(
            "Revoke an access or refresh token",
            "RFC 7009: 200 whether or not the token was the client's.",
            "postOauthRevoke",
            "TokenOnly",
            answer("Revoked, or not ours", json!({"type": "object", "maxProperties": 0}), &[]),
        )}),
    );
    paths.insert(
        "/oauth/introspect".into(),
        json!({"post": form_operation(
            "What a token is",
            "RFC 7662: `{\"active\": false}` for anything that is not a live token of this client.",
            "postOauthIntrospect",
            "TokenOnly",
            answer("The token's state", reference("Introspection"), &[]),
        )}),
    );
    paths.insert(
        metadata::PATH.into(),
        json!({"get": {
            "summary": "The authorization server's metadata (RFC 8414)",
            "operationId": "getOauthMetadata",
            "tags": ["oauth"],
            "security": [],
            "responses": {
                "200": answer("Where everything is", reference("ServerMetadata"), &[]),
                "405": answer("The document takes GET only", reference("OAuthError"), &["Allow"]),
            },
        }}),
    );
}

pub fn schemas() -> Map<String, Value> {
    let mut token_request = client_fields();
    token_request.extend(
        json!({
            "grant_type": {"type": "string", "enum": ["authorization_code", "refresh_token", crate::oauth::device::GRANT_TYPE]},
            "device_code": {"type": "string", "description": "the device code grant: the device_code from /oauth/device_authorization"},
            "code": {"type": "string", "description": "authorization_code: the code from the redirect"},
            "redirect_uri": {"type": "string", "description": "authorization_code: as sent to /oauth/authorize"},
            "code_verifier": {"type": "string", "description": "authorization_code: the PKCE verifier (RFC 7636)"},
            "refresh_token": {"type": "string", "description": "refresh_token: the refresh token"},
            "scope": {"type": "string", "description": "refresh_token: a narrower set of the refresh token's scopes, space-separated"},
        })
        .as_object()
        .cloned()
        .unwrap_or_default(),
    );
    let mut token_only = client_fields();
    token_only.insert("token".into(), json!({"type": "string", "minLength": 1}));
    token_only.insert(
        "token_type_hint".into(),
        json!({"type": "string", "description": "access_token or refresh_token (optional; ignored)"}),
    );
    let mut map = Map::new();
    map.insert(
        "TokenRequest".into(),
        json!({"type": "object", "required": ["grant_type"], "properties": token_request}),
    );
    let mut device_request = client_fields();
    device_request.insert(
        "scope".into(),
        json!({"type": "string", "description": "Space-separated scopes the app may ask for; none: all of them"}),
    );
    map.insert("DeviceAuthorizationRequest".into(), json!({"type": "object", "properties": device_request}));
    map.insert(
        "DeviceAuthorization".into(),
        json!({
            "type": "object",
            "required": ["device_code", "user_code", "verification_uri", "verification_uri_complete", "expires_in", "interval"],
            "properties": {
                "device_code": {"type": "string"},
                "user_code": {"type": "string", "pattern": "^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$"},
                "verification_uri": {"type": "string"},
                "verification_uri_complete": {"type": "string"},
                "expires_in": {"type": "integer"},
                "interval": {"type": "integer"},
            },
        }),
    );
    map.insert("TokenOnly".into(), json!({"type": "object", "required": ["token"], "properties": token_only}));
    map.insert(
        "OAuthError".into(),
        json!({
            "type": "object",
            "required": ["error", "error_description"],
            "properties": {
                "error": {"type": "string", "description": "The RFC 6749 §5.2 code, or slow_down, temporarily_unavailable, server_error"},
                "error_description": {"type": "string"},
            },
        }),
    );
    map.insert(
        "TokenPair".into(),
        json!({
            "type": "object",
            "required": ["access_token", "token_type", "expires_in", "refresh_token", "refresh_token_expires_in", "scope"],
            "properties": {
                "access_token": {"type": "string"},
                "token_type": {"type": "string", "enum": ["Bearer"]},
                "expires_in": {"type": "integer"},
                "refresh_token": {"type": "string"},
                "refresh_token_expires_in": {"type": "integer"},
                "scope": {"type": "string"},
            },
        }),
    );
    map.insert(
        "Introspection".into(),
        json!({
            "type": "object",
            "required": ["active"],
            "properties": {
                "active": {"type": "boolean"},
                "scope": {"type": "string"},
                "client_id": {"type": "string"},
                "token_type": {"type": "string"},
                "exp": {"type": ["integer", "null"]},
                "iat": {"type": "integer"},
                "sub": {"type": "string"},
                "iss": {"type": "string"},
            },
        }),
    );
    map.insert(
        "ServerMetadata".into(),
        json!({
            "type": "object",
            "required": ["issuer", "authorization_endpoint", "token_endpoint", "response_types_supported"],
            "properties": {
                "issuer": {"type": "string"},
                "authorization_endpoint": {"type": "string"},
                "token_endpoint": {"type": "string"},
                "revocation_endpoint": {"type": "string"},
                "introspection_endpoint": {"type": "string"},
                "device_authorization_endpoint": {"type": "string"},
                "jwks_uri": {"type": "string", "description": "The keys that verify Keygate-Assertion"},
                "scopes_supported": {"type": "array", "items": {"type": "string"}},
                "response_types_supported": {"type": "array", "items": {"type": "string"}},
                "grant_types_supported": {"type": "array", "items": {"type": "string"}},
                "code_challenge_methods_supported": {"type": "array", "items": {"type": "string"}},
                "token_endpoint_auth_methods_supported": {"type": "array", "items": {"type": "string"}},
            },
        }),
    );
    map
}
