//! One OMEMO device on wacore-libsignal: keys, X3DH from bundles, envelopes out and in.

mod receive;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use chacha20::ChaCha20Rng;
use chacha20::rand_core::{Rng, SeedableRng};
use wacore_libsignal::protocol::{
    CiphertextMessage, GenericSignedPreKey, IdentityKey, IdentityKeyPair, KeyPair, PreKeyBundle,
    PrivateKey, ProtocolAddress, PublicKey, SignedPreKeyRecord, Timestamp, UsePQRatchet,
    message_encrypt, process_prekey_bundle,
};

use super::bundle::PUBLIC_KEY_LEN;
use super::payload::{self, KEY_LEN, KEY_MATERIAL_LEN};
use super::store::{Identities, PreKeys, Sessions, SignedPreKeys, poll_once};
use super::{
    Address, Bundle, E2eeError, Envelope, IV_LEN, KeyElement, MAX_KEYS, MAX_PAYLOAD_BYTES,
};

/// The signed prekey id every Device publishes (it never rotates within a run).
const SIGNED_PREKEY_ID: u32 = 1;

/// What a peer's identity key is, measured against what this device saw before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityStatus {
    /// First contact with this peer device.
    New,
    /// The identity seen before.
    Same,
    /// A different identity than before (E2EE-11): the device accepted it; the caller decides
    /// what to surface.
    Changed { previous: Vec<u8> },
}

/// A decrypted envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decrypted {
    /// The message text; `None` for a key transport element (no `<payload/>`, E2EE-26).
    pub text: Option<String>,
    /// The `<key/>` held a PreKeySignalMessage.
    pub prekey_message: bool,
    /// The one-time prekey this message consumed (now deleted), if any.
    pub consumed_prekey: Option<u32>,
    /// The sender device's identity key (33 bytes).
    pub identity: Vec<u8>,
    pub identity_status: IdentityStatus,
    /// The payload key K and IV (for E2EE-18's reuse checks).
    pub key: [u8; KEY_LEN],
    pub iv: Vec<u8>,
}

/// A Signal message decrypted to its bytes (the layer under [`Decrypted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignalDecrypted {
    pub plaintext: Vec<u8>,
    pub prekey_message: bool,
    pub consumed_prekey: Option<u32>,
    pub identity: Vec<u8>,
    pub identity_status: IdentityStatus,
}

/// One OMEMO device: identity, signed prekey, one-time prekeys, sessions, known identities.
///
/// Deterministic: every key and every later random value (base and ratchet keys, payload
/// keys, IVs) comes from a ChaCha20 generator seeded with the seed given to
/// [`Device::generate`], so the same calls give the same bytes on every run.
#[derive(Clone)]
pub struct Device {
    device_id: u32,
    identities: Identities,
    signed_prekey_id: u32,
    signed_prekeys: SignedPreKeys,
    signed_prekey_public: [u8; PUBLIC_KEY_LEN],
    signed_prekey_signature: Vec<u8>,
    prekeys: PreKeys,
    /// Ids of one-time prekeys a PreKeySignalMessage consumed (their private parts are gone).
    consumed: BTreeSet<u32>,
    next_prekey_id: u32,
    sessions: Sessions,
    rng: SeededRng,
}

/// The device's generator. ChaCha20Rng is not Clone (copying a generator repeats its
/// output, which is usually a bug); a cloned Device is a snapshot, where repeating is the
/// point, so the clone goes through the generator's serialized state.
struct SeededRng(ChaCha20Rng);

impl Clone for SeededRng {
    fn clone(&self) -> Self {
        SeededRng(ChaCha20Rng::deserialize_state(&self.0.serialize_state()))
    }
}

impl fmt::Debug for Device {
    // Private keys and session secrets stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("device_id", &self.device_id)
            .field("prekeys", &self.prekeys.0.len())
            .field("consumed", &self.consumed.len())
            .field("sessions", &self.sessions.0.len())
            .finish_non_exhaustive()
    }
}

/// The private key material of a device made elsewhere (e.g. by Signal's official library
/// in fixtures/e2ee/vectors.json), for [`Device::from_keys`]. Private keys are the 32-byte
/// Curve25519 scalars libsignal serializes.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceKeys {
    pub device_id: u32,
    pub registration_id: u32,
    pub identity_private: Vec<u8>,
    pub signed_prekey_id: u32,
    pub signed_prekey_private: Vec<u8>,
    pub signed_prekey_signature: Vec<u8>,
    /// One-time prekeys `(id, private key)`.
    pub prekeys: Vec<(u32, Vec<u8>)>,
}

impl fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceKeys")
            .field("device_id", &self.device_id)
            .field("prekeys", &self.prekeys.len())
            .finish_non_exhaustive()
    }
}

impl Device {
    /// A device holding `keys`; later randomness (ratchet keys, payload keys) comes from
    /// `seed`. The signature is kept as given, so a bad one shows in [`Bundle::verify`].
    pub fn from_keys(keys: &DeviceKeys, seed: [u8; 32]) -> Result<Device, E2eeError> {
        let private = |what: &str, bytes: &[u8]| {
            PrivateKey::deserialize(bytes)
                .map_err(|e| E2eeError::new("E2EE-3", format!("{what}: {e}")))
        };
        let pair = |what: &str, bytes: &[u8]| {
            KeyPair::try_from(private(what, bytes)?)
                .map_err(|e| E2eeError::new("E2EE-3", format!("{what}: {e}")))
        };
        let identity = IdentityKeyPair::from(pair("identity key", &keys.identity_private)?);
        let signed = pair("signed prekey", &keys.signed_prekey_private)?;
        let record = SignedPreKeyRecord::new(
            keys.signed_prekey_id.into(),
            Timestamp::from_epoch_millis(0),
            &signed,
            &keys.signed_prekey_signature,
        );
        let mut prekeys = PreKeys::default();
        for (id, bytes) in &keys.prekeys {
            prekeys
                .0
                .insert(*id, pair(&format!("one-time prekey {id}"), bytes)?);
        }
        let next_prekey_id = prekeys
            .0
            .keys()
            .next_back()
            .map_or(1, |last| last.saturating_add(1));
        Ok(Device {
            device_id: keys.device_id,
            identities: Identities {
                pair: identity,
                registration_id: keys.registration_id,
                known: HashMap::new(),
            },
            signed_prekey_id: keys.signed_prekey_id,
            signed_prekeys: SignedPreKeys([(keys.signed_prekey_id, record)].into()),
            signed_prekey_public: signed.public_key.serialize(),
            signed_prekey_signature: keys.signed_prekey_signature.clone(),
            prekeys,
            consumed: BTreeSet::new(),
            next_prekey_id,
            sessions: Sessions::default(),
            rng: SeededRng(ChaCha20Rng::from_seed(seed)),
        })
    }

    /// A device with a fresh identity, one signed prekey (id 1) and `prekey_count` one-time
    /// prekeys (ids 1..=prekey_count), all derived from `seed`.
    pub fn generate(device_id: u32, seed: [u8; 32], prekey_count: u32) -> Device {
        let mut rng = ChaCha20Rng::from_seed(seed);
        let pair = IdentityKeyPair::generate(&mut rng);
        // Signal's registration ids are 14-bit and nonzero; OMEMO does not carry them, but
        // PreKeySignalMessages do.
        let registration_id = rng.next_u32() % 16380 + 1;
        let signed = KeyPair::generate(&mut rng);
        let signed_prekey_public = signed.public_key.serialize();
        let signature = match pair
            .private_key()
            .calculate_signature(&signed_prekey_public, &mut rng)
        {
            Ok(signature) => signature.to_vec(),
            // Signing with a key generated just above cannot fail; an empty signature would
            // make the bundle fail verification loudly rather than panic here.
            Err(_) => Vec::new(),
        };
        let record = SignedPreKeyRecord::new(
            SIGNED_PREKEY_ID.into(),
            Timestamp::from_epoch_millis(0),
            &signed,
            &signature,
        );
        let mut device = Device {
            device_id,
            signed_prekey_id: SIGNED_PREKEY_ID,
            identities: Identities {
                pair,
                registration_id,
                known: HashMap::new(),
            },
            signed_prekeys: SignedPreKeys([(SIGNED_PREKEY_ID, record)].into()),
            signed_prekey_public,
            signed_prekey_signature: signature,
            prekeys: PreKeys::default(),
            consumed: BTreeSet::new(),
            next_prekey_id: 1,
            sessions: Sessions::default(),
            rng: SeededRng(rng),
        };
        device.replenish(prekey_count);
        device
    }

    pub fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The serialized identity key (33 bytes).
    pub fn identity_key(&self) -> Vec<u8> {
        self.identities.pair.identity_key().serialize().to_vec()
    }

    /// The Signal registration id (carried in PreKeySignalMessages, not in OMEMO elements).
    pub fn registration_id(&self) -> u32 {
        self.identities.registration_id
    }

    /// The bundle to publish: every one-time prekey not yet consumed, in id order.
    pub fn bundle(&self) -> Bundle {
        Bundle {
            signed_prekey_id: self.signed_prekey_id,
            signed_prekey: self.signed_prekey_public.to_vec(),
            signature: self.signed_prekey_signature.clone(),
            identity_key: self.identity_key(),
            prekeys: self
                .prekeys
                .0
                .iter()
                .map(|(id, pair)| (*id, pair.public_key.serialize().to_vec()))
                .collect(),
        }
    }

    /// Ids of the one-time prekeys held (not yet consumed).
    pub fn prekey_ids(&self) -> Vec<u32> {
        self.prekeys.0.keys().copied().collect()
    }

    /// Ids of the one-time prekeys consumed by PreKeySignalMessages.
    pub fn consumed_prekeys(&self) -> Vec<u32> {
        self.consumed.iter().copied().collect()
    }

    /// Generates `count` one-time prekeys with ids never used before (E2EE-6/E2EE-7) and
    /// returns their ids. Stops early only if the 32-bit id space runs out.
    pub fn replenish(&mut self, count: u32) -> Vec<u32> {
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = self.next_prekey_id;
            let Some(next) = id.checked_add(1) else {
                break;
            };
            self.next_prekey_id = next;
            self.prekeys
                .0
                .insert(id, KeyPair::generate(&mut self.rng.0));
            ids.push(id);
        }
        ids
    }

    /// True if a session with `peer` is set up.
    pub fn has_session(&self, peer: &Address) -> bool {
        self.sessions
            .0
            .get(&protocol_address(peer))
            .is_some_and(|record| record.session_state().is_some())
    }

    /// Drops the session with `peer` (its identity stays known).
    pub fn forget_session(&mut self, peer: &Address) {
        self.sessions.0.remove(&protocol_address(peer));
    }

    /// The identity key last seen for `peer`.
    pub fn known_identity(&self, peer: &Address) -> Option<Vec<u8>> {
        self.identities
            .known
            .get(&protocol_address(peer))
            .map(|k| k.serialize().to_vec())
    }

    /// Sets up a session with `peer` (X3DH) from its bundle as the gatekeeper hands it out,
    /// with at most one one-time prekey. The bundle is verified first (E2EE-10).
    pub fn start_session(
        &mut self,
        peer: &Address,
        bundle: &Bundle,
    ) -> Result<IdentityStatus, E2eeError> {
        bundle.verify().map_err(|e| {
            E2eeError::new(
                "E2EE-10",
                format!(
                    "refusing the bundle of {peer}: {} ({})",
                    e.message, e.requirement
                ),
            )
        })?;
        if bundle.prekeys.len() > 1 {
            return Err(E2eeError::new(
                "E2EE-29",
                format!(
                    "the bundle of {peer} carries {} one-time prekeys; one handed out carries at most one",
                    bundle.prekeys.len()
                ),
            ));
        }
        // verify() checked every key's length and type byte, so these conversions hold;
        // they are still mapped, not unwrapped.
        let key = |bytes: &[u8]| {
            PublicKey::deserialize(bytes)
                .map_err(|e| E2eeError::new("E2EE-10", format!("bundle of {peer}: {e}")))
        };
        let prekey = match bundle.prekeys.first() {
            Some((id, bytes)) => Some(((*id).into(), key(bytes)?)),
            None => None,
        };
        let signal_bundle = PreKeyBundle::new(
            0,
            peer.device.into(),
            prekey,
            bundle.signed_prekey_id.into(),
            key(&bundle.signed_prekey)?,
            bundle.signature.clone(),
            IdentityKey::new(key(&bundle.identity_key)?),
        )
        .map_err(|e| E2eeError::new("E2EE-10", format!("bundle of {peer}: {e}")))?;
        let address = protocol_address(peer);
        let before = self.identities.known.get(&address).copied();
        poll_once(process_prekey_bundle(
            &address,
            &mut self.sessions,
            &mut self.identities,
            &signal_bundle,
            &mut self.rng.0,
            UsePQRatchet::No,
        ))
        .map_err(|_| not_ready("E2EE-10"))?
        .map_err(|e| E2eeError::new("E2EE-10", format!("X3DH with {peer} failed: {e}")))?;
        Ok(identity_status(
            before,
            &IdentityKey::new(key(&bundle.identity_key)?),
        ))
    }

    /// Encrypts `plaintext` for every recipient (each needs a session) under a fresh payload
    /// key and a fresh 12-byte IV.
    pub fn encrypt(
        &mut self,
        recipients: &[Address],
        plaintext: &[u8],
    ) -> Result<Envelope, E2eeError> {
        let (key, iv) = self.fresh_key_and_iv();
        self.encrypt_with(recipients, plaintext, key, iv.to_vec())
    }

    /// [`Device::encrypt`] with a chosen key and IV: for mutants that reuse keys or IVs
    /// (E2EE-18) or send the legacy 16-byte IV.
    pub fn encrypt_with(
        &mut self,
        recipients: &[Address],
        plaintext: &[u8],
        key: [u8; KEY_LEN],
        iv: Vec<u8>,
    ) -> Result<Envelope, E2eeError> {
        if plaintext.len() > MAX_PAYLOAD_BYTES {
            return Err(E2eeError::new(
                "E2EE-13",
                format!(
                    "a plaintext of {} bytes exceeds the {MAX_PAYLOAD_BYTES}-byte payload bound",
                    plaintext.len()
                ),
            ));
        }
        self.seal_for(recipients, Some(plaintext), key, iv)
    }

    /// A key transport element (no `<payload/>`, E2EE-26): advances each recipient's session
    /// (a Signal message carrying a fresh K || T) without content.
    pub fn key_transport(&mut self, recipients: &[Address]) -> Result<Envelope, E2eeError> {
        let (key, iv) = self.fresh_key_and_iv();
        self.seal_for(recipients, None, key, iv.to_vec())
    }

    /// The Signal layer alone: encrypts `plaintext` with the session for `peer`, as the
    /// `<key/>` element it would travel in.
    pub fn signal_encrypt(
        &mut self,
        peer: &Address,
        plaintext: &[u8],
    ) -> Result<KeyElement, E2eeError> {
        if !self.has_session(peer) {
            return Err(no_session(peer));
        }
        self.signal_encrypt_checked(peer, plaintext)
    }

    /// [`Device::signal_encrypt`] once the session with `peer` is known to exist (an
    /// envelope checks every recipient before any session advances, so it does not look the
    /// session up twice). wacore-libsignal still refuses a missing session itself.
    fn signal_encrypt_checked(
        &mut self,
        peer: &Address,
        plaintext: &[u8],
    ) -> Result<KeyElement, E2eeError> {
        let address = protocol_address(peer);
        let message = poll_once(message_encrypt(
            plaintext,
            &address,
            &mut self.sessions,
            &mut self.identities,
        ))
        .map_err(|_| not_ready("E2EE-16"))?
        .map_err(|e| E2eeError::new("E2EE-16", format!("encrypting for {peer}: {e}")))?;
        Ok(KeyElement {
            rid: peer.device,
            prekey: matches!(message, CiphertextMessage::PreKeySignalMessage(_)),
            data: message.serialize().to_vec(),
        })
    }

    fn fresh_key_and_iv(&mut self) -> ([u8; KEY_LEN], [u8; IV_LEN]) {
        let mut key = [0u8; KEY_LEN];
        let mut iv = [0u8; IV_LEN];
        self.rng.0.fill_bytes(&mut key);
        self.rng.0.fill_bytes(&mut iv);
        (key, iv)
    }

    fn seal_for(
        &mut self,
        recipients: &[Address],
        plaintext: Option<&[u8]>,
        key: [u8; KEY_LEN],
        iv: Vec<u8>,
    ) -> Result<Envelope, E2eeError> {
        if recipients.is_empty() {
            return Err(E2eeError::new(
                "E2EE-13",
                "an envelope needs at least one recipient device",
            ));
        }
        if recipients.len() > MAX_KEYS {
            return Err(E2eeError::new(
                "E2EE-13",
                format!(
                    "{} recipients exceed the {MAX_KEYS}-key bound",
                    recipients.len()
                ),
            ));
        }
        for (i, peer) in recipients.iter().enumerate() {
            if recipients[..i].iter().any(|p| p.device == peer.device) {
                return Err(E2eeError::new(
                    "E2EE-14",
                    format!(
                        "device {} is listed twice among the recipients",
                        peer.device
                    ),
                ));
            }
            // Checked for all before any session advances, so a refusal changes nothing.
            if !self.has_session(peer) {
                return Err(no_session(peer));
            }
        }
        let (ciphertext, tag) = payload::seal(&key, &iv, plaintext.unwrap_or_default())
            .map_err(|e| E2eeError::new(e.requirement(), e.to_string()))?;
        let mut material = [0u8; KEY_MATERIAL_LEN];
        material[..KEY_LEN].copy_from_slice(&key);
        material[KEY_LEN..].copy_from_slice(&tag);
        let keys = recipients
            .iter()
            .map(|peer| self.signal_encrypt_checked(peer, &material))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Envelope {
            sid: self.device_id,
            keys,
            iv,
            payload: plaintext.map(|_| ciphertext),
        })
    }
}

fn protocol_address(peer: &Address) -> ProtocolAddress {
    ProtocolAddress::new(&peer.jid, peer.device.into())
}

fn identity_status(before: Option<IdentityKey>, now: &IdentityKey) -> IdentityStatus {
    match before {
        None => IdentityStatus::New,
        Some(previous) if previous == *now => IdentityStatus::Same,
        Some(previous) => IdentityStatus::Changed {
            previous: previous.serialize().to_vec(),
        },
    }
}

fn no_session(peer: &Address) -> E2eeError {
    E2eeError::new(
        "E2EE-9",
        format!("no session with {peer}: fetch its bundle and start one first"),
    )
}

fn not_ready(requirement: &'static str) -> E2eeError {
    E2eeError::new(
        requirement,
        "internal: a Signal store future was not ready on its first poll",
    )
}
