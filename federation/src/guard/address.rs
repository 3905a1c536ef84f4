//! Which IP addresses the guarded client refuses to connect to, and why.
//!
//! The rules follow the IANA special-purpose address registries
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry/>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry/>): everything that is not an
//! ordinary globally routed unicast address is refused. IPv6 forms that embed an IPv4 address
//! (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged by the
//! embedded address, so `::ffff:127.0.0.1` is loopback.
//!
//! Cloud metadata endpoints ([`Forbidden::Metadata`]) are refused even when the operator allows
//! private targets: no identity provider serves keys there, and they hand out the host's cloud
//! credentials to whoever asks, which is the classic SSRF prize.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is not a place the node fetches from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Forbidden {
    /// `0.0.0.0/8` ("this network", RFC 1122 §3.2.1.3) and `::` (RFC 4291 §2.5.2): connecting
    /// there reaches the local host.
    Unspecified,
    /// `127.0.0.0/8` (RFC 1122) and `::1` (RFC 4291 §2.5.3).
    Loopback,
    /// RFC 1918 private networks `10/8`, `172.16/12`, `192.168/16`, the deprecated IPv6
    /// site-local `fec0::/10` (RFC 3879) and the local-use NAT64 prefix `64:ff9b:1::/48`
    /// (RFC 8215).
    Private,
    /// Link-local `169.254/16` (RFC 3927) and `fe80::/10` (RFC 4291 §2.5.6).
    LinkLocal,
    /// Shared address space `100.64/10` used by carrier-grade NAT (RFC 6598).
    SharedAddressSpace,
    /// IPv6 unique local addresses `fc00::/7` (RFC 4193).
    UniqueLocal,
    /// Multicast `224/4` (RFC 5771) and `ff00::/8` (RFC 4291 §2.7).
    Multicast,
    /// The limited broadcast address `255.255.255.255` (RFC 919).
    Broadcast,
    /// Documentation ranges `192.0.2/24`, `198.51.100/24`, `203.0.113/24` (RFC 5737),
    /// `2001:db8::/32` (RFC 3849) and `3fff::/20` (RFC 9637).
    Documentation,
    /// Benchmarking ranges `198.18/15` (RFC 2544) and `2001:2::/48` (RFC 5180).
    Benchmarking,
    /// Reserved or special-purpose space that no public server uses: `240/4` (RFC 1112),
    /// `192.0.0/24` (RFC 6890), the 6to4 relay anycast `192.88.99/24` (RFC 7526), the IPv6
    /// discard prefix `100::/64` (RFC 6666), Teredo `2001::/32` (RFC 4380), IPv4-compatible
    /// IPv6 addresses of public hosts (deprecated by RFC 4291 §2.5.5.1) and any IPv6 address
    /// outside the global unicast block `2000::/3`.
    Reserved,
    /// A cloud instance-metadata endpoint: `169.254.169.254` (AWS, GCP, Azure, OpenStack, ...),
    /// `169.254.170.2` (AWS ECS task credentials), `100.100.100.200` (Alibaba Cloud),
    /// `168.63.129.16` (Azure WireServer) and `fd00:ec2::254` (AWS IMDS over IPv6). Refused
    /// even when private targets are allowed.
    Metadata,
}

impl Forbidden {
    /// A short stable name for logs and metrics (`loopback`, `private`, `metadata`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Forbidden::Unspecified => "unspecified",
            Forbidden::Loopback => "loopback",
            Forbidden::Private => "private",
            Forbidden::LinkLocal => "link_local",
            Forbidden::SharedAddressSpace => "shared_address_space",
            Forbidden::UniqueLocal => "unique_local",
            Forbidden::Multicast => "multicast",
            Forbidden::Broadcast => "broadcast",
            Forbidden::Documentation => "documentation",
            Forbidden::Benchmarking => "benchmarking",
            Forbidden::Reserved => "reserved",
            Forbidden::Metadata => "metadata",
        }
    }

    /// Whether the address is refused even when the operator allows private targets
    /// (only [`Forbidden::Metadata`]).
    pub fn always_refused(&self) -> bool {
        matches!(self, Forbidden::Metadata)
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forbidden::Unspecified => "unspecified (this host)",
            Forbidden::Loopback => "loopback",
            Forbidden::Private => "private-network",
            Forbidden::LinkLocal => "link-local",
            Forbidden::SharedAddressSpace => "carrier-grade NAT (shared address space)",
            Forbidden::UniqueLocal => "unique-local",
            Forbidden::Multicast => "multicast",
            Forbidden::Broadcast => "broadcast",
            Forbidden::Documentation => "documentation-range",
            Forbidden::Benchmarking => "benchmarking-range",
            Forbidden::Reserved => "reserved",
            Forbidden::Metadata => "cloud metadata endpoint",
        })
    }
}

const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];
const METADATA_V6: [Ipv6Addr; 1] = [Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254)];

/// Why `ip` must not be fetched from, or `None` for an ordinary public unicast address.
///
/// This is the whole rule set; [`permitted`] adds the operator's `allow_private` switch.
pub fn classify(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Whether the guarded client may connect to `ip`: `Err` with the reason when it may not.
/// With `allow_private`, only [`Forbidden::always_refused`] reasons remain.
pub fn permitted(ip: IpAddr, allow_private: bool) -> Result<(), Forbidden> {
    match classify(ip) {
        Some(reason) if reason.always_refused() || !allow_private => Err(reason),
        _ => Ok(()),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
    let [a, b, c, d, e, f, g, h] = net;
    u128::from(ip) & mask == u128::from(Ipv6Addr::new(a, b, c, d, e, f, g, h)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    use Forbidden::*;
    if METADATA_V4.contains(&ip) {
        return Some(Metadata);
    }
    let table: [([u8; 4], u32, Forbidden); 16] = [
        ([0, 0, 0, 0], 8, Unspecified),
        ([10, 0, 0, 0], 8, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([127, 0, 0, 0], 8, Loopback),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([172, 16, 0, 0], 12, Private),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([192, 88, 99, 0], 24, Reserved),
        ([192, 168, 0, 0], 16, Private),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([224, 0, 0, 0], 4, Multicast),
        // Before 240/4, which contains it.
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    table
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, why)| *why)
}

fn classify_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    use Forbidden::*;
    if METADATA_V6.contains(&ip) {
        return Some(Metadata);
    }
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    let seg = ip.segments();
    let low_v4 = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    // IPv4-mapped ::ffff:0:0/96: the socket talks IPv4 to the embedded address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    // IPv4-compatible ::/96 (deprecated): judge the embedded address; a public one is still
    // no place for a server, so it is reserved.
    if in_v6(ip, [0; 8], 96) {
        return Some(classify_v4(low_v4).unwrap_or(Reserved));
    }
    // NAT64 well-known prefix: the translator connects to the embedded IPv4 address.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return classify_v4(low_v4);
    }
    // 6to4: the embedded IPv4 address is in bits 16..48.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let v4 = Ipv4Addr::new(
            (seg[1] >> 8) as u8,
            seg[1] as u8,
            (seg[2] >> 8) as u8,
            seg[2] as u8,
        );
        return classify_v4(v4);
    }
    let table: [([u16; 8], u32, Forbidden); 10] = [
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, Private),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, Reserved),
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, Benchmarking),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, Documentation),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, Reserved),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, Documentation),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, UniqueLocal),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, LinkLocal),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, Private),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, Multicast),
    ];
    if let Some((_, _, why)) = table
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
    {
        return Some(*why);
    }
    // Global unicast is 2000::/3 (RFC 4291 §2.4); everything else is unassigned or special.
    if in_v6(ip, [0x2000, 0, 0, 0, 0, 0, 0, 0], 3) {
        None
    } else {
        Some(Reserved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Forbidden::*;

    // Each row: an address, the verdict, and where the range comes from.
    #[test]
    fn classification_table() {
        let cases: &[(&str, Option<Forbidden>)] = &[
            // Ordinary public unicast (IANA: globally reachable).
            ("8.8.8.8", None),
            ("1.1.1.1", None),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("169.253.255.255", None),
            ("2606:4700:4700::1111", None),
            ("2a00:1450:4001:80b::200e", None),
            // RFC 1122 / RFC 4291: this host.
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(Unspecified)),
            ("::", Some(Unspecified)),
            ("127.0.0.1", Some(Loopback)),
            ("127.1.2.3", Some(Loopback)),
            ("127.255.255.255", Some(Loopback)),
            ("::1", Some(Loopback)),
            // RFC 1918.
            ("10.1.2.3", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            // RFC 3927 / RFC 4291 link-local, and the metadata addresses inside it.
            ("169.254.1.1", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("169.254.170.2", Some(Metadata)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            // RFC 6598 CGNAT, and Alibaba's metadata address inside it.
            ("100.64.0.1", Some(SharedAddressSpace)),
            ("100.127.255.255", Some(SharedAddressSpace)),
            ("100.100.100.200", Some(Metadata)),
            ("168.63.129.16", Some(Metadata)),
            // RFC 4193 unique local, and AWS IMDS over IPv6 inside it.
            ("fc00::1", Some(UniqueLocal)),
            ("fdff::1", Some(UniqueLocal)),
            ("fd00:ec2::254", Some(Metadata)),
            ("fec0::1", Some(Private)),
            // Multicast and broadcast.
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("ff02::1", Some(Multicast)),
            ("255.255.255.255", Some(Broadcast)),
            ("240.0.0.1", Some(Reserved)),
            // RFC 5737, RFC 3849, RFC 9637 documentation; RFC 2544, RFC 5180 benchmarking.
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("2001:2::1", Some(Benchmarking)),
            // Other special-purpose space.
            ("192.0.0.8", Some(Reserved)),
            ("192.88.99.1", Some(Reserved)),
            ("100::1", Some(Reserved)),
            ("2001::1", Some(Reserved)),
            ("4000::1", Some(Reserved)),
            // IPv4 embedded in IPv6 is judged as the IPv4 address (RFC 4291 §2.5.5).
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:1", Some(Loopback)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("::ffff:8.8.8.8", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::8.8.8.8", Some(Reserved)),
            // NAT64 (RFC 6052) and 6to4 (RFC 3056) embed IPv4 too.
            ("64:ff9b::7f00:1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(Metadata)),
            ("64:ff9b::808:808", None),
            ("64:ff9b:1::1", Some(Private)),
            ("2002:7f00:1::1", Some(Loopback)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:808:808::1", None),
        ];
        for (addr, want) in cases {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(classify(ip), *want, "{addr}");
        }
    }

    #[test]
    fn allow_private_lifts_everything_but_metadata() {
        for addr in [
            "127.0.0.1",
            "10.1.2.3",
            "fe80::1",
            "100.64.0.1",
            "::ffff:127.0.0.1",
        ] {
            let ip: IpAddr = addr.parse().unwrap();
            assert!(permitted(ip, false).is_err(), "{addr}");
            assert_eq!(permitted(ip, true), Ok(()), "{addr}");
        }
        for addr in ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"] {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(permitted(ip, true), Err(Metadata), "{addr}");
        }
        assert_eq!(permitted("8.8.8.8".parse().unwrap(), false), Ok(()));
    }
}
