//! `--trusted-proxy`: which client address a request behind a reverse proxy is attributed to.
//!
//! A proxy connects to the node on behalf of its clients, so the TCP peer of every request it
//! forwards is the proxy. It names the client in `Forwarded: for=` (RFC 7239) or
//! `X-Forwarded-For`, appending the address it received the request from to whatever the
//! request already carried — so everything left of the entries written by proxies we trust is a
//! claim of the client, free to be spoofed. Hence:
//!
//! 1. When the TCP peer is not a trusted proxy, both headers are ignored: the peer is the client.
//! 2. Otherwise the header's list is walked from the right (the hop nearest to us), skipping
//!    addresses that are themselves trusted proxies; the first untrusted address is the client.
//!    If every hop is trusted, the leftmost is (a request from inside the proxies' network).
//! 3. A hop that names no address (`unknown`, an obfuscated identifier `_abc`, garbage) stops
//!    the walk: what lies left of it was vouched for by nobody we trust, so the request is
//!    attributed to the peer.
//! 4. A proxy usually writes one of the two headers and passes the other through from the
//!    client untouched (nginx's `$proxy_add_x_forwarded_for` leaves a client's `Forwarded`
//!    alone). So when both headers are present and name different clients, one of them is a
//!    client's invention and we cannot tell which: the request is attributed to the peer.
//!    A client gains nothing by it — it only joins the peer's throttling bucket — while
//!    preferring one header blindly would let it pick any address it likes.
//!
//! A forwarded address carries the port `Forwarded` gave it, else port 0.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use warp::http::HeaderMap;

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`) or a single address
/// (`192.0.2.10`, `::1`): a `--trusted-proxy` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in this network. IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a
    /// dual-stack listener reports for an IPv4 peer) count as the IPv4 address they map.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| {
            format!("{addr:?} is not an IP address; give an IPv4 or IPv6 network such as 10.0.0.0/8, 2001:db8::/32 or 192.0.2.10")
        })?;
        let max: u8 = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                // `u8::from_str` takes a leading `+`; a prefix is digits only.
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => {
                    return Err(format!(
                        "{s:?}: the prefix length must be a number from 0 to {max}"
                    ))
                }
            },
        };
        // A written-out IPv4-mapped network (`::ffff:10.0.0.0/104`) is that IPv4 network:
        // addresses are compared in their canonical form.
        let (net, prefix) = match net {
            IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (net, prefix),
            },
            _ => (net, prefix),
        };
        let cidr = Cidr { net, prefix };
        // `10.1.2.3/8` is almost always a typo for a single address or for `10.0.0.0/8`:
        // refuse it rather than guess which.
        if cidr.network() != net {
            return Err(format!(
                "{s:?} has address bits set beyond its /{prefix} prefix; write the network address ({}) or a single address without a prefix",
                Cidr { net: cidr.network(), prefix }
            ));
        }
        Ok(cidr)
    }
}

impl Cidr {
    /// The network address: `net` with the bits beyond the prefix cleared.
    fn network(&self) -> IpAddr {
        match self.net {
            IpAddr::V4(n) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(n) & mask))
            }
            IpAddr::V6(n) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(n) & mask))
            }
        }
    }
}

/// One hop of a forwarding header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// An address, with its port when the header gave one.
    Addr(IpAddr, u16),
    /// `unknown`, an obfuscated identifier, or something unparsable.
    Unidentified,
}

/// The client address of a request whose TCP peer is `peer`, following the module's rules.
pub(crate) fn client_addr(trusted: &[Cidr], peer: SocketAddr, headers: &HeaderMap) -> SocketAddr {
    let peer_ip = peer.ip();
    if !trusted.iter().any(|c| c.contains(peer_ip)) {
        return peer;
    }
    let walk = |hops: Vec<Hop>| pick(trusted, &hops);
    let by_forwarded = forwarded_for(headers).map(walk);
    let by_xff = x_forwarded_for(headers).map(walk);
    let chosen = match (by_forwarded, by_xff) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => one,
        (Some(Some(a)), Some(Some(b))) if a.ip() == b.ip() => Some(a),
        (Some(_), Some(_)) => {
            tracing::debug!(client = %peer, "Forwarded and X-Forwarded-For name different clients; using the peer address");
            None
        }
    };
    chosen.unwrap_or(peer)
}

/// Walks `hops` from the right past trusted proxies: the first untrusted address, or the
/// leftmost when all are trusted; `None` when an unidentified hop comes first or there are none.
fn pick(trusted: &[Cidr], hops: &[Hop]) -> Option<SocketAddr> {
    let mut leftmost = None;
    for hop in hops.iter().rev() {
        match *hop {
            Hop::Addr(ip, port) => {
                let addr = SocketAddr::new(ip.to_canonical(), port);
                if !trusted.iter().any(|c| c.contains(ip)) {
                    return Some(addr);
                }
                leftmost = Some(addr);
            }
            Hop::Unidentified => return None,
        }
    }
    leftmost
}

/// The `for=` hops of every `Forwarded` header (RFC 7239 §4), in order; `None` when there is
/// no such header or none of its elements has a `for` parameter (e.g. only `proto=https`).
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<Hop>> {
    let mut hops = Vec::new();
    let mut any_for = false;
    for value in headers.get_all("forwarded") {
        let Ok(text) = value.to_str() else {
            hops.push(Hop::Unidentified);
            continue;
        };
        match parse_forwarded(text) {
            Some(elements) => {
                for node in elements {
                    match node {
                        Some(node) => {
                            any_for = true;
                            hops.push(parse_node(&node));
                        }
                        // An element without `for`: a hop that did not say whom it served.
                        None => hops.push(Hop::Unidentified),
                    }
                }
            }
            None => {
                // Broken syntax: nothing in this header can be trusted to mean what it seems.
                any_for = true;
                hops.push(Hop::Unidentified);
            }
        }
    }
    any_for.then_some(hops)
}

/// The `for` value of each element of one `Forwarded` header value (`None` for an element
/// without one), or `None` when the value is not `1#forwarded-element`.
fn parse_forwarded(text: &str) -> Option<Vec<Option<String>>> {
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut elements = Vec::new();
    let mut current: Option<String> = None;
    let mut pairs_in_element = 0;
    let skip_ws = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        // An empty pair or element (`a=b;;c=d`, `a=b,,c=d`) is allowed by the list syntax.
        if i < bytes.len() && (bytes[i] == b';' || bytes[i] == b',') {
        } else if i < bytes.len() {
            let start = i;
            while i < bytes.len() && is_tchar(bytes[i]) {
                i += 1;
            }
            let name = text.get(start..i)?;
            if name.is_empty() || i >= bytes.len() || bytes[i] != b'=' {
                return None;
            }
            i += 1;
            let value = if i < bytes.len() && bytes[i] == b'"' {
                i += 1;
                let mut v = String::new();
                loop {
                    match bytes.get(i)? {
                        b'"' => {
                            i += 1;
                            break;
                        }
                        b'\\' => {
                            v.push(char::from(*bytes.get(i + 1)?));
                            i += 2;
                        }
                        _ => {
                            // Multi-byte UTF-8 is not valid here anyway; it fails address parsing.
                            let c = text.get(i..)?.chars().next()?;
                            v.push(c);
                            i += c.len_utf8();
                        }
                    }
                }
                v
            } else {
                let start = i;
                while i < bytes.len() && is_tchar(bytes[i]) {
                    i += 1;
                }
                if start == i {
                    return None;
                }
                text.get(start..i)?.to_string()
            };
            pairs_in_element += 1;
            if name.eq_ignore_ascii_case("for") {
                // RFC 7239 §4: a parameter occurs at most once per element.
                if current.is_some() {
                    return None;
                }
                current = Some(value);
            }
            skip_ws(&mut i);
        }
        match bytes.get(i) {
            None => {
                if pairs_in_element > 0 {
                    elements.push(current.take());
                }
                return Some(elements);
            }
            Some(b';') => i += 1,
            Some(b',') => {
                if pairs_in_element > 0 {
                    elements.push(current.take());
                }
                pairs_in_element = 0;
                i += 1;
            }
            Some(_) => return None,
        }
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// An RFC 7239 §6 node: `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]`, `[2001:db8::1]:4711`;
/// `unknown` and obfuscated names (`_hidden`) are unidentified. A bare IPv6 address, which the
/// RFC wants bracketed, is accepted: some proxies write it so.
fn parse_node(node: &str) -> Hop {
    let node = node.trim();
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Hop::Addr(ip, 0);
    }
    let (host, port) = if let Some(rest) = node.strip_prefix('[') {
        let Some((v6, after)) = rest.split_once(']') else {
            return Hop::Unidentified;
        };
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(p),
                None => return Hop::Unidentified,
            },
        };
        match v6.parse::<Ipv6Addr>() {
            Ok(ip) => (IpAddr::V6(ip), port),
            Err(_) => return Hop::Unidentified,
        }
    } else {
        let Some((v4, port)) = node.split_once(':') else {
            return Hop::Unidentified;
        };
        match v4.parse::<Ipv4Addr>() {
            Ok(ip) => (IpAddr::V4(ip), Some(port)),
            Err(_) => return Hop::Unidentified,
        }
    };
    match port {
        None => Hop::Addr(host, 0),
        // An obfuscated port hides only the port.
        Some(p) if p.starts_with('_') && p.len() > 1 => Hop::Addr(host, 0),
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(port) => Hop::Addr(host, port),
                Err(_) => Hop::Unidentified,
            }
        }
        Some(_) => Hop::Unidentified,
    }
}

/// The hops of every `X-Forwarded-For` header, in order; `None` when there is none or it lists
/// nothing. Entries are addresses, optionally with a port (`192.0.2.1:4711`,
/// `[2001:db8::1]:4711`); anything else (`unknown`, garbage) is unidentified.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<Hop>> {
    let mut hops = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            hops.push(Hop::Unidentified);
            continue;
        };
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            hops.push(parse_node(entry));
        }
    }
    (!hops.is_empty()).then_some(hops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::http::HeaderValue;

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().unwrap()).collect()
    }

    #[test]
    fn cidr_parsing_accepts_networks_and_single_addresses() {
        // (input, canonical form)
        let ok = [
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("192.0.2.10", "192.0.2.10/32"),
            (" 127.0.0.1/32 ", "127.0.0.1/32"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::1", "::1/128"),
            ("::/0", "::/0"),
            ("fe80::/10", "fe80::/10"),
            // An IPv4-mapped network is the IPv4 network it maps.
            ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
        ];
        for (input, canonical) in ok {
            let c: Cidr = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(c.to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn cidr_parsing_refuses_malformed_values_with_a_reason() {
        // (input, what the message must say)
        let bad = [
            ("", "not an IP address"),
            ("localhost", "not an IP address"),
            ("10.0.0/8", "not an IP address"),
            ("[::1]", "not an IP address"),
            ("10.0.0.0/33", "0 to 32"),
            ("2001:db8::/129", "0 to 128"),
            ("10.0.0.0/", "0 to 32"),
            ("10.0.0.0/+8", "0 to 32"),
            ("10.0.0.0/8/8", "0 to 32"),
            ("10.1.2.3/8", "write the network address (10.0.0.0/8)"),
            ("2001:db8::1/32", "(2001:db8::/32)"),
        ];
        for (input, needle) in bad {
            let err = input.parse::<Cidr>().expect_err(input);
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    #[test]
    fn cidr_matching() {
        // (network, address, contained)
        let cases = [
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("192.0.2.10", "192.0.2.10", true),
            ("192.0.2.10", "192.0.2.11", false),
            ("0.0.0.0/0", "203.0.113.7", true),
            ("0.0.0.0/0", "2001:db8::1", false),
            ("2001:db8::/32", "2001:db8:ffff::1", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "::1", true),
            ("::/0", "127.0.0.1", false),
            // A dual-stack listener reports IPv4 peers as mapped IPv6 addresses.
            ("127.0.0.1/32", "::ffff:127.0.0.1", true),
            ("::1", "127.0.0.1", false),
        ];
        for (net, addr, want) in cases {
            let c: Cidr = net.parse().unwrap();
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(c.contains(ip), want, "{addr} in {net}");
        }
    }

    fn headers(list: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in list {
            h.append(
                warp::http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        h
    }

    /// What a case is called, trusted proxies, TCP peer, headers, expected client address.
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a [(&'a str, &'a str)],
        &'a str,
    );

    /// The client address chosen for each request: trusted proxies, TCP peer, headers, expected
    /// address. Forwarded examples are those of RFC 7239 §4 and §7.
    #[test]
    fn client_address_selection() {
        let proxies = &["10.0.0.0/8", "2001:db8:cafe::/48"][..];
        let cases: &[Case] = &[
            (
                "no trusted proxies: headers ignored",
                &[],
                "10.0.0.1:5000",
                &[("x-forwarded-for", "203.0.113.7")],
                "10.0.0.1:5000",
            ),
            (
                "an untrusted peer's own X-Forwarded-For is ignored (spoofing)",
                proxies,
                "198.51.100.9:5000",
                &[("x-forwarded-for", "203.0.113.7")],
                "198.51.100.9:5000",
            ),
            (
                "an untrusted peer's own Forwarded is ignored (spoofing)",
                proxies,
                "198.51.100.9:5000",
                &[("forwarded", "for=203.0.113.7")],
                "198.51.100.9:5000",
            ),
            (
                "trusted peer without headers: the peer",
                proxies,
                "10.0.0.1:5000",
                &[],
                "10.0.0.1:5000",
            ),
            (
                "trusted peer, X-Forwarded-For with one client",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", "203.0.113.7")],
                "203.0.113.7:0",
            ),
            (
                "a client's spoofed prefix is skipped: the rightmost untrusted entry wins",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", "1.2.3.4, 203.0.113.7")],
                "203.0.113.7:0",
            ),
            (
                "a chain of trusted proxies is walked past",
                proxies,
                "10.0.0.1:5000",
                &[(
                    "x-forwarded-for",
                    "1.2.3.4, 203.0.113.7, 10.1.1.1, 10.2.2.2",
                )],
                "203.0.113.7:0",
            ),
            (
                "several X-Forwarded-For headers form one list",
                proxies,
                "10.0.0.1:5000",
                &[
                    ("x-forwarded-for", "1.2.3.4"),
                    ("x-forwarded-for", "203.0.113.7, 10.1.1.1"),
                ],
                "203.0.113.7:0",
            ),
            (
                "every hop trusted: the leftmost",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", "10.9.9.9, 10.1.1.1")],
                "10.9.9.9:0",
            ),
            (
                "X-Forwarded-For with ports and IPv6",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", "[2001:db8::1]:4711, 192.0.2.1:80")],
                "192.0.2.1:80",
            ),
            (
                "X-Forwarded-For bare IPv6",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", "2001:db8::1")],
                "[2001:db8::1]:0",
            ),
            (
                "X-Forwarded-For garbage at the right: the peer",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", "203.0.113.7, not-an-ip")],
                "10.0.0.1:5000",
            ),
            (
                "X-Forwarded-For unknown left of the client does not matter",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", "unknown, 203.0.113.7")],
                "203.0.113.7:0",
            ),
            (
                "X-Forwarded-For empty entries are skipped",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", " , 203.0.113.7,")],
                "203.0.113.7:0",
            ),
            (
                "X-Forwarded-For empty value: the peer",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", "")],
                "10.0.0.1:5000",
            ),
            (
                "RFC 7239 §4: quoted IPv6 with a port",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "For=\"[2001:db8:cafe::17]:4711\"")],
                // 2001:db8:cafe::/48 is trusted, so this is a trusted-only chain.
                "[2001:db8:cafe::17]:4711",
            ),
            (
                "RFC 7239 §4: quoted IPv6, untrusted",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=\"[2001:db8::1]:4711\"")],
                "[2001:db8::1]:4711",
            ),
            (
                "RFC 7239 §4: several parameters in one element",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")],
                "192.0.2.60:0",
            ),
            (
                "RFC 7239 §4: several elements, the rightmost untrusted wins",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=192.0.2.43, for=198.51.100.17")],
                "198.51.100.17:0",
            ),
            (
                "several elements with a trusted hop at the right",
                proxies,
                "10.0.0.1:5000",
                &[(
                    "forwarded",
                    "for=1.2.3.4;proto=https, for=\"192.0.2.43:8443\", for=\"[2001:db8:cafe::1]\"",
                )],
                "192.0.2.43:8443",
            ),
            (
                "several Forwarded headers form one list",
                proxies,
                "10.0.0.1:5000",
                &[
                    ("forwarded", "for=1.2.3.4"),
                    ("forwarded", "for=192.0.2.43;by=10.0.0.1"),
                ],
                "192.0.2.43:0",
            ),
            (
                "RFC 7239 §6.3: an obfuscated identifier stops the walk",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=192.0.2.43, for=_hidden")],
                "10.0.0.1:5000",
            ),
            (
                "RFC 7239 §6.2: unknown stops the walk",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=192.0.2.43, for=unknown")],
                "10.0.0.1:5000",
            ),
            (
                "unknown left of the client does not matter",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=unknown, for=192.0.2.43")],
                "192.0.2.43:0",
            ),
            (
                "an obfuscated port hides only the port",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=\"192.0.2.43:_a1\"")],
                "192.0.2.43:0",
            ),
            (
                "an element without for stops the walk",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=192.0.2.43, proto=https")],
                "10.0.0.1:5000",
            ),
            (
                "Forwarded without any for: X-Forwarded-For decides",
                proxies,
                "10.0.0.1:5000",
                &[
                    ("forwarded", "proto=https;host=idp.example"),
                    ("x-forwarded-for", "203.0.113.7"),
                ],
                "203.0.113.7:0",
            ),
            (
                "both headers agree",
                proxies,
                "10.0.0.1:5000",
                &[
                    ("forwarded", "for=203.0.113.7"),
                    ("x-forwarded-for", "203.0.113.7"),
                ],
                "203.0.113.7:0",
            ),
            (
                "both headers disagree (one is the client's invention): the peer",
                proxies,
                "10.0.0.1:5000",
                &[
                    ("forwarded", "for=1.2.3.4"),
                    ("x-forwarded-for", "203.0.113.7"),
                ],
                "10.0.0.1:5000",
            ),
            (
                "Forwarded: a for given twice in one element is malformed",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=1.2.3.4;for=203.0.113.7")],
                "10.0.0.1:5000",
            ),
            (
                "Forwarded: unterminated quote",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=\"[2001:db8::1]:4711")],
                "10.0.0.1:5000",
            ),
            (
                "Forwarded: not pairs at all",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "203.0.113.7")],
                "10.0.0.1:5000",
            ),
            (
                "Forwarded: unbracketed IPv6 with a port is garbage",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=2001:db8::1:4711x")],
                "10.0.0.1:5000",
            ),
            (
                "Forwarded: a quoted comma does not split elements",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=203.0.113.7;ext=\"a,b\", for=10.3.3.3")],
                "203.0.113.7:0",
            ),
            (
                "Forwarded: a port must be quoted (`:` is not a token character)",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=192.0.2.43:8443")],
                "10.0.0.1:5000",
            ),
            (
                "Forwarded: a port out of range",
                proxies,
                "10.0.0.1:5000",
                &[("forwarded", "for=\"192.0.2.43:70000\"")],
                "10.0.0.1:5000",
            ),
            (
                "an IPv4-mapped trusted peer (dual-stack listener)",
                proxies,
                "[::ffff:10.0.0.1]:5000",
                &[("x-forwarded-for", "203.0.113.7")],
                "203.0.113.7:0",
            ),
            (
                "an IPv4-mapped hop is reported as IPv4",
                proxies,
                "10.0.0.1:5000",
                &[("x-forwarded-for", "::ffff:203.0.113.7")],
                "203.0.113.7:0",
            ),
        ];
        for (what, trusted, peer, hdrs, want) in cases {
            let trusted = cidrs(trusted);
            let peer: SocketAddr = peer.parse().unwrap();
            let got = client_addr(&trusted, peer, &headers(hdrs));
            assert_eq!(got.to_string(), *want, "{what}");
        }
    }

    #[test]
    fn non_utf8_header_values_are_unidentified() {
        let trusted = cidrs(&["10.0.0.0/8"]);
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.append(
            "x-forwarded-for",
            HeaderValue::from_bytes(b"203.0.113.7, \xff").unwrap(),
        );
        assert_eq!(client_addr(&trusted, peer, &h), peer);
    }
}
