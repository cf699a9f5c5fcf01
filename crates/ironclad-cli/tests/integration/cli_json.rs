//! Every command's `--json` output is JSON, on an empty data directory as
//! on one with data, and the help offers what the commands take. The list
//! of commands is not written here: it is walked from the binary's own
//! help (clap's command tree), so a new command without an entry in
//! [`invocations`] fails [`every_command_prints_json_on_empty_and_populated_data`].
//!
//! Guards: a listing prints one JSON document with the same shape whether
//! or not there is anything to list (`{"sinks":[]}`, never nothing);
//! streaming commands (`append`, `read`, `tail`, `run`, `serve`, `dlq
//! export`) print JSON lines; a failure prints `{"error":…}` on stderr;
//! `--server`/`--token` are listed exactly on the commands that take them;
//! the top-level help names no command that is not one.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::remote::{envelope_lines, write_config, Hook};
use crate::serve_support::ironclad;

/// How a command prints with `--json`.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    /// Exactly one JSON object on stdout.
    Document,
    /// One JSON object per line (none on an empty directory is fine).
    Lines,
    /// Runs until stopped: `tail` is killed after a while, `serve` gets
    /// SIGTERM once it listens; what it printed is JSON lines.
    Live,
}

/// One way to run a leaf command in the test.
struct Invocation {
    args: Vec<String>,
    stdin: &'static str,
    kind: Kind,
    /// Exit code on the empty and on the populated directory.
    exit: (i32, i32),
}

fn inv(args: &[&str], kind: Kind) -> Invocation {
    Invocation {
        args: args.iter().map(|s| s.to_string()).collect(),
        stdin: "",
        kind,
        exit: (0, 0),
    }
}

/// The invocations of each leaf command (`config`: a delivery config with
/// sink `hook`; `scratch`: a directory for `bench`). None for a command
/// this table does not know: the test then fails and names it.
fn invocations(leaf: &str, config: &str, scratch: &str) -> Option<Vec<Invocation>> {
    use Kind::*;
    Some(match leaf {
        "append" => vec![Invocation {
            stdin: "{\"n\":1}\n",
            ..inv(&["append", "orders-9"], Lines)
        }],
        "read" => vec![Invocation {
            exit: (1, 0),
            ..inv(&["read", "orders-1"], Lines)
        }],
        "streams" => vec![inv(&["streams"], Document)],
        "tail" => vec![inv(&["tail", "--all", "--after", "0"], Live)],
        "ledger verify" => vec![inv(&["ledger", "verify"], Document)],
        "ledger head" => vec![inv(&["ledger", "head"], Document)],
        "serve" => vec![inv(&["serve", "--listen", "127.0.0.1:0"], Live)],
        "run" => vec![inv(&["run", "--exit-when-idle", "--config", config], Lines)],
        "status" => vec![
            inv(&["status", "--config", config], Document),
            inv(&["status"], Document),
        ],
        "dlq stats" => vec![inv(&["dlq", "stats"], Document)],
        "dlq list" => vec![inv(&["dlq", "list"], Document)],
        "dlq show" => vec![Invocation {
            exit: (1, 0),
            ..inv(&["dlq", "show", "hook", "2"], Document)
        }],
        "dlq retry" => vec![inv(&["dlq", "retry", "--all"], Document)],
        "dlq purge" => vec![inv(&["dlq", "purge", "--all"], Document)],
        "dlq export" => vec![inv(&["dlq", "export"], Lines)],
        "dump list" => vec![inv(&["dump", "list"], Document)],
        "dump replay" => vec![inv(&["dump", "replay", "--all"], Document)],
        "migrate" => vec![
            inv(&["migrate"], Document),
            inv(&["migrate", "--status"], Document),
        ],
        "bench append" => vec![inv(
            &[
                "bench",
                "append",
                "--producers",
                "1",
                "--events",
                "20",
                "--dir",
                scratch,
            ],
            Document,
        )],
        "demo" => vec![inv(
            &["demo", "--producers", "1", "--appends", "3"],
            Document,
        )],
        _ => return None,
    })
}

/// The subcommands `ironclad PATH… --help` lists (clap's `help` aside).
fn subcommands(path: &[String]) -> Vec<String> {
    let out = ironclad().args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "{path:?} --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    let Some(start) = help.find("\nCommands:\n") else {
        return Vec::new();
    };
    help[start + "\nCommands:\n".len()..]
        .lines()
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

/// Every leaf command, as its path of names (`["dlq", "stats"]`), walked
/// from the binary's help.
pub(crate) fn leaf_commands() -> Vec<Vec<String>> {
    let mut leaves = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(path) = todo.pop() {
        let subs = subcommands(&path);
        if subs.is_empty() && !path.is_empty() {
            leaves.push(path);
            continue;
        }
        for s in subs {
            todo.push([path.clone(), vec![s]].concat());
        }
    }
    leaves.sort();
    leaves
}

/// Copies a stopped data directory (or the scratch tree holding it).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A data directory with events (`orders-1` positions 1–3, position 2
/// dead-lettered by sink `hook`) and an emergency dump.
fn populate(data: &Path, config: &str) {
    let run = |args: &[&str], stdin: &str| {
        let out = spawn(data, args, stdin).wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    };
    run(
        &["append", "orders-1", "--envelope"],
        &envelope_lines("o", 3, &[1]),
    );
    run(&["run", "--exit-when-idle", "--config", config], "");
    use ironclad::emergency::{write_dump, DumpRecord};
    let events = vec![ironclad::NewEvent::new("t", "{}")];
    let ids = [uuid::Uuid::now_v7()];
    let record = DumpRecord::new("rescued", ironclad::ExpectedVersion::Any, &ids, &events).unwrap();
    write_dump(data, &[record], 1).unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Starts `ironclad --json --data-dir DATA ARGS…` with `stdin` written and closed.
fn spawn<A: AsRef<std::ffi::OsStr>>(data: &Path, args: &[A], stdin: &str) -> Child {
    let mut child = ironclad()
        .arg("--json")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child
}

/// Runs one invocation to its end (stopping a live one) and returns its output.
fn run_to_end(data: &Path, i: &Invocation) -> Output {
    let mut child = spawn(data, &i.args, i.stdin);
    if i.kind != Kind::Live {
        return wait_exit(child, Duration::from_secs(120));
    }
    if i.args[0] == "serve" {
        // Its first line once it listens; then a graceful stop.
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let st = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let mut out = wait_exit(child, Duration::from_secs(60));
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut rest).unwrap();
        out.stdout = [first.into_bytes(), rest].concat();
        return out;
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let _ = child.kill();
    let mut out = child.wait_with_output().unwrap();
    // Killed on purpose: judged by what it printed.
    out.status = std::process::Command::new("true").status().unwrap();
    out
}

fn wait_exit(mut child: Child, timeout: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Asserts what one run printed: stdout per `kind` on success (`populated`:
/// lines are expected), `{"error":…}` on stderr on failure.
fn check(what: &str, i: &Invocation, out: &Output, want_exit: i32, populated: bool) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(
        out.status.code(),
        Some(want_exit),
        "{what}: exit code; stdout {stdout:?} stderr {stderr:?}"
    );
    let parse = |l: &str| -> Value {
        let v: Value = serde_json::from_str(l)
            .unwrap_or_else(|e| panic!("{what}: not JSON: {l:?}: {e}; stderr {stderr:?}"));
        assert!(v.is_object(), "{what}: not an object: {l}");
        v
    };
    if want_exit != 0 {
        assert!(stdout.is_empty(), "{what}: stdout on failure: {stdout:?}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(
            parse(last)["error"]["message"].is_string(),
            "{what}: {last}"
        );
        return;
    }
    let lines: Vec<&str> = stdout.lines().collect();
    for l in &lines {
        parse(l);
    }
    match i.kind {
        Kind::Document => assert_eq!(lines.len(), 1, "{what}: one document: {stdout:?}"),
        Kind::Lines | Kind::Live if populated => {
            assert!(!lines.is_empty(), "{what}: printed nothing on data")
        }
        Kind::Lines | Kind::Live => {}
    }
    if i.args[0] == "serve" {
        assert!(
            lines.len() >= 2,
            "{what}: listening and stopped: {stdout:?}"
        );
    }
}

/// Every leaf command, run with `--json` on an empty (migrated) data
/// directory and on one with events, dead letters and a dump, prints JSON.
#[test]
fn every_command_prints_json_on_empty_and_populated_data() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Hook::start();
    let config = write_config(tmp.path(), &hook.url);
    let config_s = config.to_str().unwrap();
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir_all(&scratch).unwrap();
    let scratch_s = scratch.to_str().unwrap();
    let empty = tmp.path().join("empty");
    let out = spawn(&empty, &["migrate".to_string()], "")
        .wait_with_output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let populated = tmp.path().join("populated");
    populate(&populated, config_s);

    let leaves = leaf_commands();
    assert!(leaves.len() >= 20, "walked too few commands: {leaves:?}");
    let mut n = 0;
    for leaf in &leaves {
        let name = leaf.join(" ");
        let list = invocations(&name, config_s, scratch_s)
            .unwrap_or_else(|| panic!("`{name}` has no --json check: add it to `invocations`"));
        for i in &list {
            for (state, dir, want) in [
                ("empty", &empty, i.exit.0),
                ("populated", &populated, i.exit.1),
            ] {
                // Each run on a fresh copy: commands that change the data
                // (append, retry, purge, replay) do not affect the next.
                let copy = tmp.path().join(format!("run-{n}"));
                n += 1;
                copy_dir(dir, &copy);
                let out = run_to_end(&copy, i);
                let what = format!("{} on {state}", i.args.join(" "));
                check(&what, i, &out, want, state == "populated");
                std::fs::remove_dir_all(&copy).unwrap();
            }
        }
    }
}

/// `ironclad --help` names commands only as they are (no `verify` that is
/// really `ledger verify`), and each leaf lists `--server`/`--token`
/// exactly when it takes them: a leaf without them refuses a `--server`
/// given before its name (exit 2, "local data directory only") and one
/// given after it (clap: exit 2); a leaf with them tries the server.
#[test]
fn help_names_real_commands_and_offers_server_only_where_taken() {
    let leaves = leaf_commands();
    let top = subcommands(&[]);
    let help = text(&ironclad().arg("--help").output().unwrap().stdout);
    let about = &help[..help.find("Usage:").unwrap()];
    let words: Vec<String> = about
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '-')
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    for (k, w) in words.iter().enumerate() {
        for leaf in leaves
            .iter()
            .filter(|l| l.len() > 1 && !top.contains(&l[1]))
        {
            if *w == leaf[leaf.len() - 1] {
                assert!(
                    k > 0 && words[k - 1] == leaf[leaf.len() - 2],
                    "the top-level help names `{w}`, which is `{}`: {about}",
                    leaf.join(" ")
                );
            }
        }
    }

    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let unreachable = "http://127.0.0.1:1";
    for leaf in &leaves {
        let name = leaf.join(" ");
        let help = text(&ironclad().args(leaf).arg("--help").output().unwrap().stdout);
        let offers = help.contains("--server <URL>");
        assert_eq!(
            offers,
            help.contains("--token <TOKEN>"),
            "{name}: --server and --token go together"
        );
        // The arguments that make the command get as far as the server.
        let mut args = invocations(&name, "cfg.toml", data)
            .unwrap_or_else(|| panic!("`{name}` is not in `invocations`"))
            .remove(0)
            .args;
        if name == "tail" {
            args.truncate(2); // `--after 0` would retry an unreachable server forever
        }
        let before = ironclad()
            .args(["--data-dir", data, "--server", unreachable])
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = text(&before.stderr);
        let refused =
            before.status.code() == Some(2) && stderr.contains("local data directory only");
        assert_eq!(
            offers, !refused,
            "{name}: offers --server {offers}, but: {stderr}"
        );
        if !offers {
            let after = ironclad()
                .args(["--data-dir", data])
                .args(leaf)
                .args(["--server", unreachable])
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert_eq!(after.status.code(), Some(2), "{name} --server");
            assert!(text(&after.stderr).contains("unexpected argument '--server'"));
        }
    }
}
