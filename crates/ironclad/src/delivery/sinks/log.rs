//! The log sink (SPEC §4): logs each event's envelope at `info` through
//! `tracing` and reports every batch delivered. Meant for demos and smoke
//! tests: it shows what a route would deliver without a destination.
//!
//! It logs the stream, version, position, type and id, never the payload or
//! metadata, which may hold personal data that logs must not collect.

use tracing::info;

use crate::delivery::sink::{Sink, SinkFuture, SinkResponse};
use crate::model::RecordedEvent;

/// The log sink.
#[derive(Debug, Clone)]
pub struct LogSink {
    name: String,
}

impl LogSink {
    /// A log sink called `name`.
    pub fn new(name: impl Into<String>) -> LogSink {
        LogSink { name: name.into() }
    }
}

impl Sink for LogSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver<'a>(&'a self, events: &'a [RecordedEvent]) -> SinkFuture<'a> {
        Box::pin(async move {
            for event in events {
                info!(
                    sink = %self.name,
                    stream = %event.stream,
                    version = event.version,
                    position = event.position,
                    // Debug-formatted: quoted and escaped, so a type
                    // stored before control characters were refused
                    // cannot forge a log line.
                    event_type = ?event.event_type,
                    id = %event.id,
                    "event delivered"
                );
            }
            SinkResponse::delivered()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::sinks::tests::event;

    #[tokio::test]
    async fn every_batch_is_delivered() {
        let sink = LogSink::new("log");
        assert_eq!(sink.name(), "log");
        let events = [event(1, "a", "{}"), event(2, "b", "{}")];
        assert_eq!(sink.deliver(&events).await, SinkResponse::delivered());
    }
}
