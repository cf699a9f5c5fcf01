//! The OpenAPI document served at `/openapi.json`, generated from the code:
//! every handler carries a `#[utoipa::path]` annotation and is listed in
//! [`ApiDoc`]'s `paths(...)`; request and response types derive
//! `utoipa::ToSchema` (and are collected from the paths automatically).
//!
//! To document a new endpoint: annotate its handler with
//! `#[utoipa::path(get|post, path = "/…", tag = "…", responses(…))]`
//! (`security(("bearer" = []))` when it needs a token), then add the
//! handler's path (`crate::routes::<group>::<handler>`) to `paths(...)`
//! below. `tests/ops.rs` checks that every route registered in
//! `src/routes/` appears in the document.

use std::borrow::Cow;
use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{Modify, OpenApi, PartialSchema, ToSchema};

use crate::error::ErrorCode;

/// The API's document. Its `paths(...)` list is the registry of
/// documented handlers, one block per endpoint group.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ironclad",
        description = "Durable event log and delivery engine: ingest, read, subscribe, admin and operations API (SPEC §6). Errors are always `{\"error\": {\"code\", \"message\", \"details\"}}` with a stable `code`."
    ),
    paths(
        // ops (routes/ops.rs)
        crate::routes::ops::healthz,
        crate::routes::ops::readyz,
        crate::routes::ops::metrics_text,
        crate::routes::ops::openapi_json,
        // admin (routes/admin/*.rs)
        crate::routes::admin::dlq::stats,
        crate::routes::admin::dlq::list,
        crate::routes::admin::dlq::export,
        crate::routes::admin::dlq::show,
        crate::routes::admin::dlq::retry,
        crate::routes::admin::dlq::purge,
        crate::routes::admin::sinks::list,
        crate::routes::admin::sinks::circuit,
        crate::routes::admin::dumps::list,
        crate::routes::admin::dumps::replay,
        crate::routes::admin::ledger::verify,
        crate::routes::admin::ledger::leases,
        // ingest and read (routes/ingest.rs)
        crate::routes::ingest::append,
        crate::routes::ingest::read_stream,
        crate::routes::ingest::list_streams,
        // subscribe and poll (routes/subscribe.rs)
        crate::routes::subscribe::ws::subscribe,
        crate::routes::subscribe::poll::poll,
        crate::routes::subscribe::poll::consumer,
        crate::routes::subscribe::poll::consumer_ack,
    ),
    components(schemas(ErrorEnvelope, ErrorObject, ErrorCodeSchema)),
    modifiers(&BearerAuth),
    tags(
        (name = "ingest", description = "Append and read events (producer; reads also consumer)"),
        (name = "subscribe", description = "WebSocket subscriptions, checkpoints, long-polling (consumer)"),
        (name = "admin", description = "DLQ, sinks and circuits, dumps, ledger, leases (admin)"),
        (name = "ops", description = "Metrics (admin), health, readiness, this document"),
    )
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme the annotations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from the server's [[server.tokens]]: role producer, consumer or admin",
                    ))
                    .build(),
            ),
        );
    }
}

/// The error envelope every failure answers with (documentation type: the
/// server serializes [`crate::error::ApiError`], which has this shape).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorEnvelope {
    /// The error.
    error: ErrorObject,
}

/// The `error` object of [`ErrorEnvelope`].
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct ErrorObject {
    /// The stable code (see `docs/`).
    code: ErrorCodeSchema,
    /// What happened and what to do next, for a person.
    message: String,
    /// Structured context, for a program (`{}` when there is none).
    #[schema(value_type = Object)]
    details: serde_json::Value,
}

/// The schema of [`ErrorCode`]: a string enum built from
/// [`ErrorCode::ALL`], so new codes appear without editing this file.
pub struct ErrorCodeSchema;

impl PartialSchema for ErrorCodeSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
            .description(Some(
                "A stable error code: new codes may be added, none is renamed or reused",
            ))
            .into()
    }
}

impl ToSchema for ErrorCodeSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document as JSON, rendered once.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        document().to_json().unwrap_or_else(|e| {
            serde_json::json!({ "error": {
                "code": "internal",
                "message": format!("the OpenAPI document could not be rendered: {e}"),
                "details": {},
            }})
            .to_string()
        })
    })
}
