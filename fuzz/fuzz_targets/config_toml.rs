//! The TOML configuration loaders: the server's (`ServerConfig`, then its
//! `check`) and the delivery section's (`DeliveryConfig`, as `run`,
//! `status` and `dlq` load it). Any text gives a configuration or an error,
//! never a panic, and the same text gives the same answer twice.
//!
//! Half the inputs are built instead: a token or webhook secret, written in
//! one of TOML's forms, followed by fuzzed text on its line. Whatever the
//! error, its message must not contain the secret (issue 9 #2).
#![no_main]

use ironclad::delivery::config::DeliveryConfig;
use ironclad_server::ServerConfig;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;

/// Layouts that put a secret value (`{V}`) and fuzzed text (`{J}`) on
/// the lines the loaders read secrets from.
const TEMPLATES: [&str; 7] = [
    "[[server.tokens]]\ntoken = {V}{J}\nrole = \"admin\"\n",
    "[server]\ntokens = [\n  { token = {V}{J}, role = \"admin\" },\n]\n",
    "[server]\ntokens = [ { role = \"admin\", token = {V} }{J} ]\n",
    "[server]\ntokens = [\n  { role = \"admin\",\n    token = {V}{J} },\n]\n",
    "[[delivery.sinks]]\nname = \"h\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\nsecret = {V}{J}\n",
    "[[delivery.sinks]]\nname = \"h\"\nkind = \"http\"\nurl = \"http://127.0.0.1:1/\"\nsecrets = [\n  {V}{J}\n]\n",
    "[[delivery.sinks]]\nkind = \"http\"\nsecrets = [ \"0123456789abcdef0123\", {V} ]{J}\nname = 7\n",
];

/// The ways TOML can write a string value, and two it cannot.
const QUOTES: [(&str, &str); 6] = [
    ("\"", "\""),
    ("'", "'"),
    ("\"\"\"\n", "\"\"\""),
    ("'''", "'''"),
    ("", ""),
    ("[\"", "\"]"),
];

/// Both loaders' answers for `text`, errors as their messages.
fn load(
    text: &str,
) -> (
    std::result::Result<(), String>,
    std::result::Result<(), String>,
) {
    let server = ServerConfig::from_toml_str(text)
        .and_then(|c| c.check())
        .map_err(|e| e.to_string());
    let delivery = DeliveryConfig::from_toml_str(text)
        .map(|_| ())
        .map_err(|e| e.to_string());
    (server, delivery)
}

fn check(u: &mut Unstructured<'_>) -> Result<()> {
    if u.arbitrary::<bool>()? {
        let text: &str = u.arbitrary()?;
        assert_eq!(
            load(text),
            load(text),
            "the same text answered twice differently"
        );
        return Ok(());
    }
    let template = *u.choose(&TEMPLATES)?;
    let (open, close) = *u.choose(&QUOTES)?;
    // A marker no template, key name or message contains, then fuzzed
    // secret-ish characters.
    let tail: String = u
        .arbitrary::<&str>()?
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.+/=".contains(*c))
        .collect();
    let secret = format!("Zq7Xw{tail}");
    let junk: &str = u.arbitrary()?;
    if junk.contains("Zq7Xw") {
        return Ok(());
    }
    let value = format!("{open}{secret}{close}");
    let text = template.replace("{V}", &value).replace("{J}", junk);
    let (server, delivery) = load(&text);
    for message in [server.err(), delivery.err()].into_iter().flatten() {
        assert!(
            !message.contains("Zq7Xw"),
            "a secret was echoed:\n--- config\n{text}\n--- message\n{message}"
        );
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(&mut Unstructured::new(data));
});
