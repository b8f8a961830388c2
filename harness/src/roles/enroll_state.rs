//! What the gatekeeper remembers of enrollments (SPEC.md §10): accounts by identifier, devices
//! with their keys and latest credential, and the proof registry and nonce memory (§11).
//!
//! It is one value behind one lock, shared by the enrollment API and (later) the chat server,
//! because the two must agree: a credential replaced by a re-enrollment must stop working at
//! SASL (ENROLL-15), and a proof nonce accepted at enrollment must be refused when it comes
//! back at login (IDPROOF-10/12).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use tokio::time::Instant;

use crate::idproof::{NonceCache, Registry};

/// Random bytes in a credential: 192 bits, above ENROLL-8's 128.
pub const CREDENTIAL_BYTES: usize = 24;
/// Characters in an account localpart (`[a-z0-9]`).
pub const ACCOUNT_CHARS: usize = 8;

/// The state both servers share.
pub type SharedEnrollState = Arc<Mutex<EnrollState>>;

/// Locks the shared state. A panic while it was held (a harness bug) leaves the maps
/// consistent, since every mutation is a whole insert or replace, so the poison is ignored
/// rather than spreading the panic to every later request.
pub fn lock(state: &SharedEnrollState) -> MutexGuard<'_, EnrollState> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A signed prekey as enrolled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPrekey {
    pub id: u32,
    /// The serialized key: 0x05 and 32 bytes.
    pub public: [u8; 33],
    /// XEdDSA signature by the identity key over `public`.
    pub signature: [u8; 64],
}

/// The keys an enrollment brings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceKeys {
    pub identity_key: [u8; 33],
    pub signed_prekey: SignedPrekey,
    pub one_time_prekeys: Vec<(u32, [u8; 33])>,
}

/// One enrolled device of one identifier.
#[derive(Clone)]
pub struct EnrolledDevice {
    pub account: String,
    /// The latest credential; earlier ones are forgotten, hence refused (ENROLL-15).
    pub credential: String,
    pub keys: DeviceKeys,
    pub enrolled_at: Instant,
    /// Counts enrollments across the whole state: a later enrollment has a larger number.
    pub generation: u64,
}

impl fmt::Debug for EnrolledDevice {
    // The credential is a password (ENROLL-10); it stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnrolledDevice")
            .field("account", &self.account)
            .field("one_time_prekeys", &self.keys.one_time_prekeys.len())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Which device a login is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRef {
    pub identifier: String,
    pub account: String,
    pub device_id: u32,
    pub generation: u64,
}

/// The outcome of [`EnrollState::enroll`].
#[derive(Clone, PartialEq, Eq)]
pub enum Enrollment {
    /// A new device (201), with its credential.
    New(DeviceRef, String),
    /// A re-enrollment of the same identifier and device id (200), with the new credential.
    Renewed(DeviceRef, String),
    /// The device id belongs to another identifier (409 `device_id_conflict`).
    Conflict { owner: String },
}

impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Enrollment::New(d, _) => f.debug_tuple("New").field(d).finish_non_exhaustive(),
            Enrollment::Renewed(d, _) => f.debug_tuple("Renewed").field(d).finish_non_exhaustive(),
            Enrollment::Conflict { owner } => {
                f.debug_struct("Conflict").field("owner", owner).finish()
            }
        }
    }
}

/// Accounts, devices, and the proof checker's memory.
#[derive(Debug, Default)]
pub struct EnrollState {
    /// identifier → account localpart (one account per identifier).
    accounts: HashMap<String, String>,
    /// account localpart → identifier.
    identifiers: HashMap<String, String>,
    /// (identifier, device id) → device.
    devices: HashMap<(String, u32), EnrolledDevice>,
    /// device id → identifier that enrolled it (device ids are unique across identifiers).
    owners: HashMap<u32, String>,
    generation: u64,
    /// Provider keys proofs are checked with (§11.1).
    pub registry: Registry,
    /// Accepted proof nonces, shared with login so a nonce is single-use across both.
    pub nonces: NonceCache,
}

impl EnrollState {
    pub fn new(registry: Registry) -> EnrollState {
        EnrollState {
            registry,
            ..EnrollState::default()
        }
    }

    /// Wraps the state for sharing between servers.
    pub fn shared(self) -> SharedEnrollState {
        Arc::new(Mutex::new(self))
    }

    pub fn account_of(&self, identifier: &str) -> Option<&str> {
        self.accounts.get(identifier).map(String::as_str)
    }

    pub fn identifier_of(&self, account: &str) -> Option<&str> {
        self.identifiers.get(account).map(String::as_str)
    }

    pub fn device(&self, identifier: &str, device_id: u32) -> Option<&EnrolledDevice> {
        self.devices.get(&(identifier.to_owned(), device_id))
    }

    /// Device ids enrolled for `identifier`, ascending.
    pub fn device_ids(&self, identifier: &str) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .devices
            .keys()
            .filter(|(i, _)| i == identifier)
            .map(|(_, d)| *d)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The identifier a device id is enrolled for.
    pub fn owner_of(&self, device_id: u32) -> Option<&str> {
        self.owners.get(&device_id).map(String::as_str)
    }

    /// How many devices are enrolled.
    pub fn device_count(&self) -> usize {
        self.devices.len()
    }

    /// Enrolls (or re-enrolls) a device whose request passed every check. A re-enrollment
    /// replaces keys and credential; a device id enrolled for another identifier is a
    /// conflict and changes nothing. Fails only when the system has no randomness.
    pub fn enroll(
        &mut self,
        identifier: &str,
        device_id: u32,
        keys: DeviceKeys,
    ) -> Result<Enrollment, String> {
        if let Some(owner) = self.owners.get(&device_id)
            && owner != identifier
        {
            return Ok(Enrollment::Conflict {
                owner: owner.clone(),
            });
        }
        let account = match self.accounts.get(identifier) {
            Some(a) => a.clone(),
            None => {
                let a = self.fresh_account()?;
                self.accounts.insert(identifier.to_owned(), a.clone());
                self.identifiers.insert(a.clone(), identifier.to_owned());
                a
            }
        };
        let credential = random_credential()?;
        self.generation += 1;
        let device = EnrolledDevice {
            account: account.clone(),
            credential: credential.clone(),
            keys,
            enrolled_at: Instant::now(),
            generation: self.generation,
        };
        let previous = self
            .devices
            .insert((identifier.to_owned(), device_id), device);
        self.owners.insert(device_id, identifier.to_owned());
        let r = DeviceRef {
            identifier: identifier.to_owned(),
            account,
            device_id,
            generation: self.generation,
        };
        Ok(match previous {
            Some(_) => Enrollment::Renewed(r, credential),
            None => Enrollment::New(r, credential),
        })
    }

    /// The device whose latest credential is `credential` on `account`, if any: what SASL
    /// PLAIN accepts. A credential replaced by a re-enrollment matches nothing (ENROLL-15).
    pub fn check_login(&self, account: &str, credential: &str) -> Option<DeviceRef> {
        let identifier = self.identifiers.get(account)?;
        // Every device is compared, each in constant time, so the answer's timing says
        // nothing about how close a guess came.
        let mut found = None;
        for ((id, device_id), d) in &self.devices {
            if id == identifier && constant_time_eq(d.credential.as_bytes(), credential.as_bytes())
            {
                found = Some(DeviceRef {
                    identifier: id.clone(),
                    account: d.account.clone(),
                    device_id: *device_id,
                    generation: d.generation,
                });
            }
        }
        found
    }

    fn fresh_account(&self) -> Result<String, String> {
        // 36^8 names: a collision is rare enough that a few draws always suffice.
        for _ in 0..16 {
            let a = random_localpart()?;
            if !self.identifiers.contains_key(&a) {
                return Ok(a);
            }
        }
        Err("no free account name after 16 draws".into())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn os_bytes(buf: &mut [u8]) -> Result<(), String> {
    OsRng
        .try_fill_bytes(buf)
        .map_err(|e| format!("the operating system gave no randomness: {e}"))
}

/// 8 characters from `[a-z0-9]`, uniformly (bytes of 252 and above are drawn again).
fn random_localpart() -> Result<String, String> {
    let mut out = String::with_capacity(ACCOUNT_CHARS);
    let mut buf = [0u8; 32];
    while out.len() < ACCOUNT_CHARS {
        os_bytes(&mut buf)?;
        for b in buf {
            if out.len() < ACCOUNT_CHARS && b < 252 {
                out.push(char::from_digit(u32::from(b % 36), 36).unwrap_or('0'));
            }
        }
    }
    Ok(out)
}

/// A fresh credential: 24 random bytes, base64url without padding.
fn random_credential() -> Result<String, String> {
    let mut bytes = [0u8; CREDENTIAL_BYTES];
    os_bytes(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}
