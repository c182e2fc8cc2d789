//! The one-key text files shared by identities and network secrets.
//!
//! A file holds exactly one line `<tag> <64 hex digits>`; lines starting with `#` and blank
//! lines are skipped, so a user may annotate the file. Text, not binary, so it survives
//! copying through a terminal or a configuration tool.

use super::error::KeyFileError;

/// Bytes of every key this format carries.
pub(crate) const KEY_LEN: usize = 32;

/// Every tag the project writes, so that a mix-up gets named rather than called malformed.
const KNOWN_TAGS: [&str; 2] = ["torronto-identity-v1", "torronto-secret-v1"];

/// Writes the file: comment lines (each gets `# `), then the key line.
pub(crate) fn format(tag: &str, comments: &[&str], key: &[u8; KEY_LEN]) -> String {
    let mut text = String::new();
    for comment in comments {
        text.push_str("# ");
        text.push_str(comment);
        text.push('\n');
    }
    text.push_str(tag);
    text.push(' ');
    text.push_str(&to_hex(key));
    text.push('\n');
    text
}

/// Reads the key of a `tag` file.
pub(crate) fn parse(text: &str, tag: &'static str) -> Result<[u8; KEY_LEN], KeyFileError> {
    let mut key = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut words = trimmed.split_whitespace();
        let found = words.next().unwrap_or_default();
        if found != tag {
            if let Some(other) = KNOWN_TAGS.iter().find(|known| **known == found) {
                return Err(KeyFileError::WrongKind { line, found: (*other).to_owned(), tag });
            }
            return Err(KeyFileError::Malformed { line, tag });
        }
        let (Some(value), None) = (words.next(), words.next()) else {
            return Err(KeyFileError::Malformed { line, tag });
        };
        if key.is_some() {
            return Err(KeyFileError::Duplicate { line });
        }
        key = Some(from_hex(value, line)?);
    }
    key.ok_or(KeyFileError::Missing { tag })
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes.iter().flat_map(|b| [DIGITS[usize::from(b >> 4)] as char, DIGITS[usize::from(b & 15)] as char]).collect()
}

pub(crate) fn from_hex(text: &str, line: usize) -> Result<[u8; KEY_LEN], KeyFileError> {
    if text.len() != 2 * KEY_LEN {
        return Err(KeyFileError::BadLength { line, found: text.chars().count() });
    }
    let mut key = [0u8; KEY_LEN];
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| (c as char).to_digit(16).ok_or(KeyFileError::NotHex { line });
        *byte = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const TAG: &str = "torronto-secret-v1";

    fn key() -> [u8; KEY_LEN] {
        std::array::from_fn(|i| (i * 37 + 5) as u8)
    }

    #[test]
    fn round_trips_with_comments() {
        let text = format(TAG, &["a comment"], &key());
        assert!(text.starts_with("# a comment\ntorronto-secret-v1 "));
        assert_eq!(parse(&text, TAG), Ok(key()));
    }

    #[test]
    fn tolerates_blank_lines_comments_upper_case_and_crlf() {
        let hex = to_hex(&key()).to_uppercase();
        let text = format!("\r\n# made by hand\r\n\r\n  {TAG}   {hex}  \r\n# end\r\n");
        assert_eq!(parse(&text, TAG), Ok(key()));
    }

    #[test]
    fn names_what_is_wrong_and_where() {
        let hex = to_hex(&key());
        assert_eq!(parse("# nothing\n\n", TAG), Err(KeyFileError::Missing { tag: TAG }));
        assert_eq!(
            parse(&format!("torronto-identity-v1 {hex}\n"), TAG),
            Err(KeyFileError::WrongKind { line: 1, found: "torronto-identity-v1".into(), tag: TAG })
        );
        assert_eq!(parse(&format!("\n{hex}\n"), TAG), Err(KeyFileError::Malformed { line: 2, tag: TAG }));
        assert_eq!(parse(&format!("{TAG}\n"), TAG), Err(KeyFileError::Malformed { line: 1, tag: TAG }));
        assert_eq!(parse(&format!("{TAG} {hex} extra\n"), TAG), Err(KeyFileError::Malformed { line: 1, tag: TAG }));
        assert_eq!(parse(&format!("{TAG} {}\n", &hex[1..]), TAG), Err(KeyFileError::BadLength { line: 1, found: 63 }));
        let bad = format!("{TAG} {}g\n", &hex[1..]);
        assert_eq!(parse(&bad, TAG), Err(KeyFileError::NotHex { line: 1 }));
        let twice = format!("{TAG} {hex}\n{TAG} {hex}\n");
        assert_eq!(parse(&twice, TAG), Err(KeyFileError::Duplicate { line: 2 }));
    }

    #[test]
    fn errors_never_quote_the_key() {
        let hex = to_hex(&key());
        for text in [format!("{TAG} {hex}x\n"), format!("torronto-identity-v1 {hex}\n"), format!("{hex}\n")] {
            let message = parse(&text, TAG).unwrap_err().to_string();
            assert!(!message.contains(&hex[..8]), "{message}");
        }
    }
}
