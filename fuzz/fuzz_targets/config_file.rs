//! Fuzzes the operator's files: the TOML config (parsed, then resolved into the checked
//! configuration the node starts with), the htpasswd file and the tokens file.
//!
//! A config that resolves must hold what the rest of the node assumes without checking
//! again; a users or tokens file that parses must name each client once, by a valid name.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use shoal::auth::{Htpasswd, Tokens, token_file_line};
use shoal::config::{Config, FileConfig, Overrides};
use shoal_protocol::is_registry_host;
use shoal_protocol::peer::MAX_REPLICAS;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    config(text);
    htpasswd(text);
    tokens(text);
});

fn config(text: &str) {
    let Ok(mut file) = FileConfig::parse(text, Path::new("shoal.toml")) else { return };
    // Resolution reads the files these name; a fuzzer's path could be any file (or a FIFO).
    file.docker_config = None;
    if let Some(auth) = &mut file.auth {
        auth.htpasswd = None;
        auth.tokens = None;
    }
    let Ok(config) = Config::resolve(file, Overrides::default()) else { return };
    let routing = &config.routing;
    assert!(routing.upstreams.contains_key(&routing.default_upstream));
    for (name, upstream) in &routing.upstreams {
        assert_eq!(*name, upstream.name);
        assert!(upstream.url.starts_with("http://") || upstream.url.starts_with("https://"));
    }
    for target in routing.aliases.values() {
        assert!(routing.upstreams.contains_key(target), "alias to nowhere: {target:?}");
    }
    for hosted in &routing.hosted {
        assert!(is_registry_host(hosted) && !routing.upstreams.contains_key(hosted));
    }
    let fleet = &config.fleet;
    assert!((1..=MAX_REPLICAS).contains(&fleet.replicas));
    assert!(fleet.republish < fleet.provider_ttl);
    assert!(fleet.peer_upload_slots >= 1);
    assert!(config.warm.replicas.is_none_or(|n| (1..=MAX_REPLICAS).contains(&n)));
    assert!(config.lifecycle.interval.as_secs() >= 1);
    let server = &config.server;
    assert!(server.max_connections > 0);
    assert!(!server.header_read_timeout.is_zero() && !server.idle_timeout.is_zero());
    assert!(!server.shutdown_timeout.is_zero());
}

/// The names both files accept (see `auth::check_name`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

fn htpasswd(text: &str) {
    let Ok(users) = Htpasswd::parse(text) else { return };
    for name in users.names() {
        assert!(valid_name(name), "{name:?}");
        assert!(users.hash_of(name).is_some_and(|h| h.starts_with("$2")));
    }
    assert_eq!(users.typical_cost().is_some(), !users.is_empty());
}

fn tokens(text: &str) {
    let Ok(tokens) = Tokens::parse(text) else { return };
    let names: Vec<&str> = tokens.names().collect();
    for (i, name) in names.iter().enumerate() {
        assert!(valid_name(name), "{name:?}");
        assert!(!names[..i].contains(name), "{name:?} twice");
        assert!(tokens.check(name, "not the token").is_some());
        // The line `shoal auth token` writes for this name reads back as the same client.
        let line = token_file_line(name, "a token");
        let one = Tokens::parse(&line).unwrap();
        assert_eq!(one.find("a token"), Some(*name));
        assert_eq!(one.check(name, "another token"), Some(false));
    }
}
