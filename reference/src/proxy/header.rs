//! The PROXY protocol version 2 header a proxy writes first on each upstream connection
//! (SPEC.md §15, PROXY-2): the client's address as the proxy accepted it, and the proxy's
//! own address of that client connection.
//!
//! Exactly: the 12-byte signature, `0x21` (version 2, command PROXY), the family byte
//! (`0x11` TCP over IPv4, `0x21` TCP over IPv6), a big-endian length of 12 or 36, then source
//! address, destination address, source port, destination port. No TLVs.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The signature every version 2 header starts with.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 2, command PROXY.
pub const VERSION_COMMAND: u8 = 0x21;
/// TCP over IPv4.
pub const FAMILY_TCP4: u8 = 0x11;
/// TCP over IPv6.
pub const FAMILY_TCP6: u8 = 0x21;

/// The header for a client connection from `source` (the client's address) to `destination`
/// (the proxy's address the client connected to). When one side is IPv4 and the other IPv6,
/// the IPv4 one is written as its IPv4-mapped IPv6 address, so both fit one family; a pair of
/// IPv4-mapped addresses is written as IPv4.
pub fn build(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 36);
    out.extend_from_slice(&SIGNATURE);
    out.push(VERSION_COMMAND);
    match (unmap(source.ip()), unmap(destination.ip())) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(FAMILY_TCP4);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (s, d) => {
            out.push(FAMILY_TCP6);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&as_v6(s).octets());
            out.extend_from_slice(&as_v6(d).octets());
        }
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out
}

/// `header` with one TLV appended (the `proxy-header-tlv` mutant's deviation): a
/// `PP2_TYPE_AUTHORITY` (0x02) naming `authority`, the length field grown to match.
pub fn with_tlv(mut header: Vec<u8>, authority: &str) -> Vec<u8> {
    let value = authority.as_bytes();
    let Ok(value_len) = u16::try_from(value.len()) else {
        return header;
    };
    header.push(0x02);
    header.extend_from_slice(&value_len.to_be_bytes());
    header.extend_from_slice(value);
    let total = u16::try_from(header.len() - 16).unwrap_or(u16::MAX);
    header[14..16].copy_from_slice(&total.to_be_bytes());
    header
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn as_v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_is_byte_exact() {
        let h = build(
            "127.0.0.1:40000".parse().unwrap(),
            "127.0.0.2:5222".parse().unwrap(),
        );
        let mut expected = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0, 12]);
        expected.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 2]);
        expected.extend_from_slice(&40000u16.to_be_bytes());
        expected.extend_from_slice(&5222u16.to_be_bytes());
        assert_eq!(h, expected);
        assert_eq!(h.len(), 28);
    }

    #[test]
    fn ipv6_and_mixed_families() {
        let h = build("[::1]:1".parse().unwrap(), "[::2]:2".parse().unwrap());
        assert_eq!(&h[12..16], &[0x21, 0x21, 0, 36]);
        assert_eq!(h.len(), 16 + 36);
        assert_eq!(h[16 + 15], 1);
        assert_eq!(h[32 + 15], 2);
        assert_eq!(&h[48..], &[0, 1, 0, 2]);
        // IPv4 beside IPv6: both as IPv6, the IPv4 one mapped.
        let m = build("10.0.0.1:7".parse().unwrap(), "[::2]:8".parse().unwrap());
        assert_eq!(m[13], FAMILY_TCP6);
        assert_eq!(
            &m[16..32],
            &"::ffff:10.0.0.1".parse::<Ipv6Addr>().unwrap().octets()
        );
        // Two mapped addresses (a dual-stack listener): IPv4.
        let v4 = build(
            "[::ffff:127.0.0.1]:9".parse().unwrap(),
            "[::ffff:127.0.0.1]:10".parse().unwrap(),
        );
        assert_eq!(v4[13], FAMILY_TCP4);
        assert_eq!(v4.len(), 28);
    }

    #[test]
    fn tlv_grows_the_length() {
        let h = with_tlv(
            build(
                "127.0.0.1:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap(),
            ),
            "gk",
        );
        assert_eq!(&h[14..16], &[0, 12 + 5]);
        assert_eq!(&h[28..], &[0x02, 0, 2, b'g', b'k']);
    }
}
