//! How the owner's CLI finds a local node's control token without flags: a running
//! node registers itself for the user who started it in
//! `$XDG_STATE_HOME/torronto/nodes/<port>` (by the XDG Base Directory spec,
//! `~/.local/state` when `XDG_STATE_HOME` is unset, empty or relative), a file holding
//! its token, readable by that user only (folder 0700, file 0600); it is removed when
//! the node stops cleanly. Another user of the machine has another home and cannot
//! read this one, so a node's loopback port gives them nothing without the token. An
//! entry left by a killed node is handed only to a listener of this user
//! ([`crate::owner::foreign_listener`]).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The folder nodes register in for the current user, if a home is known.
pub fn default_dir() -> Option<PathBuf> {
    let absolute = |var: &str| std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute());
    let state = absolute("XDG_STATE_HOME").or_else(|| absolute("HOME").map(|home| home.join(".local/state")))?;
    Some(state.join("torronto/nodes"))
}

/// The registry file of the node listening on `port`.
pub fn entry(dir: &Path, port: u16) -> PathBuf {
    dir.join(port.to_string())
}

/// A node's registration; dropping it (at a clean shutdown) removes the file.
#[derive(Debug)]
pub struct Registration {
    path: PathBuf,
    token: String,
}

impl Registration {
    /// Registers the node on `port` with its control token in `dir`.
    pub fn create(dir: &Path, port: u16, token: &str) -> io::Result<Self> {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        // An older folder may have been made with looser rights.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let path = entry(dir, port);
        let tmp = dir.join(format!(".{port}.tmp"));
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
        f.write_all(format!("{token}\n").as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        Ok(Self { path, token: token.to_owned() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        // Only our own entry: another node may have taken the port over since.
        if lookup(&self.path).is_ok_and(|t| t == self.token) {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The token in registry file `path`, if it is there and nobody but its owner, the
/// current user, could have written or read it.
pub fn lookup(path: &Path) -> io::Result<String> {
    crate::owner::check_owner_only(path)?;
    let token = fs::read_to_string(path)?.trim().to_owned();
    if token.is_empty() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "empty"));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_is_owner_only_and_removed_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state/torronto/nodes");
        let reg = Registration::create(&dir, 7001, "abc").unwrap();
        assert_eq!(lookup(&entry(&dir, 7001)).unwrap(), "abc");
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(fs::metadata(reg.path()).unwrap().permissions().mode() & 0o777, 0o600);
        fs::set_permissions(reg.path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(lookup(reg.path()).is_err(), "a readable entry is not trusted");
        fs::set_permissions(reg.path(), fs::Permissions::from_mode(0o600)).unwrap();
        drop(reg);
        assert!(!entry(&dir, 7001).exists());
    }
}
