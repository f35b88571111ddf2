//! The allowlist of a call's outbound HTTP: patterns of scheme, host and
//! port, parsed once on the host, and the checks a request and the
//! addresses its host resolves to must pass.
//!
//! It knows nothing of connections: [`super::client`] asks it whether a
//! request may go out, and to which of the resolved addresses.

use std::fmt;
use std::net::IpAddr;

use crate::error::{Error, ErrorKind};

/// One parsed allowlist pattern: `scheme://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    https: bool,
    host: Host,
    /// The scheme's default port when the pattern names none.
    port: u16,
}

/// The host part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    /// A host name, lowercase, without a trailing dot.
    Name(String),
    /// `*.suffix`: any name with at least one label before `.suffix`
    /// (lowercase, without the `*.`). Never an IP address.
    Wildcard(String),
    /// An IP address literal (IPv6 in brackets in the pattern).
    Ip(IpAddr),
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match &self.host {
            Host::Name(n) => write!(f, "{scheme}://{n}:{}", self.port),
            Host::Wildcard(s) => write!(f, "{scheme}://*.{s}:{}", self.port),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "{scheme}://[{ip}]:{}", self.port),
            Host::Ip(ip) => write!(f, "{scheme}://{ip}:{}", self.port),
        }
    }
}

impl Pattern {
    /// Parses `text`, or says what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Pattern, Error> {
        parse(text).map_err(|why| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "allow_http pattern {text:?}: {why} (expected scheme://host[:port], such as \
                     \"https://api.example.com\", \"https://*.example.com\" or \
                     \"http://127.0.0.1:8080\")"
                ),
            )
        })
    }
}

fn parse(text: &str) -> Result<Pattern, String> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| "no scheme".to_string())?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "http" => false,
        "https" => true,
        other => return Err(format!("scheme {other:?} is not http or https")),
    };
    // A trailing slash is harmless; a path, query or fragment is not a
    // destination and would suggest a check that is not made.
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err("a pattern has no path, query or fragment".into());
    }
    if authority.contains('@') {
        return Err("a pattern has no user information".into());
    }
    let (host, port) = split_port(authority)?;
    let port = match port {
        Some(p) => p,
        None if https => 443,
        None => 80,
    };
    let host = parse_host(host)?;
    Ok(Pattern { https, host, port })
}

/// Splits `host[:port]` (IPv6 in brackets).
fn split_port(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| "an IPv6 address without its closing bracket".to_string())?;
        match after {
            "" => (&authority[..ip.len() + 2], None),
            p => match p.strip_prefix(':') {
                Some(p) => (&authority[..ip.len() + 2], Some(p)),
                None => return Err(format!("unexpected {after:?} after the address")),
            },
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("port {p:?} is not a number from 1 to 65535"))?,
        ),
    };
    Ok((host, port))
}

fn parse_host(host: &str) -> Result<Host, String> {
    if let Some(ip) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return ip
            .parse::<std::net::Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| format!("{ip:?} is not an IPv6 address"));
    }
    if let Ok(ip) = host.parse::<std::net::Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    let (wild, name) = match host.strip_prefix("*.") {
        Some(suffix) => (true, suffix),
        None => (false, host.as_str()),
    };
    if name.is_empty() {
        return Err("no host".into());
    }
    if name.contains('*') {
        return Err("a wildcard is allowed only as the whole first label (`*.example.com`)".into());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !name.split('.').all(label_ok) {
        return Err(format!("{name:?} is not a host name"));
    }
    if wild && !name.contains('.') {
        return Err(format!(
            "`*.{name}` would match a whole top-level domain; name at least two labels"
        ));
    }
    Ok(if wild {
        Host::Wildcard(name.to_string())
    } else {
        Host::Name(name.to_string())
    })
}

/// Where a request goes, from its URI: what the allowlist is checked
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Destination {
    pub(crate) https: bool,
    /// A host name (lowercase, no trailing dot) or an IP literal (IPv6
    /// without brackets).
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Destination {
    /// The destination of an absolute `http` or `https` URI.
    pub(crate) fn of(uri: &http::Uri) -> Result<Destination, String> {
        let https = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => return Err(format!("scheme {other:?} is not http or https")),
            None => return Err("the URI has no scheme".into()),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| "the URI has no host".to_string())?;
        if authority.as_str().contains('@') {
            return Err("the URI carries user information".into());
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        if host.is_empty() {
            return Err("the URI has no host".into());
        }
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        Ok(Destination { https, host, port })
    }

    /// The host as an IP address, when it is one.
    pub(crate) fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// A call's parsed allowlist.
#[derive(Debug, Clone, Default)]
pub(crate) struct Allowlist {
    patterns: Vec<Pattern>,
}

impl Allowlist {
    /// Parses every pattern; the first bad one is a config error.
    pub(crate) fn parse(patterns: &[String]) -> Result<Allowlist, Error> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<_, _>>()?;
        Ok(Allowlist { patterns })
    }

    /// Whether some pattern allows `dest` by its scheme, host and port.
    pub(crate) fn allows(&self, dest: &Destination) -> bool {
        let ip = dest.ip();
        self.patterns.iter().any(|p| {
            p.https == dest.https
                && p.port == dest.port
                && match (&p.host, ip) {
                    (Host::Ip(allowed), Some(ip)) => canonical(*allowed) == canonical(ip),
                    (Host::Ip(_), None) => false,
                    (Host::Name(n), None) => *n == dest.host,
                    (Host::Wildcard(suffix), None) => dest
                        .host
                        .strip_suffix(suffix.as_str())
                        .and_then(|head| head.strip_suffix('.'))
                        .is_some_and(|head| !head.is_empty()),
                    // Names never match IP literals, nor wildcards.
                    (Host::Name(_) | Host::Wildcard(_), Some(_)) => false,
                }
        })
    }

    /// Whether `dest`'s host may be reached at `addr`, one of the addresses
    /// it resolved to: any public address, and an internal one (loopback,
    /// private, link-local and the like) only if a pattern allows that
    /// very address, so that a name that resolves (or is rebound) to
    /// `127.0.0.1` reaches it only when `127.0.0.1` itself is allowed.
    pub(crate) fn allows_address(&self, dest: &Destination, addr: IpAddr) -> bool {
        if !is_internal(addr) {
            return true;
        }
        let literal = Destination {
            https: dest.https,
            host: canonical(addr).to_string(),
            port: dest.port,
        };
        self.allows(&literal)
    }
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is an address inside a host or a private network, rather
/// than on the public internet: loopback, private, link-local, shared
/// (carrier-grade NAT), unspecified, broadcast, multicast, and their IPv6
/// counterparts (unique local, link-local, IPv4-mapped ones of these).
pub(crate) fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(uri: &str) -> Destination {
        Destination::of(&uri.parse().unwrap()).unwrap()
    }

    fn list(patterns: &[&str]) -> Allowlist {
        Allowlist::parse(&patterns.iter().map(|p| p.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn patterns_parse_with_default_ports() {
        assert_eq!(
            Pattern::parse("https://API.example.com")
                .unwrap()
                .to_string(),
            "https://api.example.com:443"
        );
        assert_eq!(
            Pattern::parse("http://127.0.0.1:8080/")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            Pattern::parse("https://*.example.com").unwrap().to_string(),
            "https://*.example.com:443"
        );
        assert_eq!(
            Pattern::parse("http://[::1]:9000").unwrap().to_string(),
            "http://[::1]:9000"
        );
    }

    #[test]
    fn bad_patterns_say_why() {
        for (bad, why) in [
            ("example.com", "no scheme"),
            ("ftp://example.com", "not http or https"),
            ("https://example.com/api", "no path"),
            ("https://user@example.com", "user information"),
            ("https://example.com:0", "port"),
            ("https://example.com:99999", "port"),
            ("https://a.*.com", "wildcard"),
            ("https://*", "wildcard"),
            ("https://*.com", "top-level"),
            ("https://", "no host"),
            ("https://exa mple.com", "not a host name"),
            ("http://[::1", "closing bracket"),
        ] {
            let e = Pattern::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config);
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn scheme_host_and_port_must_all_match() {
        let l = list(&["https://api.example.com", "http://127.0.0.1:8080"]);
        assert!(l.allows(&dest("https://api.example.com/v1?q=1")));
        assert!(l.allows(&dest("https://API.example.com.:443/")));
        assert!(!l.allows(&dest("http://api.example.com/")));
        assert!(!l.allows(&dest("https://api.example.com:8443/")));
        assert!(!l.allows(&dest("https://example.com/")));
        assert!(!l.allows(&dest("https://api.example.com.evil.net/")));
        assert!(l.allows(&dest("http://127.0.0.1:8080/")));
        assert!(!l.allows(&dest("http://127.0.0.1:8081/")));
        assert!(!l.allows(&dest("http://localhost:8080/")));
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let l = list(&["https://*.example.com"]);
        assert!(l.allows(&dest("https://a.example.com/")));
        assert!(l.allows(&dest("https://a.b.example.com/")));
        assert!(!l.allows(&dest("https://example.com/")));
        assert!(!l.allows(&dest("https://badexample.com/")));
        let ips = list(&["http://*.0.0.1"]);
        assert!(!ips.allows(&dest("http://127.0.0.1/")));
    }

    #[test]
    fn internal_addresses_need_a_pattern_of_their_own() {
        let l = list(&["http://service.test:8080", "http://10.1.2.3:8080"]);
        let d = dest("http://service.test:8080/");
        assert!(l.allows_address(&d, "93.184.216.34".parse().unwrap()));
        assert!(!l.allows_address(&d, "127.0.0.1".parse().unwrap()));
        assert!(!l.allows_address(&d, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!l.allows_address(&d, "169.254.169.254".parse().unwrap()));
        assert!(!l.allows_address(&d, "192.168.1.1".parse().unwrap()));
        assert!(!l.allows_address(&d, "fd00::1".parse().unwrap()));
        assert!(!l.allows_address(&d, "::1".parse().unwrap()));
        assert!(l.allows_address(&d, "10.1.2.3".parse().unwrap()));
        // The internal address is allowed for its own port only.
        let other = dest("http://service.test:9090/");
        assert!(!l.allows_address(&other, "10.1.2.3".parse().unwrap()));
    }
}
