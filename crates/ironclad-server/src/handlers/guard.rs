//! The router's access check: a middleware that admits a request when its
//! bearer token's role may use the endpoint group ([`Access`]). The token
//! table and the role rules are [`crate::auth`]'s; this only applies them
//! to a request, so `auth` needs no server state. The admitted
//! [`Caller`](crate::auth::Caller) rides along as a request extension.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;

use crate::auth::Access;
use crate::error::ApiError;
use crate::state::AppState;

/// Middleware: admits the request if its token may use `access`.
pub async fn require(
    State((state, access)): State<(AppState, Access)>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    let caller = state.auth.check(header, access)?;
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}
