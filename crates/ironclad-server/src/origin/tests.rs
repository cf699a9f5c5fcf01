//! The decision table of [`super::decide`], and properties over arbitrary
//! headers.

use proptest::prelude::*;

use super::*;

fn policy(tokens: bool) -> OriginPolicy {
    OriginPolicy {
        allowed_origins: vec!["http://app.example:3000".into()],
        allowed_hosts: vec!["ironclad.internal".into(), "pinned.example:7070".into()],
        tokens,
    }
}

fn get<'a>(host: Option<&'a str>, origin: Option<&'a str>) -> RequestHead<'a> {
    RequestHead {
        host,
        origin,
        ..RequestHead::default()
    }
}

fn post<'a>(content_type: Option<&'a str>, has_body: bool) -> RequestHead<'a> {
    RequestHead {
        body_method: true,
        host: Some("127.0.0.1:7070"),
        content_type,
        has_body,
        ..RequestHead::default()
    }
}

#[test]
fn hosts_without_tokens() {
    let p = policy(false);
    for ok in [
        "127.0.0.1:7070",
        "127.0.0.1",
        "[::1]:7070",
        "[::1]",
        "localhost",
        "LOCALHOST:9",
        "10.1.2.3:7070",
        "ironclad.internal:1234",
        "pinned.example:7070",
    ] {
        assert_eq!(decide(&get(Some(ok), None), &p), None, "{ok}");
    }
    for bad in [
        "evil.example:7070",
        "evil.example",
        "pinned.example:7071",
        "localhost.evil.example",
        "",
        "[::1",
        "127.0.0.1:",
        "127.0.0.1:x",
        "2130706433:7070",
    ] {
        assert_eq!(
            decide(&get(Some(bad), None), &p),
            Some(Refusal::Host),
            "{bad}"
        );
    }
    assert_eq!(decide(&get(None, None), &p), None, "HTTP/1.0 without Host");
}

#[test]
fn with_tokens_the_host_is_checked_only_against_a_configured_list() {
    let open = OriginPolicy {
        tokens: true,
        ..OriginPolicy::default()
    };
    assert_eq!(decide(&get(Some("evil.example:7070"), None), &open), None);
    assert_eq!(
        decide(&get(Some("evil.example:7070"), None), &policy(true)),
        Some(Refusal::Host)
    );
}

#[test]
fn origins() {
    for tokens in [false, true] {
        let p = policy(tokens);
        let d = |host, origin| decide(&get(Some(host), Some(origin)), &p);
        assert_eq!(d("127.0.0.1:7070", "http://127.0.0.1:7070"), None);
        assert_eq!(d("localhost:7070", "HTTP://LocalHost:7070"), None);
        assert_eq!(d("localhost:7070", "https://localhost:7070"), None);
        assert_eq!(d("127.0.0.1:7070", "http://app.example:3000"), None);
        for bad in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:7071",
            "http://localhost:7070",
            "http://app.example:3001",
            "ftp://127.0.0.1:7070",
            "http://",
            "",
        ] {
            assert_eq!(d("127.0.0.1:7070", bad), Some(Refusal::Origin), "{bad}");
        }
    }
    // No Host: nothing is the server's own origin.
    let p = policy(true);
    assert_eq!(
        decide(&get(None, Some("http://127.0.0.1:7070")), &p),
        Some(Refusal::Origin)
    );
}

#[test]
fn json_bodies_must_say_so() {
    let p = policy(false);
    for ok in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        " application/json ",
    ] {
        assert_eq!(decide(&post(Some(ok), true), &p), None, "{ok}");
    }
    for bad in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json-patch+json",
        "",
    ] {
        assert_eq!(
            decide(&post(Some(bad), true), &p),
            Some(Refusal::MediaType),
            "{bad}"
        );
        assert_eq!(
            decide(&post(Some(bad), false), &p),
            Some(Refusal::MediaType),
            "an empty {bad} body"
        );
    }
    assert_eq!(decide(&post(None, true), &p), Some(Refusal::MediaType));
    assert_eq!(decide(&post(None, false), &p), None, "bodiless POST");
    let get_with_text = RequestHead {
        content_type: Some("text/plain"),
        has_body: true,
        ..get(Some("localhost"), None)
    };
    assert_eq!(decide(&get_with_text, &p), None, "GET bodies are ignored");
}

#[test]
fn host_is_checked_before_origin_before_media_type() {
    let all_bad = RequestHead {
        body_method: true,
        host: Some("evil.example"),
        origin: Some("http://other.example"),
        content_type: Some("text/plain"),
        has_body: true,
    };
    assert_eq!(decide(&all_bad, &policy(false)), Some(Refusal::Host));
    let p = OriginPolicy {
        tokens: true,
        ..OriginPolicy::default()
    };
    assert_eq!(decide(&all_bad, &p), Some(Refusal::Origin));
}

#[test]
fn configured_entries_are_checked() {
    assert_eq!(
        parse_origin("HTTPS://App.Example:3000").as_deref(),
        Ok("https://app.example:3000")
    );
    for bad in [
        "app.example",
        "http://a/b",
        "null",
        "*",
        "http://",
        "http://a:b",
    ] {
        assert!(parse_origin(bad).is_err(), "{bad}");
    }
    assert_eq!(parse_host("Name.Example").as_deref(), Ok("name.example"));
    assert_eq!(parse_host("n:7070").as_deref(), Ok("n:7070"));
    for bad in ["", "http://x", "a b", "x:", "u@h"] {
        assert!(parse_host(bad).is_err(), "{bad}");
    }
    assert_eq!(
        parse_list(" http://a:1 , ,https://b", parse_origin),
        Ok(vec!["http://a:1".to_string(), "https://b".to_string()])
    );
    assert!(parse_list("http://a,b", parse_origin).is_err());
}

proptest! {
    /// Without tokens, any Host that is a name (not an IP literal, not
    /// localhost, not configured) is refused, whatever else the request says.
    #[test]
    fn rebinding_names_are_always_refused(
        name in "[a-z][a-z0-9-]{0,20}\\.(example|com|net)",
        port in proptest::option::of(1u16..),
        origin in proptest::option::of(".{0,40}"),
        body_method: bool,
    ) {
        let host = match port {
            Some(p) => format!("{name}:{p}"),
            None => name,
        };
        let req = RequestHead { body_method, host: Some(&host), origin: origin.as_deref(), ..RequestHead::default() };
        prop_assert_eq!(decide(&req, &policy(false)), Some(Refusal::Host));
    }

    /// A foreign Origin is refused, tokens or not, whatever the Host.
    #[test]
    fn foreign_origins_are_always_refused(
        sub in "[a-z]{1,10}",
        port in 1u16..,
        tokens: bool,
    ) {
        let origin = format!("http://{sub}.evil.example");
        let host = format!("127.0.0.1:{port}");
        prop_assert_eq!(
            decide(&get(Some(&host), Some(&origin)), &policy(tokens)),
            Some(Refusal::Origin)
        );
        let own = format!("http://{host}");
        prop_assert_eq!(decide(&get(Some(&host), Some(&own)), &policy(tokens)), None);
    }

    /// Never panics on arbitrary text in any header.
    #[test]
    fn arbitrary_headers_never_panic(
        host in proptest::option::of(".{0,30}"),
        origin in proptest::option::of(".{0,30}"),
        ct in proptest::option::of(".{0,30}"),
        body_method: bool,
        has_body: bool,
        tokens: bool,
    ) {
        let req = RequestHead {
            body_method,
            host: host.as_deref(),
            origin: origin.as_deref(),
            content_type: ct.as_deref(),
            has_body,
        };
        let _ = decide(&req, &policy(tokens));
    }
}
