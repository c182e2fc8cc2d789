//! The transport phase's keys and cipher: what seals records once the handshake is over.
//!
//! Noise's own transport phase would run the handshake's cipher (AES-256-GCM) through
//! `snow`, which copies every record into its output before encrypting it in place. Here
//! the handshake ends with Noise's `Split()` (`dangerously_get_raw_split`: the two 32-byte
//! keys of the standard transport CipherStates, one per direction), and each direction's
//! key is derived from that and the handshake hash:
//!
//! `key = HMAC-SHA256(split key, "torronto transport v1 " || cipher || h)`, truncated to the
//! cipher's key length. AES-128-GCM for `Suite::AesGcm` (twice AES-256's speed with AES-NI),
//! ChaCha20-Poly1305 for `Suite::ChaChaPoly`. The 96-bit nonce is four zero bytes and the
//! record's 64-bit big-endian counter, one counter per direction starting at 0; the counter
//! never wraps (the last value is refused). Records are encrypted and decrypted in place.
//!
//! Forward secrecy and replay safety are Noise's: the split keys come from the ephemeral
//! Diffie-Hellman results, and `h` binds the keys to this very handshake's transcript.
//! Natively the cipher is ring's assembly; in wasm (and under `Providers::PureRust`) the
//! RustCrypto crates, which speak the same standard AEADs.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::error::SecureError;
use super::noise::{Providers, Suite};
use super::record::TAG_LEN;

/// What the derivation binds a key to, before the cipher's name and the handshake hash.
const LABEL: &[u8] = b"torronto transport v1 ";

/// One direction's AEAD, keyed.
pub(crate) enum Aead {
    #[cfg(not(target_arch = "wasm32"))]
    Ring(Box<ring::aead::LessSafeKey>),
    Aes128(Box<aes_gcm::Aes128Gcm>),
    ChaCha(Box<chacha20poly1305::ChaCha20Poly1305>),
}

/// The two directions' ciphers of a finished handshake: (send, receive).
pub(crate) fn transport_ciphers(
    state: &mut snow::HandshakeState,
    suite: Suite,
    providers: Providers,
) -> Result<(Aead, Aead), SecureError> {
    let hash = state.get_handshake_hash().to_vec();
    let (initiator_to_responder, responder_to_initiator) = state.dangerously_get_raw_split();
    // Key material is wiped once the ciphers hold what they need.
    let (send, receive) = match state.is_initiator() {
        true => (Zeroizing::new(initiator_to_responder), Zeroizing::new(responder_to_initiator)),
        false => (Zeroizing::new(responder_to_initiator), Zeroizing::new(initiator_to_responder)),
    };
    Ok((Aead::new(suite, providers, &send, &hash)?, Aead::new(suite, providers, &receive, &hash)?))
}

fn cipher_name(suite: Suite) -> &'static [u8] {
    match suite {
        Suite::AesGcm => b"AES-128-GCM",
        Suite::ChaChaPoly => b"ChaCha20-Poly1305",
    }
}

fn derive(split_key: &[u8; 32], suite: Suite, hash: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(split_key).expect("HMAC takes any key length");
    mac.update(LABEL);
    mac.update(cipher_name(suite));
    mac.update(hash);
    Zeroizing::new(mac.finalize().into_bytes().into())
}

/// The nonce of record number `counter`.
fn nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce
}

/// The counter a record may use, or the error once the counter is spent.
fn usable(counter: u64) -> Result<u64, SecureError> {
    if counter == u64::MAX {
        return Err(SecureError::Sequence("the record counter is spent: reconnect"));
    }
    Ok(counter)
}

impl Aead {
    fn new(suite: Suite, providers: Providers, split_key: &[u8; 32], hash: &[u8]) -> Result<Self, SecureError> {
        let key = derive(split_key, suite, hash);
        let bad_key = || SecureError::Noise("transport key".into());
        #[cfg(not(target_arch = "wasm32"))]
        if providers == Providers::Fastest {
            let algorithm = match suite {
                Suite::AesGcm => &ring::aead::AES_128_GCM,
                Suite::ChaChaPoly => &ring::aead::CHACHA20_POLY1305,
            };
            let key = ring::aead::UnboundKey::new(algorithm, &key[..algorithm.key_len()]).map_err(|_| bad_key())?;
            return Ok(Aead::Ring(Box::new(ring::aead::LessSafeKey::new(key))));
        }
        let _ = providers;
        Ok(match suite {
            Suite::AesGcm => {
                Aead::Aes128(Box::new(aes_gcm::Aes128Gcm::new_from_slice(&key[..16]).map_err(|_| bad_key())?))
            }
            Suite::ChaChaPoly => Aead::ChaCha(Box::new(
                chacha20poly1305::ChaCha20Poly1305::new_from_slice(&key[..]).map_err(|_| bad_key())?,
            )),
        })
    }

    /// Encrypts `in_out` in place as record number `counter`; returns the tag to append.
    pub(crate) fn seal(&self, counter: u64, in_out: &mut [u8]) -> Result<[u8; TAG_LEN], SecureError> {
        let nonce = nonce(usable(counter)?);
        let failed = || SecureError::Noise("seal".into());
        let tag: [u8; TAG_LEN] = match self {
            #[cfg(not(target_arch = "wasm32"))]
            Aead::Ring(key) => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(nonce);
                let tag =
                    key.seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), in_out).map_err(|_| failed())?;
                tag.as_ref().try_into().expect("16-byte tags")
            }
            Aead::Aes128(key) => {
                key.encrypt_in_place_detached(&nonce.into(), &[], in_out).map_err(|_| failed())?.into()
            }
            Aead::ChaCha(key) => {
                key.encrypt_in_place_detached(&nonce.into(), &[], in_out).map_err(|_| failed())?.into()
            }
        };
        Ok(tag)
    }

    /// Decrypts record number `counter`, whose ciphertext is `in_out[shift..]`, into
    /// `in_out[..in_out.len() - shift]` if `tag` authenticates it: in place when `shift` is
    /// 0, otherwise moved down as it is decrypted (ring's AES-GCM reads and writes in one
    /// pass; the RustCrypto ciphers decrypt in place, then move). On failure `in_out` holds
    /// garbage and the error says so.
    pub(crate) fn open(
        &self,
        counter: u64,
        in_out: &mut [u8],
        shift: usize,
        tag: &[u8; TAG_LEN],
    ) -> Result<(), SecureError> {
        let nonce = nonce(usable(counter)?);
        // (authenticated, already where it belongs)
        let (ok, moved) = match self {
            #[cfg(not(target_arch = "wasm32"))]
            Aead::Ring(key) => {
                let nonce = ring::aead::Nonce::assume_unique_for_key(nonce);
                let tag = ring::aead::Tag::from(*tag);
                (key.open_in_place_separate_tag(nonce, ring::aead::Aad::empty(), tag, in_out, shift..).is_ok(), true)
            }
            Aead::Aes128(key) => {
                (key.decrypt_in_place_detached(&nonce.into(), &[], &mut in_out[shift..], tag.into()).is_ok(), false)
            }
            Aead::ChaCha(key) => {
                (key.decrypt_in_place_detached(&nonce.into(), &[], &mut in_out[shift..], tag.into()).is_ok(), false)
            }
        };
        if ok && !moved && shift > 0 {
            in_out.copy_within(shift.., 0);
        }
        ok.then_some(()).ok_or(SecureError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_provider_speaks_the_same_aead() {
        for suite in Suite::ALL {
            let fast = Aead::new(suite, Providers::Fastest, &[5; 32], b"h").unwrap();
            let pure = Aead::new(suite, Providers::PureRust, &[5; 32], b"h").unwrap();
            let mut data = *b"a record of the transport phase";
            let tag = fast.seal(7, &mut data).unwrap();
            pure.open(7, &mut data, 0, &tag).unwrap();
            assert_eq!(&data, b"a record of the transport phase");
            let tag = pure.seal(8, &mut data).unwrap();
            assert_eq!(fast.open(9, &mut data.clone(), 0, &tag), Err(SecureError::Decrypt), "another counter");
            fast.open(8, &mut data, 0, &tag).unwrap();
            assert_eq!(&data, b"a record of the transport phase");
        }
    }

    #[test]
    fn keys_depend_on_split_key_cipher_and_transcript() {
        let base = derive(&[1; 32], Suite::AesGcm, b"h");
        assert_ne!(base, derive(&[2; 32], Suite::AesGcm, b"h"));
        assert_ne!(base, derive(&[1; 32], Suite::ChaChaPoly, b"h"));
        assert_ne!(base, derive(&[1; 32], Suite::AesGcm, b"g"));
    }

    #[test]
    fn the_last_counter_is_refused() {
        let aead = Aead::new(Suite::AesGcm, Providers::Fastest, &[5; 32], b"h").unwrap();
        assert!(aead.seal(u64::MAX, &mut [0; 4]).is_err());
        assert!(aead.seal(u64::MAX - 1, &mut [0; 4]).is_ok());
    }
}
