//! Named consumers over real sockets: consumer names bound to tokens
//! (subscribe, poll, acknowledge, read a checkpoint and evict only as a
//! bound name; unbound and admin tokens as any), and the ack window that
//! closes a session whose oldest event stays unacknowledged. Uses the
//! subscribe module's server on 127.0.0.1:0 over a real SQLite journal.

use std::time::Duration;

use ironclad_server::auth::{Auth, ConsumerNames, Role};
use ironclad_server::config::SubscribeConfig;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::subscribe::{
    ack, closed_with, data_dir, fast, positions, quiet, recv, tmp, Frame, Server, Ws,
};

const BILL: &str = "billing-token-1";
const FREE: &str = "unbound-token-1";
const ADMIN: &str = "admin-token-1";

fn auth() -> Auth {
    let billing = ConsumerNames::parse(&["billing".to_string()]).expect("valid names");
    Auth::bound([
        (BILL.to_string(), Role::Consumer, Some(billing)),
        (FREE.to_string(), Role::Consumer, None),
        (ADMIN.to_string(), Role::Admin, None),
    ])
}

/// Opens a WebSocket with `token`, or returns the refusal's status and body.
async fn subscribe(server: &Server, token: &str, query: &str) -> Result<Ws, (u16, Value)> {
    let mut req = format!("{}/v1/subscribe?{query}", server.ws_base)
        .into_client_request()
        .expect("request");
    req.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            Err((
                resp.status().as_u16(),
                serde_json::from_slice(body).unwrap_or(Value::Null),
            ))
        }
        Err(e) => panic!("connect failed: {e}"),
    }
}

async fn call(server: &Server, token: &str, method: &str, path: &str) -> (u16, Value) {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", server.base);
    let req = match method {
        "POST" => http.post(url).json(&json!({"position": 1})),
        _ => http.get(url),
    };
    let resp = req.bearer_auth(token).send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until the stored checkpoint of `consumer` is `want`.
async fn stored_reaches(server: &Server, consumer: &str, want: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.stored(consumer) != Some(want) {
        assert!(
            std::time::Instant::now() < deadline,
            "checkpoint of {consumer} never reached {want}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A 403 `forbidden` that names the refused consumer.
fn assert_refused(got: (u16, Value), consumer: &str, what: &str) {
    let (status, body) = got;
    assert_eq!(status, 403, "{what}: {body}");
    assert_eq!(body["error"]["code"], "forbidden", "{what}: {body}");
    assert_eq!(
        body["error"]["details"]["consumer"], consumer,
        "{what}: {body}"
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("bound to billing"), "{what}: {message}");
}

/// A token bound to `billing` subscribes, polls and acknowledges as
/// billing, and gets 403 as `audit` on every path; it cannot evict audit's
/// session. An unbound consumer token and an admin token may use any name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_token_acts_only_as_its_consumers() {
    let tmp = tmp();
    let server = Server::start(&data_dir(&tmp), fast(), auth()).await;
    assert_eq!(server.append("orders", 3).await, vec![1, 2, 3]);

    // As billing: everything works.
    let mut ws = subscribe(&server, BILL, "consumer=billing")
        .await
        .expect("billing may subscribe as billing");
    assert_eq!(positions(&mut ws, 3).await, vec![1, 2, 3]);
    for p in [1, 2, 3] {
        ack(&mut ws, p).await;
    }
    stored_reaches(&server, "billing", 3).await;
    let (status, _) = call(&server, BILL, "GET", "/v1/poll?consumer=billing").await;
    assert_eq!(status, 200);
    let (status, body) = call(&server, BILL, "GET", "/v1/consumers/billing").await;
    assert_eq!((status, body["position"].clone()), (200, json!(3)));
    let (status, _) = call(&server, BILL, "POST", "/v1/consumers/billing/ack").await;
    assert_eq!(status, 200);

    // Admin holds a session as audit; billing's token may not touch audit.
    let mut audit = subscribe(&server, ADMIN, "consumer=audit")
        .await
        .expect("admin may use any name");
    assert_eq!(positions(&mut audit, 3).await, vec![1, 2, 3]);
    let refused = subscribe(&server, BILL, "consumer=audit").await;
    assert_refused(refused.expect_err("refused"), "audit", "WS subscribe");
    assert_refused(
        call(&server, BILL, "GET", "/v1/poll?consumer=audit").await,
        "audit",
        "poll",
    );
    assert_refused(
        call(&server, BILL, "POST", "/v1/consumers/audit/ack").await,
        "audit",
        "ack",
    );
    assert_refused(
        call(&server, BILL, "GET", "/v1/consumers/audit").await,
        "audit",
        "read checkpoint",
    );
    assert_eq!(
        server.stored("audit"),
        None,
        "the refused ack moved nothing"
    );
    // Not evicted: the admin's audit session still receives events.
    server.append("orders", 1).await;
    assert_eq!(positions(&mut audit, 1).await, vec![4]);
    // Anonymous subscriptions stay open to a bound token.
    let mut anon = subscribe(&server, BILL, "from=3")
        .await
        .expect("anonymous is allowed");
    assert_eq!(positions(&mut anon, 1).await, vec![4]);

    // An unbound consumer token keeps today's behaviour: any name, and a
    // new session evicts the admin's audit session.
    let mut free = subscribe(&server, FREE, "consumer=audit")
        .await
        .expect("unbound may use any name");
    let (code, reason) = closed_with(&mut audit).await;
    assert_eq!(code, 1008);
    assert!(reason.starts_with("replaced"), "{reason}");
    assert_eq!(positions(&mut free, 4).await, vec![1, 2, 3, 4]);
    let (status, body) = call(&server, FREE, "POST", "/v1/consumers/audit/ack").await;
    assert_eq!((status, body["position"].clone()), (200, json!(1)));
    let (status, _) = call(&server, ADMIN, "GET", "/v1/poll?consumer=billing").await;
    assert_eq!(status, 200);
    server.stop().await;
}

fn windowed(unacked_max: usize, ack_window_events: usize) -> SubscribeConfig {
    SubscribeConfig {
        unacked_max,
        ack_window_events,
        ..fast()
    }
}

/// With a window of 5, a consumer that acknowledges everything but
/// position 1 is sent 1..=5 and then closed with 1008 and a reason naming
/// position 1; its checkpoint never passes the gap, and a reconnect sends
/// 1 again. A consumer acknowledging in order is never closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_left_unacknowledged_closes_the_session_at_the_ack_window() {
    let tmp = tmp();
    let server = Server::start(&data_dir(&tmp), windowed(2, 5), Auth::default()).await;
    server.append("orders", 10).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{}/v1/subscribe?consumer=gappy", server.ws_base))
            .await
            .expect("connect");
    let mut received = Vec::new();
    let (code, reason) = loop {
        match recv(&mut ws).await {
            Frame::Event(e) => {
                let p = e["position"].as_u64().expect("position");
                received.push(p);
                if p != 1 {
                    ack(&mut ws, p).await;
                }
            }
            Frame::Closed(Some(f)) => break f,
            Frame::Closed(None) => panic!("closed without a frame after {received:?}"),
        }
    };
    assert_eq!(received, vec![1, 2, 3, 4, 5], "exactly the window was sent");
    assert_eq!(code, 1008);
    assert!(
        reason.starts_with("ack window full: position 1 is unacknowledged"),
        "{reason}"
    );
    server.subs.checkpoints().flush().await.expect("flush");
    assert_eq!(server.stored("gappy"), None, "never past the gap");

    let (mut again, _) =
        tokio_tungstenite::connect_async(format!("{}/v1/subscribe?consumer=gappy", server.ws_base))
            .await
            .expect("reconnect");
    assert_eq!(
        positions(&mut again, 1).await,
        vec![1],
        "the gap is sent again"
    );
    drop(again);

    let (mut steady, _) = tokio_tungstenite::connect_async(format!(
        "{}/v1/subscribe?consumer=steady",
        server.ws_base
    ))
    .await
    .expect("connect");
    for want in 1..=10 {
        assert_eq!(positions(&mut steady, 1).await, vec![want]);
        ack(&mut steady, want).await;
    }
    server.wait_checkpoint("steady", 10).await;
    quiet(&mut steady, Duration::from_millis(200)).await;
    server.stop().await;
}
