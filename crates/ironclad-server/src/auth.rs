//! Bearer-token authentication with three roles (SPEC §6): `producer`
//! appends and reads, `consumer` reads and subscribes, `admin` does
//! everything. Tokens are compared in constant time and never logged.
//!
//! A consumer token may be bound to consumer names ([`ConsumerNames`]):
//! it may then subscribe, poll, acknowledge and read checkpoints only as
//! those names (anonymous subscriptions stay allowed). A consumer token
//! with no binding may use any name, as before bindings existed; admin
//! tokens always may. The admitted request carries a [`Caller`] that the
//! subscription handlers ask before touching a named consumer.

use std::sync::Arc;

use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::checkpoint::validate_consumer_name;
use crate::error::{ApiError, ErrorCode};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Append and read.
    Producer,
    /// Read, subscribe and acknowledge.
    Consumer,
    /// Everything, including the admin API and metrics.
    Admin,
}

impl Role {
    /// The role as the configuration spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Producer => "producer",
            Role::Consumer => "consumer",
            Role::Admin => "admin",
        }
    }
}

/// Which roles an endpoint group admits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Appending: producer, admin.
    Write,
    /// Reading streams: producer, consumer, admin.
    Read,
    /// Subscriptions and checkpoints: consumer, admin.
    Subscribe,
    /// Admin API and metrics: admin.
    Admin,
}

impl Access {
    /// Whether `role` may use this group.
    pub fn admits(self, role: Role) -> bool {
        matches!(
            (self, role),
            (_, Role::Admin)
                | (Access::Write, Role::Producer)
                | (Access::Read, Role::Producer | Role::Consumer)
                | (Access::Subscribe, Role::Consumer)
        )
    }

    /// What the group allows, in the words of the docs (`details.needs`).
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Write => "append",
            Access::Read => "read",
            Access::Subscribe => "subscribe",
            Access::Admin => "admin",
        }
    }

    /// The roles admitted, for messages.
    fn roles(self) -> &'static str {
        match self {
            Access::Write => "producer or admin",
            Access::Read => "producer, consumer or admin",
            Access::Subscribe => "consumer or admin",
            Access::Admin => "admin",
        }
    }
}

/// The consumer names a token is bound to: exact names, or prefixes
/// ending in one `*` (`audit-*` matches `audit-1`; `*` alone matches
/// every name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerNames(Vec<String>);

impl ConsumerNames {
    /// Checks the patterns: each is a consumer name (1 to 128 of
    /// `[A-Za-z0-9_.-]`), or such characters followed by a single
    /// trailing `*`. The error names the bad pattern.
    pub fn parse(patterns: &[String]) -> Result<Self, String> {
        for p in patterns {
            let checked = match p.strip_suffix('*') {
                Some("") => Ok(()),
                Some(prefix) => validate_consumer_name(prefix),
                None => validate_consumer_name(p),
            };
            checked.map_err(|e| {
                format!("consumer pattern {p:?}: {e} (a `*` may only end a pattern)")
            })?;
        }
        Ok(ConsumerNames(patterns.to_vec()))
    }

    /// A binding that permits no name (anonymous subscriptions only).
    pub fn none() -> Self {
        ConsumerNames(Vec::new())
    }

    /// Whether `name` matches one of the patterns.
    pub fn permits(&self, name: &str) -> bool {
        self.0.iter().any(|p| match p.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => p == name,
        })
    }

    /// The patterns, as configured.
    pub fn patterns(&self) -> &[String] {
        &self.0
    }
}

/// Who an admitted request is, as far as the handlers care: the consumer
/// names it may use (`None`: any).
#[derive(Debug, Clone, Default)]
pub struct Caller {
    consumers: Option<Arc<ConsumerNames>>,
}

impl Caller {
    /// Refuses (403 `forbidden`) a consumer name outside the token's
    /// binding.
    pub fn check_consumer(&self, name: &str) -> Result<(), ApiError> {
        match &self.consumers {
            Some(names) if !names.permits(name) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "this token may not act as consumer {name:?}: it is bound to {}; use one of those names or a token bound to this one",
                    names.patterns().join(", ")
                ),
            )
            .with_details(serde_json::json!({
                "consumer": name,
                "consumers": names.patterns(),
            }))),
            _ => Ok(()),
        }
    }
}

struct Entry {
    token: Vec<u8>,
    role: Role,
    consumers: Option<Arc<ConsumerNames>>,
}

/// The token table. With no tokens, authentication is off (the server then
/// only binds to loopback unless started with `--insecure-no-auth`).
#[derive(Default)]
pub struct Auth {
    tokens: Vec<Entry>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl Auth {
    /// A table of `(token, role)` pairs, none bound to consumer names.
    pub fn new(tokens: impl IntoIterator<Item = (String, Role)>) -> Self {
        Self::bound(tokens.into_iter().map(|(t, r)| (t, r, None)))
    }

    /// A table of `(token, role, consumer names)`; a binding only matters
    /// on a consumer token (admins may use any name).
    pub fn bound(tokens: impl IntoIterator<Item = (String, Role, Option<ConsumerNames>)>) -> Self {
        Auth {
            tokens: tokens
                .into_iter()
                .map(|(t, role, names)| Entry {
                    token: t.into_bytes(),
                    role,
                    consumers: names.filter(|_| role == Role::Consumer).map(Arc::new),
                })
                .collect(),
        }
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The entry of `presented`, comparing against every token in constant
    /// time (no early exit, so timing reveals neither which token nor how
    /// much of it matched).
    fn find(&self, presented: &[u8]) -> Option<&Entry> {
        let mut found = None;
        for entry in &self.tokens {
            let same_len = entry.token.len() == presented.len();
            // ct_eq on slices of different lengths is false in constant time.
            if bool::from(entry.token.as_slice().ct_eq(presented)) && same_len {
                found = Some(entry);
            }
        }
        found
    }

    /// The role of `presented`.
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        self.find(presented).map(|e| e.role)
    }

    /// Checks a request's `Authorization` header against `access`; the
    /// admitted caller says which consumer names it may use.
    pub fn check(&self, header: Option<&[u8]>, access: Access) -> Result<Caller, ApiError> {
        if !self.enabled() {
            return Ok(Caller::default());
        }
        let Some(value) = header else {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "missing bearer token: send `Authorization: Bearer <token>`",
            ));
        };
        let token = value.strip_prefix(b"Bearer ").ok_or_else(|| {
            ApiError::new(
                ErrorCode::Unauthorized,
                "the Authorization header must be `Bearer <token>`",
            )
        })?;
        match self.find(token) {
            None => Err(ApiError::new(ErrorCode::Unauthorized, "unknown token")),
            Some(e) if access.admits(e.role) => Ok(Caller {
                consumers: e.consumers.clone(),
            }),
            Some(e) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "a {} token may not call this endpoint: it needs a {} token",
                    e.role.as_str(),
                    access.roles()
                ),
            )
            .with_details(
                serde_json::json!({ "role": e.role.as_str(), "needs": access.as_str() }),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_admit_exactly_their_groups() {
        let table = [
            (Access::Write, [false, true, true]),
            (Access::Read, [true, true, true]),
            (Access::Subscribe, [true, false, true]),
            (Access::Admin, [false, false, true]),
        ];
        for (access, want) in table {
            // [consumer, producer, admin]
            let got = [Role::Consumer, Role::Producer, Role::Admin].map(|r| access.admits(r));
            assert_eq!(got, want, "{access:?}");
        }
    }

    #[test]
    fn tokens_match_exactly() {
        let auth = Auth::new([("secret-a".to_string(), Role::Producer)]);
        assert_eq!(auth.role_of(b"secret-a"), Some(Role::Producer));
        assert_eq!(auth.role_of(b"secret-"), None);
        assert_eq!(auth.role_of(b"secret-ab"), None);
        assert_eq!(auth.role_of(b""), None);
        assert!(auth.check(Some(b"Bearer secret-a"), Access::Write).is_ok());
        assert_eq!(
            auth.check(Some(b"Bearer secret-a"), Access::Admin)
                .err()
                .map(|e| e.code),
            Some(ErrorCode::Forbidden)
        );
        assert_eq!(
            auth.check(None, Access::Read).err().map(|e| e.code),
            Some(ErrorCode::Unauthorized)
        );
        assert_eq!(
            auth.check(Some(b"Basic x"), Access::Read)
                .err()
                .map(|e| e.code),
            Some(ErrorCode::Unauthorized)
        );
    }

    #[test]
    fn refusals_speak_in_config_words() {
        let auth = Auth::new([("consumer-tok".to_string(), Role::Consumer)]);
        let e = auth
            .check(Some(b"Bearer consumer-tok"), Access::Write)
            .expect_err("consumers do not append");
        assert_eq!(
            e.message,
            "a consumer token may not call this endpoint: it needs a producer or admin token"
        );
        assert_eq!(
            e.details,
            serde_json::json!({"role": "consumer", "needs": "append"})
        );
    }

    #[test]
    fn bound_consumer_tokens_use_only_their_names() {
        let names =
            |p: &[&str]| ConsumerNames::parse(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let auth = Auth::bound([
            (
                "bound-tok".to_string(),
                Role::Consumer,
                Some(names(&["billing", "audit-*"]).expect("valid")),
            ),
            ("free-tok".to_string(), Role::Consumer, None),
            (
                "admin-tok".to_string(),
                Role::Admin,
                Some(names(&["x"]).expect("valid")),
            ),
        ]);
        let caller = |t: &[u8]| auth.check(Some(t), Access::Subscribe).expect("admitted");
        let bound = caller(b"Bearer bound-tok");
        for ok in ["billing", "audit-", "audit-eu.1"] {
            assert!(bound.check_consumer(ok).is_ok(), "{ok}");
        }
        for no in ["billing2", "audit", "bill", "other"] {
            let e = bound.check_consumer(no).expect_err(no);
            assert_eq!(e.code, ErrorCode::Forbidden);
            assert_eq!(e.details["consumer"], no);
        }
        assert!(caller(b"Bearer free-tok")
            .check_consumer("anything")
            .is_ok());
        assert!(
            caller(b"Bearer admin-tok")
                .check_consumer("anything")
                .is_ok(),
            "admins are never bound"
        );
        assert!(names(&["*"]).expect("valid").permits("any"));
        for bad in ["a*b", "**", "a b", "", "é*"] {
            assert!(names(&[bad]).is_err(), "{bad}");
        }
    }
}
