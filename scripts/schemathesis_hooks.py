"""Schemathesis hooks of scripts/conformance.sh.

Each hook rewrites only what the document cannot state; everything else is
checked as generated.

1. Whole floats. JSON Schema 2020-12 (OpenAPI 3.1) counts `2.0` as an integer, and
schemathesis sends integers in JSON bodies as whole floats to check that a
server takes them. Ironclad does not: an integer field (a position,
`expected_version`, `failed_before_ms`) must be written as an integer, and
`2.0` is refused with 400 `invalid_request` (see docs/api-errors.md). No
JSON Schema keyword can exclude `2.0` while admitting `2`, so whole floats
are written back as integers before they are sent.

2. Event ids unique within an append. The server refuses an append whose
events share an id (ids are idempotency keys); `uniqueItems` compares whole
events, and no keyword makes one property unique across items. A repeated
id is replaced by a fresh one derived from it.
"""

import uuid

import schemathesis

APPEND_PATH = "/v1/streams/{stream}/events"


def _integers(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integers(v) for v in value]
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    return value


def _unique_ids(body):
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return body
    seen = set()
    for i, event in enumerate(events):
        if not isinstance(event, dict) or not isinstance(event.get("id"), str):
            continue
        if _key(event["id"]) in seen:
            event["id"] = str(uuid.uuid5(uuid.NAMESPACE_OID, f"{event['id']}/{i}"))
        seen.add(_key(event["id"]))
    return body


def _key(text):
    """The UUID a string spells (any case, any form), as the server reads it."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return text


@schemathesis.hook
def map_body(context, body):
    body = _integers(body)
    operation = getattr(context, "operation", None)
    if operation is not None and operation.path == APPEND_PATH:
        body = _unique_ids(body)
    return body
