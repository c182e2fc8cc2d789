//! `Identity`: a node's static X25519 key pair, made once and kept in an owner-only file.
//!
//! The native node writes the file under `DIR/.torronto/` with mode 0600 at first start;
//! the browser may keep one per page session. Only the public key's [`NodeId`] is shown.

use std::fmt;

use zeroize::Zeroize;

use super::error::KeyFileError;
use super::keyfile::{self, KEY_LEN};
use super::node_id::NodeId;
use super::x25519;

/// A node's key pair. The private half is wiped from memory when dropped; `Debug` shows
/// only the node ID.
#[derive(Clone)]
pub struct Identity {
    private: [u8; KEY_LEN],
    public: [u8; KEY_LEN],
}

impl Identity {
    /// The tag of the identity's file line.
    pub const FILE_TAG: &'static str = "torronto-identity-v1";

    /// A new identity from 32 bytes of the driver's cryptographic randomness.
    pub fn from_random_bytes(private: [u8; KEY_LEN]) -> Self {
        let public = x25519::x25519_public_key(&private);
        Identity { private, public }
    }

    pub fn public_key(&self) -> &[u8; KEY_LEN] {
        &self.public
    }

    pub fn node_id(&self) -> NodeId {
        NodeId::from_public_key(&self.public)
    }

    /// The file text: a comment naming the node ID, then the private key line.
    pub fn to_file_text(&self) -> String {
        let about = format!("torronto node identity {}: private key, keep it owner-only (chmod 600).", self.node_id());
        keyfile::format(Self::FILE_TAG, &[&about], &self.private)
    }

    /// Reads an identity file; the public key and node ID are derived again, not trusted
    /// from the comment.
    pub fn from_file_text(text: &str) -> Result<Self, KeyFileError> {
        keyfile::parse(text, Self::FILE_TAG).map(Self::from_random_bytes)
    }

    pub(crate) fn private_key(&self) -> &[u8; KEY_LEN] {
        &self.private
    }
}

impl Drop for Identity {
    fn drop(&mut self) {
        self.private.zeroize();
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({})", self.node_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn file_round_trip_keeps_the_node_id() {
        let identity = Identity::from_random_bytes([5; 32]);
        let text = identity.to_file_text();
        assert!(text.starts_with(&format!("# torronto node identity {}", identity.node_id())), "{text}");
        let read = Identity::from_file_text(&text).unwrap();
        assert_eq!(read.public_key(), identity.public_key());
        assert_eq!(read.node_id(), identity.node_id());
    }

    #[test]
    fn public_key_is_x25519_of_the_private_key() {
        // RFC 7748 section 6.1, Alice's key pair.
        let private: [u8; 32] = hex32("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let public = hex32("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let identity = Identity::from_random_bytes(private);
        assert_eq!(identity.public_key(), &public);
        // The node ID format, pinned by a known answer (docs/security-design.md shows it).
        assert_eq!(identity.node_id().to_string(), "GAGJZFQDJ-XEVEWOPNJ-HFML7ESAU-CFEAJW2PC");
    }

    #[test]
    fn parse_errors_are_clear_and_keep_the_key_out() {
        let secret_file = format!("torronto-secret-v1 {}\n", "7f".repeat(32));
        let err = Identity::from_file_text(&secret_file).unwrap_err().to_string();
        assert_eq!(err, "line 1: this is a `torronto-secret-v1` file, not a `torronto-identity-v1` file");
        let err = Identity::from_file_text("torronto-identity-v1 xyz\n").unwrap_err().to_string();
        assert_eq!(err, "line 1: the key must be 64 hex digits, found 3 characters");
    }

    #[test]
    fn debug_shows_only_the_node_id() {
        let identity = Identity::from_random_bytes([1; 32]);
        assert_eq!(format!("{identity:?}"), format!("Identity({})", identity.node_id()));
    }

    fn hex32(text: &str) -> [u8; 32] {
        std::array::from_fn(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
    }
}
