//! Makes the generated document say exactly what this server accepts and
//! answers: what utoipa cannot derive from the types, and what depends on
//! the server's configuration. A conformance run (`scripts/conformance.sh`,
//! schemathesis) checks the result against the running server.
//!
//! - Integers the server reads as `u64` are declared `0..=u64::MAX`
//!   (`format: uint64`), not `int64`: the server takes every value up to
//!   2^64-1.
//! - `limit` is bounded by `read_limit_max`, `events` by
//!   `events_per_request_max`; names and event fields carry the checks of
//!   `ironclad_core::validate` that JSON Schema can state (lengths in
//!   bytes are declared as `maxLength`, exact for ASCII; the descriptions
//!   say bytes).
//! - Bodies whose fields exclude one another (DLQ selectors, ledger
//!   verification) are declared as their alternatives.
//! - Without tokens the server asks for none, so the document declares no
//!   security and no 401.
//! - Responses every request can get: 403 when an `Origin` or `Host` is
//!   refused; on JSON-body endpoints 415 without `Content-Type:
//!   application/json`, 413 for a too-large body, and 503 `server_busy`
//!   (with `Retry-After`) when the server's body budget is spent.

use serde_json::{json, Map, Value};

use crate::state::AppState;

/// What of the configuration the document depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocSettings {
    /// Whether tokens are configured (authentication is on).
    pub auth: bool,
    /// `limits.read_limit_max`.
    pub read_limit_max: usize,
    /// `limits.events_per_request_max`.
    pub events_per_request_max: usize,
}

impl DocSettings {
    /// The settings of the server behind `state`.
    pub fn of(state: &AppState) -> Self {
        let config = &state.config;
        DocSettings {
            auth: state.auth.enabled(),
            read_limit_max: config.limits.read_limit_max,
            events_per_request_max: config.limits.events_per_request_max,
        }
    }
}

/// Characters a stream name or event type may not hold (Rust's
/// `char::is_control`: C0, DEL and C1).
const NO_CONTROL: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$";

/// Strings that may hold anything but NUL.
const NO_NUL: &str = "^[^\\u0000]*$";

/// A UUID in every form the server reads: hyphenated, simple, braced,
/// URN.
const UUID: &str = "^([0-9A-Fa-f]{32}|[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}|\\{[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}\\}|urn:uuid:[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12})$";

/// A consumer name (`checkpoint::validate_consumer_name`).
const CONSUMER_NAME: &str = "^[A-Za-z0-9_.-]{1,128}$";

/// Applies every adjustment to `doc` (the document as JSON).
pub fn tailor(doc: &mut Value, settings: &DocSettings) {
    unsigned_integers(doc);
    verify_body(doc);
    if let Some(schemas) = doc.pointer_mut("/components/schemas") {
        event_schemas(schemas, settings);
        // Bodies whose fields exclude one another, as their alternatives.
        dlq_selector(schemas);
        verify_request(schemas);
    }
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        parameters(paths, settings);
        for op in operations(paths) {
            common_responses(op);
            if !settings.auth {
                no_auth(op);
            }
        }
    }
    if !settings.auth {
        if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
            components.remove("securitySchemes");
        }
    }
}

/// Every operation object of `paths`.
fn operations(paths: &mut Map<String, Value>) -> impl Iterator<Item = &mut Map<String, Value>> {
    paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut().filter_map(Value::as_object_mut))
}

/// `int64` with `minimum: 0` is how utoipa writes `u64`: declare its
/// real range.
fn unsigned_integers(v: &mut Value) {
    match v {
        Value::Object(map) => {
            let unsigned = map.get("format") == Some(&json!("int64"))
                && map.get("minimum").and_then(Value::as_u64) == Some(0);
            if unsigned {
                map.insert("format".into(), json!("uint64"));
                map.insert("maximum".into(), json!(u64::MAX));
            }
            map.values_mut().for_each(unsigned_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_integers),
        _ => {}
    }
}

/// Sets `key` in the object at `pointer`, when there is one.
fn set(v: &mut Value, pointer: &str, key: &str, value: Value) {
    if let Some(Value::Object(map)) = v.pointer_mut(pointer) {
        map.insert(key.into(), value);
    }
}

/// The append request's events and their fields (`validate_event`).
fn event_schemas(schemas: &mut Value, settings: &DocSettings) {
    let limits = ironclad::validate::Limits::default();
    set(
        schemas,
        "/AppendRequest/properties/events",
        "minItems",
        json!(1),
    );
    set(
        schemas,
        "/AppendRequest/properties/events",
        "maxItems",
        json!(settings.events_per_request_max),
    );
    let event = "/WireEvent/properties";
    if let Some(Value::Object(props)) = schemas.pointer_mut(event) {
        props.insert(
            "type".into(),
            json!({
                "type": "string", "minLength": 1, "maxLength": limits.event_type_bytes_max,
                "pattern": NO_CONTROL,
                "description": format!("Event type: 1 to {} bytes, no control characters.", limits.event_type_bytes_max),
            }),
        );
        props.insert(
            "id".into(),
            json!({
                "oneOf": [{ "type": "string", "pattern": UUID }, absent()],
                "description": "Idempotency key, a UUID; generated when absent (then a retry is not idempotent: send ids).",
            }),
        );
        props.insert(
            "op".into(),
            json!({
                "type": "string", "enum": ["event", "create", "update", "delete"],
                "description": "Entity operation; `event` when absent.",
            }),
        );
        props.insert(
            "entity".into(),
            json!({
                "type": ["string", "null"], "minLength": 1, "maxLength": limits.entity_bytes_max,
                "pattern": NO_CONTROL,
                "description": format!("Entity key: 1 to {} bytes, no control characters.", limits.entity_bytes_max),
            }),
        );
        props.insert(
            "payload".into(),
            json!({
                "description": format!(
                    "The payload: any JSON value, kept as written (at most {} bytes, nesting at most {} deep).",
                    limits.payload_bytes_max, limits.payload_depth_max
                ),
            }),
        );
        props.insert(
            "metadata".into(),
            json!({
                "type": "object",
                "maxProperties": limits.metadata_entries_max,
                "propertyNames": { "pattern": NO_NUL },
                "additionalProperties": { "type": "string", "pattern": NO_NUL },
                "description": format!(
                    "String metadata: at most {} entries, each key and value together at most {} bytes, no NUL.",
                    limits.metadata_entries_max, limits.metadata_entry_bytes_max
                ),
            }),
        );
    }
    expected_version(schemas);
}

/// `expected_version` as the server reads it (`WireExpected`), and the
/// ledger head's hash.
fn expected_version(schemas: &mut Value) {
    schemas["WireExpected"] = json!({
        "description": "An expected version: `any`, `no_stream`, `stream_exists`, or the exact version (0 = no stream).",
        "oneOf": [
            { "type": "string", "enum": ["any", "no_stream", "stream_exists"] },
            { "type": "integer", "minimum": 0, "maximum": u64::MAX, "format": "uint64" },
        ],
    });
    set(
        schemas,
        "/LedgerHead/properties/hash",
        "pattern",
        json!("^[0-9a-f]{64}$"),
    );
}

/// `null` or absent: how an optional field of these bodies is left out.
fn absent() -> Value {
    json!({ "type": "null" })
}

/// A stream name as `validate_stream_name` checks it.
fn stream_name() -> Value {
    let max = ironclad::validate::Limits::default().stream_name_bytes_max;
    json!({
        "type": "string", "minLength": 1, "maxLength": max, "pattern": NO_CONTROL,
        "description": format!("A stream name: 1 to {max} bytes of UTF-8, no control characters."),
    })
}

/// A DLQ selector: `{"all": true}`, or at least one non-null filter, or a
/// sink and a position alone.
fn dlq_selector(schemas: &mut Value) {
    let reason = json!({ "$ref": "#/components/schemas/DlqReason" });
    let ms = json!({ "type": "integer", "minimum": 0, "maximum": u64::MAX, "format": "uint64" });
    let no_all = json!({ "type": "boolean", "enum": [false] });
    // One non-null filter makes a filter selector; `position` needs `sink`
    // and excludes the other filters.
    let filter = |required: &str, props: Value| {
        let mut base = json!({
            "type": "object", "additionalProperties": false, "required": [required],
            "properties": {
                "all": no_all.clone(),
                "sink": { "type": ["string", "null"] },
                "reason": { "oneOf": [reason.clone(), absent()] },
                "stream": { "type": ["string", "null"] },
                "failed_before_ms": { "oneOf": [ms.clone(), absent()] },
                "position": absent(),
            },
        });
        if let (Some(Value::Object(p)), Value::Object(extra)) = (base.get_mut("properties"), props)
        {
            p.extend(extra);
        }
        base
    };
    let description = schemas
        .pointer("/DlqSelector/description")
        .cloned()
        .unwrap_or(Value::Null);
    schemas["DlqSelector"] = json!({
        "description": description,
        "anyOf": [
            {
                "type": "object", "additionalProperties": false, "required": ["all"],
                "properties": {
                    "all": { "type": "boolean", "enum": [true] },
                    "sink": absent(), "reason": absent(), "stream": absent(),
                    "failed_before_ms": absent(), "position": absent(),
                },
            },
            filter("sink", json!({ "sink": { "type": "string" } })),
            filter("reason", json!({ "reason": reason })),
            filter("stream", json!({ "stream": { "type": "string" } })),
            filter("failed_before_ms", json!({ "failed_before_ms": ms })),
            {
                "type": "object", "additionalProperties": false, "required": ["sink", "position"],
                "properties": {
                    "all": no_all,
                    "sink": { "type": "string" },
                    "position": ms,
                    "reason": absent(), "stream": absent(), "failed_before_ms": absent(),
                },
            },
        ],
    });
}

/// The ledger verification body: a stream, or an exported head, or
/// nothing.
fn verify_request(schemas: &mut Value) {
    let description = schemas
        .pointer("/VerifyRequest/description")
        .cloned()
        .unwrap_or(Value::Null);
    let head = json!({ "$ref": "#/components/schemas/LedgerHead" });
    schemas["VerifyRequest"] = json!({
        "description": description,
        "oneOf": [
            {
                "type": "object", "additionalProperties": false,
                "properties": { "stream": { "oneOf": [stream_name(), absent()] }, "against": absent() },
            },
            {
                "type": "object", "additionalProperties": false, "required": ["against"],
                "properties": { "against": head, "stream": absent() },
            },
        ],
    });
}

/// Path and query parameters the types cannot bound.
fn parameters(paths: &mut Map<String, Value>, settings: &DocSettings) {
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for op in item.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
                continue;
            };
            for p in params.iter_mut() {
                let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
                let schema = match (path.as_str(), name) {
                    ("/v1/streams/{stream}/events", "stream") => Some(stream_name()),
                    (p, "name") if p.starts_with("/v1/consumers/") => {
                        Some(json!({ "type": "string", "pattern": CONSUMER_NAME }))
                    }
                    ("/v1/poll" | "/v1/streams" | "/v1/streams/{stream}/events", "limit") => {
                        Some(json!({
                            "type": "integer", "minimum": 1, "maximum": settings.read_limit_max,
                        }))
                    }
                    _ => None,
                };
                if let Some(schema) = schema {
                    p["schema"] = schema;
                }
            }
        }
    }
}

/// The verification body is optional, and `null` is not an empty body:
/// the body, when sent, is a [`VerifyRequest`](ironclad_core::wire::VerifyRequest).
fn verify_body(doc: &mut Value) {
    let body = "/paths/~1v1~1admin~1ledger~1verify/post/requestBody";
    set(doc, body, "required", json!(false));
    set(
        doc,
        &format!("{body}/content/application~1json"),
        "schema",
        json!({ "$ref": "#/components/schemas/VerifyRequest" }),
    );
}

/// Adds `text` to the response `status` of `op`, creating it if needed.
fn add_response(op: &mut Map<String, Value>, status: &str, text: &str) {
    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else {
        return;
    };
    match responses.get_mut(status) {
        Some(Value::Object(r)) => {
            let before = r.get("description").and_then(Value::as_str).unwrap_or("");
            let joined = if before.is_empty() {
                text.to_string()
            } else {
                format!("{before}; {text}")
            };
            r.insert("description".into(), json!(joined));
        }
        _ => {
            responses.insert(
                status.into(),
                json!({
                    "description": text,
                    "content": { "application/json": { "schema": {
                        "$ref": "#/components/schemas/ErrorEnvelope"
                    } } },
                }),
            );
        }
    }
}

/// The answers of the checks in front of every handler.
fn common_responses(op: &mut Map<String, Value>) {
    add_response(
        op,
        "403",
        "`origin_not_allowed` or `host_not_allowed`: a browser `Origin` or a `Host` this server does not serve",
    );
    if op.contains_key("requestBody") {
        add_response(
            op,
            "415",
            "`unsupported_media_type`: send `Content-Type: application/json`",
        );
        let too_large = op.get("responses").and_then(|r| r.get("413")).is_some();
        if !too_large {
            add_response(op, "413", "`body_too_large`");
        }
        add_response(
            op,
            "503",
            "`server_busy`: the server's budget of buffered request bodies is spent; retry after `Retry-After`",
        );
    }
}

/// A server without tokens asks for none.
fn no_auth(op: &mut Map<String, Value>) {
    op.remove("security");
    if let Some(Value::Object(responses)) = op.get_mut("responses") {
        responses.remove("401");
    }
}
