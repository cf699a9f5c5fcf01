//! Shared helpers for the handler-level ingest tests: a real journal in a
//! temporary directory behind the full router ([`serve::app`]), called with
//! `tower::ServiceExt::oneshot` (no sockets).

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use ironclad::{Durability, Journal};
use ironclad_server::config::{ServerConfig, TokenConfig};
use ironclad_server::serve;
use tower::ServiceExt;

/// A router over a fresh journal.
pub struct TestApp {
    /// Keeps the data directory alive.
    pub dir: tempfile::TempDir,
    /// The journal behind the router.
    pub journal: Journal,
    /// The full API with its limits.
    pub router: Router,
}

/// A response, decoded.
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` if it is not JSON).
    pub json: serde_json::Value,
}

impl Answer {
    /// The error code, if the body is an error.
    pub fn code(&self) -> Option<&str> {
        self.json["error"]["code"].as_str()
    }
}

/// A test app with `edit` applied to the default configuration (durability
/// `os`: these tests are about HTTP, not fsync).
pub fn app_with(edit: impl FnOnce(&mut ServerConfig)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ServerConfig {
        data_dir: dir.path().to_path_buf(),
        ..ServerConfig::default()
    };
    config.journal.durability = Durability::Os;
    edit(&mut config);
    let journal = Journal::open(config.journal_config()).expect("open journal");
    let router = serve::app(serve::state(config, journal.clone(), None));
    TestApp {
        dir,
        journal,
        router,
    }
}

/// A test app with default limits and no tokens.
pub fn app() -> TestApp {
    app_with(|_| {})
}

/// The three role tokens used by the auth tests.
pub fn tokens() -> Vec<TokenConfig> {
    use ironclad_server::auth::Role;
    [
        ("producer-token-1", Role::Producer),
        ("consumer-token-1", Role::Consumer),
        ("admin-token-1", Role::Admin),
    ]
    .into_iter()
    .map(|(t, role)| TokenConfig {
        token: t.to_string(),
        role,
        consumers: None,
    })
    .collect()
}

impl TestApp {
    /// Sends one request.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: impl Into<Body>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req
            .header("content-type", "application/json")
            .body(body.into())
            .expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            json,
        }
    }

    /// `POST /v1/streams/{stream}/events` with a JSON body.
    pub async fn append(&self, stream: &str, body: serde_json::Value) -> Answer {
        self.call(
            Method::POST,
            &format!("/v1/streams/{stream}/events"),
            None,
            body.to_string(),
        )
        .await
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> Answer {
        self.call(Method::GET, uri, None, Body::empty()).await
    }
}

/// One event with a fixed id (`n` picks it).
pub fn event(n: u128, payload: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "id": uuid::Uuid::from_u128(0x0190_a6f0_0000_7000_8000_0000_0000_0000 + n),
        "type": "test.event",
        "payload": payload,
    })
}
