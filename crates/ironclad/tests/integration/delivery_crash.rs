//! Guards delivery across a real SIGKILL (SPEC §4 "At-least-once delivery
//! with effectively-once effect", "Conservation"; SPEC §2 "Durability").
//!
//! The parent runs the loopback webhook receiver (`common::receiver`) with
//! latency on every request, both before and after it applies the events,
//! so a batch is almost always in flight (and often applied but not yet
//! acknowledged), plus a seeded 503 rate and periodic connection resets.
//! It re-runs this test binary as a child that opens the journal, starts
//! the real `DeliveryEngine` with an HTTP sink pointed at the receiver
//! (small batches: many settles), and appends in a loop while the engine
//! delivers, printing one `ACK` line per acknowledged append. Every request
//! a child's sink sends carries the child's round number in a configured
//! header.
//!
//! The parent SIGKILLs the child 100–600 ms after it is ready, 15 times on
//! one data directory. Every third kill then waits until the newest request
//! is applied but unanswered (the hard case); every third starts a receiver
//! outage shortly before the kill (so failed retry rows exist at the kill
//! and the next child starts against a failing sink). After every kill it
//! reopens the directory and checks:
//! - every acknowledged event is in the log, the log is well formed and the
//!   ledger verifies;
//! - conservation: every routed event is in exactly one state and
//!   appended = delivered + dead-lettered + pending (`common::accounting`).
//!
//! After the last kill the parent drains the backlog with an in-process
//! engine against a healthy receiver and checks that nothing is pending or
//! dead, every routed event was delivered and applied by the receiver
//! exactly once, and every duplicate is explained: when a receipt of an
//! event follows one the receiver applied, that applied receipt was either
//! a request the receiver reset (an injected failure: the sender cannot
//! know it was applied) or the last request of a killed child (its batch in
//! flight, which it could not settle), and the resend came from a later
//! child. Conversely, a killed child's last batch that the receiver applied
//! but answered only after the child was dead must have been sent again.

use crate::common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::receiver::{ReceivedRequest, Receiver, Schedule};
use ironclad::delivery::config::DeliveryConfig;
use ironclad::delivery::engine::DeliveryEngine;
use ironclad::delivery::routes::Routes;
use ironclad::{AppendStatus, ExpectedVersion, Journal, NewEvent};
use uuid::Uuid;

const DIR_ENV: &str = "IRONCLAD_DELIVERY_CRASH_DIR";
const URL_ENV: &str = "IRONCLAD_DELIVERY_CRASH_URL";
const ROUND_ENV: &str = "IRONCLAD_DELIVERY_CRASH_ROUND";
/// The request header that tells the receiver which child sent a request.
const ROUND_HEADER: &str = "x-crash-round";
/// The tag of the parent's final, in-process engine.
const FINAL_TAG: &str = "final";
const SINK: &str = "hook";
const SECRET: &str = "delivery-crash-test-secret-0123456789";
const ROUNDS: usize = 15;
/// Kills come at a random moment 100–600 ms after the child is ready, and
/// every third round (round % 3 == 0) then waits for the newest request to
/// be applied but not yet answered, so some kills surely land in the hard
/// case: applied by the receiver, never acknowledged to the sender.
const TARGET_APPLIED_WAIT: Duration = Duration::from_secs(1);
/// Every third round (round % 3 == 1) starts a receiver outage this long
/// before its kill, so the kill lands while failed retry rows exist; the
/// outage lasts into the next child's start, which retries them.
const OUTAGE_BEFORE_KILL: Duration = Duration::from_millis(100);
const OUTAGE: Duration = Duration::from_millis(400);
/// Small batches: many settles, so kills land around them often.
const EVENTS_MAX: usize = 20;
/// Every request waits this long before the receiver looks at it (a kill
/// then drops the request unapplied)…
const LATENCY: Duration = Duration::from_millis(10);
/// …and this long after applying it, before answering (a kill then leaves
/// it applied but unsettled: the resend is a duplicate).
const ANSWER_LATENCY: Duration = Duration::from_millis(20);
/// Fraction of requests answered 503 (not applied).
const FAILURE_RATE: f64 = 0.1;
/// Every Nth request is applied, then its connection is reset.
const RESET_EVERY: u64 = 29;
/// Streams the route sends to the sink; appends also go to an unrouted one.
const ROUTED_STREAMS: usize = 6;
/// The child gives up on its own after this long, in case the parent died.
const CHILD_MAX_LIFETIME: Duration = Duration::from_secs(60);
/// How long the final engine may take to drain the backlog.
const DRAIN_DEADLINE: Duration = Duration::from_secs(20);

/// The engine configuration, the same for every child and the final engine
/// apart from the `tag` each request carries. Retries are fast and never
/// give up, the breaker does not trip on the injected failure rate and the
/// retry budget never holds a retry back, so the backlog drains quickly once
/// the receiver is healthy.
fn delivery_config(url: &str, tag: &str) -> DeliveryConfig {
    let toml = format!(
        r#"
[[delivery.sinks]]
name = "{SINK}"
kind = "http"
url = "{url}"
secret = "{SECRET}"
headers = {{ "{ROUND_HEADER}" = "{tag}" }}
request_timeout_ms = 5000
[delivery.sinks.batch]
events_max = {EVENTS_MAX}
linger_ms = 2
[delivery.sinks.retry]
delay_ms_base = 10
delay_ms_max = 150
attempts_max = 10000
elapsed_ms_max = 3600000
[delivery.sinks.breaker]
failure_rate_threshold_pct = 100
consecutive_failures_threshold = 0
open_ms_base = 50
open_ms_max = 200
[delivery.sinks.budget]
retry_ratio = 1.0
retries_per_s_min = 100000
[[delivery.routes]]
streams = "dc-*"
sink = "{SINK}"
"#
    );
    DeliveryConfig::from_toml_str(&toml).expect("delivery config")
}

/// The receiver's misbehaviour while children run.
fn crash_schedule(seed: u64) -> Schedule {
    Schedule::default()
        .secret(SECRET.as_bytes())
        .latency_every(1, LATENCY)
        .answer_latency(ANSWER_LATENCY)
        .failure_rate(FAILURE_RATE, seed)
        .reset_every(RESET_EVERY)
}

/// The child side: does nothing unless started by the parent.
#[test]
fn delivery_crash_child() {
    let (Ok(dir), Ok(url), Ok(round)) = (
        std::env::var(DIR_ENV),
        std::env::var(URL_ENV),
        std::env::var(ROUND_ENV),
    ) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("child runtime");
    rt.block_on(child_main(PathBuf::from(dir), url, round));
    // Only reached if the parent never killed us.
    std::process::exit(2);
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    // One write per line: a line is either fully in the pipe or not at all.
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

async fn child_main(dir: PathBuf, url: String, round: String) {
    let journal = match Journal::open(common::config(&dir)) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("delivery crash child: open failed: {e}");
            std::process::exit(3);
        }
    };
    // Kept alive until the kill: dropping it would stop delivering.
    let _engine = match DeliveryEngine::start(journal.clone(), delivery_config(&url, &round)).await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("delivery crash child: engine start failed: {e}");
            std::process::exit(4);
        }
    };
    // The harness has printed "test delivery_crash_child ... " without a
    // newline: start a fresh line so READY stands alone.
    emit("\nREADY");
    let produce = async {
        for k in 0u64.. {
            let stream = if rand::random_range(0..8) == 0 {
                "other".to_string()
            } else {
                format!("dc-{}", rand::random_range(0..ROUTED_STREAMS))
            };
            let n: usize = rand::random_range(1..=4);
            let events = (0..n)
                .map(|i| {
                    let payload = serde_json::json!({ "round": round, "k": k, "i": i });
                    NewEvent::from_value("crash.event", &payload)
                })
                .collect();
            match journal.append(&stream, ExpectedVersion::Any, events).await {
                Ok(r) => {
                    assert_eq!(r.status, AppendStatus::Appended);
                    let ids: Vec<String> = r.events.iter().map(|e| e.id.to_string()).collect();
                    emit(&format!("ACK {stream} {}", ids.join(" ")));
                }
                Err(e) => {
                    eprintln!("delivery crash child: append failed: {e}");
                    std::process::exit(5);
                }
            }
            // Roughly the rate the receiver drains, so the backlog stays
            // small while appends and deliveries race.
            tokio::time::sleep(Duration::from_millis(rand::random_range(3..=9))).await;
        }
    };
    tokio::select! {
        _ = produce => {}
        _ = tokio::time::sleep(CHILD_MAX_LIFETIME) => {}
    }
}

/// Parses `ACK <stream> <id>…` into the stream and the ids.
fn parse_ack(line: &str) -> Option<(String, Vec<Uuid>)> {
    let mut parts = line.split(' ');
    if parts.next()? != "ACK" {
        return None;
    }
    let stream = parts.next()?.to_string();
    let ids: Option<Vec<Uuid>> = parts.map(|p| p.parse().ok()).collect();
    let ids = ids?;
    (!ids.is_empty()).then_some((stream, ids))
}

/// Waits until the newest request of round `tag` has been applied by the
/// receiver but not answered yet (false if that did not happen in time).
fn wait_applied_unanswered(receiver: &Receiver, tag: &str) -> bool {
    let deadline = Instant::now() + TARGET_APPLIED_WAIT;
    while Instant::now() < deadline {
        let requests = receiver.requests();
        let newest = requests
            .iter()
            .rev()
            .find(|r| r.header(ROUND_HEADER) == Some(tag));
        if newest.is_some_and(|r| !r.applied_keys.is_empty() && r.answered_at.is_none()) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

/// What one reopen saw.
#[derive(Debug, Clone, Copy)]
struct RoundStats {
    events: usize,
    routed: u64,
    delivered: u64,
    pending: usize,
    /// Retry rows that failed at least once.
    retrying: u64,
}

/// Checks every acknowledged event is in the log at its stream, the log is
/// well formed and verifies, and the sink's accounting is conserved.
fn check_log<S: ironclad::store::Store>(
    reader: &ironclad::LogReader<S>,
    routes: &Routes,
    acked: &HashMap<Uuid, String>,
) -> (RoundStats, common::accounting::Accounting) {
    let events = common::read_everything(reader);
    let summary = common::check_log_structure(&events);
    common::check_stream_heads(reader, &summary);
    let report = common::verify_ok(reader);
    assert_eq!(report.checked as usize, events.len());
    for (id, stream) in acked {
        let Some((s, _, _)) = summary.by_id.get(id) else {
            panic!("acknowledged event {id} on {stream} was lost");
        };
        assert_eq!(s, stream, "acknowledged event {id}: stream");
    }
    let acc = common::accounting::check(reader, routes, SINK);
    let stats = RoundStats {
        events: events.len(),
        routed: acc.appended,
        delivered: acc.delivered_total,
        pending: acc.pending.len(),
        retrying: acc.retrying,
    };
    (stats, acc)
}

/// Reopens `dir` (taking the lock proves the kernel released the killed
/// child's) and checks it.
fn check_after_kill(
    dir: &Path,
    routes: &Routes,
    acked: &HashMap<Uuid, String>,
    rt: &tokio::runtime::Runtime,
) -> RoundStats {
    let journal = common::open(common::config(dir));
    let (stats, _) = check_log(&journal.reader(), routes, acked);
    rt.block_on(common::shutdown(&journal));
    stats
}

/// The round a request came from: its number, or `None` for the final
/// engine.
fn round_of(r: &ReceivedRequest) -> Option<usize> {
    match r.header(ROUND_HEADER) {
        Some(FINAL_TAG) => None,
        Some(n) => Some(n.parse().expect("round header is a number")),
        None => panic!("request {} carries no {ROUND_HEADER} header", r.number),
    }
}

/// Send order: a child's requests were all sent before the next child
/// started, and one sink sends one batch at a time, so (round, arrival
/// number) orders requests as they were sent even if one from a killed
/// child reached the receiver late.
fn send_order(r: &ReceivedRequest) -> (usize, u64) {
    (round_of(r).unwrap_or(usize::MAX), r.number)
}

/// How the duplicates break down.
#[derive(Debug, Default)]
struct Duplicates {
    /// Receipts of an event after a receipt the receiver applied.
    redeliveries: usize,
    /// Of those, the ones the receiver applied again (and deduplicated).
    reapplied: u64,
    /// Redeliveries explained by an earlier reset request.
    after_reset: usize,
    /// Redeliveries explained by an unsettled in-flight batch at a kill.
    after_kill: usize,
    /// Distinct events delivered more than once.
    keys: usize,
    /// Rounds whose in-flight batch was sent again.
    kill_rounds: BTreeMap<usize, usize>,
    /// Rounds whose last request was applied but answered only after the
    /// child was dead, so the child could not have settled it.
    unacknowledged_rounds: Vec<usize>,
}

/// Checks that every redelivery is explained (see the module doc) and
/// counts them; and, conversely, that a killed child's last batch, applied
/// by the receiver but answered only after the child was dead, was sent
/// again. `deaths[r]` is when round `r`'s child had been reaped.
fn check_duplicates(requests: &[ReceivedRequest], deaths: &[Instant]) -> Duplicates {
    // The last request each killed child sent: its batch in flight.
    let mut last_of_round: HashMap<usize, u64> = HashMap::new();
    for r in requests {
        if let Some(round) = round_of(r) {
            let last = last_of_round.entry(round).or_insert(r.number);
            *last = (*last).max(r.number);
        }
    }
    let mut order: Vec<&ReceivedRequest> = requests.iter().collect();
    order.sort_by_key(|r| send_order(r));
    let mut receipts: HashMap<Uuid, Vec<&ReceivedRequest>> = HashMap::new();
    for r in &order {
        assert!(
            r.event_keys.len() <= EVENTS_MAX,
            "request {} carries {} events, more than events_max {EVENTS_MAX}",
            r.number,
            r.event_keys.len()
        );
        let unique: HashSet<&Uuid> = r.event_keys.iter().collect();
        assert_eq!(
            unique.len(),
            r.event_keys.len(),
            "request {} carries an event twice",
            r.number
        );
        for k in &r.event_keys {
            receipts.entry(*k).or_default().push(r);
        }
    }
    let mut d = Duplicates::default();
    for (key, rs) in &receipts {
        let mut applied_once = false;
        let mut duplicated = false;
        for pair in rs.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            applied_once |= a.applied_keys.contains(key);
            if !applied_once {
                continue; // A retry after a refusal: no duplicate yet.
            }
            duplicated = true;
            d.redeliveries += 1;
            if b.applied_keys.contains(key) {
                d.reapplied += 1;
            }
            if !a.applied_keys.contains(key) {
                // Explained by the applied receipt before it.
                continue;
            }
            if a.reset {
                d.after_reset += 1;
                continue;
            }
            let round = round_of(a).unwrap_or_else(|| {
                panic!(
                    "event {key}: request {} of the final engine was applied and \
                     answered {:?}, yet sent again in request {}",
                    a.number, a.status, b.number
                )
            });
            assert_eq!(
                last_of_round.get(&round),
                Some(&a.number),
                "event {key}: request {} (round {round}) was applied and answered {:?}, \
                 and was not the batch in flight at the kill, yet it was sent again in \
                 request {} (round {:?})",
                a.number,
                a.status,
                b.number,
                round_of(b)
            );
            assert!(
                round_of(b).is_none_or(|rb| rb > round),
                "event {key}: the in-flight request {} of round {round} was resent by \
                 request {} of the same or an earlier round {:?}",
                a.number,
                b.number,
                round_of(b)
            );
            assert!(
                b.received_at > deaths[round],
                "event {key}: request {} resends round {round}'s in-flight batch \
                 before that round was killed",
                b.number
            );
            d.after_kill += 1;
            *d.kill_rounds.entry(round).or_default() += 1;
        }
        if duplicated {
            d.keys += 1;
        }
    }
    for (round, death) in deaths.iter().enumerate() {
        let Some(last) = last_of_round
            .get(&round)
            .map(|n| &requests[(*n - 1) as usize])
        else {
            continue;
        };
        if last.applied_keys.is_empty() || last.answered_at.is_some_and(|t| t <= *death) {
            continue;
        }
        d.unacknowledged_rounds.push(round);
        for key in &last.applied_keys {
            let rs = &receipts[key];
            let i = rs
                .iter()
                .position(|r| r.number == last.number)
                .expect("the request is among its keys' receipts");
            assert!(
                i + 1 < rs.len(),
                "event {key} was applied by request {} of round {round}, which the                  killed child never saw answered, yet it was never sent again",
                last.number
            );
        }
    }
    d
}

#[cfg(unix)]
#[test]
fn sigkill_mid_delivery_conserves_and_only_resends_the_batch_in_flight() {
    use std::os::unix::process::ExitStatusExt;

    const SIGKILL: i32 = 9;
    let started = Instant::now();
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    let dir_text = dir.to_str().expect("utf-8 temp path").to_string();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("parent runtime");
    let seed: u64 = rand::random();
    // Printed first, so that a failing run names it.
    println!("delivery crash test: receiver failure seed {seed}");
    let receiver = rt.block_on(Receiver::start(crash_schedule(seed)));
    let url = receiver.url();
    let routes = Routes::compile(&delivery_config(&url, FINAL_TAG).routes).expect("routes");

    let mut acked: HashMap<Uuid, String> = HashMap::new();
    let mut deaths: Vec<Instant> = Vec::with_capacity(ROUNDS);
    // Rounds killed while their newest request was applied, unanswered.
    let mut targeted: Vec<usize> = Vec::new();
    let mut rounds: Vec<(usize, RoundStats)> = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        let round_text = round.to_string();
        let mut child = common::spawn_self(
            "delivery_crash::delivery_crash_child",
            &[
                (DIR_ENV, &dir_text),
                (URL_ENV, &url),
                (ROUND_ENV, &round_text),
            ],
        );
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match r.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    // A line cut by the kill has no newline: ignore it.
                    Ok(_) if line.ends_with('\n') => {
                        if tx.send(line.trim_end().to_string()).is_err() {
                            break;
                        }
                    }
                    Ok(_) => break,
                }
            }
        });
        let mut lines = Vec::new();
        loop {
            match rx.recv_timeout(Duration::from_secs(30)) {
                Ok(l) if l == "READY" => break,
                Ok(l) => lines.push(l),
                Err(e) => {
                    let _ = child.kill();
                    let status = child.wait();
                    panic!("round {round}: child never became ready ({e:?}), status {status:?}");
                }
            }
        }
        let lifetime = Duration::from_millis(rand::random_range(100..=600));
        match round % 3 {
            0 => {
                std::thread::sleep(lifetime);
                if wait_applied_unanswered(&receiver, &round_text) {
                    targeted.push(round);
                }
            }
            1 => {
                std::thread::sleep(lifetime - OUTAGE_BEFORE_KILL);
                receiver.outage_for(OUTAGE);
                std::thread::sleep(OUTAGE_BEFORE_KILL);
            }
            _ => std::thread::sleep(lifetime),
        }
        child.kill().expect("kill child");
        let status = child.wait().expect("wait child");
        deaths.push(Instant::now());
        assert_eq!(
            status.signal(),
            Some(SIGKILL),
            "round {round}: the child must die by SIGKILL, not exit on its own ({status:?})"
        );
        reader.join().expect("reader thread");
        lines.extend(rx.try_iter());
        let mut round_acks = 0;
        for l in &lines {
            if let Some((stream, ids)) = parse_ack(l) {
                for id in ids {
                    assert!(
                        acked.insert(id, stream.clone()).is_none(),
                        "event id {id} acknowledged twice"
                    );
                    round_acks += 1;
                }
            }
        }
        rounds.push((round_acks, check_after_kill(&dir, &routes, &acked, &rt)));
    }
    let kill_phase = started.elapsed();

    // Drain with a healthy receiver and an in-process engine.
    receiver.set_schedule(Schedule::default().secret(SECRET.as_bytes()));
    receiver.up();
    let drain_started = Instant::now();
    let (acc, versions) = rt.block_on(async {
        let journal = common::open(common::config(&dir));
        let engine = DeliveryEngine::start(journal.clone(), delivery_config(&url, FINAL_TAG))
            .await
            .expect("final engine");
        loop {
            let acc = common::accounting::check(&journal.reader(), &routes, SINK);
            if acc.pending.is_empty() {
                break;
            }
            assert!(
                drain_started.elapsed() < DRAIN_DEADLINE,
                "the backlog did not drain with a healthy receiver: {} pending, {} retrying",
                acc.pending.len(),
                acc.retrying
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            engine.shutdown(Duration::from_secs(5)).await,
            "the final engine did not stop in time"
        );
        let (_, acc) = check_log(&journal.reader(), &routes, &acked);
        let versions: HashMap<Uuid, (String, u64)> = common::read_everything(&journal.reader())
            .into_iter()
            .map(|e| (e.id, (e.stream, e.version)))
            .collect();
        common::shutdown(&journal).await;
        (acc, versions)
    });
    let drain = drain_started.elapsed();

    // Everything routed was delivered; nothing is pending or dead.
    assert!(acc.pending.is_empty(), "pending after the drain: {acc:?}");
    assert!(
        acc.dead.is_empty() && acc.archived == 0,
        "dead letters: {:?}",
        acc.dead
    );
    assert_eq!(acc.delivered_total, acc.appended, "{acc:?}");
    assert_eq!(acc.delivered.len() as u64, acc.appended);

    // The receiver applied each delivered event exactly once, and nothing
    // else.
    let applied = receiver.applied();
    let applied_set: HashSet<Uuid> = applied.iter().copied().collect();
    assert_eq!(applied_set.len(), applied.len(), "applied() repeats a key");
    let missing: Vec<&Uuid> = acc.delivered.difference(&applied_set).collect();
    assert!(
        missing.is_empty(),
        "{} delivered events were never applied by the receiver, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let extra: Vec<&Uuid> = applied_set.difference(&acc.delivered).collect();
    assert!(
        extra.is_empty(),
        "{} applied events are not delivered events of the sink, e.g. {:?}",
        extra.len(),
        extra.first()
    );

    // Lanes (here: streams) were applied in order, kills notwithstanding:
    // the first application of each event follows its stream's versions.
    let mut applied_version: HashMap<&str, u64> = HashMap::new();
    for key in &applied {
        let (stream, version) = &versions[key];
        let last = applied_version.entry(stream.as_str()).or_insert(0);
        assert!(
            version > last,
            "stream {stream}: version {version} was first applied after version {last}"
        );
        *last = *version;
    }

    // Every request was signed, parsed and answered as scheduled.
    let requests = receiver.requests();
    for r in &requests {
        assert!(
            !matches!(r.status, Some(400 | 401)),
            "request {} was refused with {:?}: bad signature or body",
            r.number,
            r.status
        );
    }
    let resets = requests.iter().filter(|r| r.reset).count();
    let refused = requests
        .iter()
        .filter(|r| r.status == Some(503) && !r.event_keys.is_empty())
        .count();

    // Duplicates come only from the batch in flight at a kill or from a reset.
    let d = check_duplicates(&requests, &deaths);
    assert_eq!(
        d.reapplied,
        receiver.duplicates(),
        "the receiver's duplicate count disagrees with the receipts"
    );
    assert!(
        d.keys <= (ROUNDS + resets) * EVENTS_MAX,
        "{} events were delivered more than once: more than {ROUNDS} kills and \
         {resets} resets of at most {EVENTS_MAX} events can explain",
        d.keys
    );

    let acks: Vec<usize> = rounds.iter().map(|(a, _)| *a).collect();
    let retrying: Vec<u64> = rounds.iter().map(|(_, s)| s.retrying).collect();
    let pending: Vec<usize> = rounds.iter().map(|(_, s)| s.pending).collect();
    let last = rounds.last().map(|(_, s)| *s).expect("rounds ran");
    println!(
        "delivery crash test (seed {seed}): {ROUNDS} kills in {kill_phase:?}, drain {drain:?}, \
         total {:?}; {} events ({} routed), {} acked, {} delivered before the drain; \
         {} requests ({refused} answered 503, {resets} reset); duplicates: {} events, \
         {} redeliveries ({} reapplied): {} after a kill (rounds {:?}), {} after a reset; \
         rounds killed between applying and answering {:?} (targeted {targeted:?}); \
         acks per round {acks:?}; pending at each kill {pending:?}; retrying rows at each \
         kill {retrying:?}",
        started.elapsed(),
        last.events,
        last.routed,
        acked.len(),
        last.delivered,
        requests.len(),
        d.keys,
        d.redeliveries,
        d.reapplied,
        d.after_kill,
        d.kill_rounds,
        d.after_reset,
        d.unacknowledged_rounds,
    );
    // The test only means something if the kills hit live work.
    assert!(
        acks.iter().filter(|&&n| n > 0).count() >= ROUNDS / 2,
        "too few rounds acknowledged anything before the kill: {acks:?}"
    );
    assert!(
        retrying.iter().any(|&n| n > 0),
        "no kill landed while retry rows existed: {retrying:?}"
    );
    assert!(
        targeted.iter().any(|r| d.unacknowledged_rounds.contains(r)),
        "no kill landed between the receiver applying a batch and answering it, \
         so the test never saw the hard case (targeted rounds {targeted:?}, \
         unacknowledged {:?})",
        d.unacknowledged_rounds
    );
}
