//! The Noise construction and the one place core touches `snow`'s crypto providers.
//!
//! `snow` asks its resolver for a random number generator; core makes no OS calls, so the
//! resolver hands out the bytes the driver passed in (from the OS natively, from
//! `crypto.getRandomValues` in the browser) and nothing more. A handshake needs exactly one
//! draw of 32 bytes, for its ephemeral key; asking for more is an error, never a reuse.
//! Natively the ciphers come from ring (assembly using AES-NI/VAES, CLMUL, AVX2), elsewhere
//! from the pure-Rust default resolver; both speak the same standard AEADs.

use std::cell::Cell;

use sha2::{Digest as _, Sha256};
use snow::params::{CipherChoice, DHChoice, HashChoice, NoiseParams};
#[cfg(not(target_arch = "wasm32"))]
use snow::resolvers::RingResolver;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use super::error::SecureError;
use super::identity::Identity;
use super::secret::NetworkSecret;

/// Bound into the handshake hash: a torronto handshake cannot be spliced into another
/// protocol's, and a future version's never completes with this one.
pub const PROLOGUE: &[u8] = b"torronto secure v3";

/// Bytes of driver randomness one handshake consumes (its ephemeral private key).
pub const HANDSHAKE_ENTROPY_LEN: usize = 32;

/// The Noise protocols a connection may use; the initiator picks, the responder accepts
/// any. XX: both sides prove a static key, each learning the other's only encrypted;
/// psk0: the network secret keys everything from the first message on, so a stranger can
/// neither read nor answer it. The suite is part of the Noise protocol name, which starts
/// the handshake hash: a changed suite byte fails the first message like a wrong secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Suite {
    /// AES-GCM: Noise's AES-256-GCM in the handshake, AES-128-GCM records after it
    /// (`transport`); fastest where the CPU has AES instructions (native nodes).
    AesGcm,
    /// ChaCha20-Poly1305 in the handshake and the records: seven times faster than software
    /// AES in wasm (the browser).
    ChaChaPoly,
}

impl Suite {
    pub const ALL: [Suite; 2] = [Suite::AesGcm, Suite::ChaChaPoly];

    /// What this build offers when it dials: AES natively, ChaCha in wasm (measured in
    /// docs/security-design.md).
    pub fn preferred() -> Self {
        if cfg!(target_arch = "wasm32") {
            Suite::ChaChaPoly
        } else {
            Suite::AesGcm
        }
    }

    /// The Noise protocol name.
    pub fn noise_name(self) -> &'static str {
        match self {
            Suite::AesGcm => "Noise_XXpsk0_25519_AESGCM_SHA256",
            Suite::ChaChaPoly => "Noise_XXpsk0_25519_ChaChaPoly_SHA256",
        }
    }

    /// The byte that opens the first handshake record.
    pub(crate) fn id(self) -> u8 {
        match self {
            Suite::AesGcm => 1,
            Suite::ChaChaPoly => 2,
        }
    }

    pub(crate) fn from_id(id: u8) -> Option<Self> {
        Suite::ALL.into_iter().find(|suite| suite.id() == id)
    }

    fn params(self) -> NoiseParams {
        self.noise_name().parse().expect("suite names are valid Noise protocol names")
    }
}

/// Where the primitives come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Providers {
    /// ring's ciphers natively, the pure-Rust ones in wasm.
    Fastest,
    /// The pure-Rust ones everywhere: what a browser peer runs, for interoperability tests.
    #[cfg_attr(not(test), allow(dead_code))]
    PureRust,
}

/// Hands the driver's bytes to snow once.
struct DriverEntropy(Option<[u8; HANDSHAKE_ENTROPY_LEN]>);

impl Random for DriverEntropy {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        match self.0.take() {
            Some(bytes) if dest.len() <= bytes.len() => {
                dest.copy_from_slice(&bytes[..dest.len()]);
                Ok(())
            }
            _ => Err(snow::Error::Rng),
        }
    }
}

/// The chosen primitives, with the driver's entropy as the only randomness.
struct EntropyResolver {
    entropy: Cell<Option<[u8; HANDSHAKE_ENTROPY_LEN]>>,
    providers: Providers,
}

impl CryptoResolver for EntropyResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        self.entropy.take().map(|bytes| Box::new(DriverEntropy(Some(bytes))) as Box<dyn Random>)
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        match choice {
            HashChoice::SHA256 => Some(Box::new(NoiseSha256(Sha256::new()))),
            _ => None,
        }
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        let native = match self.providers {
            Providers::Fastest => native_cipher(choice),
            Providers::PureRust => None,
        };
        native.or_else(|| DefaultResolver.resolve_cipher(choice))
    }
}

/// SHA-256, the one hash every suite names, from the RustCrypto crate the default resolver
/// wraps too. Ours rather than the default resolver's, which would bring SHA-512 into the
/// browser's bundle (20 KiB) for suites that are never offered.
struct NoiseSha256(Sha256);

impl Hash for NoiseSha256 {
    fn name(&self) -> &'static str {
        "SHA256"
    }

    fn block_len(&self) -> usize {
        64
    }

    fn hash_len(&self) -> usize {
        32
    }

    fn reset(&mut self) {
        self.0 = Sha256::new();
    }

    fn input(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn result(&mut self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.0.finalize_reset());
    }
}

#[cfg(not(target_arch = "wasm32"))]
fn native_cipher(choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
    RingResolver.resolve_cipher(choice)
}

#[cfg(target_arch = "wasm32")]
fn native_cipher(_choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
    None
}

/// A started handshake for `identity` in the network of `secret`.
pub(crate) fn handshake_state(
    initiator: bool,
    suite: Suite,
    providers: Providers,
    identity: &Identity,
    secret: &NetworkSecret,
    entropy: [u8; HANDSHAKE_ENTROPY_LEN],
) -> Result<snow::HandshakeState, SecureError> {
    let resolver = EntropyResolver { entropy: Cell::new(Some(entropy)), providers };
    let builder = snow::Builder::with_resolver(suite.params(), Box::new(resolver))
        .prologue(PROLOGUE)?
        .psk(0, secret.psk())?
        .local_private_key(identity.private_key())?;
    Ok(if initiator { builder.build_initiator()? } else { builder.build_responder()? })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn entropy_is_handed_out_once() {
        let mut rng = DriverEntropy(Some([3; 32]));
        let mut buf = [0u8; 32];
        rng.try_fill_bytes(&mut buf).unwrap();
        assert_eq!(buf, [3; 32]);
        assert!(rng.try_fill_bytes(&mut buf).is_err());
        let resolver = EntropyResolver { entropy: Cell::new(Some([1; 32])), providers: Providers::Fastest };
        assert!(resolver.resolve_rng().is_some());
        assert!(resolver.resolve_rng().is_none());
    }

    #[test]
    fn our_sha256_keys_exactly_as_snows_own() {
        let mut ours: Box<dyn Hash> = Box::new(NoiseSha256(Sha256::new()));
        let mut snows = DefaultResolver.resolve_hash(&HashChoice::SHA256).unwrap();
        assert_eq!(
            (ours.name(), ours.block_len(), ours.hash_len()),
            (snows.name(), snows.block_len(), snows.hash_len())
        );
        let (mut a, mut b) = ([[0u8; 64]; 3], [[0u8; 64]; 3]);
        let [a1, a2, a3] = &mut a;
        let [b1, b2, b3] = &mut b;
        ours.input(b"left over from an earlier use");
        ours.hkdf(b"chaining key", b"input key material", 3, a1, a2, a3);
        snows.hkdf(b"chaining key", b"input key material", 3, b1, b2, b3);
        assert_eq!(a, b);
        assert_ne!(a[0], [0u8; 64]);
    }

    #[test]
    fn suites_round_trip_through_their_byte() {
        for suite in Suite::ALL {
            assert_eq!(Suite::from_id(suite.id()), Some(suite));
            let _ = suite.params();
        }
        assert_eq!(Suite::from_id(0), None);
        assert_eq!(Suite::from_id(b'{'), None, "an open-protocol JSON header is no suite");
    }
}
