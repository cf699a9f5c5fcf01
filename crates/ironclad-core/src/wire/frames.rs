//! The WebSocket frames of `GET /v1/subscribe` (SPEC §6), declared once:
//! the server writes [`ServerFrame`]s and reads [`ClientFrame`]s, the
//! client the other way round.
//!
//! Server to client: `{"type":"event","event":{…}}`, one per event, in
//! position order. Client to server: `{"type":"ack","position":N}`.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The `type` of a frame that carries an event.
pub const FRAME_EVENT: &str = "event";

/// A text frame from the server. `E` is the event: the server's stored
/// event when it sends (serialized as stored, no copy), the event's JSON
/// text when the client receives. A `type` other than [`FRAME_EVENT`] is
/// reserved: a client skips it, so the server may add frame types.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerFrame<E> {
    /// `event`, or a frame type this side does not know yet.
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// The event of an `event` frame.
    #[serde(default = "none", skip_serializing_if = "Option::is_none")]
    pub event: Option<E>,
}

/// `serde(default)` for [`ServerFrame::event`] without requiring
/// `E: Default`.
fn none<E>() -> Option<E> {
    None
}

impl<E> ServerFrame<E> {
    /// The frame that carries `event`.
    pub fn event(event: E) -> Self {
        ServerFrame {
            kind: Cow::Borrowed(FRAME_EVENT),
            event: Some(event),
        }
    }
}

/// A text frame from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// The client handled the event at `position` (named consumers move
    /// their checkpoint through contiguous acks).
    Ack {
        /// The event's position.
        position: u64,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    #[test]
    fn frames_have_the_documented_shape() {
        let sent = serde_json::to_string(&ServerFrame::event(serde_json::json!({"position": 7})))
            .expect("encode");
        assert_eq!(sent, r#"{"type":"event","event":{"position":7}}"#);
        let got: ServerFrame<Box<RawValue>> = serde_json::from_str(&sent).expect("decode");
        assert_eq!(got.kind, FRAME_EVENT);
        assert_eq!(
            got.event.map(|e| e.get().to_string()).as_deref(),
            Some(r#"{"position":7}"#)
        );
        let other: ServerFrame<Box<RawValue>> =
            serde_json::from_str(r#"{"type":"notice","text":"x"}"#).expect("unknown types decode");
        assert!(other.event.is_none() && other.kind == "notice");
        let ack = serde_json::to_string(&ClientFrame::Ack { position: 3 }).expect("encode");
        assert_eq!(ack, r#"{"type":"ack","position":3}"#);
        for bad in [
            r#"{"type":"ack"}"#,
            r#"{"type":"ack","position":-1}"#,
            r#"{"type":"ack","position":1,"x":2}"#,
        ] {
            assert!(serde_json::from_str::<ClientFrame>(bad).is_err(), "{bad}");
        }
    }
}
