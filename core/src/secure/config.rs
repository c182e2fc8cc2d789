//! `SecureConfig`: who this node is in its private network, the same for every
//! connection; and `Hello`, what it tells each peer about itself inside the handshake.

use serde::{Deserialize, Serialize};

use super::error::SecureError;
use super::identity::Identity;
use super::noise::{Providers, Suite};
use super::secret::NetworkSecret;

/// Largest encoded `Hello`.
pub const MAX_HELLO_LEN: usize = 1024;

/// What a node tells its peer about itself, encrypted and bound to its key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Where the sender accepts connections (`host:port`, `[v6]:port`); none for a browser.
    #[serde(rename = "Listen", default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
}

impl Hello {
    pub fn listening_at(listen: impl Into<String>) -> Self {
        Hello { listen: Some(listen.into()) }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>, SecureError> {
        let bytes = serde_json::to_vec(self).expect("a Hello always serialises");
        check_len(bytes.len())?;
        Ok(bytes)
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, SecureError> {
        check_len(bytes.len())?;
        serde_json::from_slice(bytes).map_err(|err| SecureError::BadHello(err.to_string()))
    }
}

fn check_len(len: usize) -> Result<(), SecureError> {
    if len > MAX_HELLO_LEN {
        return Err(SecureError::BadHello(format!("{len} bytes, over {MAX_HELLO_LEN}")));
    }
    Ok(())
}

/// A node's part in a private network: its key pair, the network's secret, its `Hello`,
/// and the suite it offers when it dials (a responder accepts every suite).
#[derive(Clone, Debug)]
pub struct SecureConfig {
    pub identity: Identity,
    pub secret: NetworkSecret,
    pub hello: Hello,
    pub suite: Suite,
    pub(crate) providers: Providers,
}

impl SecureConfig {
    /// Offers [`Suite::preferred`] for this build.
    pub fn new(identity: Identity, secret: NetworkSecret, hello: Hello) -> Self {
        SecureConfig { identity, secret, hello, suite: Suite::preferred(), providers: Providers::Fastest }
    }
}
