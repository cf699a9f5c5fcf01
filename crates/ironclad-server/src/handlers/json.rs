//! Decoding JSON request bodies into the API's two error codes, the way
//! `docs/api-errors.md` states them: text that is not UTF-8 or not JSON is
//! `invalid_json`; JSON of the wrong shape (not an object, an unknown or
//! missing field, a wrong type, an unknown keyword) is `invalid_request`.
//!
//! serde describes shape errors in Rust's words (`expected struct
//! VerifyRequest`, `expected u64`); [`user_words`] turns them into what
//! the field expects, so no internal type name reaches a client.

use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::{ApiError, ErrorCode};

/// Decodes `bytes` as the JSON object `T`. `hint` says what to send, e.g.
/// `send {"position": N}`; it ends every error message.
pub(crate) fn decode_object<T: DeserializeOwned>(bytes: &[u8], hint: &str) -> Result<T, ApiError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidJson,
            format!(
                "the body is not UTF-8 (at byte {}): {hint}",
                e.valid_up_to()
            ),
        )
    })?;
    check_object(text, hint)?;
    serde_json::from_str(text).map_err(|e| decode_error(text, &e, hint))
}

/// Refuses a body whose top level is valid JSON but not an object (serde
/// would otherwise read a struct from an array): `invalid_request`.
pub(crate) fn check_object(text: &str, hint: &str) -> Result<(), ApiError> {
    let first = text
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .bytes()
        .next();
    if first == Some(b'{') || serde_json::from_str::<IgnoredAny>(text).is_err() {
        // An object, or not JSON at all: the parser reports the latter.
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::InvalidRequest,
        format!("the body must be a JSON object: {hint}"),
    ))
}

/// The API error of a failed decode of `text`: `invalid_request` when
/// `text` is well-formed JSON (so only its shape is wrong), `invalid_json`
/// otherwise. Details carry the parser's line and column.
pub(crate) fn decode_error(text: &str, e: &serde_json::Error, hint: &str) -> ApiError {
    let well_formed = e.is_data() || serde_json::from_str::<IgnoredAny>(text).is_ok();
    let (code, message) = if well_formed {
        (
            ErrorCode::InvalidRequest,
            format!(
                "the body has the wrong shape: {}: {hint}",
                user_words(&e.to_string())
            ),
        )
    } else {
        (
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {e}: {hint}"),
        )
    };
    ApiError::new(code, message)
        .with_details(serde_json::json!({ "line": e.line(), "column": e.column() }))
}

/// Rust type names in serde's messages, and what a client reads instead.
const USER_WORDS: &[(&str, &str)] = &[
    ("expected value", "a value of another type is expected here"),
    (
        "u64",
        "a non-negative integer (at most 18446744073709551615)",
    ),
    ("u32", "a non-negative integer (at most 4294967295)"),
    ("usize", "a non-negative integer"),
    ("i64", "an integer"),
    ("a borrowed string", "a string"),
    ("a string", "a string"),
    ("a sequence", "an array"),
    ("sequence", "an array"),
    ("a map", "an object"),
    ("map", "an object"),
    ("unit value", "null"),
    ("floating point", "the number"),
    ("boolean", "the boolean"),
];

/// serde's message with Rust's words replaced: `struct X` and `enum X`
/// become "an object" and "one of the allowed values", primitive type
/// names become their JSON meaning.
pub(crate) fn user_words(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix("struct ") {
            out.push_str("an object");
            rest = skip_ident(tail);
        } else if let Some(tail) = rest.strip_prefix("untagged enum ") {
            out.push_str("one of the forms this field takes");
            rest = skip_ident(tail);
        } else if let Some(tail) = rest.strip_prefix("enum ") {
            out.push_str("one of the allowed values");
            rest = skip_ident(tail);
        } else if let Some((from, to)) = USER_WORDS
            .iter()
            .find(|(from, _)| word_at(rest, from) && at_word_start(&out))
        {
            out.push_str(to);
            rest = &rest[from.len()..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// Whether `text` starts with the whole word `word`.
fn word_at(text: &str, word: &str) -> bool {
    text.starts_with(word)
        && text[word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric() && c != '_')
}

/// Whether the next character written to `out` starts a word.
fn at_word_start(out: &str) -> bool {
    out.chars()
        .last()
        .is_none_or(|c| !c.is_alphanumeric() && c != '_' && c != '`')
}

/// `text` after a leading Rust identifier.
fn skip_ident(text: &str) -> &str {
    let end = text
        .find(|c: char| !c.is_alphanumeric() && c != '_')
        .unwrap_or(text.len());
    &text[end..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct VerifyRequest {
        position: u64,
    }

    fn decode(body: &str) -> Result<VerifyRequest, ApiError> {
        decode_object(body.as_bytes(), "send {\"position\": N}")
    }

    #[test]
    fn shape_errors_are_invalid_request_and_syntax_errors_invalid_json() {
        let code = |body: &str| decode(body).map(|_| ()).map_err(|e| e.code);
        assert_eq!(code(r#"{"position": 1}"#), Ok(()));
        for shape in [
            "null",
            "[1]",
            "7",
            r#"{"position": null}"#,
            r#"{"position": "1"}"#,
            r#"{"position": 1.5}"#,
            r#"{"position": -1}"#,
            r#"{"position": 18446744073709551616}"#,
            r#"{"position": 1, "x": 2}"#,
            "{}",
        ] {
            assert_eq!(code(shape), Err(ErrorCode::InvalidRequest), "{shape}");
        }
        for syntax in ["{", "", "{\"position\": 1,}", "nul", "\u{ff}"] {
            assert_eq!(code(syntax), Err(ErrorCode::InvalidJson), "{syntax:?}");
        }
        assert_eq!(
            decode_object::<VerifyRequest>(&[0xff], "x")
                .map_err(|e| e.code)
                .err(),
            Some(ErrorCode::InvalidJson)
        );
    }

    #[test]
    fn messages_name_no_rust_type() {
        for body in [
            "null",
            r#"{"position": 0.0}"#,
            r#"{"position": "x"}"#,
            "[1]",
        ] {
            let message = decode(body).err().map(|e| e.message).unwrap_or_default();
            for rust in ["struct", "VerifyRequest", "u64", "sequence"] {
                assert!(!message.contains(rust), "{rust} in {message:?}");
            }
            assert!(message.ends_with("send {\"position\": N}"), "{message}");
        }
        assert_eq!(
            user_words("invalid type: floating point `0.0`, expected u64"),
            "invalid type: the number `0.0`, expected a non-negative integer (at most 18446744073709551615)"
        );
        assert_eq!(
            user_words("invalid type: null, expected struct VerifyRequest at line 1 column 4"),
            "invalid type: null, expected an object at line 1 column 4"
        );
        assert_eq!(
            user_words("unknown variant `x`, expected one of `a`, `b`"),
            "unknown variant `x`, expected one of `a`, `b`"
        );
    }
}
