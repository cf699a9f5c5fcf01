//! Compiled routes (SPEC §4 "A route sends a set of streams (a glob
//! pattern) to a sink"): which sinks an event's stream goes to.
//!
//! # Glob syntax
//!
//! Stream names are flat strings, not paths, so `/` is an ordinary
//! character:
//! - `*` matches any run of characters, empty included, `/` included;
//!   `**` is the same as `*`;
//! - `?` matches exactly one character;
//! - `[abc]`, `[a-z]` match one character of the class, `[!abc]` one not in it;
//! - `{a,b}` matches either alternative;
//! - `\` makes the next character literal (`\*` matches `*`), on every
//!   platform.
//!
//! Matching is case-sensitive and covers the whole name. A pattern with
//! none of the metacharacters `* ? [ ] { } \` matches exactly itself.
//! Patterns are 1 to [`PATTERN_BYTES_MAX`] bytes.
//!
//! # Cost
//!
//! [`Routes::matches`] runs per event per sink, so each sink's patterns are
//! compiled into one [`GlobSet`]: a lookup of the sink by name, then one
//! set match (literals by hash, prefixes and suffixes by string search, the
//! rest by one combined automaton). A sink routed `*` skips the set.

use std::collections::HashMap;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use thiserror::Error;

/// One route: the streams matching a glob go to one sink. The delivery
/// configuration's `[[delivery.routes]]` entries are read into this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteSpec {
    /// Glob over stream names; see the module doc for the syntax.
    pub streams: String,
    /// The sink's name.
    pub sink: String,
}

/// Why a set of routes does not compile.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RouteError {
    /// A route's `streams` is not a valid glob.
    #[error("delivery.routes[{index}]: streams {pattern:?} is not a valid glob: {reason}")]
    BadGlob {
        /// The route's place in the list, from 0.
        index: usize,
        /// The pattern.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Longest `streams` pattern, in bytes: four times the longest stream name.
pub const PATTERN_BYTES_MAX: usize = 1024;

/// The routes of a configuration, compiled for matching.
#[derive(Debug, Clone)]
pub struct Routes {
    /// One entry per routed sink, in order of first appearance.
    sinks: Vec<SinkRoutes>,
    /// Sink name to its index in `sinks`.
    index: HashMap<String, usize>,
}

#[derive(Debug, Clone)]
struct SinkRoutes {
    name: String,
    /// True when some pattern matches every stream.
    all: bool,
    set: GlobSet,
}

impl Routes {
    /// Compiles `routes`. Fails on the first invalid pattern, naming the
    /// route by its index. Whether the sinks exist is the config's check,
    /// not this one's.
    pub fn compile(routes: &[RouteSpec]) -> Result<Routes, RouteError> {
        let mut builders: Vec<(String, bool, GlobSetBuilder)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, route) in routes.iter().enumerate() {
            let bad = |reason: String| RouteError::BadGlob {
                index: i,
                pattern: route.streams.clone(),
                reason,
            };
            let pattern = normalize(&route.streams).map_err(bad)?;
            let glob = GlobBuilder::new(&pattern)
                .literal_separator(false)
                .backslash_escape(true)
                .build()
                .map_err(|e| bad(e.kind().to_string()))?;
            let slot = *index.entry(route.sink.clone()).or_insert_with(|| {
                builders.push((route.sink.clone(), false, GlobSetBuilder::new()));
                builders.len() - 1
            });
            let (_, all, builder) = &mut builders[slot];
            *all |= pattern == "*";
            builder.add(glob);
        }
        let sinks = builders
            .into_iter()
            .map(|(name, all, builder)| {
                // Each glob compiled on its own above; a set of valid globs
                // can only fail on a regex size limit, reported here.
                let set = builder.build().map_err(|e| RouteError::BadGlob {
                    index: routes.iter().position(|r| r.sink == name).unwrap_or(0),
                    pattern: String::new(),
                    reason: format!("the patterns of sink `{name}` together are too complex: {e}"),
                })?;
                Ok(SinkRoutes { name, all, set })
            })
            .collect::<Result<Vec<_>, RouteError>>()?;
        Ok(Routes { sinks, index })
    }

    /// Whether any route sends `stream` to `sink`. False for a sink no
    /// route names.
    pub fn matches(&self, sink: &str, stream: &str) -> bool {
        match self.index.get(sink) {
            Some(&i) => self.sinks[i].is_match(stream),
            None => false,
        }
    }

    /// The sinks `stream` goes to, each once, in the order routes first
    /// name them.
    pub fn sinks_for(&self, stream: &str) -> Vec<&str> {
        self.sinks
            .iter()
            .filter(|s| s.is_match(stream))
            .map(|s| s.name.as_str())
            .collect()
    }

    /// Whether no route is defined.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

/// A pattern that matches exactly `stream`: every metacharacter
/// (`* ? [ ] { } \`) escaped with `\`.
pub fn escape(stream: &str) -> String {
    let mut out = String::with_capacity(stream.len());
    for c in stream.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl SinkRoutes {
    fn is_match(&self, stream: &str) -> bool {
        self.all || self.set.is_match(stream)
    }
}

/// Checks a pattern's length and rewrites runs of unescaped `*` to one `*`,
/// so `**` never takes globset's path meaning (`a/**/b` matching `a/b`).
fn normalize(pattern: &str) -> Result<String, String> {
    if pattern.is_empty() {
        return Err("it is empty, so it would match no stream: use `*` for all".into());
    }
    if pattern.len() > PATTERN_BYTES_MAX {
        return Err(format!(
            "it is {} bytes, more than {PATTERN_BYTES_MAX}",
            pattern.len()
        ));
    }
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    let mut after_star = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                // The escaped character is literal, whatever it is; a
                // trailing backslash is left for globset to report.
                if let Some(next) = chars.next() {
                    out.push(next);
                }
                after_star = false;
            }
            '*' if after_star => {}
            _ => {
                out.push(c);
                after_star = c == '*';
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn routes(pairs: &[(&str, &str)]) -> Routes {
        let configs: Vec<RouteSpec> = pairs
            .iter()
            .map(|(streams, sink)| RouteSpec {
                streams: streams.to_string(),
                sink: sink.to_string(),
            })
            .collect();
        Routes::compile(&configs).expect("valid routes")
    }

    /// Stream-name characters, including `/` and `.`, without metacharacters.
    const LITERAL: &str = "[a-zA-Z0-9_./:-]{1,24}";

    proptest! {
        #[test]
        fn a_literal_matches_exactly_itself(pattern in LITERAL, other in LITERAL) {
            let r = routes(&[(&pattern, "s")]);
            prop_assert!(r.matches("s", &pattern));
            prop_assert_eq!(r.matches("s", &other), other == pattern);
            let longer = format!("{pattern}x");
            prop_assert!(!r.matches("s", &longer));
        }

        #[test]
        fn star_matches_everything(stream in ".{1,64}") {
            let r = routes(&[("*", "all"), ("**", "twice"), ("[x]*", "x")]);
            prop_assert!(r.matches("all", &stream));
            prop_assert!(r.matches("twice", &stream));
            prop_assert_eq!(r.matches("x", &stream), stream.starts_with('x'));
        }

        #[test]
        fn a_prefix_star_matches_iff_the_stream_starts_with_it(
            prefix in LITERAL, stream in "[a-c/.-]{0,6}", tail in ".{0,8}",
        ) {
            let r = routes(&[(&format!("{prefix}*"), "s")]);
            prop_assert_eq!(r.matches("s", &stream), stream.starts_with(&prefix));
            let longer = format!("{prefix}{tail}");
            prop_assert!(r.matches("s", &longer));
        }

        #[test]
        fn an_escaped_string_matches_exactly_itself(s in ".{1,32}", other in ".{1,32}") {
            let r = routes(&[(&escape(&s), "s")]);
            prop_assert!(r.matches("s", &s));
            prop_assert_eq!(r.matches("s", &other), other == s);
        }
    }

    #[test]
    fn semantics_by_example() {
        let r = routes(&[
            ("orders-*", "hook"),
            ("tenant/*/audit", "audit"),
            ("a/**/b", "deep"),
            ("user-?", "one"),
            ("[pq]-{x,y}", "class"),
            ("lit\\*", "escaped"),
        ]);
        assert!(r.matches("hook", "orders-"));
        assert!(r.matches("hook", "orders-1/2"), "* crosses /");
        assert!(!r.matches("hook", "xorders-1"));
        assert!(r.matches("audit", "tenant/acme/eu/audit"));
        assert!(!r.matches("deep", "a/b"), "** is just *, not a path glob");
        assert!(r.matches("deep", "a/x/y/b"));
        assert!(r.matches("one", "user-7") && !r.matches("one", "user-77"));
        assert!(r.matches("class", "q-y") && !r.matches("class", "r-x"));
        assert!(r.matches("escaped", "lit*") && !r.matches("escaped", "lit1"));
        assert!(!r.matches("nobody", "orders-1"), "unknown sink");
    }

    #[test]
    fn sinks_for_is_distinct_and_in_config_order() {
        let r = routes(&[
            ("b-*", "second"),
            ("*", "first"),
            ("b-1", "second"),
            ("c", "third"),
        ]);
        assert_eq!(r.sinks_for("b-1"), vec!["second", "first"]);
        assert_eq!(r.sinks_for("c"), vec!["first", "third"]);
        assert!(routes(&[]).sinks_for("x").is_empty());
        assert!(routes(&[]).is_empty());
    }

    #[test]
    fn bad_patterns_name_the_route() {
        for (pattern, needle) in [
            ("ok", ""),
            ("[abc", "unclosed"),
            ("a[z-a]", "range"),
            ("", "empty"),
            ("trailing\\", "dangling"),
        ] {
            let configs = vec![
                RouteSpec {
                    streams: "fine-*".into(),
                    sink: "s".into(),
                },
                RouteSpec {
                    streams: pattern.into(),
                    sink: "s".into(),
                },
            ];
            match Routes::compile(&configs) {
                Ok(_) => assert!(needle.is_empty(), "{pattern:?} should fail"),
                Err(RouteError::BadGlob { index, reason, .. }) => {
                    assert_eq!(index, 1);
                    assert!(reason.to_lowercase().contains(needle), "{reason}");
                }
            }
        }
        let long = "a".repeat(PATTERN_BYTES_MAX + 1);
        assert!(Routes::compile(&[RouteSpec {
            streams: long,
            sink: "s".into()
        }])
        .is_err());
    }

    #[test]
    fn normalize_keeps_escapes_and_collapses_stars() {
        assert_eq!(normalize("a***b").unwrap(), "a*b");
        assert_eq!(normalize("\\**").unwrap(), "\\**");
        assert_eq!(normalize("\\***").unwrap(), "\\**");
        assert_eq!(normalize("[**]").unwrap(), "[*]");
    }
}
