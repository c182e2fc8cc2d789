//! `NetworkSecret`: the 32 random bytes every member of a private network shares.
//!
//! It is the Noise pre-shared key: without it no handshake with a member completes. The
//! text form is what `torronto secret new` prints and `--secret FILE` reads.

use std::fmt;

use zeroize::Zeroize;

use super::error::KeyFileError;
use super::keyfile::{self, KEY_LEN};

/// A private network's shared secret. Wiped from memory when dropped; `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct NetworkSecret([u8; KEY_LEN]);

impl NetworkSecret {
    /// The tag of the secret's file line.
    pub const FILE_TAG: &'static str = "torronto-secret-v1";

    /// A new secret from 32 bytes of the driver's cryptographic randomness.
    pub fn from_random_bytes(bytes: [u8; KEY_LEN]) -> Self {
        NetworkSecret(bytes)
    }

    /// The file text: a comment saying what it is and how to keep it, then the key line.
    pub fn to_file_text(&self) -> String {
        keyfile::format(
            Self::FILE_TAG,
            &[
                "torronto network secret: start every node of the network with --secret FILE.",
                "Anyone holding it can join the network. Keep it owner-only (chmod 600).",
            ],
            &self.0,
        )
    }

    /// Reads a secret file; `#` comments and blank lines are allowed around the key line.
    pub fn from_file_text(text: &str) -> Result<Self, KeyFileError> {
        keyfile::parse(text, Self::FILE_TAG).map(NetworkSecret)
    }

    /// The bare 64 hex digits, as a panel URL carries the secret (`#…&secret=HEX`).
    /// Whoever sees this text can join the network.
    pub fn to_hex(&self) -> String {
        keyfile::to_hex(&self.0)
    }

    /// Reads the bare hex form of [`NetworkSecret::to_hex`] (either case).
    pub fn from_hex(text: &str) -> Result<Self, KeyFileError> {
        keyfile::from_hex(text.trim(), 1).map(NetworkSecret)
    }

    /// The Noise pre-shared key.
    pub(crate) fn psk(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl Drop for NetworkSecret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for NetworkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NetworkSecret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn file_round_trip() {
        let secret = NetworkSecret::from_random_bytes([9; 32]);
        let text = secret.to_file_text();
        assert!(text.lines().any(|l| l == format!("torronto-secret-v1 {}", "09".repeat(32))), "{text}");
        assert!(text.contains("chmod 600"));
        assert_eq!(NetworkSecret::from_file_text(&text), Ok(secret));
    }

    #[test]
    fn parse_errors_are_clear() {
        assert_eq!(
            NetworkSecret::from_file_text("").unwrap_err().to_string(),
            "no `torronto-secret-v1 <64 hex digits>` line found"
        );
        let identity = format!("torronto-identity-v1 {}\n", "00".repeat(32));
        assert_eq!(
            NetworkSecret::from_file_text(&identity).unwrap_err().to_string(),
            "line 1: this is a `torronto-identity-v1` file, not a `torronto-secret-v1` file"
        );
        let short = format!("# mine\ntorronto-secret-v1 {}\n", "ab".repeat(16));
        assert_eq!(
            NetworkSecret::from_file_text(&short).unwrap_err().to_string(),
            "line 2: the key must be 64 hex digits, found 32 characters"
        );
    }

    #[test]
    fn hex_round_trip() {
        let secret = NetworkSecret::from_random_bytes(std::array::from_fn(|i| (i * 7) as u8));
        let hex = secret.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(NetworkSecret::from_hex(&hex), Ok(secret.clone()));
        assert_eq!(NetworkSecret::from_hex(&hex.to_uppercase()), Ok(secret));
        assert!(NetworkSecret::from_hex(&hex[2..]).is_err());
        assert!(NetworkSecret::from_hex(&format!("{}zz", &hex[2..])).is_err());
    }

    #[test]
    fn debug_hides_the_bytes() {
        assert_eq!(format!("{:?}", NetworkSecret::from_random_bytes([0xab; 32])), "NetworkSecret(..)");
    }
}
