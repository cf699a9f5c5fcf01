//! Running the server: bind, accept under the connection limit, serve
//! HTTP/1.1 (with upgrades, for WebSockets) under the header, request and
//! body limits, and shut down gracefully.
//!
//! The accept loop is ours, not `axum::serve`, because two limits need the
//! connection itself: `connections_max` (a semaphore taken before a
//! connection is served; one over the limit is answered 503
//! `too_many_connections` and closed) and `header_timeout_ms` (hyper's
//! HTTP/1 header read timeout, against slowloris; it also closes idle
//! keep-alive connections). The request timeout, the body limits (one
//! body, and all bodies in flight: [`crate::body_budget`]), the
//! Host/Origin/content-type checks ([`crate::origin`]) and the JSON shape of
//! every error are router layers ([`app`]); errors hyper answers itself are
//! given their JSON body by a socket wrapper ([`crate::head_errors`]).
//!
//! Shutdown: stop accepting; ask every connection to finish its request in
//! flight and close (idle ones close at once); wait for them up to the
//! shutdown deadline; then stop the delivery engine, then the journal (its
//! writer drains, the WAL is checkpointed, the data-directory lock is freed).
//! Every append acknowledged before that is durable.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::Response;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::store::sqlite::SqliteStore;
use ironclad::Journal;
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::body_budget;
use crate::config::{ServerConfig, ServerConfigError};
use crate::error::{error_body, json_errors, ApiError, ErrorCode};
use crate::handlers;
use crate::state::AppState;

/// Connections over `connections_max` that are being answered 503 at once;
/// beyond this they are closed without an answer.
const REFUSALS_MAX: usize = 64;
/// How long answering a refused connection may take.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
/// Bytes of a refused connection's request read (and dropped) before it is
/// closed, so the client sees the 503 rather than a reset.
const REFUSAL_DRAIN_BYTES: usize = 64 * 1024;

/// The server could not start or did not stop cleanly.
#[derive(Debug, Error)]
pub enum ServeError {
    /// The configuration is refused.
    #[error(transparent)]
    Config(#[from] ServerConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}; is another server running there? pick another --listen address")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The journal did not shut down cleanly (its acknowledged data is durable).
    #[error("the journal did not shut down cleanly: {0}; acknowledged appends are durable, run `ironclad ledger verify` to check")]
    Journal(#[from] ironclad::ControlError),
}

/// The delivery engine the server runs alongside, if sinks are configured.
pub type Engine = Arc<DeliveryEngine<SqliteStore>>;

/// The whole API with the request-level limits: the body limit (413
/// `body_too_large`, from `Content-Length` alone when it declares too
/// much), the in-flight body budget (503 `server_busy`), the request
/// timeout (408 `timeout`), the Host, Origin and content-type checks (403,
/// 415: [`crate::origin`]), and the JSON error shape for errors the
/// framework produces itself.
pub fn app(state: AppState) -> Router {
    let subs =
        handlers::subscribe::Subscriptions::new(state.clone(), state.config.subscribe.to_config());
    app_with(state, subs)
}

/// [`app`] over `subs`, whose checkpoint worker the caller flushes at
/// shutdown.
pub fn app_with(state: AppState, subs: handlers::subscribe::Subscriptions) -> Router {
    let body_max = state.config.limits.body_bytes_max;
    let timeout = state.config.request_timeout();
    let origin_policy = state.config.origin_policy();
    let admission = body_budget::Admission::new(&state.config.limits);
    handlers::router_with(state, subs)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(from_fn_with_state(admission, body_budget::admit))
        .layer(from_fn_with_state(timeout, request_timeout))
        .layer(from_fn_with_state(
            Arc::new(origin_policy),
            crate::origin::check,
        ))
        .layer(from_fn(json_errors))
}

/// Middleware: a request (body included) must be answered within the
/// limit. An append that was already queued when its request timed out still
/// commits: resend it with the same ids to learn its outcome.
async fn request_timeout(
    State(limit): State<Duration>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    tokio::time::timeout(limit, next.run(req)).await.map_err(|_| {
        ApiError::new(
            ErrorCode::Timeout,
            format!(
                "the request took longer than {} ms: retry (appends with the same ids are idempotent), or send smaller requests",
                limit.as_millis()
            ),
        )
    })
}

/// The shared state for `config` (the token table is built from it).
pub fn state(config: ServerConfig, journal: Journal, engine: Option<Engine>) -> AppState {
    let auth = Arc::new(config.auth());
    AppState {
        journal,
        engine,
        config: Arc::new(config),
        auth,
    }
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    local_addr: SocketAddr,
    state: AppState,
}

/// Checks the configuration and binds its address. On failure the journal
/// and engine are shut down (the data-directory lock is released).
pub async fn bind(
    config: ServerConfig,
    journal: Journal,
    engine: Option<Engine>,
) -> Result<Server, ServeError> {
    let bound = async {
        config.check()?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        Ok::<_, ServeError>((listener, local_addr))
    }
    .await;
    let deadline = config.shutdown_deadline();
    match bound {
        Ok((listener, local_addr)) => Ok(Server {
            listener,
            local_addr,
            state: state(config, journal, engine),
        }),
        Err(e) => {
            stop_backends(&journal, engine.as_ref(), deadline)
                .await
                .ok();
            Err(e)
        }
    }
}

/// Binds, prints `listening on http://ADDR` on stdout (tests bind port 0
/// and read the address from there), and serves until `shutdown` resolves;
/// then shuts down gracefully (see the module documentation).
pub async fn serve(
    config: ServerConfig,
    journal: Journal,
    engine: Option<Engine>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let server = bind(config, journal, engine).await?;
    println!("listening on http://{}", server.local_addr());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    server.run(shutdown).await
}

impl Server {
    /// The address actually bound (port 0 resolved).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shared state the handlers see.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then shuts down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServeError> {
        let Server {
            listener, state, ..
        } = self;
        let config = Arc::clone(&state.config);
        let connections_max = config.limits.connections_max;
        let conns = Arc::new(Semaphore::new(connections_max));
        let refusals = Arc::new(Semaphore::new(REFUSALS_MAX));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout());
        let subs = handlers::subscribe::Subscriptions::new(
            state.clone(),
            state.config.subscribe.to_config(),
        );
        let router = app_with(state.clone(), subs.clone());

        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                biased;
                _ = &mut shutdown => break,
                accepted = listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin; the listener itself stays good.
                    tracing::warn!("accept failed: {e}; retrying in 50 ms");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            match Arc::clone(&conns).try_acquire_owned() {
                Ok(permit) => {
                    let conn = serve_connection(
                        stream,
                        permit,
                        router.clone(),
                        http.clone(),
                        stop_rx.clone(),
                    );
                    tokio::spawn(conn);
                }
                Err(_) => match Arc::clone(&refusals).try_acquire_owned() {
                    Ok(permit) => {
                        tokio::spawn(refuse(stream, permit, connections_max));
                    }
                    Err(_) => drop(stream),
                },
            }
        }
        drop(listener);
        let deadline = config.shutdown_deadline();
        tracing::info!("shutting down: finishing requests in flight");
        let _ = stop_tx.send(true);
        let all = u32::try_from(connections_max).unwrap_or(u32::MAX);
        if tokio::time::timeout(deadline, conns.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!(
                "connections still open after {} ms; closing them",
                deadline.as_millis()
            );
        }
        // Acknowledged consumer positions are written before the journal
        // stops, so a consumer does not get them again after a restart.
        if let Err(e) = subs.checkpoints().flush().await {
            tracing::warn!(error = %e, "consumer checkpoints could not be flushed; those consumers will see some events again");
        }
        stop_backends(&state.journal, state.engine.as_ref(), deadline).await
    }
}

/// Stops the engine (batches in flight may settle until the deadline),
/// then the journal.
async fn stop_backends(
    journal: &Journal,
    engine: Option<&Engine>,
    deadline: Duration,
) -> Result<(), ServeError> {
    if let Some(engine) = engine {
        if !engine.shutdown(deadline).await {
            tracing::warn!(
                "delivery batches in flight were released unsettled after {} ms; they are sent again at the next start",
                deadline.as_millis()
            );
        }
    }
    journal
        .shutdown(deadline.max(Duration::from_secs(1)))
        .await?;
    Ok(())
}

/// Serves one connection until it closes, or until shutdown asks it to
/// finish its request in flight and close.
async fn serve_connection(
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    router: Router,
    http: hyper::server::conn::http1::Builder,
    mut stop: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(router);
    let conn = http
        .serve_connection(
            TokioIo::new(crate::head_errors::JsonHeadErrors::new(stream)),
            service,
        )
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = async { stop.wait_for(|stop| *stop).await.map(|_| ()) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Client-side trouble (resets, timeouts, malformed requests): debug
        // level, never with request contents.
        tracing::debug!("connection ended: {e}");
    }
}

/// Answers a connection over the limit with 503 `too_many_connections`.
async fn refuse(mut stream: TcpStream, _permit: OwnedSemaphorePermit, max: usize) {
    let error = ApiError::new(
        ErrorCode::TooManyConnections,
        format!("the server already has {max} connections open: retry after the Retry-After delay, or reuse connections"),
    )
    .with_details(serde_json::json!({ "connections_max": max }))
    .retry_after(1);
    let body = error_body(&error);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_TIME, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(&body).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the
        // connection before it has read the answer.
        let mut buf = [0u8; 4096];
        let mut drained = 0;
        while drained < REFUSAL_DRAIN_BYTES {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            drained += n;
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
}
