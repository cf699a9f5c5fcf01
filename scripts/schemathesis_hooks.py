"""Schemathesis hooks of scripts/conformance.sh.

JSON Schema 2020-12 (OpenAPI 3.1) counts `2.0` as an integer, and
schemathesis sends integers in JSON bodies as whole floats to check that a
server takes them. Ironclad does not: an integer field (a position,
`expected_version`, `failed_before_ms`) must be written as an integer, and
`2.0` is refused with 400 `invalid_request` (see docs/api-errors.md). No
JSON Schema keyword can exclude `2.0` while admitting `2`, so this hook
writes whole floats back as integers before they are sent; everything else
is checked as generated.
"""

import schemathesis


def _integers(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integers(v) for v in value]
    if isinstance(value, dict):
        return {k: _integers(v) for k, v in value.items()}
    return value


@schemathesis.hook
def map_body(context, body):
    return _integers(body)
