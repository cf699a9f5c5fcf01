//! Delivery decisions (SPEC §4), all pure and property-tested: how an
//! outcome is classified ([`classify`]), when a failure is retried
//! ([`retry`], [`budget`]), whether a sink may be called ([`breaker`]),
//! which events may go together ([`lanes`]), what a batch's outcome writes
//! ([`settle`]), which sinks an event goes to ([`routes`]) and how a
//! webhook is signed ([`signature`]). A dispatcher turn's own decisions
//! (what to retry, what joins a batch, what the breaker is told) are
//! [`turn`] and [`plan`]. The rows a store keeps are values in
//! [`state`]; what a sink answered is a [`response::SinkResponse`].

use serde::{Deserialize, Deserializer};

pub mod breaker;
pub mod budget;
pub mod classify;
pub mod lanes;
pub mod plan;
pub mod response;
pub mod retry;
pub mod routes;
pub mod settle;
pub mod signature;
pub mod state;
pub mod turn;

/// Reads an optional count where 0 means "off" (TOML has no null). Used by
/// the `serde` attributes of the breaker's and the delivery configuration.
///
/// # Errors
/// Whatever `T`'s own deserialization refuses.
pub fn zero_is_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default + PartialEq,
{
    let value = T::deserialize(deserializer)?;
    Ok((value != T::default()).then_some(value))
}
