//! X25519 (RFC 7748) as the handshake and identities need it, from snow's own
//! implementation so there is one curve library: public keys and the low-order check.

use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::Dh;

fn curve25519() -> Box<dyn Dh> {
    DefaultResolver.resolve_dh(&DHChoice::Curve25519).expect("snow is built with use-curve25519")
}

/// The X25519 public key of a private key (RFC 7748).
pub(crate) fn x25519_public_key(private: &[u8; 32]) -> [u8; 32] {
    let mut dh = curve25519();
    dh.set(private);
    dh.pubkey().try_into().expect("X25519 public keys have 32 bytes")
}

/// Whether `public` is one of the few low-order points: a Diffie-Hellman with it gives
/// all zeros whatever the private key, so it proves nothing about who sent it. Any
/// clamped scalar (a multiple of the cofactor 8) maps exactly those points to zero.
pub(crate) fn is_low_order(public: &[u8; 32]) -> bool {
    let mut dh = curve25519();
    dh.set(&[0x42; 32]);
    let mut shared = [0u8; 32];
    // snow's X25519 never fails; an error would be as useless as a zero result.
    dh.dh(public, &mut shared).is_err() || shared == [0u8; 32]
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn low_order_points_are_recognised() {
        assert!(is_low_order(&[0; 32]));
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(is_low_order(&one));
        // The point of order 8 of RFC 7748's list of low-order points.
        let order8 = [
            0xe0, 0xeb, 0x7a, 0x7c, 0x3b, 0x41, 0xb8, 0xae, 0x16, 0x56, 0xe3, 0xfa, 0xf1, 0x9f, 0xc4, 0x6a, 0xda, 0x09,
            0x8d, 0xeb, 0x9c, 0x32, 0xb1, 0xfd, 0x86, 0x62, 0x05, 0x16, 0x5f, 0x49, 0xb8, 0x00,
        ];
        assert!(is_low_order(&order8));
        assert!(!is_low_order(&x25519_public_key(&[7; 32])));
    }
}
