//! How to call this program in a hint the user can paste: `torronto` when that name
//! on `PATH` is this very binary, else its absolute path, which works from any
//! terminal (a fresh checkout runs `target/release/torronto`, and a hint saying
//! `torronto` would answer "command not found").

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The command to print in hints, worked out once.
pub fn command() -> &'static str {
    static COMMAND: OnceLock<String> = OnceLock::new();
    COMMAND.get_or_init(|| {
        let Ok(exe) = std::env::current_exe().and_then(std::fs::canonicalize) else {
            return "torronto".to_owned();
        };
        let on_path =
            std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect::<Vec<_>>()).unwrap_or_default();
        command_for(&exe, &on_path)
    })
}

/// `torronto` if the first `torronto` in `path_dirs` is `exe`, else `exe`.
fn command_for(exe: &Path, path_dirs: &[PathBuf]) -> String {
    let first = path_dirs.iter().map(|dir| dir.join("torronto")).find(|candidate| candidate.is_file());
    match first.and_then(|found| std::fs::canonicalize(found).ok()) {
        Some(found) if found == exe => "torronto".to_owned(),
        _ => exe.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_alone_only_when_path_finds_this_binary() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let bin = root.join("target/release");
        let other = root.join("other");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        let exe = bin.join("torronto");
        std::fs::write(&exe, "").unwrap();
        std::fs::write(other.join("torronto"), "").unwrap();

        assert_eq!(command_for(&exe, &[other.clone(), bin.clone()][1..]), "torronto");
        // Another torronto comes first on PATH, or none is there: the hint names this one.
        assert_eq!(command_for(&exe, &[other, bin]), exe.display().to_string());
        assert_eq!(command_for(&exe, &[]), exe.display().to_string());
    }
}
