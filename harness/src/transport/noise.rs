//! Noise_XX_25519_ChaChaPoly_SHA256 handshakes (intro, three framed messages, key pinning).

use std::sync::{Arc, Mutex};

use super::{BoxStream, ByteStream};
use base64::Engine as _;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use tokio::io::AsyncReadExt;

use super::{
    Established, INTRO, MAX_FRAME, NOISE_TAG_LEN, NoiseState, ReaderInner, SecureReader,
    SecureWriter, TransportError, TransportKind, WriterInner, read_frame, write_frame, write_raw,
};

/// The Noise protocol name of the profile.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// A Curve25519 static keypair for Noise.
#[derive(Clone, PartialEq, Eq)]
pub struct NoiseKeypair {
    pub private: Vec<u8>,
    pub public: Vec<u8>,
}

impl std::fmt::Debug for NoiseKeypair {
    // The private key never goes into logs or transcripts.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseKeypair")
            .field(
                "public",
                &base64::engine::general_purpose::STANDARD.encode(&self.public),
            )
            .finish_non_exhaustive()
    }
}

impl NoiseKeypair {
    /// A fresh random keypair from the operating system's RNG.
    pub fn generate() -> Self {
        let mut private = [0u8; 32];
        let filled = DefaultResolver
            .resolve_rng()
            .map(|mut rng| rng.try_fill_bytes(&mut private));
        // snow's default resolver draws on getrandom; without an OS RNG nothing here can be
        // secure, so there is no fallback.
        assert!(
            matches!(filled, Some(Ok(()))),
            "no operating-system RNG available"
        );
        Self::from_private(&private)
    }

    /// A keypair derived deterministically from `seed` (ChaCha20 stream keyed by the seed), so
    /// that a seeded run reproduces the same static keys.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mut private = [0u8; 32];
        ChaCha20Rng::from_seed(seed).fill_bytes(&mut private);
        Self::from_private(&private)
    }

    /// The keypair whose private key is `private` (32 bytes; shorter input is zero-padded).
    pub fn from_private(private: &[u8]) -> Self {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            .expect("the default snow resolver always provides Curve25519");
        dh.set(private);
        NoiseKeypair {
            private: dh.privkey().to_vec(),
            public: dh.pubkey().to_vec(),
        }
    }

    /// The public key in standard base64, as used in iut.toml and the driver protocol.
    pub fn public_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.public)
    }
}

fn noise_err(e: snow::Error) -> TransportError {
    TransportError::Noise(e.to_string())
}

fn builder<'a>() -> Result<snow::Builder<'a>, TransportError> {
    let params = NOISE_PARAMS.parse().map_err(noise_err)?;
    snow::Builder::new(params)
        .prologue(&INTRO)
        .map_err(noise_err)
}

/// Reads the 4-byte intro, failing as soon as a byte differs (so garbage is refused without
/// waiting for all four bytes).
async fn read_intro(tcp: &mut BoxStream) -> Result<(), TransportError> {
    let mut got = Vec::with_capacity(INTRO.len());
    let mut byte = [0u8; 1];
    while got.len() < INTRO.len() {
        let n = tcp.read(&mut byte).await?;
        if n == 0 {
            if got.is_empty() {
                return Err(TransportError::Closed);
            }
            return Err(TransportError::BadIntro { got });
        }
        got.push(byte[0]);
        if got[got.len() - 1] != INTRO[got.len() - 1] {
            return Err(TransportError::BadIntro { got });
        }
    }
    Ok(())
}

fn write_handshake(hs: &mut snow::HandshakeState) -> Result<Vec<u8>, TransportError> {
    let mut out = vec![0u8; MAX_FRAME];
    let n = hs.write_message(&[], &mut out).map_err(noise_err)?;
    out.truncate(n);
    Ok(out)
}

/// Lengths of handshake messages 1, 2 and 3 with empty payloads (SPEC.md §7.1, STREAM-7).
pub const HANDSHAKE_LENGTHS: [usize; 3] = [32, 96, 64];

/// Reads handshake message `message` (1-based), refusing any length but the fixed one: snow
/// alone would take extra bytes of message 1 as a cleartext payload.
async fn read_handshake_frame(tcp: &mut BoxStream, message: u8) -> Result<Vec<u8>, TransportError> {
    let frame = read_frame(tcp).await?;
    let expected = HANDSHAKE_LENGTHS[usize::from(message - 1)];
    if frame.len() != expected {
        return Err(TransportError::HandshakeLength {
            message,
            got: frame.len(),
            expected,
        });
    }
    Ok(frame)
}

fn read_handshake(hs: &mut snow::HandshakeState, msg: &[u8]) -> Result<(), TransportError> {
    let mut payload = vec![0u8; MAX_FRAME];
    hs.read_message(msg, &mut payload).map_err(noise_err)?;
    Ok(())
}

/// Server (responder) side: intro, `<- e`, `-> e, ee, s, es`, `<- s, se`.
/// `peer_static` of the result is the client's static key.
pub async fn noise_accept(
    tcp: impl ByteStream,
    server: &NoiseKeypair,
) -> Result<Established, TransportError> {
    let mut tcp: BoxStream = Box::new(tcp);
    read_intro(&mut tcp).await?;
    let mut hs = builder()?
        .local_private_key(&server.private)
        .map_err(noise_err)?
        .build_responder()
        .map_err(noise_err)?;
    let msg1 = read_handshake_frame(&mut tcp, 1).await?;
    read_handshake(&mut hs, &msg1)?;
    let msg2 = write_handshake(&mut hs)?;
    write_frame(&mut tcp, &msg2).await?;
    let msg3 = read_handshake_frame(&mut tcp, 3).await?;
    read_handshake(&mut hs, &msg3)?;
    finish(tcp, hs)
}

/// Client (initiator) side. After message 2 the server's static key must equal
/// `pinned_server_key` (STREAM-6); on mismatch nothing more is sent (no message 3, no stream
/// data) and the connection is dropped.
pub async fn noise_connect(
    tcp: impl ByteStream,
    client: &NoiseKeypair,
    pinned_server_key: &[u8],
) -> Result<Established, TransportError> {
    noise_connect_verified(tcp, client, |got| {
        if got == pinned_server_key {
            return Ok(());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        Err(TransportError::ServerKeyMismatch {
            expected: b64.encode(pinned_server_key),
            got: b64.encode(got),
        })
    })
    .await
}

/// Client side with the server-key decision left to the caller: `verify` sees the responder's
/// static key after message 2 and, by returning an error, aborts before message 3. This is how
/// a proxy pins a key of its own; the profile's rule is [`noise_connect`].
pub async fn noise_connect_verified(
    tcp: impl ByteStream,
    client: &NoiseKeypair,
    verify: impl FnOnce(&[u8]) -> Result<(), TransportError>,
) -> Result<Established, TransportError> {
    let mut tcp: BoxStream = Box::new(tcp);
    let mut hs = builder()?
        .local_private_key(&client.private)
        .map_err(noise_err)?
        .build_initiator()
        .map_err(noise_err)?;
    write_raw(&mut tcp, &INTRO).await?;
    let msg1 = write_handshake(&mut hs)?;
    write_frame(&mut tcp, &msg1).await?;
    let msg2 = read_handshake_frame(&mut tcp, 2).await?;
    read_handshake(&mut hs, &msg2)?;
    verify(hs.get_remote_static().unwrap_or_default())?;
    let msg3 = write_handshake(&mut hs)?;
    write_frame(&mut tcp, &msg3).await?;
    finish(tcp, hs)
}

fn finish(tcp: BoxStream, hs: snow::HandshakeState) -> Result<Established, TransportError> {
    let peer_static = hs.get_remote_static().map(<[u8]>::to_vec);
    let state: NoiseState = Arc::new(Mutex::new(hs.into_transport_mode().map_err(noise_err)?));
    let (r, w) = tokio::io::split(tcp);
    Ok(Established {
        reader: SecureReader {
            inner: ReaderInner::Noise {
                tcp: r,
                state: Arc::clone(&state),
            },
            buf: Vec::new(),
        },
        writer: SecureWriter {
            inner: WriterInner::Noise { tcp: w, state },
        },
        peer_static,
        kind: TransportKind::Noise,
        alpn: None,
        sni: None,
    })
}

/// Decrypts one transport frame. The lock is held only for the decryption itself.
pub(super) fn decrypt(
    state: &NoiseState,
    frame: &[u8],
    buf: &mut Vec<u8>,
) -> Result<Vec<u8>, TransportError> {
    if frame.len() < NOISE_TAG_LEN {
        return Err(TransportError::Noise(format!(
            "transport frame of {} bytes is shorter than the {NOISE_TAG_LEN}-byte tag",
            frame.len()
        )));
    }
    buf.resize(frame.len(), 0);
    let n = {
        let mut st = state
            .lock()
            .map_err(|_| TransportError::Noise("noise state lock poisoned".into()))?;
        st.read_message(frame, buf).map_err(noise_err)?
    };
    Ok(buf[..n].to_vec())
}

/// Encrypts one chunk of at most [`super::MAX_NOISE_PLAINTEXT`] bytes into a frame payload.
pub(super) fn encrypt(state: &NoiseState, chunk: &[u8]) -> Result<Vec<u8>, TransportError> {
    let mut out = vec![0u8; chunk.len() + NOISE_TAG_LEN];
    let n = {
        let mut st = state
            .lock()
            .map_err(|_| TransportError::Noise("noise state lock poisoned".into()))?;
        st.write_message(chunk, &mut out).map_err(noise_err)?
    };
    out.truncate(n);
    Ok(out)
}
