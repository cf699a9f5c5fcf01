//! Bearer-token authentication with three roles (SPEC §6): `producer`
//! appends and reads, `consumer` reads and subscribes, `admin` does
//! everything. Tokens are compared in constant time and never logged.

use serde::Deserialize;
use subtle::ConstantTimeEq;

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
}

/// The token table. With no tokens, authentication is off (the server then
/// only binds to loopback unless started with `--insecure-no-auth`).
#[derive(Default)]
pub struct Auth {
    tokens: Vec<(Vec<u8>, Role)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl Auth {
    /// A table of `(token, role)` pairs.
    pub fn new(tokens: impl IntoIterator<Item = (String, Role)>) -> Self {
        Auth {
            tokens: tokens
                .into_iter()
                .map(|(t, r)| (t.into_bytes(), r))
                .collect(),
        }
    }

    /// Whether any token is configured.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// The role of `presented`, comparing against every token in constant
    /// time (no early exit, so timing reveals neither which token nor how
    /// much of it matched).
    pub fn role_of(&self, presented: &[u8]) -> Option<Role> {
        let mut found = None;
        for (token, role) in &self.tokens {
            let same_len = token.len() == presented.len();
            // ct_eq on slices of different lengths is false in constant time.
            if bool::from(token.as_slice().ct_eq(presented)) && same_len {
                found = Some(*role);
            }
        }
        found
    }

    /// Checks a request's `Authorization` header against `access`.
    pub fn check(&self, header: Option<&[u8]>, access: Access) -> Result<(), ApiError> {
        if !self.enabled() {
            return Ok(());
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
        match self.role_of(token) {
            None => Err(ApiError::new(ErrorCode::Unauthorized, "unknown token")),
            Some(role) if access.admits(role) => Ok(()),
            Some(role) => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("a {role:?} token may not call this endpoint"),
            )
            .with_details(serde_json::json!({ "role": role, "needs": format!("{access:?}") }))),
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
                .map_err(|e| e.code),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(
            auth.check(None, Access::Read).map_err(|e| e.code),
            Err(ErrorCode::Unauthorized)
        );
        assert_eq!(
            auth.check(Some(b"Basic x"), Access::Read)
                .map_err(|e| e.code),
            Err(ErrorCode::Unauthorized)
        );
    }
}
