//! Registries a client named, reached only at public addresses.
//!
//! With `--allow-any-upstream` a client chooses which host the node connects to. Without this
//! guard that makes the node a way into the network it sits in: `node:5000/10.0.0.7:8080/x`,
//! or a name that resolves to `169.254.169.254` (a cloud's metadata service), or a redirect
//! to either. For such registries every address is checked where the connection is made: the
//! resolver drops private, loopback, link-local and other non-public answers (so a name that
//! resolves to both kinds, or that changes its answer between a check and the connection,
//! still reaches only public hosts), and a URL whose host is an address literal, which no
//! resolver sees, is checked before it is requested.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether `ip` is an address anyone on the internet could reach: not loopback, private,
/// shared (CGNAT), link-local, unique-local, multicast, documentation or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b);
    let benchmarking = a == 198 && (18..20).contains(&b);
    let reserved = a >= 240;
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || shared
        || benchmarking
        || reserved)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = first & 0xfe00 == 0xfc00;
    let link_local = first & 0xffc0 == 0xfe80;
    let documentation = first == 0x2001 && ip.segments()[1] == 0x0db8;
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || documentation)
}

/// Refuses a URL whose host is a non-public address literal.
pub(crate) fn check_url(url: &Url) -> Result<(), String> {
    let host = url.host_str().unwrap_or_default();
    let literal: Option<IpAddr> = host.trim_start_matches('[').trim_end_matches(']').parse().ok();
    match literal {
        Some(ip) if !is_public(ip) => {
            Err(format!("{ip} is not a public address; registries named by clients must be"))
        }
        _ => Ok(()),
    }
}

/// The system resolver, keeping only public answers.
pub(crate) struct PublicResolver;

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> =
                all.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let message = format!(
                    "{host} resolves only to addresses that are not public ({}); registries \
                     named by clients must be public (see --allow-private-upstreams)",
                    all.iter().map(|a| a.ip().to_string()).collect::<Vec<_>>().join(", ")
                );
                return Err(message.into());
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "192.0.2.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "8.8.8.8", "172.32.0.1", "100.128.0.1", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn address_literals_in_urls_are_checked() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(check_url(&url("http://10.0.0.7:8080/v2/")).is_err());
        assert!(check_url(&url("http://[::1]:5000/v2/")).is_err());
        assert!(check_url(&url("https://169.254.169.254/latest/meta-data")).is_err());
        assert!(check_url(&url("https://1.1.1.1/v2/")).is_ok());
        assert!(
            check_url(&url("https://registry.example/v2/")).is_ok(),
            "names go to the resolver"
        );
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_is_only_private() {
        let resolved = PublicResolver.resolve("localhost".parse().expect("a name")).await;
        let error = resolved.err().expect("localhost is not public").to_string();
        assert!(error.contains("localhost") && error.contains("127.0.0.1"), "{error}");
    }
}
