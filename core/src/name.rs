//! `FileName`: the only way a name from the network or a user becomes a path.
//!
//! Every other module takes a `FileName`, never a raw string, so a name that could
//! escape the node's folder cannot reach the storage layer.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest accepted path component, in bytes.
pub const MAX_COMPONENT_LEN: usize = 255;
/// The node's private state folder inside its shared folder; no file may live there.
pub const STATE_DIR: &str = ".torronto";

/// A validated relative file name: normal components separated by `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileName(String);

/// Why a string is not a valid [`FileName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("file name is empty")]
    Empty,
    #[error("file name is longer than {MAX_NAME_LEN} bytes")]
    TooLong,
    #[error("a path component is longer than {MAX_COMPONENT_LEN} bytes")]
    ComponentTooLong,
    #[error("file name must be relative (no leading '/')")]
    Absolute,
    #[error("file name has an empty component")]
    EmptyComponent,
    #[error("file name has a '.' or '..' component")]
    DotComponent,
    #[error("file name contains a backslash")]
    Backslash,
    #[error("file name contains NUL or a control character")]
    ControlChar,
    #[error("file name is inside the reserved {STATE_DIR} folder")]
    Reserved,
}

impl FileName {
    /// Validates `name` per the protocol's rules (docs/protocol.md, "File names").
    pub fn new(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::Empty);
        }
        if name.len() > MAX_NAME_LEN {
            return Err(NameError::TooLong);
        }
        if name.starts_with('/') {
            return Err(NameError::Absolute);
        }
        if name.contains('\\') {
            return Err(NameError::Backslash);
        }
        if name.chars().any(char::is_control) {
            return Err(NameError::ControlChar);
        }
        for (i, component) in name.split('/').enumerate() {
            match component {
                "" => return Err(NameError::EmptyComponent),
                "." | ".." => return Err(NameError::DotComponent),
                STATE_DIR if i == 0 => return Err(NameError::Reserved),
                c if c.len() > MAX_COMPONENT_LEN => return Err(NameError::ComponentTooLong),
                _ => {}
            }
        }
        Ok(Self(name.to_owned()))
    }

    /// The name a file inserted from `path` gets: its last path component.
    pub fn from_path_base(path: &str) -> Result<Self, NameError> {
        let base = path.trim_end_matches('/').rsplit('/').next().unwrap_or("");
        Self::new(base)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `/`-separated components, each a plain, non-empty name.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for FileName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for FileName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        FileName::new(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn accepts_normal_names() {
        for ok in ["a", "a.txt", "dir/sub/file.bin", "..a", "a..", ".hidden", "x/.torronto"] {
            assert!(FileName::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_every_escape() {
        let long_component = "x".repeat(256);
        let long_name = ["y"; 600].join("/");
        let cases: &[(&str, NameError)] = &[
            ("", NameError::Empty),
            ("/etc/passwd", NameError::Absolute),
            ("../x", NameError::DotComponent),
            ("a/../../x", NameError::DotComponent),
            ("./x", NameError::DotComponent),
            ("a//b", NameError::EmptyComponent),
            ("a/", NameError::EmptyComponent),
            ("a\\b", NameError::Backslash),
            ("a\0b", NameError::ControlChar),
            ("a\nb", NameError::ControlChar),
            (".torronto/token", NameError::Reserved),
            (".torronto", NameError::Reserved),
            (&long_component, NameError::ComponentTooLong),
            (&long_name, NameError::TooLong),
        ];
        for (name, want) in cases {
            assert_eq!(FileName::new(name).unwrap_err(), *want, "{name:?}");
        }
    }

    #[test]
    fn base_of_a_path() {
        assert_eq!(FileName::from_path_base("/tmp/x/report.pdf").unwrap().as_str(), "report.pdf");
        assert_eq!(FileName::from_path_base("file").unwrap().as_str(), "file");
        assert!(FileName::from_path_base("/").is_err());
        assert!(FileName::from_path_base("/tmp/..").is_err());
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<FileName>("\"../x\"").is_err());
        assert_eq!(serde_json::from_str::<FileName>("\"a/b\"").unwrap().as_str(), "a/b");
    }
}
