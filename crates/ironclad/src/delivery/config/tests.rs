//! Tests for delivery configuration: the documented example, defaults,
//! every kind of refusal, and that messages name the key and the sink.

use std::ffi::OsString;

use super::*;
use crate::delivery::breaker::SlidingWindow;
use crate::delivery::signature::{SECRET_BYTES_MAX, SIGNATURES_MAX};

const SECRET: &str = "0123456789abcdef-long-enough";

fn env(var: &str) -> Option<OsString> {
    match var {
        "IRONCLAD_WEBHOOK_SECRET" => Some(SECRET.into()),
        "EMPTY" => Some(OsString::new()),
        _ => None,
    }
}

fn parse(text: &str) -> Result<DeliveryConfig, DeliveryConfigError> {
    DeliveryConfig::from_toml_str_with_env(text, &env)
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

const EXAMPLE: &str = r#"
data_dir = "./data"
[server]
listen = "127.0.0.1:8080"
[journal]
durability = "fsync"

[delivery.dlq]
entries_max = 500
ttl_s = 3600

[[delivery.sinks]]
name = "webhook"
kind = "http"
url = "https://example.com/hook"
secret_env = "IRONCLAD_WEBHOOK_SECRET"
headers = { "X-Tenant" = "acme", Authorization = "Bearer t0ken" }
request_timeout_ms = 5000
[delivery.sinks.batch]
events_max = 100
[delivery.sinks.retry]
delay_ms_base = 100
[delivery.sinks.breaker]
window = { kind = "time", seconds = 30 }
consecutive_failures_threshold = 0
open_multiplier = 3
[delivery.sinks.budget]
retry_ratio = 0.5

[[delivery.sinks]]
name = "archive"
kind = "jsonl"
path = "out/events.jsonl"

[[delivery.sinks]]
name = "debug.log"
kind = "log"
retry_rows_max = 7

[[delivery.routes]]
streams = "orders-*"
sink = "webhook"
[[delivery.routes]]
streams = "*"
sink = "archive"
"#;

#[test]
fn the_documented_example_parses() {
    let c = parse(EXAMPLE).expect("valid");
    assert_eq!(c.sinks.len(), 3);
    assert_eq!(
        c.dlq,
        DlqConfig {
            entries_max: 500,
            ttl_s: 3600,
            ..DlqConfig::default()
        }
    );
    let hook = c.sink("webhook").expect("defined");
    let SinkKind::Http {
        url,
        secrets,
        headers,
    } = &hook.kind
    else {
        panic!("http expected: {:?}", hook.kind);
    };
    assert_eq!(url, "https://example.com/hook");
    assert_eq!(secrets.len(), 1);
    assert_eq!(secrets[0].expose(), SECRET);
    assert_eq!(headers["X-Tenant"], "acme");
    assert_eq!(hook.request_timeout_ms, 5000);
    assert_eq!(hook.batch.events_max, 100);
    assert_eq!(hook.batch.bytes_max, BatchConfig::default().bytes_max);
    assert_eq!(hook.retry.delay_ms_base, 100);
    assert_eq!(hook.retry.attempts_max, RetryPolicy::default().attempts_max);
    assert_eq!(hook.breaker.window, SlidingWindow::Time { seconds: 30 });
    assert_eq!(hook.breaker.consecutive_failures_threshold, None, "0 = off");
    assert_eq!(hook.breaker.open_multiplier, 3.0);
    assert_eq!(hook.budget.retry_ratio, 0.5);
    assert_eq!(hook.retry_rows_max, 100_000);

    let archive = c.sink("archive").expect("defined");
    assert_eq!(
        archive.kind,
        SinkKind::Jsonl {
            path: "out/events.jsonl".into()
        }
    );
    assert_eq!(archive.breaker, BreakerConfig::default());
    let log = c.sink("debug.log").expect("defined");
    assert_eq!((log.kind.as_str(), log.retry_rows_max), ("log", 7));
    assert_eq!(c.unrouted_sinks(), vec!["debug.log"]);
    assert_eq!(c.routes[1].streams, "*");
    assert!(c.sink("nope").is_none());
}

#[test]
fn secrets_and_header_values_never_print() {
    let c = parse(EXAMPLE).expect("valid");
    let shown = format!("{c:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("t0ken"),
        "{shown}"
    );
    assert!(shown.contains("<redacted>") && shown.contains("X-Tenant"));
    assert_eq!(Secret::new("x").to_string(), "<redacted>");
}

#[test]
fn no_delivery_section_is_the_empty_default() {
    let c = parse("data_dir = \"d\"\n[server]\nport = 1\n").expect("valid");
    assert_eq!(c, DeliveryConfig::default());
    assert!(c.sinks.is_empty() && c.routes.is_empty());
    assert_eq!(parse("").expect("valid"), DeliveryConfig::default());
    assert_eq!(
        parse("[delivery]\n").expect("valid"),
        DeliveryConfig::default()
    );
}

#[test]
fn secret_sources() {
    let sink = |extra: &str| {
        format!("[[delivery.sinks]]\nname = \"h\"\nkind = \"http\"\nurl = \"http://h\"\n{extra}\n")
    };
    let c = parse(&sink(&format!(
        "secrets = [\"{SECRET}-new\", \"{SECRET}\"]"
    )))
    .expect("valid");
    let SinkKind::Http { secrets, .. } = &c.sinks[0].kind else {
        panic!("http");
    };
    let values: Vec<&str> = secrets.iter().map(Secret::expose).collect();
    assert_eq!(values, [format!("{SECRET}-new").as_str(), SECRET]);
    assert!(parse(&sink(&format!("secret = \"{SECRET}\""))).is_ok());

    let msg = err(&sink("secret_env = \"MISSING_VAR\""));
    assert!(
        msg.contains("MISSING_VAR") && msg.contains("not set"),
        "{msg}"
    );
    let msg = err(&sink("secret_env = \"EMPTY\""));
    assert!(msg.contains("0 bytes"), "{msg}");
    let msg = err(&sink("secret = \"short\""));
    assert!(msg.contains("sink `h`") && msg.contains("5 bytes"), "{msg}");
    let long = "x".repeat(SECRET_BYTES_MAX + 1);
    assert!(err(&sink(&format!("secret = \"{long}\""))).contains("1025 bytes"));
    let msg = err(&sink(&format!(
        "secret = \"{SECRET}\"\nsecret_env = \"IRONCLAD_WEBHOOK_SECRET\""
    )));
    assert!(msg.contains("only one of"), "{msg}");
    let msg = err(&sink(""));
    assert!(msg.contains("secret_env"), "{msg}");
    let many = vec![format!("\"{SECRET}\""); SIGNATURES_MAX + 1].join(",");
    assert!(err(&sink(&format!("secrets = [{many}]"))).contains("17 secrets"));
}

#[test]
fn kind_specific_fields() {
    let cases = [
        (
            "kind = \"jsonl\"\npath = \"p\"\nurl = \"http://x\"",
            "`url` does not apply to a jsonl sink",
        ),
        (
            "kind = \"log\"\npath = \"p\"",
            "`path` does not apply to a log sink",
        ),
        (
            "kind = \"http\"\nurl = \"http://x\"\nsecret = \"0123456789abcdefgh\"\npath = \"p\"",
            "`path` does not apply to a http sink",
        ),
        ("kind = \"log\"\nheaders = {}", "`headers` does not apply"),
        ("kind = \"http\"\nsecret_env = \"X\"", "needs `url`"),
        ("kind = \"jsonl\"", "a jsonl sink needs `path`"),
        ("kind = \"jsonl\"\npath = \"\"", "`path`"),
        ("kind = \"kafka\"", "unknown variant `kafka`"),
    ];
    for (body, needle) in cases {
        let msg = err(&format!("[[delivery.sinks]]\nname = \"s\"\n{body}\n"));
        assert!(msg.contains(needle), "{body}: {msg}");
    }
}

#[test]
fn urls_and_headers_are_checked() {
    let http = |url: &str, headers: &str| {
        format!("[[delivery.sinks]]\nname = \"h\"\nkind = \"http\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nheaders = {{ {headers} }}\n")
    };
    for url in [
        "ftp://x",
        "example.com",
        "https://",
        "http:///path",
        "https://a b",
    ] {
        let msg = err(&http(url, ""));
        assert!(msg.contains("`url`"), "{url}: {msg}");
        if url.len() > 4 {
            assert!(!msg.contains(url), "the url is not echoed: {msg}");
        }
    }
    assert!(parse(&http("HTTPS://Example.com:8443/x?y=1", "")).is_ok());
    for (headers, needle) in [
        ("\"Bad Name\" = \"v\"", "not a valid header name"),
        (
            "\"Content-Type\" = \"text/plain\"",
            "set by the sink itself",
        ),
        ("\"ironclad-signature\" = \"x\"", "set by the sink itself"),
        ("\"X-A\" = \"line\\r\\nInjected: 1\"", "visible ASCII"),
    ] {
        let msg = err(&http("https://h", headers));
        assert!(msg.contains(needle) && msg.contains("`headers`"), "{msg}");
    }
}

#[test]
fn unknown_keys_inside_delivery_are_refused_with_their_name() {
    for (text, key) in [
        ("[delivery]\nsinkz = []\n", "sinkz"),
        ("[delivery.dlq]\nttl = 5\n", "ttl"),
        ("[[delivery.routes]]\nstreams = \"*\"\nsink = \"s\"\nto = \"x\"\n", "to"),
        ("[[delivery.sinks]]\nname = \"s\"\nkind = \"log\"\ntimeout = 1\n", "timeout"),
        ("[[delivery.sinks]]\nname = \"s\"\nkind = \"log\"\n[delivery.sinks.batch]\nlinger = 1\n", "linger"),
        ("[[delivery.sinks]]\nname = \"s\"\nkind = \"log\"\n[delivery.sinks.retry]\nbase = 1\n", "base"),
        ("[[delivery.sinks]]\nname = \"s\"\nkind = \"log\"\n[delivery.sinks.breaker]\nwindow = { kind = \"count\", calls = 9, size = 1 }\n", "size"),
        ("[[delivery.sinks]]\nname = \"s\"\nkind = \"log\"\n[delivery.sinks.budget]\nratio = 1\n", "ratio"),
    ] {
        let msg = err(text);
        assert!(msg.contains(&format!("unknown field `{key}`")), "{key}: {msg}");
        assert!(msg.contains("line"), "the line is given: {msg}");
    }
}

#[test]
fn syntax_errors_give_the_line() {
    let msg = err("[delivery]\n\n[[delivery.sinks]\n");
    assert!(msg.contains("line 3"), "{msg}");
    let msg = err("[delivery.dlq]\nttl_s = -1\n");
    assert!(msg.contains("ttl_s") || msg.contains("line 2"), "{msg}");
}

#[test]
fn names_routes_and_limits() {
    let log = |name: &str| format!("[[delivery.sinks]]\nname = \"{name}\"\nkind = \"log\"\n");
    for name in ["", "has space", "ünï", &"n".repeat(65)] {
        assert!(
            err(&log(name)).contains("delivery.sinks[0]: name"),
            "{name}"
        );
    }
    assert!(parse(&log(&"n".repeat(64))).is_ok());
    let msg = err(&format!("{}{}", log("a"), log("a")));
    assert!(
        msg.contains("delivery.sinks[1]") && msg.contains("sinks[0]"),
        "{msg}"
    );

    let route = |streams: &str, sink: &str| {
        format!("[[delivery.routes]]\nstreams = \"{streams}\"\nsink = \"{sink}\"\n")
    };
    let msg = err(&format!(
        "{}{}{}",
        log("a"),
        route("*", "a"),
        route("x", "b")
    ));
    assert!(
        msg.contains("delivery.routes[1]: sink `b` is not defined (defined: a)"),
        "{msg}"
    );
    let msg = err(&format!("{}{}", log("a"), route("[x", "a")));
    assert!(
        msg.contains("delivery.routes[0]") && msg.contains("glob"),
        "{msg}"
    );

    let sinks: String = (0..=SINKS_MAX).map(|i| log(&format!("s{i}"))).collect();
    assert!(err(&sinks).contains("65 sinks"));
    let routes: String = (0..=ROUTES_MAX).map(|_| route("*", "a")).collect();
    assert!(err(&format!("{}{routes}", log("a"))).contains("1025 routes"));
}

#[test]
fn numeric_bounds() {
    let sink = |extra: &str| format!("[[delivery.sinks]]\nname = \"s\"\nkind = \"log\"\n{extra}\n");
    for (extra, needle) in [
        ("request_timeout_ms = 0", "request_timeout_ms"),
        ("request_timeout_ms = 300001", "request_timeout_ms"),
        ("retry_rows_max = 0", "retry_rows_max"),
        ("retry_rows_max = 10000001", "retry_rows_max"),
        ("[delivery.sinks.batch]\nevents_max = 0", "batch.events_max"),
        (
            "[delivery.sinks.batch]\nevents_max = 10001",
            "batch.events_max",
        ),
        (
            "[delivery.sinks.batch]\nbytes_max = 1023",
            "batch.bytes_max",
        ),
        (
            "[delivery.sinks.batch]\nlinger_ms = 60001",
            "batch.linger_ms",
        ),
        ("[delivery.sinks.retry]\ndelay_ms_base = 0", "delay_ms_base"),
        (
            "[delivery.sinks.breaker]\nminimum_calls = 1000",
            "minimum_calls",
        ),
        (
            "[delivery.sinks.breaker]\nfailure_rate_threshold_pct = 300",
            "failure_rate_threshold_pct",
        ),
        ("[delivery.sinks.budget]\nretry_ratio = 2.0", "retry_ratio"),
    ] {
        let msg = err(&sink(extra));
        assert!(msg.contains(needle), "{extra}: {msg}");
    }
    assert!(parse(&sink(
        "[delivery.sinks.batch]\nlinger_ms = 0\nbytes_max = 1024"
    ))
    .is_ok());
    for (dlq, needle) in [
        ("entries_max = 0", "entries_max"),
        ("ttl_s = 31536001", "ttl_s"),
        ("janitor_interval_ms = 99", "janitor_interval_ms"),
    ] {
        let msg = err(&format!("[delivery.dlq]\n{dlq}\n"));
        assert!(
            msg.contains("delivery.dlq") && msg.contains(needle),
            "{msg}"
        );
    }
}

#[test]
fn load_reads_a_file_and_names_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ironclad.toml");
    std::fs::write(&path, "[[delivery.sinks]]\nname = \"l\"\nkind = \"log\"\n").expect("write");
    let c = DeliveryConfig::load(&path).expect("valid");
    assert_eq!(c.sinks[0].name, "l");
    std::fs::write(&path, "[delivery\n").expect("write");
    let msg = DeliveryConfig::load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("ironclad.toml") && msg.contains("line 1"),
        "{msg}"
    );
    let missing = DeliveryConfig::load(&dir.path().join("nope.toml")).unwrap_err();
    assert!(
        matches!(missing, DeliveryConfigError::Io { .. }),
        "{missing}"
    );
}

proptest::proptest! {
    #[test]
    fn any_text_is_parsed_or_refused_without_panicking(
        text in "[\\[\\]a-z_.=\"0-9 \n{},-]{0,200}",
        noise in ".{0,64}",
    ) {
        let _ = parse(&text);
        let _ = parse(&format!("[[delivery.sinks]]\n{text}"));
        let _ = parse(&noise);
    }
}
