//! The fixed test identities of the gatekeeper's users (fixtures/keys/identities.toml),
//! embedded at compile time so an installed binary and every rerun use the same keys.

use std::sync::OnceLock;

use serde::Deserialize;

use super::{Device, MAX_DEVICE_ID};

const IDENTITIES_TOML: &str = include_str!("../../../fixtures/keys/identities.toml");

/// One device of one test user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestIdentity {
    pub name: String,
    /// 0 for the user's first device, 1 for the second, ...
    pub index: u32,
    pub device_id: u32,
    pub seed: [u8; 32],
}

impl TestIdentity {
    /// The device these keys belong to, with `prekey_count` one-time prekeys.
    pub fn device(&self, prekey_count: u32) -> Device {
        Device::generate(self.device_id, self.seed, prekey_count)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    identity: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    index: u32,
    device_id: u32,
    seed: String,
}

/// Every test identity, in file order. The file is part of the build, so a defect in it is
/// caught by this module's tests, not at a user's run.
pub fn test_identities() -> &'static [TestIdentity] {
    static PARSED: OnceLock<Vec<TestIdentity>> = OnceLock::new();
    PARSED.get_or_init(|| parse(IDENTITIES_TOML).unwrap_or_default())
}

/// The seed and device id of device `index` of the test user `name` (alice, bob, carol,
/// mallory).
pub fn test_identity(name: &str, index: u32) -> Option<([u8; 32], u32)> {
    test_identities()
        .iter()
        .find(|t| t.name == name && t.index == index)
        .map(|t| (t.seed, t.device_id))
}

fn parse(text: &str) -> Result<Vec<TestIdentity>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut out: Vec<TestIdentity> = Vec::new();
    for entry in file.identity {
        let seed = decode_seed(&entry.seed)
            .ok_or_else(|| format!("{}/{}: seed is not 64 hex digits", entry.name, entry.index))?;
        if entry.device_id == 0 || entry.device_id > MAX_DEVICE_ID {
            return Err(format!(
                "{}/{}: device id out of range",
                entry.name, entry.index
            ));
        }
        if out.iter().any(|t| {
            (t.name == entry.name && t.index == entry.index)
                || t.device_id == entry.device_id
                || t.seed == seed
        }) {
            return Err(format!("{}/{}: duplicate entry", entry.name, entry.index));
        }
        out.push(TestIdentity {
            name: entry.name,
            index: entry.index,
            device_id: entry.device_id,
            seed,
        });
    }
    Ok(out)
}

fn decode_seed(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixture_parses_and_names_the_users() {
        assert_eq!(parse(IDENTITIES_TOML).map(|v| v.len()), Ok(10));
        for name in ["alice", "bob", "carol"] {
            for index in 0..3 {
                assert!(test_identity(name, index).is_some(), "{name}/{index}");
            }
        }
        assert!(test_identity("mallory", 0).is_some());
        assert_eq!(test_identity("alice", 3), None);
        assert_eq!(test_identity("dave", 0), None);
    }

    #[test]
    fn same_seed_same_keys() {
        let alice = &test_identities()[0];
        let a = alice.device(5);
        let b = alice.device(5);
        assert_eq!(a.bundle(), b.bundle());
        assert_eq!(a.device_id(), alice.device_id);
    }

    #[test]
    fn refuses_bad_entries() {
        let entry = |seed: &str, id: u32| {
            format!("[[identity]]\nname = \"x\"\nindex = 0\ndevice_id = {id}\nseed = \"{seed}\"\n")
        };
        let good = "00".repeat(32);
        assert!(parse(&entry(&good, 1)).is_ok());
        assert_eq!(
            parse(&entry("00", 1)),
            Err("x/0: seed is not 64 hex digits".into())
        );
        assert_eq!(
            parse(&entry(&good, 0)),
            Err("x/0: device id out of range".into())
        );
        assert_eq!(
            parse(&format!(
                "{}{}",
                entry(&good, 1),
                entry(&"11".repeat(32), 2)
            )),
            Err("x/0: duplicate entry".into())
        );
    }
}
