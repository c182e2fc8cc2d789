//! I/O failures as the storage errors users see.

use std::io;

use torronto_core::{Code, StorageError};

/// The storage error a user sees for an I/O failure on `what`: a full disk is
/// ErrNoSpace, never a permission problem.
pub fn io_error(what: &str, e: &io::Error) -> StorageError {
    let code = match e.kind() {
        io::ErrorKind::NotFound => Code::FileMissing,
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => Code::NoSpace,
        _ => Code::BadPermission,
    };
    storage_error(code, format!("{what}: {e}"))
}

pub(super) fn storage_error(code: Code, message: String) -> StorageError {
    StorageError { code, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_reported_as_such_not_as_a_permission_problem() {
        let enospc = io::Error::from_raw_os_error(28);
        let e = io_error("big.bin", &enospc);
        assert_eq!(e.code, Code::NoSpace, "{}", e.message);
        assert!(e.message.contains("No space left on device"), "{}", e.message);
        assert_eq!(io_error("x", &io::Error::from_raw_os_error(122)).code, Code::NoSpace, "EDQUOT");
        assert_eq!(io_error("x", &io::Error::from_raw_os_error(13)).code, Code::BadPermission, "EACCES");
    }
}
