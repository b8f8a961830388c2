//! In-memory stores for wacore-libsignal, and the poll-once executor that drives its futures.
//!
//! wacore-libsignal's API is async only because its stores may be; these are plain maps, so
//! every future it returns over them is ready on the first poll. Polling once (never
//! spinning) keeps the harness free of an executor here and turns a store that ever did wait
//! into an error instead of a hang.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use wacore_libsignal::protocol::error::Result as SignalResult;
use wacore_libsignal::protocol::{
    Direction, IdentityChange, IdentityKey, IdentityKeyPair, IdentityKeyStore, KeyPair, PreKeyId,
    PreKeyRecord, PreKeyStore, ProtocolAddress, SessionRecord, SessionStore, SignalProtocolError,
    SignedPreKeyId, SignedPreKeyRecord, SignedPreKeyStore,
};

/// A future that was not ready on its first poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NotReady;

/// Polls `future` once with a no-op waker.
pub(crate) fn poll_once<F: Future>(future: F) -> Result<F::Output, NotReady> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(NotReady),
    }
}

/// Sessions by peer address.
#[derive(Clone, Default)]
pub(crate) struct Sessions(pub(crate) HashMap<ProtocolAddress, SessionRecord>);

#[async_trait]
impl SessionStore for Sessions {
    async fn load_session(&self, address: &ProtocolAddress) -> SignalResult<Option<SessionRecord>> {
        Ok(self.0.get(address).cloned())
    }

    async fn has_session(&self, address: &ProtocolAddress) -> SignalResult<bool> {
        Ok(self.0.contains_key(address))
    }

    async fn store_session(
        &mut self,
        address: &ProtocolAddress,
        mut record: SessionRecord,
    ) -> SignalResult<()> {
        // This store is written before any ciphertext leaves the device, so the crash-safety
        // lease (which skips sender counters ahead on reload) buys nothing; waiving it keeps
        // counters consecutive, as peers and reruns expect.
        record.waive_counter_lease();
        self.0.insert(address.clone(), record);
        Ok(())
    }
}

/// The device's identity and the identities it has seen, trust on first use.
#[derive(Clone)]
pub(crate) struct Identities {
    pub(crate) pair: IdentityKeyPair,
    pub(crate) registration_id: u32,
    pub(crate) known: HashMap<ProtocolAddress, IdentityKey>,
}

#[async_trait]
impl IdentityKeyStore for Identities {
    async fn get_identity_key_pair(&self) -> SignalResult<IdentityKeyPair> {
        Ok(self.pair.clone())
    }

    async fn get_local_registration_id(&self) -> SignalResult<u32> {
        Ok(self.registration_id)
    }

    async fn save_identity(
        &mut self,
        address: &ProtocolAddress,
        identity: &IdentityKey,
    ) -> SignalResult<IdentityChange> {
        let previous = self.known.insert(address.clone(), *identity);
        Ok(IdentityChange::from_changed(
            previous.is_some_and(|p| p != *identity),
        ))
    }

    /// Every identity is accepted: the Device reports a change (IdentityStatus::Changed) and
    /// the caller decides what to make of it, which is what a harness needs to probe E2EE-11.
    async fn is_trusted_identity(
        &self,
        _address: &ProtocolAddress,
        _identity: &IdentityKey,
        _direction: Direction,
    ) -> SignalResult<bool> {
        Ok(true)
    }

    async fn get_identity(&self, address: &ProtocolAddress) -> SignalResult<Option<IdentityKey>> {
        Ok(self.known.get(address).copied())
    }
}

/// One-time prekeys not yet consumed, by id (ordered, so bundles are written in id order).
#[derive(Clone, Default)]
pub(crate) struct PreKeys(pub(crate) BTreeMap<u32, KeyPair>);

#[async_trait]
impl PreKeyStore for PreKeys {
    async fn get_pre_key(&self, prekey_id: PreKeyId) -> SignalResult<PreKeyRecord> {
        self.0
            .get(&u32::from(prekey_id))
            .map(|pair| PreKeyRecord::new(prekey_id, pair))
            .ok_or(SignalProtocolError::InvalidPreKeyId)
    }

    async fn save_pre_key(
        &mut self,
        prekey_id: PreKeyId,
        record: &PreKeyRecord,
    ) -> SignalResult<()> {
        self.0.insert(prekey_id.into(), record.key_pair()?);
        Ok(())
    }

    async fn remove_pre_key(&mut self, prekey_id: PreKeyId) -> SignalResult<()> {
        self.0.remove(&u32::from(prekey_id));
        Ok(())
    }
}

/// Signed prekeys by id.
#[derive(Clone, Default)]
pub(crate) struct SignedPreKeys(pub(crate) BTreeMap<u32, SignedPreKeyRecord>);

#[async_trait]
impl SignedPreKeyStore for SignedPreKeys {
    async fn get_signed_pre_key(&self, id: SignedPreKeyId) -> SignalResult<SignedPreKeyRecord> {
        self.0
            .get(&u32::from(id))
            .cloned()
            .ok_or(SignalProtocolError::InvalidSignedPreKeyId)
    }

    async fn save_signed_pre_key(
        &mut self,
        id: SignedPreKeyId,
        record: &SignedPreKeyRecord,
    ) -> SignalResult<()> {
        self.0.insert(id.into(), record.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_and_pending() {
        assert_eq!(poll_once(async { 5 }), Ok(5));
        assert_eq!(poll_once(std::future::pending::<()>()), Err(NotReady));
    }
}
