//! What a new user met first (issue 9 #24): server logs written to a file
//! carry no colour codes, messages use the words users type (`os`, not the
//! Rust variant `Os`), `migrate --status` prints times as RFC 3339 and
//! refuses a 0-byte database as opening does. Real processes and files.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::serve_support::ironclad;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `ironclad serve` with stderr redirected to a file logs without ANSI
/// escape codes (colour belongs to terminals only).
#[test]
fn server_logs_written_to_a_file_have_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let log_path = tmp.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut child = ironclad()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    let addr = first
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("first line: {first:?}"))
        .to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "POST /v1/streams/s/events HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    let st = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "serve did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let logged = std::fs::read(&log_path).unwrap();
    assert!(
        text(&logged).contains("INFO"),
        "the server logged nothing to judge: {}",
        text(&logged)
    );
    assert!(
        !logged.contains(&0x1b),
        "escape codes in the log file: {:?}",
        text(&logged)
    );
}

/// `bench append` prints the durability as it is written on the command
/// line (`os`), not as the Rust enum (`Os`).
#[test]
fn bench_names_the_durability_in_user_words() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ironclad()
        .args(["--data-dir"])
        .arg(tmp.path().join("data"))
        .args([
            "bench",
            "append",
            "--producers",
            "1",
            "--events",
            "20",
            "--durability",
            "os",
            "--dir",
        ])
        .arg(tmp.path())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(stdout.contains("durability os,"), "{stdout}");
    assert!(!stdout.contains("Os"), "{stdout}");
}

/// `migrate --status` prints when each step was applied as RFC 3339 UTC,
/// and refuses a 0-byte database (what it held is gone) with the message
/// opening gives, instead of reporting schema version 0.
#[test]
fn migrate_status_prints_rfc3339_times_and_refuses_an_empty_file() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let migrate = |args: &[&str]| {
        ironclad()
            .arg("--data-dir")
            .arg(&data)
            .arg("migrate")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(migrate(&[]).status.success());
    let out = migrate(&["--status"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let applied: Vec<&str> = stdout.lines().filter(|l| l.contains("applied")).collect();
    assert!(!applied.is_empty(), "{stdout}");
    for line in applied {
        let at = line
            .rsplit_once("(at ")
            .and_then(|(_, t)| t.strip_suffix(')'))
            .unwrap_or_else(|| panic!("no time in {line:?}"));
        let b = at.as_bytes();
        assert!(
            at.len() >= 20
                && at.ends_with('Z')
                && b[4] == b'-'
                && b[7] == b'-'
                && b[10] == b'T'
                && b[13] == b':'
                && b[16] == b':'
                && at.starts_with("20"),
            "not RFC 3339 UTC: {at:?} in {line:?}"
        );
    }

    std::fs::write(data.join("ironclad.db"), b"").unwrap();
    for json in [false, true] {
        let out = if json {
            ironclad()
                .arg("--json")
                .arg("--data-dir")
                .arg(&data)
                .args(["migrate", "--status"])
                .output()
                .unwrap()
        } else {
            migrate(&["--status"])
        };
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
        assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
        assert!(stderr.contains("is empty (0 bytes)"), "{stderr}");
    }
}
