//! The receiving side of a Device: an envelope, then the Signal message in its `<key/>`.

use wacore_libsignal::protocol::{
    PreKeySignalMessage, SignalMessage, SignalProtocolError, UsePQRatchet, message_decrypt_prekey,
    message_decrypt_signal,
};

use super::{Decrypted, Device, SignalDecrypted, identity_status, protocol_address};
use crate::e2ee::payload::{self, KEY_LEN, KEY_MATERIAL_LEN, TAG_LEN};
use crate::e2ee::store::poll_once;
use crate::e2ee::{
    Address, DecryptError, E2eeError, Envelope, IV_LEN, KeyElement, LEGACY_IV_LEN, MAX_KEY_BYTES,
    MAX_KEYS, MAX_PAYLOAD_BYTES,
};

impl Device {
    /// Decrypts an envelope from the account `from_jid` (a bare JID): the `<key/>` for this
    /// device, then the payload. Never panics on hostile input; each failure is typed.
    pub fn decrypt(
        &mut self,
        from_jid: &str,
        envelope: &Envelope,
    ) -> Result<Decrypted, DecryptError> {
        check_bounds(envelope)?;
        let key_element =
            envelope
                .key_for(self.device_id)
                .ok_or_else(|| DecryptError::NoKeyForDevice {
                    device: self.device_id,
                    rids: envelope.keys.iter().map(|k| k.rid).collect(),
                })?;
        let peer = Address::new(from_jid, envelope.sid);
        let signal = self.signal_decrypt(&peer, key_element)?;
        let material: [u8; KEY_MATERIAL_LEN] =
            signal
                .plaintext
                .as_slice()
                .try_into()
                .map_err(|_| DecryptError::BadKeyMaterial {
                    len: signal.plaintext.len(),
                })?;
        let (key, tag) = split_material(&material);
        let text = match &envelope.payload {
            None => None,
            Some(ciphertext) => {
                let bytes = payload::open(&key, &envelope.iv, ciphertext, &tag)?;
                Some(String::from_utf8(bytes).map_err(|_| DecryptError::NotUtf8)?)
            }
        };
        Ok(Decrypted {
            text,
            prekey_message: signal.prekey_message,
            consumed_prekey: signal.consumed_prekey,
            identity: signal.identity,
            identity_status: signal.identity_status,
            key,
            iv: envelope.iv.clone(),
        })
    }

    /// The Signal layer alone: decrypts the Signal message in `key` from `peer`, checking the
    /// `prekey` flag against the message (E2EE-16) and deleting a consumed one-time prekey
    /// (E2EE-8).
    pub fn signal_decrypt(
        &mut self,
        peer: &Address,
        key: &KeyElement,
    ) -> Result<SignalDecrypted, DecryptError> {
        if key.data.len() > MAX_KEY_BYTES {
            return Err(DecryptError::BadSignalMessage {
                peer: peer.clone(),
                detail: format!(
                    "{} bytes exceed the {MAX_KEY_BYTES}-byte bound",
                    key.data.len()
                ),
            });
        }
        let address = protocol_address(peer);
        let before = self.identities.known.get(&address).copied();
        let result = if key.prekey {
            let message = match PreKeySignalMessage::try_from(key.data.as_slice()) {
                Ok(message) => message,
                Err(e) => {
                    return Err(if SignalMessage::try_from(key.data.as_slice()).is_ok() {
                        DecryptError::BadPrekeyFlag {
                            flagged: true,
                            actual: "SignalMessage",
                        }
                    } else {
                        bad_message(peer, &e)
                    });
                }
            };
            let prekey_id = message.pre_key_id().map(u32::from);
            let signed_id = u32::from(message.signed_pre_key_id());
            poll_once(message_decrypt_prekey(
                &message,
                &address,
                &mut self.sessions,
                &mut self.identities,
                &mut self.prekeys,
                &self.signed_prekeys,
                &mut self.rng.0,
                UsePQRatchet::No,
            ))
            .map_err(|_| internal_not_ready())?
            .map_err(|e| match e {
                SignalProtocolError::InvalidPreKeyId => DecryptError::UnknownPrekey {
                    peer: peer.clone(),
                    id: prekey_id.unwrap_or_default(),
                    consumed: prekey_id.is_some_and(|id| self.consumed.contains(&id)),
                },
                SignalProtocolError::InvalidSignedPreKeyId => DecryptError::UnknownSignedPrekey {
                    peer: peer.clone(),
                    id: signed_id,
                },
                other => signal_error(peer, other),
            })?
        } else {
            let message = match SignalMessage::try_from(key.data.as_slice()) {
                Ok(message) => message,
                Err(e) => {
                    return Err(
                        if PreKeySignalMessage::try_from(key.data.as_slice()).is_ok() {
                            DecryptError::BadPrekeyFlag {
                                flagged: false,
                                actual: "PreKeySignalMessage",
                            }
                        } else {
                            bad_message(peer, &e)
                        },
                    );
                }
            };
            poll_once(message_decrypt_signal(
                &message,
                &address,
                &mut self.sessions,
                &mut self.identities,
                &mut self.rng.0,
            ))
            .map_err(|_| internal_not_ready())?
            .map_err(|e| signal_error(peer, e))?
        };
        // wacore reports the consumed prekey and leaves deleting it to the caller, so that a
        // persistent store can first make the session durable; this one is in memory.
        let consumed_prekey = result.consumed_prekey_id.map(u32::from);
        if let Some(id) = consumed_prekey {
            self.prekeys.0.remove(&id);
            self.consumed.insert(id);
        }
        let identity = self
            .identities
            .known
            .get(&address)
            .copied()
            .ok_or_else(|| DecryptError::Internal {
                detail: format!("no identity recorded for {peer} after decrypting"),
            })?;
        Ok(SignalDecrypted {
            plaintext: result.plaintext,
            prekey_message: key.prekey,
            consumed_prekey,
            identity: identity.serialize().to_vec(),
            identity_status: identity_status(before, &identity),
        })
    }
}

fn split_material(material: &[u8; KEY_MATERIAL_LEN]) -> ([u8; KEY_LEN], [u8; TAG_LEN]) {
    let mut key = [0u8; KEY_LEN];
    let mut tag = [0u8; TAG_LEN];
    key.copy_from_slice(&material[..KEY_LEN]);
    tag.copy_from_slice(&material[KEY_LEN..]);
    (key, tag)
}

/// The bounds a parsed envelope already meets, checked again because [`Envelope`]'s fields
/// are public and mutants build envelopes in code.
fn check_bounds(envelope: &Envelope) -> Result<(), DecryptError> {
    if envelope.keys.len() > MAX_KEYS {
        return Err(DecryptError::Malformed(E2eeError::new(
            "E2EE-13",
            format!(
                "{} <key/> elements exceed the bound of {MAX_KEYS}",
                envelope.keys.len()
            ),
        )));
    }
    if envelope.iv.len() != IV_LEN && envelope.iv.len() != LEGACY_IV_LEN {
        return Err(DecryptError::BadIv {
            len: envelope.iv.len(),
        });
    }
    if let Some(payload) = &envelope.payload
        && payload.len() > MAX_PAYLOAD_BYTES
    {
        return Err(DecryptError::PayloadTooLarge { len: payload.len() });
    }
    Ok(())
}

fn bad_message(peer: &Address, e: &SignalProtocolError) -> DecryptError {
    DecryptError::BadSignalMessage {
        peer: peer.clone(),
        detail: e.to_string(),
    }
}

fn signal_error(peer: &Address, e: SignalProtocolError) -> DecryptError {
    match e {
        SignalProtocolError::SessionNotFound(_) => {
            DecryptError::UnknownSession { peer: peer.clone() }
        }
        SignalProtocolError::DuplicatedMessage(_, counter) => DecryptError::Duplicate {
            peer: peer.clone(),
            counter,
        },
        // Failures of the library or its stores, not verdicts on the message.
        SignalProtocolError::InvalidState(..)
        | SignalProtocolError::BackendError(..)
        | SignalProtocolError::FfiBindingError(_)
        | SignalProtocolError::ApplicationCallbackError(..) => DecryptError::Internal {
            detail: e.to_string(),
        },
        other => bad_message(peer, &other),
    }
}

fn internal_not_ready() -> DecryptError {
    DecryptError::Internal {
        detail: "a Signal store future was not ready on its first poll".into(),
    }
}
