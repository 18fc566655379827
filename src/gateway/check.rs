//! Forward auth (`/gate/check`): a proxy in front of the API (nginx
//! `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`, Envoy
//! `ext_authz`) asks whether a request may pass.

use actix_web::web;

pub fn routes(_cfg: &mut web::ServiceConfig) {}
