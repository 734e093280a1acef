//! Where a webhook may point: an http(s) URL whose host resolves only to public addresses.
//!
//! A webhook makes the server send requests where a tenant says, so without a check a tenant
//! could reach what only the server can: its loopback services, the private network behind it,
//! a cloud's metadata address (169.254.169.254). So a URL is refused when its host is, or
//! resolves to, any address of [`is_private`]; and since a name may resolve differently at
//! delivery time (DNS rebinding), the sender connects only to the addresses this check passed
//! (`PublicOnly`, the HTTP client's resolver), never to what the name says later. The operator
//! can lift the check for a closed network (`--webhook-allow-private`), as the tests do.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest URL an endpoint may have.
pub const MAX_URL_LEN: usize = 2048;

/// A webhook URL that passed the syntax checks (not yet the address check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    url: url::Url,
}

/// Why a URL cannot be a webhook's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUrl {
    #[error("is not a URL: {0}")]
    Syntax(String),
    #[error("must be an http or https URL")]
    Scheme,
    #[error("must have a host")]
    NoHost,
    #[error("must not carry a user name or password (put credentials in the URL's path or query)")]
    Credentials,
    #[error("must not have a fragment")]
    Fragment,
    #[error("is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("points at a loopback, private or link-local address ({0}); the operator may allow such addresses with --webhook-allow-private")]
    Private(IpAddr),
    #[error("has a host that does not resolve: {0}")]
    Unresolvable(String),
}

impl WebhookUrl {
    pub fn parse(given: &str) -> Result<Self, BadUrl> {
        if given.len() > MAX_URL_LEN {
            return Err(BadUrl::TooLong);
        }
        let url = url::Url::parse(given).map_err(|e| BadUrl::Syntax(e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(BadUrl::Scheme);
        }
        if url.host().is_none() {
            return Err(BadUrl::NoHost);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(BadUrl::Credentials);
        }
        if url.fragment().is_some() {
            return Err(BadUrl::Fragment);
        }
        Ok(WebhookUrl { url })
    }

    pub fn as_str(&self) -> &str {
        self.url.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.url
    }

    /// The host and port to resolve (the scheme's default port when none is given).
    pub fn authority(&self) -> (String, u16) {
        let host = match self.url.host() {
            // The brackets of an IPv6 literal are the URL's, not the address's.
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            Some(host) => host.to_string(),
            None => String::new(),
        };
        (host, self.url.port_or_known_default().unwrap_or(80))
    }

    /// The addresses the host resolves to, all of them public unless `allow_private`.
    pub async fn resolve(&self, allow_private: bool) -> Result<Vec<SocketAddr>, BadUrl> {
        let (host, port) = self.authority();
        let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| BadUrl::Unresolvable(format!("{host}: {e}")))?
            .collect();
        if addresses.is_empty() {
            return Err(BadUrl::Unresolvable(host));
        }
        if !allow_private {
            if let Some(private) = addresses.iter().find(|a| is_private(a.ip())) {
                return Err(BadUrl::Private(private.ip()));
            }
        }
        Ok(addresses)
    }
}

/// Whether a request to `ip` could reach what is not the public internet: loopback,
/// unspecified, private (RFC 1918, IPv6 unique local), shared (RFC 6598), link-local, multicast,
/// broadcast, reserved and documentation ranges, and IPv4 inside IPv6 (mapped, compatible,
/// NAT64, 6to4) judged by the IPv4 address it carries.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => private_v4(v4),
        IpAddr::V6(v6) => private_v6(v6),
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (carrier-grade NAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240 // reserved
}

fn private_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return private_v4(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0100 && ip.segments()[1..4] == [0, 0, 0]) // discard-only 100::/64
}

/// The IPv4 address an IPv6 address carries, where it carries one a router would follow:
/// mapped (::ffff:a.b.c.d), compatible (::a.b.c.d), NAT64 (64:ff9b::a.b.c.d), 6to4 (2002:ab:cd::).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified() {
        return Some(tail());
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail());
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused_and_public_ones_pass() {
        for private in [
            "127.0.0.1",
            "127.9.9.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.0.8",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:c0a8:101::",
            "fec0::1",
            "100::1",
        ] {
            assert!(is_private(private.parse().unwrap()), "{private} is private");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "100.128.0.1",
            "192.0.3.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82a::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::",
        ] {
            assert!(!is_private(public.parse().unwrap()), "{public} is public");
        }
    }

    #[test]
    fn only_plain_http_urls_with_a_host_are_accepted() {
        for good in [
            "https://hooks.example.com/registrar",
            "http://example.com:8080/in?token=abc",
            "https://[2606:4700::1]/x",
        ] {
            assert!(WebhookUrl::parse(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("ftp://example.com/", BadUrl::Scheme),
            ("file:///etc/passwd", BadUrl::Scheme),
            ("javascript:alert(1)", BadUrl::Scheme),
            ("https://user:pw@example.com/", BadUrl::Credentials),
            ("https://example.com/#x", BadUrl::Fragment),
        ] {
            assert_eq!(WebhookUrl::parse(bad), Err(why), "{bad}");
        }
        assert!(matches!(
            WebhookUrl::parse("not a url"),
            Err(BadUrl::Syntax(_))
        ));
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert_eq!(WebhookUrl::parse(&long), Err(BadUrl::TooLong));
    }

    #[test]
    fn the_authority_defaults_the_port_and_unbrackets_ipv6() {
        let url = |s| WebhookUrl::parse(s).unwrap().authority();
        assert_eq!(url("https://example.com/x"), ("example.com".into(), 443));
        assert_eq!(url("http://example.com/x"), ("example.com".into(), 80));
        assert_eq!(url("http://[::1]:9000/x"), ("::1".into(), 9000));
    }

    #[tokio::test]
    async fn names_and_literals_that_reach_loopback_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/",
            "http://localhost:9/",
            "http://[::1]:9/",
        ] {
            let url = WebhookUrl::parse(url).unwrap();
            assert!(
                matches!(url.resolve(false).await, Err(BadUrl::Private(_))),
                "{url:?}"
            );
            assert!(
                url.resolve(true).await.is_ok(),
                "{url:?} with private allowed"
            );
        }
        let unknown = WebhookUrl::parse("http://no-such-host.invalid/").unwrap();
        assert!(matches!(
            unknown.resolve(true).await,
            Err(BadUrl::Unresolvable(_))
        ));
    }
}
