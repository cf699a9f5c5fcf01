//! A full disk that recovers, for real: a child process lowers its own
//! file-size limit with `prlimit` (SIGXFSZ ignored, so writes fail with
//! EFBIG as on a full disk), appends until the WAL cannot grow, then lifts
//! the limit again. Guards: while writes fail, appends are refused with a
//! store error and `Journal::health` names it; once room returns, health
//! clears with no append at all (the writer's probe write), appends
//! succeed, and `shutdown` returns Ok (a recovered journal stops cleanly).

use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ironclad::{AppendError, ExpectedVersion, NewEvent, Unhealthy};

const CHILD_ENV: &str = "IRONCLAD_DISK_RECOVERY_CHILD_DIR";

/// Sets this process's soft file-size limit (bytes, or `unlimited`).
fn set_fsize(soft: &str) {
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--fsize={soft}:unlimited"))
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit --fsize={soft} failed");
}

fn filler(n: u32) -> Vec<NewEvent> {
    let pad = "x".repeat(8 * 1024);
    vec![NewEvent::new(
        "fill",
        format!(r#"{{"n":{n},"pad":"{pad}"}}"#),
    )]
}

/// The child: runs the whole scenario, panicking on any broken guard.
#[test]
fn disk_recovery_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return; // only meaningful as the re-executed child
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let dir = std::path::Path::new(&dir);
        let journal = common::open(common::config(dir));
        journal
            .append("s", ExpectedVersion::Any, filler(0))
            .await
            .expect("room at first");
        assert!(journal.health().is_ok());
        let wal = std::fs::metadata(dir.join("ironclad.db-wal")).map_or(0, |m| m.len());
        set_fsize(&(wal + 32 * 1024).to_string());

        let mut failed = None;
        for n in 1..200 {
            match journal.append("s", ExpectedVersion::Any, filler(n)).await {
                Ok(_) => {}
                Err(AppendError::Store(e)) => {
                    failed = Some(e);
                    break;
                }
                Err(other) => panic!("unexpected error kind: {other:?}"),
            }
        }
        let failed = failed.expect("the file-size limit was hit");
        assert!(failed.to_string().contains("free disk space"), "{failed}");
        match journal.health() {
            Err(Unhealthy::WritesFailing(e)) => assert_eq!(e.to_string(), failed.to_string()),
            other => panic!("health must report the failing writes: {other:?}"),
        }
        // Idle, the probe keeps failing while there is no room.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(journal.health().is_err(), "still full, still unhealthy");

        set_fsize("unlimited");
        let lifted = Instant::now();
        while journal.health().is_err() {
            assert!(
                lifted.elapsed() < Duration::from_secs(10),
                "the probe write clears health once there is room"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        println!("RECOVERED_MS {}", lifted.elapsed().as_millis());
        journal
            .append("s", ExpectedVersion::Any, filler(999))
            .await
            .expect("appends succeed again");
        journal
            .shutdown(Duration::from_secs(30))
            .await
            .expect("a journal that recovered shuts down cleanly");
        println!("DONE");
    });
}

#[test]
fn a_full_disk_that_recovers_is_reported_then_cleared_and_shuts_down_cleanly() {
    let tmp = common::tempdir();
    let dir = common::data_dir(&tmp);
    std::fs::create_dir_all(&dir).expect("data dir");
    let exe = std::env::current_exe().expect("test binary");
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            "--exact",
            "disk_recovery::disk_recovery_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("spawn child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines().filter(|l| l.starts_with("RECOVERED_MS")) {
        eprintln!("{line}");
    }
    assert!(
        out.status.success() && stdout.contains("DONE"),
        "child failed ({:?}): {stdout}",
        out.status
    );
}
