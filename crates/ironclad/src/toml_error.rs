//! One way to describe a TOML error in a configuration file without
//! echoing the file. `toml`'s own message quotes the offending line, and in
//! a configuration that line may hold a webhook secret or a bearer token:
//! a typo there must not print the secret to a terminal or a log.
//!
//! The description keeps the parser's short message and the line and
//! column, and drops the quoted source. When the offending line sets a key
//! that looks secret (`token`, `secret`, `password`, `key`), the message is
//! replaced as well, since a type error can quote the value.

/// Key names whose values are never echoed.
const SECRET_KEY_WORDS: [&str; 4] = ["token", "secret", "password", "key"];

/// Describes `e`, an error in parsing `text`, as `line L, column C: …`
/// without quoting the source.
pub fn describe(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().trim_end().to_string();
    };
    let start = span.start.min(text.len());
    let before = text.get(..start).unwrap_or_default();
    let line_no = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
    let line = text
        .get(line_start..)
        .and_then(|rest| rest.lines().next())
        .unwrap_or_default();
    let at = format!("line {line_no}, column {column}");
    // A line that continues a value (a multi-line string, array or inline
    // table) is not a `key = value` line: whatever precedes a `=` there may
    // be a secret, so it is never shown as a key name.
    let (in_string, depth) = scan(before.get(..line_start).unwrap_or_default());
    let key = if in_string { None } else { assigned_key(line) };
    let message = e.message().trim_end();
    match key {
        Some(key) if is_secret(key) => {
            let named = if depth == 0 {
                format!(" (`{key}`)")
            } else {
                String::new()
            };
            format!("{at}{named}: the value is not valid (not shown: it may be a secret)")
        }
        Some(key) if depth == 0 => format!("{at} (`{key}`): {message}"),
        _ => format!("{at}: {message}"),
    }
}

/// The key a `key = value` line sets; key names are never secret, and they
/// tell the operator which setting to fix.
fn assigned_key(line: &str) -> Option<&str> {
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    let bare = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '"');
    (!key.is_empty() && key.chars().all(bare)).then_some(key)
}

/// Where `text`, the document up to the start of a line, ends: inside a
/// multi-line string (`"""` or `'''`) or not, and how many brackets and
/// braces are open outside strings and comments (table headers close on
/// their own line, so more than 0 means inside an array or inline table).
fn scan(text: &str) -> (bool, usize) {
    #[derive(PartialEq)]
    enum In {
        Code,
        Comment,
        Basic,
        Literal,
        MultiBasic,
        MultiLiteral,
    }
    let bytes = text.as_bytes();
    let starts = |i: usize, q: &[u8]| bytes.get(i..i + q.len()) == Some(q);
    let (mut state, mut i, mut depth) = (In::Code, 0, 0usize);
    while i < bytes.len() {
        let b = bytes[i];
        let (next, step) = match state {
            In::Code if starts(i, b"\"\"\"") => (In::MultiBasic, 3),
            In::Code if starts(i, b"'''") => (In::MultiLiteral, 3),
            In::Code => match b {
                b'[' | b'{' => {
                    depth += 1;
                    (In::Code, 1)
                }
                b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    (In::Code, 1)
                }
                b'"' => (In::Basic, 1),
                b'\'' => (In::Literal, 1),
                b'#' => (In::Comment, 1),
                _ => (In::Code, 1),
            },
            In::Comment | In::Basic | In::Literal if b == b'\n' => (In::Code, 1),
            In::Comment => (In::Comment, 1),
            In::Basic | In::MultiBasic if b == b'\\' => (state, 2),
            In::Basic if b == b'"' => (In::Code, 1),
            In::Literal if b == b'\'' => (In::Code, 1),
            In::Basic | In::Literal => (state, 1),
            // A closing delimiter may follow up to two quotes of content.
            In::MultiBasic if starts(i, b"\"\"\"") => (In::Code, closing(bytes, i, b'"')),
            In::MultiLiteral if starts(i, b"'''") => (In::Code, closing(bytes, i, b'\'')),
            In::MultiBasic | In::MultiLiteral => (state, 1),
        };
        state = next;
        i += step;
    }
    (matches!(state, In::MultiBasic | In::MultiLiteral), depth)
}

/// Length of the run of `quote` at `i` (3 to 5 bytes) that closes a
/// multi-line string.
fn closing(bytes: &[u8], i: usize, quote: u8) -> usize {
    bytes[i..]
        .iter()
        .take(5)
        .take_while(|&&b| b == quote)
        .count()
}

/// Whether a key's value may be a credential.
fn is_secret(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECRET_KEY_WORDS.iter().any(|w| lower.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        let e = toml::from_str::<toml::Table>(text).expect_err("invalid TOML");
        describe(text, &e)
    }

    #[test]
    fn a_broken_secret_line_is_located_but_never_echoed() {
        let texts = [
            "[[delivery.sinks]]\nname = \"h\"\nsecret = \"s3cr3t-value-0123456789abcdef\n",
            "[[server.tokens]]\ntoken = \"tok-s3cr3t-0123\" x\nrole = \"admin\"\n",
            "[server]\napi_key = s3cr3t-bare-word\n",
        ];
        for text in texts {
            let shown = error_of(text);
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.starts_with("line "), "{shown}");
            assert!(shown.contains("not shown"), "{shown}");
        }
    }

    #[test]
    fn a_broken_line_inside_a_multi_line_secret_is_not_taken_for_a_key() {
        // Found by the config_toml fuzz target: the continuation line of a
        // multi-line token looked like `key = value`, and the "key" shown
        // was the secret itself.
        let texts = [
            "[server]\ntokens = [\n  { token = \"\"\"\ns3cr3t-abc=5\"\"\" x, role = \"admin\" },\n]\n",
            "[server]\ntokens = [\n  { token = \'\'\'\ns3cr3t-abc=5\'\'\' x, role = \"admin\" },\n]\n",
        ];
        for text in texts {
            let shown = error_of(text);
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.starts_with("line 4"), "{shown}");
        }
    }

    #[test]
    fn a_broken_line_inside_an_array_of_secrets_is_not_taken_for_a_key() {
        // Found by the config_toml fuzz target: a bare secret with a `=` on
        // its own line in `secrets = [` was shown as the key name.
        let text = "[[delivery.sinks]]\nsecrets = [\n  s3cr3t-abc=sink=x\n]\n";
        let shown = error_of(text);
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.starts_with("line 3"), "{shown}");
    }

    #[test]
    fn multi_line_strings_and_open_brackets_are_told_apart_from_code() {
        assert_eq!(scan("a = \"\"\"\nx\n"), (true, 0));
        assert_eq!(scan("a = \'\'\'x\n"), (true, 0));
        assert_eq!(scan("a = \"\"\"x\"\"\"\"\"\n"), (false, 0));
        assert_eq!(scan("a = \"\\\"\"\"\"\" # \"\"\"\n"), (false, 0));
        assert_eq!(scan("a = \'\"\"\"\'\n"), (false, 0));
        assert_eq!(scan("[t]\na = [ \"]\", # ]\n"), (false, 1));
        assert_eq!(scan("[[t]]\na = { b = [1] }\n"), (false, 0));
    }

    #[test]
    fn other_errors_keep_their_message_and_position() {
        let shown = error_of("[server]\nlisten = \"127.0.0.1:7070\"\nlimits = [1,\n");
        assert!(shown.starts_with("line 3"), "{shown}");
        assert!(!shown.contains("not shown"), "{shown}");
        assert!(
            !shown.contains("127.0.0.1"),
            "the source is never quoted: {shown}"
        );
    }
}
