//! `FileName`: the only way a name from the network or a user becomes a path.
//!
//! Every other module takes a `FileName`, never a raw string, so a name that could
//! escape the node's folder cannot reach the storage layer. Names that would mislead a
//! reader are refused too: bidi controls (an RTL override shows `gpj.exe` as
//! `exe.jpg`), invisible characters, and look-alikes of `/` and `\`. Two names that
//! differ only in Unicode normalisation or case have the same [`FileName::folded`] key:
//! the node's file table keeps only the first (core/src/files.rs).

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
    #[error("file name contains an invisible or bidi control character (U+{0:04X})")]
    Invisible(u32),
    #[error("file name contains U+{0:04X}, which looks like a path separator")]
    SlashLookalike(u32),
}

/// Characters that change how a name is displayed without being seen: the bidi
/// controls (embeddings, overrides, isolates, marks) and the zero-width characters.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{180E}'
    )
}

/// Characters drawn like `/` or `\\`: a name showing `a／b` is one file, not a folder.
fn is_slash_lookalike(c: char) -> bool {
    matches!(c, '\u{2044}' | '\u{2215}' | '\u{29F5}' | '\u{29F8}' | '\u{29F9}' | '\u{FF0F}' | '\u{FF3C}')
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
        if let Some(c) = name.chars().find(|&c| is_invisible(c)) {
            return Err(NameError::Invisible(c.into()));
        }
        if let Some(c) = name.chars().find(|&c| is_slash_lookalike(c)) {
            return Err(NameError::SlashLookalike(c.into()));
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

    /// The key two names share when a person (or a case-insensitive file system) would
    /// take them for the same: NFC-normalised, then lower-cased. `README` and `readme`,
    /// or `é` precomposed and `e` + combining accent, have one key.
    pub fn folded(&self) -> String {
        fold(&self.0)
    }
}

/// Unicode Normalization Form C, then lower case.
#[cfg(not(target_arch = "wasm32"))]
fn fold(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    text.nfc().collect::<String>().to_lowercase()
}

/// Unicode Normalization Form C, then lower case, by the JS engine (wasm32 runs in
/// one): the same Unicode algorithms, whose tables the browser already has, where
/// unicode-normalization's and std's case tables would be 130 KiB of the bundle.
#[cfg(target_arch = "wasm32")]
fn fold(text: &str) -> String {
    js_sys::JsString::from(text).normalize("NFC").to_lower_case().into()
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
            ("invoice\u{202E}fdp.exe", NameError::Invisible(0x202E)),
            ("a\u{200B}b", NameError::Invisible(0x200B)),
            ("\u{FEFF}x", NameError::Invisible(0xFEFF)),
            ("\u{2067}x", NameError::Invisible(0x2067)),
            ("etc\u{FF0F}passwd", NameError::SlashLookalike(0xFF0F)),
            ("a\u{2215}b", NameError::SlashLookalike(0x2215)),
        ];
        for (name, want) in cases {
            assert_eq!(FileName::new(name).unwrap_err(), *want, "{name:?}");
        }
    }

    #[test]
    fn names_a_reader_would_confuse_fold_to_one_key() {
        let key = |s: &str| FileName::new(s).unwrap().folded();
        assert_eq!(key("README"), key("readme"));
        assert_eq!(key("Caf\u{e9}.txt"), key("cafe\u{301}.TXT"), "precomposed and combining accents");
        assert_ne!(key("a/b"), key("a/c"));
        assert!(FileName::new("日本語/файл.txt").is_ok(), "other scripts are fine");
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
