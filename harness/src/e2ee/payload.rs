//! The OMEMO 0.3 payload cipher (SPEC.md §9.2, E2EE-17): AES-128-GCM, no associated data,
//! the tag carried apart from the ciphertext (it travels with the key in each Signal message).

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aes::Aes128;
use aes_gcm::{AeadInOut, AesGcm, KeyInit, Nonce, Tag};

use super::{DecryptError, IV_LEN, LEGACY_IV_LEN};

/// The payload key K.
pub const KEY_LEN: usize = 16;
/// The GCM tag T.
pub const TAG_LEN: usize = 16;
/// What each Signal message carries: K || T.
pub const KEY_MATERIAL_LEN: usize = KEY_LEN + TAG_LEN;

type Gcm12 = AesGcm<Aes128, U12>;
type Gcm16 = AesGcm<Aes128, U16>;

/// Encrypts `plaintext` under `key` and `iv` (12 bytes, or 16 for the legacy form a mutant
/// may send), returning the ciphertext and the tag apart.
pub fn seal(
    key: &[u8; KEY_LEN],
    iv: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; TAG_LEN]), DecryptError> {
    let mut buffer = plaintext.to_vec();
    let tag = match iv.len() {
        IV_LEN => Gcm12::new(key.into()).encrypt_inout_detached(
            &nonce::<U12>(iv)?,
            &[],
            buffer.as_mut_slice().into(),
        ),
        LEGACY_IV_LEN => Gcm16::new(key.into()).encrypt_inout_detached(
            &nonce::<U16>(iv)?,
            &[],
            buffer.as_mut_slice().into(),
        ),
        len => return Err(DecryptError::BadIv { len }),
    }
    // GCM refuses only plaintexts over 64 GiB, far beyond any envelope.
    .map_err(|_| DecryptError::PayloadTooLarge {
        len: plaintext.len(),
    })?;
    Ok((buffer, tag.into()))
}

/// Decrypts and authenticates: nothing is returned unless the tag verifies (E2EE-17).
pub fn open(
    key: &[u8; KEY_LEN],
    iv: &[u8],
    ciphertext: &[u8],
    tag: &[u8; TAG_LEN],
) -> Result<Vec<u8>, DecryptError> {
    let mut buffer = ciphertext.to_vec();
    let tag = Tag::<U16>::from(*tag);
    match iv.len() {
        IV_LEN => Gcm12::new(key.into()).decrypt_inout_detached(
            &nonce::<U12>(iv)?,
            &[],
            buffer.as_mut_slice().into(),
            &tag,
        ),
        LEGACY_IV_LEN => Gcm16::new(key.into()).decrypt_inout_detached(
            &nonce::<U16>(iv)?,
            &[],
            buffer.as_mut_slice().into(),
            &tag,
        ),
        len => return Err(DecryptError::BadIv { len }),
    }
    .map_err(|_| DecryptError::BadTag)?;
    Ok(buffer)
}

fn nonce<N: aes_gcm::aead::array::ArraySize>(iv: &[u8]) -> Result<Nonce<N>, DecryptError> {
    Nonce::<N>::try_from(iv).map_err(|_| DecryptError::BadIv { len: iv.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = *b"0123456789abcdef";

    #[test]
    fn round_trip_both_iv_lengths() {
        for iv in [[9u8; 12].as_slice(), [9u8; 16].as_slice()] {
            let (ct, tag) = seal(&KEY, iv, b"hello").expect("seal");
            assert_eq!(ct.len(), 5);
            assert_eq!(open(&KEY, iv, &ct, &tag), Ok(b"hello".to_vec()));
        }
    }

    /// NIST GCM test vector (gcmEncryptExtIV128, Count 0 of Keylen 128/IVlen 96/PTlen 128):
    /// pins that the cipher is AES-128-GCM with the tag apart.
    #[test]
    fn known_answer() {
        let key = [0u8; 16];
        let iv = [0u8; 12];
        let (ct, tag) = seal(&key, &iv, &[0u8; 16]).expect("seal");
        assert_eq!(
            ct,
            [
                0x03, 0x88, 0xda, 0xce, 0x60, 0xb6, 0xa3, 0x92, 0xf3, 0x28, 0xc2, 0xb9, 0x71, 0xb2,
                0xfe, 0x78
            ]
        );
        assert_eq!(
            tag,
            [
                0xab, 0x6e, 0x47, 0xd4, 0x2c, 0xec, 0x13, 0xbd, 0xf5, 0x3a, 0x67, 0xb2, 0x12, 0x57,
                0xbd, 0xdf
            ]
        );
    }

    #[test]
    fn refuses_tampering_and_bad_ivs() {
        let iv = [1u8; 12];
        let (mut ct, mut tag) = seal(&KEY, &iv, b"hello").expect("seal");
        tag[0] ^= 1;
        assert_eq!(open(&KEY, &iv, &ct, &tag), Err(DecryptError::BadTag));
        tag[0] ^= 1;
        ct[0] ^= 1;
        assert_eq!(open(&KEY, &iv, &ct, &tag), Err(DecryptError::BadTag));
        assert_eq!(
            open(&KEY, &[1u8; 8], &ct, &tag),
            Err(DecryptError::BadIv { len: 8 })
        );
        assert_eq!(
            seal(&KEY, &[], b"x").map(|_| ()),
            Err(DecryptError::BadIv { len: 0 })
        );
    }
}
