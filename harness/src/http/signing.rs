//! The signature on the gatekeeper's requests to a provider server (SPEC §12.1): three
//! headers, an Ed25519 signature over six lines naming the method, the path, the time, a
//! nonce and the body's SHA-256.
//!
//! The harness signs when it plays the gatekeeper (calling the provider under test) and
//! verifies when it plays the provider server (called by the gatekeeper under test), so both
//! halves live here and share one definition of the signed bytes. Verification rebuilds
//! those bytes from the request as received; a signature over anything the sender merely
//! claims would prove nothing.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::idproof::{decode_canonical, decode_nonce};

/// First signed line: keeps these signatures apart from anything else the key might sign.
pub const LABEL: &str = "gatecheck-http-v1";
/// Largest difference between the request's timestamp and the verifier's clock (AUTH-4).
pub const WINDOW_S: u64 = 60;
/// How long an accepted nonce is refused again (AUTH-5). Twice [`WINDOW_S`], so a request
/// replayed after its nonce is forgotten is always stale.
pub const REPLAY_S: u64 = 120;

/// Header names in lowercase, as the `header` lookup of [`verify`] receives them.
pub const H_TIMESTAMP: &str = "x-gatekeeper-timestamp";
pub const H_NONCE: &str = "x-gatekeeper-nonce";
pub const H_SIGNATURE: &str = "x-gatekeeper-signature";

/// The bytes the signature covers: six lines joined by LF, no trailing LF.
///
/// `path` is the absolute path of the request target exactly as sent, including any path
/// prefix of the provider's base URL (`/api/gatecheck/v1/push` under
/// `https://host/api`); a query, which the spec leaves out, is cut off here so callers
/// cannot include it by mistake. `method` is used as given (SPEC: upper case).
pub fn signed_bytes(
    method: &str,
    path: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let digest = hex(&Sha256::digest(body));
    [LABEL, method, path, timestamp, nonce, &digest]
        .join("\n")
        .into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The three header values of a signed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
}

impl SignatureHeaders {
    /// (name, value) pairs to add to the request, names in their canonical case.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            ("X-Gatekeeper-Timestamp", self.timestamp.clone()),
            ("X-Gatekeeper-Nonce", self.nonce.clone()),
            ("X-Gatekeeper-Signature", self.signature.clone()),
        ]
    }
}

/// Signs a request as the gatekeeper does (AUTH-2). The caller supplies time and nonce
/// (fresh from [`crate::idproof::random_nonce`] in real use), which keeps this function
/// deterministic for test vectors and lets negative tests sign stale or reused values.
pub fn sign(
    key: &SigningKey,
    method: &str,
    path: &str,
    timestamp: u64,
    nonce: [u8; 16],
    body: &[u8],
) -> SignatureHeaders {
    let timestamp = timestamp.to_string();
    let nonce = URL_SAFE_NO_PAD.encode(nonce);
    let signature = key.sign(&signed_bytes(method, path, &timestamp, &nonce, body));
    SignatureHeaders {
        timestamp,
        nonce,
        signature: STANDARD.encode(signature.to_bytes()),
    }
}

/// Why a signed request was refused. Every variant is answered `401 Unauthorized`
/// (AUTH-3/4/5); the variants exist so the harness can say which rule a request broke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reject {
    /// A header (lowercase name) is absent.
    Missing(&'static str),
    /// A header (lowercase name) is present but not in its only allowed form.
    Malformed(&'static str, String),
    /// The timestamp is more than [`WINDOW_S`] away from the verifier's clock.
    Stale { timestamp: u64, now: u64 },
    /// The signature does not verify over the rebuilt bytes.
    BadSignature,
    /// The nonce was accepted within the last [`REPLAY_S`] seconds.
    Replayed,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reject::Missing(h) => write!(f, "header {h} is missing"),
            Reject::Malformed(h, why) => write!(f, "header {h} is malformed: {why}"),
            Reject::Stale { timestamp, now } => write!(
                f,
                "timestamp {timestamp} is more than {WINDOW_S} s from now ({now})"
            ),
            Reject::BadSignature => f.write_str("the signature does not verify"),
            Reject::Replayed => {
                write!(f, "the nonce was already accepted in the last {REPLAY_S} s")
            }
        }
    }
}

impl std::error::Error for Reject {}

/// The nonces of accepted requests with the time each was accepted.
///
/// Entries older than [`REPLAY_S`] are dropped at every [`verify`]; a replay of one of them
/// carries a timestamp at least 60 s old by then and is refused as stale. So the cache holds
/// at most the requests of the last two minutes.
#[derive(Debug, Clone, Default)]
pub struct ReplayCache {
    accepted: HashMap<String, u64>,
    /// The same entries ordered by acceptance time, to drop the oldest without a scan.
    by_time: BTreeSet<(u64, String)>,
}

impl ReplayCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `nonce` was accepted at most [`REPLAY_S`] seconds before `now` (or, should
    /// the clock have gone back, after it).
    pub fn seen(&self, nonce: &str, now: u64) -> bool {
        self.accepted
            .get(nonce)
            .is_some_and(|&at| at.saturating_add(REPLAY_S) >= now)
    }

    /// Drops entries accepted more than [`REPLAY_S`] seconds before `now`.
    pub fn prune(&mut self, now: u64) {
        let cutoff = now.saturating_sub(REPLAY_S);
        while let Some((at, _)) = self.by_time.first() {
            if *at >= cutoff {
                break;
            }
            if let Some((_, nonce)) = self.by_time.pop_first() {
                self.accepted.remove(&nonce);
            }
        }
    }

    fn insert(&mut self, nonce: &str, now: u64) {
        if let Some(old) = self.accepted.insert(nonce.to_owned(), now) {
            self.by_time.remove(&(old, nonce.to_owned()));
        }
        self.by_time.insert((now, nonce.to_owned()));
    }

    /// How many nonces are remembered.
    pub fn len(&self) -> usize {
        self.accepted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accepted.is_empty()
    }
}

/// Verifies a signed request as a provider server must (AUTH-3/4/5).
///
/// The order is fixed so that every refusal has one reason: each header present (timestamp,
/// nonce, signature), then each one's syntax (timestamp: decimal digits, no sign, no leading
/// zero; nonce: unpadded base64url of 16 bytes; signature: canonical base64 of 64 bytes),
/// then freshness (`|now - timestamp| <= 60`), then `verify_strict` over the bytes rebuilt
/// from `method`, `path`, the header values and `body`, then replay. Only a request that
/// passes everything uses up its nonce, so a forged or stale request cannot block the real
/// one that carries the same nonce.
///
/// `header` looks a header up by lowercase name and returns its single value; refusing
/// duplicated headers is the caller's job, since only it sees the raw header list.
pub fn verify(
    key: &VerifyingKey,
    method: &str,
    path: &str,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now: u64,
    cache: &mut ReplayCache,
) -> Result<(), Reject> {
    let timestamp = header(H_TIMESTAMP).ok_or(Reject::Missing(H_TIMESTAMP))?;
    let nonce = header(H_NONCE).ok_or(Reject::Missing(H_NONCE))?;
    let signature = header(H_SIGNATURE).ok_or(Reject::Missing(H_SIGNATURE))?;

    let ts = parse_timestamp(&timestamp).map_err(|why| Reject::Malformed(H_TIMESTAMP, why))?;
    decode_nonce(&nonce).map_err(|why| Reject::Malformed(H_NONCE, format!("the value {why}")))?;
    let signature = decode_canonical::<64>(&signature)
        .map_err(|why| Reject::Malformed(H_SIGNATURE, format!("the value {why}")))?;

    if ts.abs_diff(now) > WINDOW_S {
        return Err(Reject::Stale { timestamp: ts, now });
    }
    let message = signed_bytes(method, path, &timestamp, &nonce, body);
    key.verify_strict(&message, &Signature::from_bytes(&signature))
        .map_err(|_| Reject::BadSignature)?;
    cache.prune(now);
    if cache.seen(&nonce, now) {
        return Err(Reject::Replayed);
    }
    cache.insert(&nonce, now);
    Ok(())
}

/// Unix seconds in their one decimal spelling: digits only, no sign, no leading zero.
fn parse_timestamp(s: &str) -> Result<u64, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?} is not decimal digits"));
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err(format!("{s:?} has a leading zero"));
    }
    s.parse()
        .map_err(|_| format!("{s:?} is too large for Unix seconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600;
    const PATH: &str = "/gatecheck/v1/auth";
    const BODY: &[u8] = b"{\"v\":1}";

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[3; 32])
    }

    fn headers(h: &SignatureHeaders) -> impl Fn(&str) -> Option<String> + '_ {
        move |name: &str| {
            h.pairs()
                .into_iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        }
    }

    fn check(h: &SignatureHeaders, now: u64, cache: &mut ReplayCache) -> Result<(), Reject> {
        verify(
            &key().verifying_key(),
            "POST",
            PATH,
            &headers(h),
            BODY,
            now,
            cache,
        )
    }

    fn signed(ts: u64, nonce: u8) -> SignatureHeaders {
        sign(&key(), "POST", PATH, ts, [nonce; 16], BODY)
    }

    #[test]
    fn signed_bytes_layout() {
        let b = signed_bytes("POST", "/p?q=1", "12", "AAAA", b"");
        assert_eq!(
            String::from_utf8(b).unwrap(),
            "gatecheck-http-v1\nPOST\n/p\n12\nAAAA\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn accepts_and_remembers() {
        let h = signed(NOW, 1);
        assert_eq!(h.timestamp, NOW.to_string());
        assert_eq!(h.nonce.len(), 22);
        assert_eq!(h.signature.len(), 88);
        let names: Vec<&str> = h.pairs().iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "X-Gatekeeper-Timestamp",
                "X-Gatekeeper-Nonce",
                "X-Gatekeeper-Signature"
            ]
        );
        let mut cache = ReplayCache::new();
        check(&h, NOW, &mut cache).unwrap();
        assert_eq!(cache.len(), 1);
        // The edges of the window.
        check(&signed(NOW - 60, 2), NOW, &mut cache).unwrap();
        check(&signed(NOW + 60, 3), NOW, &mut cache).unwrap();
    }

    #[test]
    fn every_reject_is_reachable() {
        let h = signed(NOW, 1);
        let mut cache = ReplayCache::new();
        // Missing, in header order.
        for (drop, name) in [(0, H_TIMESTAMP), (1, H_NONCE), (2, H_SIGNATURE)] {
            let pairs = h.pairs();
            let lookup = |n: &str| {
                pairs
                    .iter()
                    .enumerate()
                    .find(|(i, (k, _))| *i != drop && k.eq_ignore_ascii_case(n))
                    .map(|(_, (_, v))| v.clone())
            };
            let r = verify(
                &key().verifying_key(),
                "POST",
                PATH,
                &lookup,
                BODY,
                NOW,
                &mut cache,
            );
            assert_eq!(r, Err(Reject::Missing(name)));
        }
        // Malformed.
        let malformed = |f: &dyn Fn(&mut SignatureHeaders), name: &str| {
            let mut bad = h.clone();
            f(&mut bad);
            match check(&bad, NOW, &mut ReplayCache::new()) {
                Err(Reject::Malformed(n, why)) => {
                    assert_eq!(n, name, "{why}");
                    why
                }
                other => panic!("{other:?}"),
            }
        };
        for ts in [
            "",
            "+1767225600",
            "-1",
            "01767225600",
            "1767225600.0",
            " 1767225600",
            "99999999999999999999",
        ] {
            malformed(&|b| b.timestamp = ts.into(), H_TIMESTAMP);
        }
        malformed(&|b| b.nonce = format!("{}==", b.nonce), H_NONCE);
        malformed(&|b| b.nonce = "AQEBAQEBAQEBAQEBAQEB".into(), H_NONCE);
        malformed(&|b| b.nonce = b.nonce.replace('B', "+"), H_NONCE);
        malformed(
            &|b| b.signature = b.signature.trim_end_matches('=').into(),
            H_SIGNATURE,
        );
        malformed(
            &|b| b.signature = URL_SAFE_NO_PAD.encode([0xfb; 64]),
            H_SIGNATURE,
        );
        // "0" is the one spelling of zero, and is merely stale.
        let mut zero = h.clone();
        zero.timestamp = "0".into();
        assert_eq!(
            check(&zero, NOW, &mut cache),
            Err(Reject::Stale {
                timestamp: 0,
                now: NOW
            })
        );
        // Stale either way.
        assert!(matches!(
            check(&signed(NOW - 61, 4), NOW, &mut cache),
            Err(Reject::Stale { .. })
        ));
        assert!(matches!(
            check(&signed(NOW + 61, 4), NOW, &mut cache),
            Err(Reject::Stale { .. })
        ));
        // Bad signature: another body, path, method, key, or a flipped signature bit.
        let vk = key().verifying_key();
        let look = headers(&h);
        assert_eq!(
            verify(&vk, "POST", PATH, &look, b"{\"v\":2}", NOW, &mut cache),
            Err(Reject::BadSignature)
        );
        assert_eq!(
            verify(
                &vk,
                "POST",
                "/api/gatecheck/v1/auth",
                &look,
                BODY,
                NOW,
                &mut cache
            ),
            Err(Reject::BadSignature)
        );
        assert_eq!(
            verify(&vk, "PUT", PATH, &look, BODY, NOW, &mut cache),
            Err(Reject::BadSignature)
        );
        let other = SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert_eq!(
            verify(&other, "POST", PATH, &look, BODY, NOW, &mut cache),
            Err(Reject::BadSignature)
        );
        let mut flipped = h.clone();
        let mut sig = STANDARD.decode(&h.signature).unwrap();
        sig[10] ^= 0x20;
        flipped.signature = STANDARD.encode(&sig);
        assert_eq!(check(&flipped, NOW, &mut cache), Err(Reject::BadSignature));
        // None of the refusals used the nonce up.
        assert!(cache.is_empty());
        // Replayed.
        check(&h, NOW, &mut cache).unwrap();
        assert_eq!(check(&h, NOW + 1, &mut cache), Err(Reject::Replayed));
        for r in [
            Reject::Missing(H_NONCE),
            Reject::Malformed(H_NONCE, "x".into()),
            Reject::Stale {
                timestamp: 1,
                now: 100,
            },
            Reject::BadSignature,
            Reject::Replayed,
        ] {
            assert!(!r.to_string().is_empty());
        }
    }

    #[test]
    fn unreduced_s_is_refused() {
        let h = signed(NOW, 1);
        let mut sig = STANDARD.decode(&h.signature).unwrap();
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let mut carry = 0u16;
        for (s, l) in sig[32..].iter_mut().zip(L) {
            let sum = *s as u16 + l as u16 + carry;
            *s = sum as u8;
            carry = sum >> 8;
        }
        let mut bad = h;
        bad.signature = STANDARD.encode(&sig);
        assert_eq!(
            check(&bad, NOW, &mut ReplayCache::new()),
            Err(Reject::BadSignature)
        );
    }

    #[test]
    fn replay_cache_window_and_bound() {
        let mut cache = ReplayCache::new();
        let h = signed(NOW, 1);
        check(&h, NOW, &mut cache).unwrap();
        assert!(cache.seen(&h.nonce, NOW + REPLAY_S));
        assert!(!cache.seen(&h.nonce, NOW + REPLAY_S + 1));
        // One request a second for five minutes: only the last two minutes stay.
        let mut peak = 0;
        for i in 0..300u64 {
            let mut n = [0u8; 16];
            n[..8].copy_from_slice(&i.to_be_bytes());
            let h = sign(&key(), "POST", PATH, NOW + i, n, BODY);
            check(&h, NOW + i, &mut cache).unwrap();
            peak = peak.max(cache.len());
        }
        // The window's 121 seconds, plus the first request, accepted in the same second as the
        // loop's first.
        assert!(peak <= (REPLAY_S + 2) as usize, "peak {peak}");
    }
}
