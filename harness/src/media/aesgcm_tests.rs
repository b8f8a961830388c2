//! The streaming cipher against the one-shot `aes-gcm` crate, and the reference syntax.

use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::array::Array as AeadArray;
use aes_gcm::aead::consts::U16;
use aes_gcm::{Aes256Gcm, AesGcm, KeyInit as _};
use proptest::prelude::*;

use super::*;

fn secret(seed: u8) -> MediaKey {
    let mut key = [0u8; KEY_LEN];
    let mut iv = [0u8; IV_LEN];
    for (i, b) in key.iter_mut().enumerate() {
        *b = seed.wrapping_mul(31).wrapping_add(i as u8);
    }
    for (i, b) in iv.iter_mut().enumerate() {
        *b = seed.wrapping_mul(7).wrapping_add(100 + i as u8);
    }
    MediaKey {
        iv: Iv::Standard(iv),
        key,
    }
}

fn plaintext(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

/// The one-shot reference: ciphertext then tag.
fn reference_seal(s: &MediaKey, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    let tag = match s.iv {
        Iv::Standard(iv) => {
            let c = Aes256Gcm::new(&AeadArray::from(s.key));
            c.encrypt_inout_detached(&AeadArray::from(iv), b"", buf.as_mut_slice().into())
                .unwrap()
        }
        Iv::Legacy(iv) => {
            let c = AesGcm::<aes::Aes256, U16>::new(&AeadArray::from(s.key));
            c.encrypt_inout_detached(&AeadArray::from(iv), b"", buf.as_mut_slice().into())
                .unwrap()
        }
    };
    buf.extend_from_slice(&tag);
    buf
}

/// Seals `plain` fed in the given chunk sizes (cycled).
fn seal_chunked(s: &MediaKey, plain: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut e = Encryptor::new(s);
    let mut out = Vec::new();
    let mut rest = plain;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        let mut chunk = rest[..n].to_vec();
        e.update(&mut chunk).unwrap();
        out.extend_from_slice(&chunk);
        rest = &rest[n..];
        i += 1;
    }
    assert_eq!(e.len(), plain.len() as u64);
    out.extend_from_slice(&e.finish());
    out
}

/// Opens `object` fed in the given chunk sizes (cycled; zero-length chunks included).
fn open_chunked(s: &MediaKey, object: &[u8], sizes: &[usize]) -> Result<Vec<u8>, GcmError> {
    let mut d = Decryptor::new(s);
    let mut out = Vec::new();
    let mut rest = object;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        out.extend_from_slice(d.update(&rest[..n])?);
        rest = &rest[n..];
        i += 1;
    }
    d.finish()?;
    Ok(out)
}

const LENGTHS: &[usize] = &[
    0, 1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 127, 128, 129, 255, 256, 257, 1000, 4095,
    4096, 4097, 65535, 65536, 65537, 200_003,
];

#[test]
fn equals_the_one_shot_crate_at_every_length() {
    for (n, &len) in LENGTHS.iter().enumerate() {
        let s = secret(n as u8);
        let plain = plaintext(len, n as u8);
        let want = reference_seal(&s, &plain);
        assert_eq!(want.len(), len + TAG_LEN);
        assert_eq!(seal(&s, &plain).unwrap(), want, "len {len} whole");
        for sizes in [&[1usize][..], &[16], &[15, 17], &[7, 64, 3], &[65536]] {
            if sizes == [1] && len > 5000 {
                continue; // byte by byte is covered by the shorter lengths
            }
            assert_eq!(seal_chunked(&s, &plain, sizes), want, "len {len} {sizes:?}");
            assert_eq!(
                open_chunked(&s, &want, sizes).unwrap(),
                plain,
                "len {len} {sizes:?}"
            );
        }
        assert_eq!(open(&s, &want).unwrap(), plain);
    }
}

#[test]
fn the_legacy_16_byte_iv_equals_the_one_shot_crate() {
    for &len in &[0usize, 1, 16, 17, 100, 4097] {
        let mut iv = [0u8; LEGACY_IV_LEN];
        iv.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = 200 - i as u8);
        let s = MediaKey {
            iv: Iv::Legacy(iv),
            key: [9; KEY_LEN],
        };
        let plain = plaintext(len, 3);
        let want = reference_seal(&s, &plain);
        assert_eq!(seal_chunked(&s, &plain, &[5, 16]), want, "len {len}");
        assert_eq!(open_chunked(&s, &want, &[3, 40]).unwrap(), plain);
    }
}

#[test]
fn any_flipped_byte_fails_the_tag() {
    let s = secret(1);
    for len in [0usize, 1, 16, 33] {
        let object = reference_seal(&s, &plaintext(len, 1));
        for i in 0..object.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = object.clone();
                bad[i] ^= bit;
                assert_eq!(
                    open_chunked(&s, &bad, &[1, 5, 16]),
                    Err(GcmError::BadTag),
                    "len {len} byte {i}"
                );
            }
        }
    }
}

#[test]
fn another_key_or_iv_fails_the_tag() {
    let object = reference_seal(&secret(1), &plaintext(100, 1));
    let mut other = secret(1);
    other.key[31] ^= 1;
    assert_eq!(open(&other, &object), Err(GcmError::BadTag));
    let mut other = secret(1);
    if let Iv::Standard(iv) = &mut other.iv {
        iv[0] ^= 1;
    }
    assert_eq!(open(&other, &object), Err(GcmError::BadTag));
}

#[test]
fn truncated_and_extended_objects_fail() {
    let s = secret(2);
    let object = reference_seal(&s, &plaintext(50, 2));
    for cut in 0..object.len() {
        let r = open_chunked(&s, &object[..cut], &[7]);
        let want = if cut < TAG_LEN {
            GcmError::Truncated
        } else {
            GcmError::BadTag
        };
        assert_eq!(r, Err(want), "cut at {cut}");
    }
    let mut longer = object.clone();
    longer.push(0);
    assert_eq!(open(&s, &longer), Err(GcmError::BadTag));
    // The empty plaintext's object is exactly a tag; nothing at all is truncated.
    assert_eq!(open(&s, &[]), Err(GcmError::Truncated));
}

#[test]
fn the_decryptor_holds_back_exactly_the_tag() {
    let s = secret(4);
    let object = reference_seal(&s, &plaintext(40, 4));
    let mut d = Decryptor::new(&s);
    assert!(d.update(&object[..10]).unwrap().is_empty());
    assert!(d.update(&object[10..16]).unwrap().is_empty());
    assert_eq!(d.update(&object[16..20]).unwrap().len(), 4);
    assert_eq!(d.update(&object[20..]).unwrap().len(), 36);
    assert_eq!(d.released(), 40);
    d.finish().unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn random_chunkings_agree(
        len in 0usize..3000,
        seed in any::<u8>(),
        sizes in proptest::collection::vec(0usize..300, 1..8),
    ) {
        let s = secret(seed);
        let plain = plaintext(len, seed);
        let want = reference_seal(&s, &plain);
        let enc_sizes: Vec<usize> = sizes.iter().map(|n| n + 1).collect();
        prop_assert_eq!(seal_chunked(&s, &plain, &enc_sizes), want.clone());
        // Zero-length chunks in the decryptor's feed are harmless.
        let mut dec_sizes = sizes.clone();
        dec_sizes.push(1);
        prop_assert_eq!(open_chunked(&s, &want, &dec_sizes).unwrap(), plain);
    }

    #[test]
    fn a_random_flip_fails(len in 0usize..500, at in any::<usize>(), bit in 0u8..8) {
        let s = secret(5);
        let mut object = reference_seal(&s, &plaintext(len, 5));
        let i = at % object.len();
        object[i] ^= 1 << bit;
        prop_assert_eq!(open_chunked(&s, &object, &[13]), Err(GcmError::BadTag));
    }

    /// Any text parses or is refused with a typed error, never a panic; what parses
    /// formats back to itself up to the case of the hex.
    #[test]
    fn parsing_never_panics(text in "\\PC{0,200}") {
        if let Ok(r) = AesgcmRef::parse(&text) {
            prop_assert!(text.to_ascii_lowercase().ends_with(&r.secret.fragment()));
        }
    }
}

const FRAGMENT: &str = "000102030405060708090a0b\
                        202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";

#[test]
fn a_reference_parses_and_formats() {
    let text = format!("aesgcm://media.example.org:8443/m/AbC-_9?x=1#{FRAGMENT}");
    let r = AesgcmRef::parse(&text).unwrap();
    assert_eq!(r.https_url(), "https://media.example.org:8443/m/AbC-_9?x=1");
    assert_eq!(r.authority(), "media.example.org:8443");
    assert_eq!(r.path(), "/m/AbC-_9");
    assert_eq!(r.query(), Some("x=1"));
    assert_eq!(r.secret.iv.as_bytes(), &(0u8..12).collect::<Vec<_>>()[..]);
    assert_eq!(r.secret.key.to_vec(), (32u8..64).collect::<Vec<_>>());
    assert_eq!(r.to_string(), text);
    // Upper-case hex is the same reference, formatted lowercase.
    let upper = format!(
        "aesgcm://media.example.org:8443/m/AbC-_9?x=1#{}",
        FRAGMENT.to_ascii_uppercase()
    );
    assert_eq!(AesgcmRef::parse(&upper).unwrap(), r);
    assert_eq!(AesgcmRef::parse(&upper).unwrap().to_string(), text);
    // From the https URL and the key, the same text.
    assert_eq!(
        AesgcmRef::from_https("https://media.example.org:8443/m/AbC-_9?x=1", r.secret)
            .unwrap()
            .to_string(),
        text
    );
    let v6 = AesgcmRef::parse(&format!("aesgcm://[::1]:9/a#{FRAGMENT}")).unwrap();
    assert_eq!(v6.https_url(), "https://[::1]:9/a");
    assert_eq!(v6.query(), None);
}

#[test]
fn the_legacy_fragment_parses_as_a_16_byte_iv() {
    let legacy = format!("{}{}", "ab".repeat(16), "cd".repeat(32));
    let r = AesgcmRef::parse(&format!("aesgcm://h/p#{legacy}")).unwrap();
    assert_eq!(r.secret.iv, Iv::Legacy([0xab; 16]));
    assert_eq!(r.secret.key, [0xcd; 32]);
    assert_eq!(r.to_string(), format!("aesgcm://h/p#{legacy}"));
}

#[test]
fn malformed_references_are_typed_errors() {
    let f = FRAGMENT;
    let cases: Vec<(String, RefError)> = vec![
        (format!("https://h/p#{f}"), RefError::NotAesgcm),
        (format!("aesgcm:/h/p#{f}"), RefError::NotAesgcm),
        ("aesgcm://h/p".into(), RefError::NoFragment),
        (
            format!("aesgcm://h/p#{f} "),
            RefError::BadCharacter { at: 101 },
        ),
        (format!(" aesgcm://h/p#{f}"), RefError::NotAesgcm),
        (
            format!("aesgcm://h/p#{f}\n"),
            RefError::BadCharacter { at: 101 },
        ),
        (
            format!("aesgcm://h/p é#{f}"),
            RefError::BadCharacter { at: 12 },
        ),
        (format!("aesgcm://h/p#{f}0"), RefError::FragmentLength(89)),
        (
            format!("aesgcm://h/p#{}", &f[2..]),
            RefError::FragmentLength(86),
        ),
        (format!("aesgcm://h/p#{f}00"), RefError::FragmentLength(90)),
        ("aesgcm://h/p#".into(), RefError::FragmentLength(0)),
        (
            format!("aesgcm://h/p#{}zz", &f[2..]),
            RefError::FragmentNotHex,
        ),
        (format!("aesgcm://h/p#{f}#"), RefError::FragmentLength(89)),
        (format!("aesgcm:///p#{f}"), RefError::BadAuthority("empty")),
        (
            format!("aesgcm://u@h/p#{f}"),
            RefError::BadAuthority("user information is not allowed"),
        ),
        (
            format!("aesgcm://h:/p#{f}"),
            RefError::BadAuthority("bad port"),
        ),
        (
            format!("aesgcm://h:99999/p#{f}"),
            RefError::BadAuthority("bad port"),
        ),
        (
            format!("aesgcm://h:8x/p#{f}"),
            RefError::BadAuthority("bad port"),
        ),
        (
            format!("aesgcm://h!/p#{f}"),
            RefError::BadAuthority("bad host"),
        ),
        (
            format!("aesgcm://[::1/p#{f}"),
            RefError::BadAuthority("unclosed ["),
        ),
        (
            format!("aesgcm://[zz]/p#{f}"),
            RefError::BadAuthority("bad IPv6 address"),
        ),
        (format!("aesgcm://h#{f}"), RefError::BadPath("no path")),
        (format!("aesgcm://h?q#{f}"), RefError::BadPath("no path")),
        (
            format!("aesgcm://h/a%2#{f}"),
            RefError::BadPath("bad percent escape"),
        ),
        (
            format!("aesgcm://h/a<b#{f}"),
            RefError::BadPath("bad character in the path"),
        ),
        (
            format!("aesgcm://h/a?b|c#{f}"),
            RefError::BadPath("bad character in the query"),
        ),
    ];
    for (text, want) in cases {
        let got = AesgcmRef::parse(&text);
        assert_eq!(got.as_ref().err(), Some(&want), "{text:?}: {got:?}");
        assert_eq!(want.reason(), "bad-url");
    }
}

#[test]
fn keys_stay_out_of_debug_output() {
    let r = AesgcmRef::parse(&format!("aesgcm://h/p#{FRAGMENT}")).unwrap();
    let shown = format!("{r:?} {:?}", r.secret);
    assert!(!shown.contains("2021222324"), "{shown}");
    assert!(shown.contains("https://h/p"), "{shown}");
}

#[test]
fn generated_keys_differ_and_hex_round_trips() {
    let (a, b) = (MediaKey::generate(), MediaKey::generate());
    assert_ne!(a.key, b.key);
    assert_ne!(a.iv, b.iv);
    assert_eq!(a.fragment().len(), 88);
    assert_eq!(
        decode_hex(&hex_lower(&[0, 255, 16])).unwrap(),
        vec![0, 255, 16]
    );
    assert_eq!(decode_hex("0A0b").unwrap(), vec![10, 11]);
    assert_eq!(decode_hex("0g"), None);
    assert_eq!(decode_hex("abc"), None);
}
