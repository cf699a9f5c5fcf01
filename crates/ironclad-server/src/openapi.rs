//! The OpenAPI document served at `/openapi.json`, generated from the code:
//! every handler carries a `#[utoipa::path]` annotation and is listed in
//! [`ApiDoc`]'s `paths(...)`; the request and response types are the wire
//! contract's (`ironclad_core::wire`, whose `openapi` feature derives
//! `utoipa::ToSchema`; they are collected from the paths automatically).
//!
//! To document a new endpoint: annotate its handler with
//! `#[utoipa::path(get|post, path = "/…", tag = "…", responses(…))]`
//! (`security(("bearer" = []))` when it needs a token), then add the
//! handler's path (`crate::handlers::<group>::<handler>`) to `paths(...)`
//! below. `tests/ops.rs` checks that every route registered in
//! `src/handlers/` appears in the document.
//!
//! What a server serves is [`document_json_for`] its state (configuration
//! and tokens): the
//! generated document made exact by [`exact::tailor`] (ranges, patterns,
//! alternatives, limits and whether tokens are asked for).

pub mod exact;

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Schema};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorCodeSchema, ErrorEnvelope, ErrorObject};

/// The API's document. Its `paths(...)` list is the registry of
/// documented handlers, one block per endpoint group.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ironclad",
        description = "Durable event log and delivery engine: ingest, read, subscribe, admin and operations API (SPEC §6). Errors are always `{\"error\": {\"code\", \"message\", \"details\"}}` with a stable `code`."
    ),
    paths(
        // ops (handlers/ops.rs)
        crate::handlers::ops::healthz,
        crate::handlers::ops::readyz,
        crate::handlers::ops::metrics_text,
        crate::handlers::ops::openapi_json,
        // admin (handlers/admin/*.rs)
        crate::handlers::admin::dlq::stats,
        crate::handlers::admin::dlq::list,
        crate::handlers::admin::dlq::export,
        crate::handlers::admin::dlq::show,
        crate::handlers::admin::dlq::retry,
        crate::handlers::admin::dlq::purge,
        crate::handlers::admin::sinks::list,
        crate::handlers::admin::sinks::circuit,
        crate::handlers::admin::dumps::list,
        crate::handlers::admin::dumps::replay,
        crate::handlers::admin::ledger::verify,
        crate::handlers::admin::ledger::leases,
        // ingest and read (handlers/ingest.rs)
        crate::handlers::ingest::append,
        crate::handlers::ingest::read_stream,
        crate::handlers::ingest::list_streams,
        // subscribe and poll (handlers/subscribe.rs)
        crate::handlers::subscribe::ws::subscribe,
        crate::handlers::subscribe::poll::poll,
        crate::handlers::subscribe::poll::consumer,
        crate::handlers::subscribe::poll::consumer_ack,
    ),
    components(schemas(ErrorEnvelope, ErrorObject, ErrorCodeSchema)),
    modifiers(&BearerAuth, &ErrorCodes),
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

/// Points the error object's `code` at the `ErrorCode` enum: the wire
/// contract declares it a string (a client must accept codes added later),
/// while the document lists the codes this server answers with.
struct ErrorCodes;

impl Modify for ErrorCodes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut("ErrorObject") {
            object.properties.insert(
                "code".to_string(),
                RefOr::Ref(Ref::from_schema_name("ErrorCode")),
            );
        }
    }
}

/// The document, built once.
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: OnceLock<utoipa::openapi::OpenApi> = OnceLock::new();
    DOC.get_or_init(ApiDoc::openapi)
}

/// The document the server behind `state` serves, as JSON.
pub fn document_json_for(state: &crate::state::AppState) -> String {
    let settings = exact::DocSettings::of(state);
    let mut doc: serde_json::Value =
        serde_json::from_str(document_json()).unwrap_or(serde_json::Value::Null);
    if doc.get("openapi").is_none() {
        // The generated document could not be rendered: serve that error.
        return document_json().to_string();
    }
    exact::tailor(&mut doc, &settings);
    doc.to_string()
}

/// The generated document as JSON (before [`exact::tailor`]), rendered
/// once.
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_error_code_is_documented_as_the_enum_of_codes() {
        let doc: serde_json::Value =
            serde_json::from_str(super::document_json()).unwrap_or_default();
        let schemas = &doc["components"]["schemas"];
        assert_eq!(
            schemas["ErrorObject"]["properties"]["code"]["$ref"],
            "#/components/schemas/ErrorCode"
        );
        assert!(schemas["ErrorCode"]["enum"].is_array());
        assert!(schemas["ErrorEnvelope"].is_object());
    }
}
