//! A named consumer's `RealtimeClient` against a real `ironclad serve`:
//!
//! 1. the polling fallback resumes from the stored checkpoint (a proxy
//!    refuses WebSocket upgrades, so the client long-polls from the start):
//!    it receives only the events after the checkpoint, not the whole log;
//! 2. the client's ack window: an event the caller never acknowledges
//!    parks the client (`ConnectionState::Parked`, naming the event) once
//!    the window is delivered, and acknowledging it resumes delivery.

use std::time::Duration;

use ironclad_client::realtime::{ConnectionState, RealtimeClient, RealtimeOptions, Transport};
use ironclad_client::Client;

use crate::realtime::{
    append_retrying, collect, fast_options, next_event, proxy, wait_for_position, wait_for_state,
};
use crate::serve_support::start;

#[tokio::test(flavor = "multi_thread")]
async fn the_polling_fallback_resumes_from_the_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::block_in_place(|| start(dir.path(), &[], &[]));
    let direct = Client::new(&server.base, None).expect("client");
    let log = append_retrying(&direct, "a", 0..10).await;
    assert_eq!(log, (1..=10).collect::<Vec<u64>>());
    let stored = direct.ack("resumer", 6).await.expect("ack");
    assert_eq!(stored.position, 6);

    let proxy = proxy(server.addr, true).await;
    let via_proxy = Client::new(&proxy.base, None).expect("client");
    let (rt, rx) = RealtimeClient::start(
        via_proxy,
        RealtimeOptions {
            consumer: Some("resumer".into()),
            resume_from_checkpoint: true,
            ws_failures_before_poll: 1,
            ..fast_options()
        },
    );
    let mut state = rt.state();
    let seen = collect(rx);
    wait_for_state(&mut state, ConnectionState::Live(Transport::Poll)).await;
    wait_for_position(&seen, 10, "polling from the checkpoint").await;
    let more = append_retrying(&direct, "a", 10..12).await;
    wait_for_position(&seen, more[1], "live while polling").await;
    assert_eq!(*seen.lock().expect("lock"), vec![7, 8, 9, 10, 11, 12]);
    rt.shutdown().await;
    drop(proxy);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unacknowledged_event_parks_the_client_at_its_ack_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = tokio::task::block_in_place(|| start(dir.path(), &[], &[]));
    let direct = Client::new(&server.base, None).expect("client");
    append_retrying(&direct, "a", 0..12).await;
    let (rt, mut rx) = RealtimeClient::start(
        direct.clone(),
        RealtimeOptions {
            consumer: Some("parker".into()),
            ack_window_events: 5,
            ..fast_options()
        },
    );
    let mut state = rt.state();
    for want in 1..=5 {
        assert_eq!(next_event(&mut rx).await, want);
        if want != 1 {
            rt.ack(want).await.expect("ack");
        }
    }
    let parked = tokio::time::timeout(
        Duration::from_secs(30),
        state.wait_for(|s| matches!(s, ConnectionState::Parked(_))),
    )
    .await
    .expect("parks in time")
    .expect("state open")
    .to_owned();
    let ConnectionState::Parked(full) = parked else {
        unreachable!("waited for Parked")
    };
    assert_eq!((full.oldest, full.window), (1, 5));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "nothing is delivered while parked"
    );
    rt.ack(1).await.expect("ack the gap");
    assert_eq!(next_event(&mut rx).await, 6, "delivery resumes");
    rt.shutdown().await;
}
