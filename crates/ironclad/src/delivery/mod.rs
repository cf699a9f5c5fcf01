//! Delivery building blocks (SPEC §4). This session holds only the pure,
//! deterministic parts: result classification, the retry policy and the
//! circuit breaker. The dispatcher, sinks, routes, DLQ and emergency dumps
//! are not built yet (see README "What is not built yet").

pub mod breaker;
pub mod budget;
pub mod classify;
pub mod retry;
pub mod signature;
