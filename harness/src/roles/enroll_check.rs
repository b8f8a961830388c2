//! The body checks of `POST /v1/enroll` (SPEC.md §10.1, ENROLL-2/3/4/5/6/16 and the proof
//! member of IDPROOF-3/4/9): pure functions from the received bytes to the answer the
//! gatekeeper owes and the deviations the client committed.
//!
//! Two results come out of one pass because they answer different questions. The *refusal*
//! is what the gatekeeper says (ENROLL-16: the first failed check in the fixed order decides
//! the one status and code). The *deviations* are what the client did wrong, all of them, each
//! charged to its own requirement, so that a verdict on a client IUT names every broken rule
//! and not only the one that happened to be checked first.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use wacore_libsignal::protocol::PublicKey;

use super::state::SignedPrekey;
use crate::idproof::{self, Proof, ProofCode};
use crate::verdict::Deviation;

/// At least this many one-time prekeys (ENROLL-4).
pub const MIN_PREKEYS: usize = 100;
/// Prekey ids run from 1 to this (ENROLL-3).
pub const MAX_PREKEY_ID: u64 = 16_777_215;
/// Device ids run from 1 to this (ENROLL-5).
pub const MAX_DEVICE_ID: u64 = 2_147_483_647;
/// The members of an enrollment request (ENROLL-2), in §10.1's order.
pub const MEMBERS: [&str; 9] = [
    "v",
    "provider_id",
    "device_id",
    "identifier",
    "identity_key",
    "signed_prekey",
    "one_time_prekeys",
    "provider_token",
    "identifier_proof",
];
// The members of a proof (IDPROOF-4), as the proof parser knows them.
use crate::idproof::MEMBERS as PROOF_MEMBERS;
/// Duplicate member names remembered per body: one is enough to refuse, a few help the
/// report, thousands would only cost memory.
const MAX_DUPLICATES: usize = 8;
/// Longest quote of a received value in a message.
const QUOTE_CHARS: usize = 60;

/// What the provider declared at onboarding about its identifiers (SPEC §6.1): the E.164
/// prefixes and address domains its users have. An empty list accepts any number (or any
/// domain), for tests that do not model a provider.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Onboarded {
    /// E.164 prefixes including the `+` (`+49151`).
    pub number_prefixes: Vec<String>,
    /// Address domains (`example.org`).
    pub identifier_domains: Vec<String>,
}

impl Onboarded {
    /// Why a syntactically valid identifier is not one of the provider's, if it is not.
    pub fn refuses(&self, identifier: &str) -> Option<String> {
        match identifier.split_once('@') {
            Some((_, domain)) => (!self.identifier_domains.is_empty()
                && !self.identifier_domains.iter().any(|d| d == domain))
            .then(|| {
                format!(
                    "is not in a domain of the provider ({})",
                    self.identifier_domains.join(", ")
                )
            }),
            None => (!self.number_prefixes.is_empty()
                && !self
                    .number_prefixes
                    .iter()
                    .any(|p| identifier.starts_with(p.as_str())))
            .then(|| {
                format!(
                    "has none of the provider's number prefixes ({})",
                    self.number_prefixes.join(", ")
                )
            }),
        }
    }
}

/// An answer other than success: status, §10.1 code, and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Refusal {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

/// An enrollment request that passed every 400-level check.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub provider_id: String,
    pub device_id: u32,
    pub identifier: String,
    pub identity_key: [u8; 33],
    pub signed_prekey: SignedPrekey,
    pub one_time_prekeys: Vec<(u32, [u8; 33])>,
    pub provider_token: String,
}

/// What the body checks found.
#[derive(Debug, Default)]
pub struct BodyCheck {
    /// The first failure in ENROLL-16's order; `None` when the body is a valid request.
    pub refusal: Option<Refusal>,
    /// Every fault of the client found in the body.
    pub deviations: Vec<Deviation>,
    /// Set when `refusal` is `None`.
    pub request: Option<ValidRequest>,
    /// The `identifier_proof` member as received (absent or `null` → `None`).
    pub proof: Option<Value>,
    /// Member names that appeared twice inside `identifier_proof`.
    pub proof_duplicates: Vec<String>,
}

impl BodyCheck {
    /// Records one fault of the client: the deviation always, the refusal if it is the first.
    fn fault(&mut self, code: &str, requirement: &str, expected: &str, got: String) {
        if self.refusal.is_none() {
            self.refusal = Some(Refusal::new(400, code, got.clone()));
        }
        self.deviations
            .push(Deviation::fail(requirement, expected, got));
    }
}

/// Basis strings: what each requirement asks, as the deviation's `expected`.
mod basis {
    pub const FORMAT: &str = "ENROLL-2: a UTF-8 JSON object with exactly the members v (1), \
        provider_id, device_id (integer), identifier, identity_key, signed_prekey {id, \
        public_key, signature}, one_time_prekeys [{id, public_key}], provider_token and \
        identifier_proof";
    pub const KEYS: &str = "ENROLL-3: base64 of 33-byte 0x05 keys, a 64-byte XEdDSA \
        signature verifying with identity_key, prekey ids 1..16777215 distinct";
    pub const COUNT: &str = "ENROLL-4: at least 100 one-time prekeys";
    pub const DEVICE_ID: &str = "ENROLL-5: device_id from 1 to 2147483647";
    pub const IDENTIFIER: &str = "ENROLL-6: '+' and 8 to 15 digits, or lowercase \
        local@domain of the provider, no whitespace or control characters, at most 255 bytes";
    pub const PROOF: &str = "IDPROOF-9: a valid identifier proof in every enrollment request";
    pub const PROOF_MEMBERS: &str = "IDPROOF-4: a JSON object with exactly v (1), \
        provider_id, identifier, identity_key, device_id, issued_at, expires_at, nonce and \
        signature, each once";
    pub const PROOF_SYNTAX: &str = "IDPROOF-3: provider_id of a-z0-9.-, identifier per \
        ENROLL-6, canonical base64 identity_key and signature, base64url nonce of 16 bytes, \
        integer device_id, issued_at and expires_at";
    pub const PROOF_BINDING: &str = "IDPROOF-8: a proof naming the request's identifier, \
        identity key and device id";
    pub const PROOF_FRESH: &str = "IDPROOF-6: a proof presented before its expires_at";
    pub const PROOF_ONCE: &str = "IDPROOF-14: a proof (nonce) never presented before, at \
        enrollment or at login";
}

/// A received value, quoted and clipped for a message.
pub fn quote(v: &Value) -> String {
    let text = match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    };
    clip(&text)
}

fn clip(text: &str) -> String {
    if text.chars().count() <= QUOTE_CHARS {
        return text.to_owned();
    }
    let cut: String = text.chars().take(QUOTE_CHARS).collect();
    format!("{cut}...")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a non-integer number",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses JSON into a [`Value`], remembering every member name that appears twice in one
/// object (with its path). `serde_json::Value` keeps one of two equal names silently; the
/// request must have each member once (ENROLL-2, and IDPROOF-4 inside the proof), so the
/// duplicate has to be seen before it is lost.
pub fn parse_strict(bytes: &[u8]) -> Result<(Value, Vec<String>), serde_json::Error> {
    let mut duplicates = Vec::new();
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Strict {
        duplicates: &mut duplicates,
        path: String::new(),
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok((value, duplicates))
}

struct Strict<'a> {
    duplicates: &'a mut Vec<String>,
    path: String,
}

impl Strict<'_> {
    fn child(&mut self, name: &str) -> Strict<'_> {
        let path = if self.path.is_empty() {
            name.to_owned()
        } else {
            format!("{}.{name}", self.path)
        };
        Strict {
            duplicates: &mut *self.duplicates,
            path,
        }
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        // Array elements share their array's path: a duplicate inside the n-th prekey is
        // reported as `one_time_prekeys.id`, which names the member well enough.
        while let Some(v) = seq.next_element_seed(Strict {
            duplicates: &mut *self.duplicates,
            path: self.path.clone(),
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.child(&name))?;
            if out.contains_key(&name) {
                if self.duplicates.len() < MAX_DUPLICATES {
                    let path = self.child(&name).path;
                    self.duplicates.push(path);
                }
                // The first occurrence is kept; the request is refused anyway.
                continue;
            }
            out.insert(name, value);
        }
        Ok(Value::Object(out))
    }
}

/// Decodes standard padded base64 of a 33-byte key with the 0x05 type byte.
fn decode_key(s: &str) -> Result<[u8; 33], String> {
    let bytes = STANDARD
        .decode(s)
        .map_err(|e| format!("is not base64 ({e})"))?;
    let key: [u8; 33] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| format!("decodes to {} bytes, not 33", bytes.len()))?;
    if key[0] != 0x05 {
        return Err(format!("has type byte 0x{:02x}, not 0x05", key[0]));
    }
    Ok(key)
}

/// An integer member as u64, or `None` when it is negative, too large or not an integer.
fn small_integer(v: &Value) -> Option<u64> {
    v.as_u64()
}

fn is_integer(v: &Value) -> bool {
    matches!(v, Value::Number(n) if n.is_i64() || n.is_u64())
}

/// Checks an enrollment body in ENROLL-16's order (malformed JSON, missing member, unknown
/// or mistyped member, identity key, signed prekey, one-time prekeys, device id,
/// identifier).
pub fn check_body(body: &[u8], onboarded: &Onboarded) -> BodyCheck {
    let mut out = BodyCheck::default();
    let (value, duplicates) = match parse_strict(body) {
        Ok(v) => v,
        Err(e) => {
            let got = format!("the body ({} bytes) is not JSON: {e}", body.len());
            out.refusal = Some(Refusal::new(400, "malformed_json", got.clone()));
            out.deviations
                .push(Deviation::fail("ENROLL-2", basis::FORMAT, got));
            return out;
        }
    };
    let Value::Object(members) = value else {
        let got = format!("the body is {}, not a JSON object", kind(&value));
        out.refusal = Some(Refusal::new(400, "malformed_json", got.clone()));
        out.deviations
            .push(Deviation::fail("ENROLL-2", basis::FORMAT, got));
        return out;
    };

    // Missing members. A missing proof is the 401 of step 5, not a 400.
    for name in MEMBERS.iter().filter(|n| **n != "identifier_proof") {
        if !members.contains_key(*name) {
            out.fault(
                "missing_field",
                "ENROLL-2",
                basis::FORMAT,
                format!("member \"{name}\" is missing"),
            );
        }
    }
    // Unknown and repeated members (repeats inside the proof are the proof's concern).
    for name in members.keys() {
        if !MEMBERS.contains(&name.as_str()) {
            out.fault(
                "bad_field",
                "ENROLL-2",
                basis::FORMAT,
                format!("unexpected member \"{}\"", clip(name)),
            );
        }
    }
    for path in duplicates {
        if let Some(inner) = path.strip_prefix("identifier_proof.") {
            out.proof_duplicates.push(inner.to_owned());
        } else {
            out.fault(
                "bad_field",
                "ENROLL-2",
                basis::FORMAT,
                format!("member \"{}\" appears more than once", clip(&path)),
            );
        }
    }

    let typed = check_types(&members, &mut out);
    out.proof = members
        .get("identifier_proof")
        .filter(|v| !v.is_null())
        .cloned();
    let Some(typed) = typed else {
        return out;
    };
    check_values(typed, onboarded, &mut out);
    out
}

/// The members with the JSON types ENROLL-2 asks for (values still unchecked).
struct Typed<'a> {
    provider_id: Option<&'a str>,
    device_id: Option<&'a Value>,
    identifier: Option<&'a str>,
    identity_key: Option<&'a str>,
    signed: Option<(&'a Value, &'a str, &'a str)>,
    prekeys: Option<Vec<(&'a Value, &'a str)>>,
    provider_token: Option<&'a str>,
}

fn check_types<'a>(members: &'a Map<String, Value>, out: &mut BodyCheck) -> Option<Typed<'a>> {
    let wrong = |out: &mut BodyCheck, name: &str, want: &str, v: &Value| {
        out.fault(
            "bad_field",
            "ENROLL-2",
            basis::FORMAT,
            format!(
                "member \"{name}\" is {} ({}), not {want}",
                kind(v),
                quote(v)
            ),
        );
    };
    let string = |out: &mut BodyCheck, name: &str| -> Option<&'a str> {
        match members.get(name)? {
            Value::String(s) => Some(s.as_str()),
            other => {
                wrong(out, name, "a string", other);
                None
            }
        }
    };

    if let Some(v) = members.get("v")
        && v.as_u64() != Some(1)
    {
        out.fault(
            "bad_field",
            "ENROLL-2",
            basis::FORMAT,
            format!("member \"v\" is {}, not the number 1", quote(v)),
        );
    }
    let provider_id = string(out, "provider_id");
    if let Some(p) = provider_id
        && let Err(why) = idproof::check_provider_id(p)
    {
        out.fault(
            "bad_field",
            "ENROLL-2",
            basis::FORMAT,
            format!(
                "member \"provider_id\" {why:?}: {}",
                clip(&format!("{p:?}"))
            ),
        );
    }
    let device_id = match members.get("device_id") {
        Some(v) if is_integer(v) => Some(v),
        Some(v) => {
            wrong(out, "device_id", "a JSON integer", v);
            None
        }
        None => None,
    };
    let identifier = string(out, "identifier");
    let identity_key = string(out, "identity_key");
    let signed = members
        .get("signed_prekey")
        .and_then(|v| check_signed_shape(v, out));
    let prekeys = members
        .get("one_time_prekeys")
        .and_then(|v| check_prekeys_shape(v, out));
    let provider_token = string(out, "provider_token");
    Some(Typed {
        provider_id,
        device_id,
        identifier,
        identity_key,
        signed,
        prekeys,
        provider_token,
    })
}

/// Checks that an object has exactly `names`, reporting missing and extra ones under `at`.
fn exact_members(obj: &Map<String, Value>, names: &[&str], at: &str, out: &mut BodyCheck) -> bool {
    let mut ok = true;
    for name in names {
        if !obj.contains_key(*name) {
            out.fault(
                "missing_field",
                "ENROLL-2",
                basis::FORMAT,
                format!("member \"{at}.{name}\" is missing"),
            );
            ok = false;
        }
    }
    if let Some(extra) = obj.keys().find(|k| !names.contains(&k.as_str())) {
        out.fault(
            "bad_field",
            "ENROLL-2",
            basis::FORMAT,
            format!("unexpected member \"{at}.{}\"", clip(extra)),
        );
        ok = false;
    }
    ok
}

fn check_signed_shape<'a>(
    v: &'a Value,
    out: &mut BodyCheck,
) -> Option<(&'a Value, &'a str, &'a str)> {
    let Value::Object(obj) = v else {
        out.fault(
            "bad_field",
            "ENROLL-2",
            basis::FORMAT,
            format!("member \"signed_prekey\" is {}, not an object", kind(v)),
        );
        return None;
    };
    if !exact_members(
        obj,
        &["id", "public_key", "signature"],
        "signed_prekey",
        out,
    ) {
        return None;
    }
    let (id, public, signature) = (&obj["id"], &obj["public_key"], &obj["signature"]);
    let mut ok = true;
    for (name, value, want_int) in [
        ("id", id, true),
        ("public_key", public, false),
        ("signature", signature, false),
    ] {
        let fits = if want_int {
            is_integer(value)
        } else {
            value.is_string()
        };
        if !fits {
            out.fault(
                "bad_field",
                "ENROLL-2",
                basis::FORMAT,
                format!(
                    "member \"signed_prekey.{name}\" is {} ({}), not {}",
                    kind(value),
                    quote(value),
                    if want_int {
                        "a JSON integer"
                    } else {
                        "a string"
                    }
                ),
            );
            ok = false;
        }
    }
    match (ok, public.as_str(), signature.as_str()) {
        (true, Some(p), Some(s)) => Some((id, p, s)),
        _ => None,
    }
}

fn check_prekeys_shape<'a>(v: &'a Value, out: &mut BodyCheck) -> Option<Vec<(&'a Value, &'a str)>> {
    let Value::Array(items) = v else {
        out.fault(
            "bad_field",
            "ENROLL-2",
            basis::FORMAT,
            format!("member \"one_time_prekeys\" is {}, not an array", kind(v)),
        );
        return None;
    };
    let mut keys = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("one_time_prekeys[{i}]");
        let Value::Object(obj) = item else {
            out.fault(
                "bad_field",
                "ENROLL-2",
                basis::FORMAT,
                format!("member \"{at}\" is {}, not an object", kind(item)),
            );
            return None;
        };
        if !exact_members(obj, &["id", "public_key"], &at, out) {
            // One bad element is reported; the rest would repeat the same fault.
            return None;
        }
        let (id, public) = (&obj["id"], &obj["public_key"]);
        if !is_integer(id) {
            out.fault(
                "bad_field",
                "ENROLL-2",
                basis::FORMAT,
                format!(
                    "member \"{at}.id\" is {} ({}), not a JSON integer",
                    kind(id),
                    quote(id)
                ),
            );
            return None;
        }
        let Some(public) = public.as_str() else {
            out.fault(
                "bad_field",
                "ENROLL-2",
                basis::FORMAT,
                format!(
                    "member \"{at}.public_key\" is {}, not a string",
                    kind(public)
                ),
            );
            return None;
        };
        keys.push((id, public));
    }
    Some(keys)
}

/// The value checks after the types: keys, signature, prekeys, device id, identifier.
fn check_values(t: Typed<'_>, onboarded: &Onboarded, out: &mut BodyCheck) {
    let identity_key = t.identity_key.and_then(|s| match decode_key(s) {
        Ok(k) => Some(k),
        Err(why) => {
            out.fault(
                "bad_identity_key",
                "ENROLL-3",
                basis::KEYS,
                format!("identity_key {} {why}", clip(&format!("{s:?}"))),
            );
            None
        }
    });

    let signed = t.signed.and_then(|(id, public, signature)| {
        check_signed(id, public, signature, identity_key.as_ref(), out)
    });

    let prekeys = t.prekeys.and_then(|list| check_prekeys(&list, out));

    let device_id = t.device_id.and_then(|v| {
        match small_integer(v).filter(|d| (1..=MAX_DEVICE_ID).contains(d)) {
            Some(d) => u32::try_from(d).ok(),
            None => {
                out.fault(
                    "bad_device_id",
                    "ENROLL-5",
                    basis::DEVICE_ID,
                    format!("device_id {} is outside 1..2147483647", quote(v)),
                );
                None
            }
        }
    });

    let identifier = t.identifier.and_then(|s| {
        let why = match idproof::check_identifier(s) {
            Err(why) => Some(why),
            Ok(()) => onboarded.refuses(s),
        };
        match why {
            Some(why) => {
                out.fault(
                    "bad_identifier",
                    "ENROLL-6",
                    basis::IDENTIFIER,
                    format!("identifier {} {why}", clip(&format!("{s:?}"))),
                );
                None
            }
            None => Some(s),
        }
    });

    if out.refusal.is_some() {
        return;
    }
    if let (
        Some(provider_id),
        Some(device_id),
        Some(identifier),
        Some(identity_key),
        Some(signed_prekey),
        Some(one_time_prekeys),
        Some(provider_token),
    ) = (
        t.provider_id,
        device_id,
        identifier,
        identity_key,
        signed,
        prekeys,
        t.provider_token,
    ) {
        out.request = Some(ValidRequest {
            provider_id: provider_id.to_owned(),
            device_id,
            identifier: identifier.to_owned(),
            identity_key,
            signed_prekey,
            one_time_prekeys,
            provider_token: provider_token.to_owned(),
        });
    }
}

fn check_signed(
    id: &Value,
    public: &str,
    signature: &str,
    identity_key: Option<&[u8; 33]>,
    out: &mut BodyCheck,
) -> Option<SignedPrekey> {
    let bad = |out: &mut BodyCheck, why: String| {
        out.fault("bad_signed_prekey", "ENROLL-3", basis::KEYS, why);
    };
    let id = match small_integer(id).filter(|i| (1..=MAX_PREKEY_ID).contains(i)) {
        Some(i) => i as u32,
        None => {
            bad(
                out,
                format!("signed_prekey.id {} is outside 1..16777215", quote(id)),
            );
            return None;
        }
    };
    let public_key = match decode_key(public) {
        Ok(k) => k,
        Err(why) => {
            bad(
                out,
                format!(
                    "signed_prekey.public_key {} {why}",
                    clip(&format!("{public:?}"))
                ),
            );
            return None;
        }
    };
    let signature: [u8; 64] = match STANDARD.decode(signature) {
        Ok(bytes) => match bytes.as_slice().try_into() {
            Ok(sig) => sig,
            Err(_) => {
                bad(
                    out,
                    format!(
                        "signed_prekey.signature decodes to {} bytes, not 64",
                        bytes.len()
                    ),
                );
                return None;
            }
        },
        Err(e) => {
            bad(
                out,
                format!(
                    "signed_prekey.signature {} is not base64 ({e})",
                    clip(&format!("{signature:?}"))
                ),
            );
            return None;
        }
    };
    // Without a usable identity key there is nothing to verify with; that fault is reported
    // as bad_identity_key already.
    let identity_key = identity_key?;
    let verifies = PublicKey::deserialize(identity_key)
        .is_ok_and(|k| k.verify_signature(&public_key, &signature));
    if !verifies {
        bad(
            out,
            format!(
                "signed_prekey.signature (signed prekey {id}) does not verify with identity_key (XEdDSA over the 33-byte public key)"
            ),
        );
        return None;
    }
    Some(SignedPrekey {
        id,
        public: public_key,
        signature,
    })
}

/// One-time prekeys in SPEC §10.1's order: ids and keys first (`bad_field`), then the
/// count (`too_few_prekeys`).
fn check_prekeys(list: &[(&Value, &str)], out: &mut BodyCheck) -> Option<Vec<(u32, [u8; 33])>> {
    let mut seen = std::collections::HashSet::with_capacity(list.len());
    let mut keys = Vec::with_capacity(list.len());
    for (i, (id, public)) in list.iter().enumerate() {
        let Some(n) = small_integer(id).filter(|n| (1..=MAX_PREKEY_ID).contains(n)) else {
            out.fault(
                "bad_field",
                "ENROLL-3",
                basis::KEYS,
                format!(
                    "one_time_prekeys[{i}].id {} is outside 1..16777215",
                    quote(id)
                ),
            );
            return None;
        };
        let n = n as u32;
        if !seen.insert(n) {
            out.fault(
                "bad_field",
                "ENROLL-3",
                basis::KEYS,
                format!("one_time_prekeys[{i}].id {n} repeats an earlier prekey id"),
            );
            return None;
        }
        match decode_key(public) {
            Ok(k) => keys.push((n, k)),
            Err(why) => {
                out.fault(
                    "bad_field",
                    "ENROLL-3",
                    basis::KEYS,
                    format!(
                        "one_time_prekeys[{i}].public_key {} {why}",
                        clip(&format!("{public:?}"))
                    ),
                );
                return None;
            }
        }
    }
    if keys.len() < MIN_PREKEYS {
        out.fault(
            "too_few_prekeys",
            "ENROLL-4",
            basis::COUNT,
            format!(
                "one_time_prekeys holds {} prekeys, fewer than {MIN_PREKEYS}",
                keys.len()
            ),
        );
        return None;
    }
    Some(keys)
}

/// The proof member, checked up to (not including) [`idproof::verify`]: present, an object
/// with each of IDPROOF-4's members once, parsing under IDPROOF-3, for the request's provider.
/// A refusal here is a 401 with the proof's code, and always a fault of the client.
pub fn parse_proof(
    proof: Option<&Value>,
    duplicates: &[String],
    request: &ValidRequest,
) -> Result<Proof, Box<(Refusal, Deviation)>> {
    let refuse = |code: ProofCode, requirement: &str, expected: &str, got: String| {
        Box::new((
            Refusal::new(401, code.code(), got.clone()),
            Deviation::fail(requirement, expected, got),
        ))
    };
    let Some(value) = proof else {
        return Err(refuse(
            ProofCode::Missing,
            "IDPROOF-9",
            basis::PROOF,
            "the request has no identifier_proof member".into(),
        ));
    };
    let Value::Object(members) = value else {
        return Err(refuse(
            ProofCode::Invalid,
            "IDPROOF-4",
            basis::PROOF_MEMBERS,
            format!(
                "identifier_proof is {} ({}), not an object",
                kind(value),
                quote(value)
            ),
        ));
    };
    if let Some(name) = duplicates.first() {
        return Err(refuse(
            ProofCode::Invalid,
            "IDPROOF-4",
            basis::PROOF_MEMBERS,
            format!(
                "identifier_proof member \"{}\" appears more than once",
                clip(name)
            ),
        ));
    }
    if let Some(name) = PROOF_MEMBERS.iter().find(|n| !members.contains_key(**n)) {
        return Err(refuse(
            ProofCode::Invalid,
            "IDPROOF-4",
            basis::PROOF_MEMBERS,
            format!("identifier_proof member \"{name}\" is missing"),
        ));
    }
    if let Some(name) = members
        .keys()
        .find(|k| !PROOF_MEMBERS.contains(&k.as_str()))
    {
        return Err(refuse(
            ProofCode::Invalid,
            "IDPROOF-4",
            basis::PROOF_MEMBERS,
            format!(
                "identifier_proof has the unexpected member \"{}\"",
                clip(name)
            ),
        ));
    }
    if members.get("v").and_then(Value::as_u64) != Some(1) {
        let v = members.get("v").map(quote).unwrap_or_default();
        return Err(refuse(
            ProofCode::Invalid,
            "IDPROOF-4",
            basis::PROOF_MEMBERS,
            format!("identifier_proof member \"v\" is {v}, not the number 1"),
        ));
    }
    // Re-serializing loses nothing the proof may carry: the members are known, their values
    // are strings and integers, and a non-integer number stays one.
    let text = serde_json::to_vec(value).unwrap_or_default();
    let proof = Proof::parse(&text).map_err(|e| {
        refuse(
            e.code,
            "IDPROOF-3",
            basis::PROOF_SYNTAX,
            format!("identifier_proof: {}", e.reason),
        )
    })?;
    if proof.provider_id != request.provider_id {
        return Err(refuse(
            ProofCode::Mismatch,
            "IDPROOF-9",
            basis::PROOF,
            format!(
                "identifier_proof is from provider {:?}, the request names provider {:?}",
                clip(&proof.provider_id),
                clip(&request.provider_id)
            ),
        ));
    }
    Ok(proof)
}

/// The requirement and basis a refusal of [`idproof::verify`] charges to the client.
pub fn verify_fault(code: ProofCode, reason: &str) -> Deviation {
    let (requirement, expected) = match code {
        ProofCode::Expired => ("IDPROOF-6", basis::PROOF_FRESH),
        ProofCode::Mismatch => ("IDPROOF-8", basis::PROOF_BINDING),
        ProofCode::Replayed => ("IDPROOF-14", basis::PROOF_ONCE),
        _ => ("IDPROOF-9", basis::PROOF),
    };
    Deviation::fail(
        requirement,
        expected,
        format!("identifier_proof refused ({}): {reason}", code.code()),
    )
}
