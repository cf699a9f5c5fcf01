//! Who may send a request: the defence against cross-site writes and DNS
//! rebinding (issue 9 #1). A web page in the user's browser can reach a
//! server on loopback; these checks make sure it cannot act on it.
//!
//! Three rules, in this order, decided by the pure [`decide`] and applied by
//! the middleware [`check`] (layered in `serve::app_with`, so they hold for
//! every route, WebSocket upgrades included):
//!
//! 1. **Host** (403 `host_not_allowed`). DNS rebinding points an attacker's
//!    name at 127.0.0.1, so the victim's browser sends requests for
//!    `evil.example:7070` to this server *as the same origin*. Without
//!    tokens, a `Host` must be an IP literal (no name to rebind: the browser
//!    connects to exactly that address), `localhost`, or a name in
//!    `allowed_hosts`; any port. With tokens the check applies only when
//!    `allowed_hosts` is set: a rebound page has no bearer token (browsers
//!    never attach one by themselves), so it reaches only the unauthenticated
//!    `/healthz`, `/readyz` and `/openapi.json`, and a server with tokens is
//!    often reached through names it cannot know (proxies, DNS). A request
//!    with no `Host` (HTTP/1.0 tools) is not checked: browsers always send one.
//! 2. **Origin** (403 `origin_not_allowed`). Browsers send `Origin` on
//!    cross-site writes and on every WebSocket handshake. A request carrying
//!    one must come from the server's own origin (`http://` or `https://`
//!    followed by the `Host` it was sent to) or from one listed in
//!    `allowed_origins`. Requests without `Origin` (the CLI, curl,
//!    server-to-server) pass.
//! 3. **Content type** (415 `unsupported_media_type`). A page may post a
//!    `text/plain` body cross-site without a CORS preflight; requiring
//!    `Content-Type: application/json` makes that impossible. Every
//!    `POST`/`PUT`/`PATCH`/`DELETE` that has a body (or declares any content
//!    type) must say `application/json` (parameters such as `charset` allowed);
//!    a bodiless one without a content type passes.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::{ApiError, ErrorCode};

/// The configured part of the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Origins (`scheme://host[:port]`, lower case) allowed besides the
    /// server's own.
    pub allowed_origins: Vec<String>,
    /// Host names (`name` = any port, `name:port` = that port, lower case)
    /// allowed besides IP literals and `localhost`.
    pub allowed_hosts: Vec<String>,
    /// Whether bearer tokens are configured (see rule 1).
    pub tokens: bool,
}

/// The parts of a request [`decide`] looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestHead<'a> {
    /// Whether the method carries a body (`POST`, `PUT`, `PATCH`, `DELETE`).
    pub body_method: bool,
    /// The `Host` header, if any (`""` when it is not text, which no rule
    /// admits).
    pub host: Option<&'a str>,
    /// The `Origin` header, if any.
    pub origin: Option<&'a str>,
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
    /// Whether a body follows (a non-zero `Content-Length`, or any
    /// `Transfer-Encoding`).
    pub has_body: bool,
}

/// Why a request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Rule 1: the `Host` is not one this server answers to.
    Host,
    /// Rule 2: the `Origin` is neither the server's own nor allowed.
    Origin,
    /// Rule 3: a body that does not declare `application/json`.
    MediaType,
}

/// Decides whether a request may proceed (`None`) or why not.
pub fn decide(req: &RequestHead<'_>, policy: &OriginPolicy) -> Option<Refusal> {
    let check_host = !policy.tokens || !policy.allowed_hosts.is_empty();
    let host_bad = req
        .host
        .is_some_and(|host| !host_allowed(host, &policy.allowed_hosts));
    let origin_bad = req
        .origin
        .is_some_and(|origin| !origin_allowed(origin, req.host, &policy.allowed_origins));
    let declares_body = req.has_body || req.content_type.is_some();
    let media_bad = req.body_method && declares_body && !req.content_type.is_some_and(is_json);
    if check_host && host_bad {
        Some(Refusal::Host)
    } else if origin_bad {
        Some(Refusal::Origin)
    } else if media_bad {
        Some(Refusal::MediaType)
    } else {
        None
    }
}

/// Splits `host[:port]` (`[v6]:port` for IPv6) into host and port text.
fn split_host(text: &str) -> Option<(&str, Option<&str>)> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest.split_once(']')?;
        match after {
            "" => (v6, None),
            _ => (v6, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        }
    };
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    (!host.is_empty() && port_ok).then_some((host, port))
}

fn host_allowed(text: &str, allowed: &[String]) -> bool {
    let Some((host, port)) = split_host(text) else {
        return false;
    };
    if host.parse::<std::net::IpAddr>().is_ok() || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    allowed.iter().any(|entry| match split_host(entry) {
        Some((name, None)) => name.eq_ignore_ascii_case(host),
        Some((name, Some(p))) => name.eq_ignore_ascii_case(host) && Some(p) == port,
        None => false,
    })
}

fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let own = host.is_some_and(|host| {
        ["http://", "https://"].iter().any(|scheme| {
            let scheme_ok = origin
                .get(..scheme.len())
                .is_some_and(|s| s.eq_ignore_ascii_case(scheme));
            let rest = origin.get(scheme.len()..).unwrap_or_default();
            scheme_ok && !rest.is_empty() && rest.eq_ignore_ascii_case(host)
        })
    });
    own || allowed.iter().any(|a| a.eq_ignore_ascii_case(origin))
}

/// `application/json`, with any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Checks one configured origin: `http://` or `https://`, a host, an
/// optional port, nothing else. Returns it in lower case.
pub fn parse_origin(text: &str) -> Result<String, String> {
    let t = text.trim().to_ascii_lowercase();
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"));
    match rest {
        Some(rest) if !rest.contains('/') && split_host(rest).is_some() => Ok(t),
        _ => Err(format!(
            "{text:?} is not an origin: write scheme://host[:port], e.g. http://localhost:3000, with no path"
        )),
    }
}

/// Checks one configured host name (`name` or `name:port`). Returns it in
/// lower case.
pub fn parse_host(text: &str) -> Result<String, String> {
    let t = text.trim().to_ascii_lowercase();
    let plain = !t.contains(['/', '@', ' ']);
    if plain && split_host(&t).is_some() {
        Ok(t)
    } else {
        Err(format!(
            "{text:?} is not a host name: write name or name:port, e.g. ironclad.internal:7070"
        ))
    }
}

/// Parses a comma-separated list (an environment variable) with `one`.
pub fn parse_list(
    text: &str,
    one: fn(&str) -> Result<String, String>,
) -> Result<Vec<String>, String> {
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(one)
        .collect()
}

/// Middleware: applies [`decide`] to the request.
pub async fn check(
    State(policy): State<std::sync::Arc<OriginPolicy>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let headers = req.headers();
    let head = RequestHead {
        body_method: matches!(
            *req.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        ),
        host: headers
            .get(header::HOST)
            .map(|v| v.to_str().unwrap_or_default()),
        origin: text(headers, header::ORIGIN),
        content_type: text(headers, header::CONTENT_TYPE),
        has_body: has_body(headers),
    };
    match decide(&head, &policy) {
        None => Ok(next.run(req).await),
        Some(r) => Err(refused(r, &head)),
    }
}

fn text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = text(headers, header::CONTENT_LENGTH).map(str::trim);
    headers.contains_key(header::TRANSFER_ENCODING) || length.is_some_and(|l| l != "0")
}

fn refused(refusal: Refusal, head: &RequestHead<'_>) -> ApiError {
    match refusal {
        Refusal::Host => ApiError::new(
            ErrorCode::HostNotAllowed,
            "this server does not answer to that Host name (a DNS-rebinding defence): use an IP address or localhost, or add the name to server.allowed_hosts (IRONCLAD_ALLOWED_HOSTS)",
        )
        .with_details(serde_json::json!({ "host": head.host })),
        Refusal::Origin => ApiError::new(
            ErrorCode::OriginNotAllowed,
            "requests from this web origin are refused: add it to server.allowed_origins (IRONCLAD_ALLOWED_ORIGINS) if it is yours",
        )
        .with_details(serde_json::json!({ "origin": head.origin })),
        Refusal::MediaType => ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "this endpoint takes JSON: send the body with `Content-Type: application/json`",
        )
        .with_details(serde_json::json!({ "content_type": head.content_type })),
    }
}

#[cfg(test)]
mod tests;
