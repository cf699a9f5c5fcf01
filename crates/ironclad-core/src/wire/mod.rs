//! The HTTP API's wire contract (SPEC §6): every request body, query and
//! answer of `ironclad serve`, declared once. The server serializes these
//! types and the client deserializes the same ones, so the two cannot
//! drift apart.
//!
//! One type per shape, by area: [`ingest`] (append), [`read`] (stream
//! pages and listings), [`subscribe`] (long-polls and consumers), [`dlq`],
//! [`sinks`], [`dumps`], [`ledger`], [`ops`], [`errors`] (the one error
//! envelope) and [`frames`] (the WebSocket frames of `/v1/subscribe`). Where a shape is already a core value (an append's
//! [`AppendResult`](crate::model::AppendResult), a
//! [`StreamHead`](crate::model::StreamHead), a
//! [`LedgerHead`](crate::model::LedgerHead), a
//! [`RecordedEvent`](crate::model::RecordedEvent), a
//! [`LedgerMismatch`](crate::ledger::LedgerMismatch), a
//! [`DlqReason`](crate::delivery::state::DlqReason)) that value is the wire
//! type, not a mirror of it.
//!
//! Events travel as the server wrote them: pages carry them as JSON text
//! ([`RawValue`](serde_json::value::RawValue)), and a [`RecordedEvent`]
//! keeps its payload's text when read back, so a client prints exactly the
//! bytes `ironclad read` prints locally.
//!
//! With the `openapi` feature the types also derive `utoipa`'s `ToSchema`
//! and `IntoParams`, for the server's generated OpenAPI document.
//!
//! [`RecordedEvent`]: crate::model::RecordedEvent

pub mod dlq;
pub mod dumps;
pub mod errors;
pub mod frames;
pub mod ingest;
pub mod ledger;
pub mod ops;
pub mod read;
pub mod sinks;
pub mod subscribe;

pub use dlq::{
    DlqEntryBody, DlqExportQuery, DlqListQuery, DlqPage, DlqPurgeResponse, DlqRetryResponse,
    DlqSelector, DlqStatsResponse, SinkDlqStatsBody,
};
pub use dumps::{DumpBody, DumpsResponse, ReplayResponse};
pub use errors::{ErrorEnvelope, ErrorObject};
pub use frames::{ClientFrame, ServerFrame};
pub use ingest::{AppendRequest, WireEvent, WireExpected};
pub use ledger::{LeasesResponse, VerifyRequest, VerifyResponse};
pub use ops::HealthResponse;
pub use read::{ListQuery, ReadPage, ReadQuery, StreamPage};
pub use sinks::{CircuitActionBody, CircuitRequest, CircuitResponse, SinkStatus, SinksResponse};
pub use subscribe::{AckRequest, ConsumerBody, PollPage, PollQuery, SubscribeQuery};
