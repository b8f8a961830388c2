//! The PROXY protocol version 2 header a provider proxy writes first on each upstream
//! connection (SPEC.md §15, PROXY-2), read strictly by the gatekeeper's upstream listener.
//!
//! Exactly what the profile allows is accepted: the 12-byte signature, byte 0x21 (version 2,
//! command `PROXY`), family byte 0x11 (TCP over IPv4) or 0x21 (TCP over IPv6), a big-endian
//! length of exactly 12 or 36 (no TLVs), then source address, destination address, source
//! port and destination port. The reader takes exactly the 16-byte fixed part and the
//! declared address block, never a byte more (the Noise intro that follows is the transport's),
//! at most 52 bytes in all, and within a deadline. Every fault is a [`ProxyHeaderError`] whose
//! text names PROXY-2 and shows the bytes seen, in hex.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// The requirement every fault here breaks.
pub const REQUIREMENT: &str = "PROXY-2";

/// The 12-byte signature of a version 2 header.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Version 2 (high nibble), command PROXY (low nibble).
const VERSION_COMMAND: u8 = 0x21;
/// TCP over IPv4, TCP over IPv6.
const TCP4: u8 = 0x11;
const TCP6: u8 = 0x21;
/// Address block lengths without TLVs.
const TCP4_LEN: usize = 12;
const TCP6_LEN: usize = 36;
/// The fixed part: signature, version/command, family, length.
const FIXED: usize = 16;
/// Bytes shown in an error.
const SHOWN: usize = 52;

/// A header as read: where the proxy says the client connection came from and went to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The client connection's peer address, as the proxy accepted it.
    pub source: SocketAddr,
    /// The proxy's local address of that client connection.
    pub destination: SocketAddr,
    /// The header's bytes, exactly as read.
    pub raw: Vec<u8>,
}

/// Why the bytes before the Noise intro are not the header PROXY-2 requires. `got` holds the
/// bytes read so far.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error(
        "PROXY-2: the connection ended after {} byte(s) of a PROXY v2 header: {}",
        got.len(),
        hex(got)
    )]
    Ended { got: Vec<u8> },
    #[error(
        "PROXY-2: no complete PROXY v2 header before the deadline ({} byte(s) read: {})",
        got.len(),
        hex(got)
    )]
    Timeout { got: Vec<u8> },
    #[error(
        "PROXY-2: the connection failed during the PROXY v2 header: {why} (read: {})",
        hex(got)
    )]
    Io { why: String, got: Vec<u8> },
    #[error(
        "PROXY-2: not the PROXY v2 signature 0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a{}: {}",
        text_hint(got),
        hex(got)
    )]
    Signature { got: Vec<u8> },
    #[error(
        "PROXY-2: version/command byte {byte:#04x}, expected 0x21 (version 2, command PROXY){}: {}",
        command_hint(*byte),
        hex(got)
    )]
    VersionCommand { byte: u8, got: Vec<u8> },
    #[error(
        "PROXY-2: address family byte {byte:#04x}, expected 0x11 (TCP over IPv4) or 0x21 (TCP over IPv6){}: {}",
        family_hint(*byte),
        hex(got)
    )]
    Family { byte: u8, got: Vec<u8> },
    #[error(
        "PROXY-2: address length {declared} for {family}, expected exactly {expected}{}: {}",
        if declared > expected { " (TLVs are not allowed)" } else { "" },
        hex(got)
    )]
    Length {
        family: &'static str,
        declared: usize,
        expected: usize,
        got: Vec<u8>,
    },
}

impl ProxyHeaderError {
    /// The bytes read before the fault.
    pub fn bytes(&self) -> &[u8] {
        match self {
            ProxyHeaderError::Ended { got }
            | ProxyHeaderError::Timeout { got }
            | ProxyHeaderError::Io { got, .. }
            | ProxyHeaderError::Signature { got }
            | ProxyHeaderError::VersionCommand { got, .. }
            | ProxyHeaderError::Family { got, .. }
            | ProxyHeaderError::Length { got, .. } => got,
        }
    }
}

/// Bytes as space-separated hex, at most [`SHOWN`] of them.
pub fn hex(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "no bytes".into();
    }
    let mut s: Vec<String> = bytes
        .iter()
        .take(SHOWN)
        .map(|b| format!("{b:02x}"))
        .collect();
    if bytes.len() > SHOWN {
        s.push("…".into());
    }
    s.join(" ")
}

fn text_hint(got: &[u8]) -> &'static str {
    if got.starts_with(b"PROXY") {
        " (this is a version 1 text header)"
    } else if got.starts_with(&crate::transport::INTRO[..got.len().min(4)]) && !got.is_empty() {
        " (the Noise intro came first: no header)"
    } else {
        ""
    }
}

fn command_hint(byte: u8) -> &'static str {
    match (byte >> 4, byte & 0x0f) {
        (2, 0) => " (command LOCAL)",
        (2, _) => " (an unknown command)",
        _ => " (not version 2)",
    }
}

fn family_hint(byte: u8) -> &'static str {
    match byte {
        0x00 => " (UNSPEC)",
        0x12 | 0x22 => " (UDP)",
        0x31 | 0x32 => " (UNIX)",
        _ => "",
    }
}

/// Reads one header from `r` by `deadline`: exactly 16 bytes plus the declared address
/// block, checking each part as soon as it arrives (a wrong first byte fails at once).
pub async fn read_proxy_header<R: AsyncRead + Unpin>(
    r: &mut R,
    deadline: Instant,
) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut got: Vec<u8> = Vec::with_capacity(FIXED + TCP6_LEN);
    fill(r, &mut got, FIXED, deadline, |seen| {
        let n = seen.len().min(SIGNATURE.len());
        if seen[..n] != SIGNATURE[..n] {
            return Err(ProxyHeaderError::Signature { got: seen.to_vec() });
        }
        if seen.len() > 12 && seen[12] != VERSION_COMMAND {
            return Err(ProxyHeaderError::VersionCommand {
                byte: seen[12],
                got: seen.to_vec(),
            });
        }
        if seen.len() > 13 && seen[13] != TCP4 && seen[13] != TCP6 {
            return Err(ProxyHeaderError::Family {
                byte: seen[13],
                got: seen.to_vec(),
            });
        }
        Ok(())
    })
    .await?;
    let (family, expected) = if got[13] == TCP4 {
        ("TCP over IPv4", TCP4_LEN)
    } else {
        ("TCP over IPv6", TCP6_LEN)
    };
    let declared = usize::from(u16::from_be_bytes([got[14], got[15]]));
    if declared != expected {
        return Err(ProxyHeaderError::Length {
            family,
            declared,
            expected,
            got,
        });
    }
    fill(r, &mut got, FIXED + expected, deadline, |_| Ok(())).await?;
    let block = &got[FIXED..];
    let (source, destination) = if expected == TCP4_LEN {
        let ip = |at: usize| {
            IpAddr::V4(Ipv4Addr::new(
                block[at],
                block[at + 1],
                block[at + 2],
                block[at + 3],
            ))
        };
        let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
        (
            SocketAddr::new(ip(0), port(8)),
            SocketAddr::new(ip(4), port(10)),
        )
    } else {
        let ip = |at: usize| {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&block[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(octets))
        };
        let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
        (
            SocketAddr::new(ip(0), port(32)),
            SocketAddr::new(ip(16), port(34)),
        )
    };
    Ok(ProxyHeader {
        source,
        destination,
        raw: got,
    })
}

/// Reads until `got` holds `want` bytes, never more, calling `check` on what is there after
/// each read.
async fn fill<R: AsyncRead + Unpin>(
    r: &mut R,
    got: &mut Vec<u8>,
    want: usize,
    deadline: Instant,
    check: impl Fn(&[u8]) -> Result<(), ProxyHeaderError>,
) -> Result<(), ProxyHeaderError> {
    let mut buf = [0u8; FIXED + TCP6_LEN];
    while got.len() < want {
        let room = want - got.len();
        let read = tokio::time::timeout_at(deadline, r.read(&mut buf[..room])).await;
        let n = match read {
            Err(_) => return Err(ProxyHeaderError::Timeout { got: got.clone() }),
            Ok(Err(e)) => {
                return Err(ProxyHeaderError::Io {
                    why: e.to_string(),
                    got: got.clone(),
                });
            }
            Ok(Ok(0)) => return Err(ProxyHeaderError::Ended { got: got.clone() }),
            Ok(Ok(n)) => n,
        };
        got.extend_from_slice(&buf[..n]);
        check(got)?;
    }
    Ok(())
}

/// The header PROXY-2 requires for a client connection from `source` to `destination` (both
/// IPv4 or both IPv6): for tests, and for a harness-side stand-in of a proxy.
pub fn encode(source: SocketAddr, destination: SocketAddr) -> Option<Vec<u8>> {
    let mut out = SIGNATURE.to_vec();
    out.push(VERSION_COMMAND);
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.push(TCP4);
            out.extend_from_slice(&(TCP4_LEN as u16).to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.push(TCP6);
            out.extend_from_slice(&(TCP6_LEN as u16).to_be_bytes());
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => return None,
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    Some(out)
}

/// Whether two addresses are the same endpoint, an IPv4-mapped IPv6 address counting as
/// its IPv4 address.
pub fn same_endpoint(a: SocketAddr, b: SocketAddr) -> bool {
    a.ip().to_canonical() == b.ip().to_canonical() && a.port() == b.port()
}

#[cfg(test)]
#[path = "proxy_header_tests.rs"]
mod tests;
