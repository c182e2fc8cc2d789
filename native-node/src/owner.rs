//! What belongs to the user running this process: files only they may read (the
//! identity, the control token, registry entries) and the loopback socket a CLI is about
//! to hand a registered token to.
//!
//! A node killed with SIGKILL leaves its registry entry behind, and another user of the
//! machine may then listen on its port: the CLI sends a registered token only to a port
//! whose loopback or wildcard listeners all belong to the current user, as the kernel
//! tells in `/proc/net/tcp` and `/proc/net/tcp6` (of this network namespace).

use std::fs;
use std::io::{self, BufRead};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The current user's id (the owner of this process).
pub fn my_uid() -> io::Result<u32> {
    fs::metadata("/proc/self").map(|m| m.uid())
}

/// Fails unless `path` belongs to the current user and nobody else may read or write it.
/// The error names the file and its mode; callers add what to do about it.
pub fn check_owner_only(path: &Path) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    let me = my_uid()?;
    if meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} belongs to another user (uid {})", path.display(), meta.uid()),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} is readable by others (mode {:o})", path.display(), meta.mode() & 0o777),
        ));
    }
    Ok(())
}

/// A listening TCP socket as `/proc/net/tcp{,6}` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    pub port: u16,
    /// Bound to a loopback or the wildcard address: reachable as `127.0.0.1`/`[::1]`.
    pub local: bool,
    pub uid: u32,
}

/// The listening sockets in one `/proc/net/tcp` or `/proc/net/tcp6` text.
pub fn parse_listeners(text: &str) -> Vec<Listener> {
    listeners_in(text.lines())
}

/// The listening sockets at the head of a table's `lines`, after its header. The kernel
/// lists a table's listening hash first and then the established one (every other
/// state, TIME_WAIT included, and never LISTEN), so reading stops at the first socket
/// that is not listening: what a CLI command pays no longer grows with the machine's
/// connections (a table of some 2,000 TIME_WAIT sockets took 10–30 ms to read whole,
/// on every command, and the benchmark's timed `torronto join`s paid it).
fn listeners_in<S: AsRef<str>>(lines: impl Iterator<Item = S>) -> Vec<Listener> {
    lines.skip(1).map_while(|line| parse_line(line.as_ref())).collect()
}

/// `sl local_address rem_address st tx:rx tr:when retrnsmt uid ...`, e.g.
/// `0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000 1000 ...`.
fn parse_line(line: &str) -> Option<Listener> {
    const LISTEN: &str = "0A";
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (local, state, uid) = (fields.get(1)?, fields.get(3)?, fields.get(7)?);
    if *state != LISTEN {
        return None;
    }
    let (ip, port) = local.split_once(':')?;
    Some(Listener { port: u16::from_str_radix(port, 16).ok()?, local: is_local_hex(ip)?, uid: uid.parse().ok()? })
}

/// Whether a kernel hex address (each 32-bit word in host byte order) is loopback or
/// the wildcard, for IPv4, IPv6 and IPv4-mapped IPv6.
fn is_local_hex(hex: &str) -> Option<bool> {
    let words = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<Vec<u32>>>()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip: std::net::IpAddr = match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok()?.into(),
        16 => {
            let v6 = std::net::Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
            v6.to_ipv4_mapped().map_or(v6.into(), Into::into)
        }
        _ => return None,
    };
    Some(ip.is_loopback() || ip.is_unspecified())
}

/// Why a registered token must not go to the local `port`, if it must not: some other
/// user listens there, or nothing of ours does (the node died and left its entry).
pub fn foreign_listener(port: u16) -> Option<String> {
    let me = match my_uid() {
        Ok(me) => me,
        Err(e) => return Some(format!("cannot tell who owns this process ({e})")),
    };
    let mut listeners = Vec::new();
    let mut read_any = false;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        if let Ok(file) = fs::File::open(table) {
            read_any = true;
            listeners.extend(listeners_in(io::BufReader::new(file).lines().map_while(Result::ok)));
        }
    }
    if !read_any {
        return Some("cannot read /proc/net/tcp to check who listens on the port".to_owned());
    }
    judge(&listeners, port, me)
}

fn judge(listeners: &[Listener], port: u16, me: u32) -> Option<String> {
    let on_port: Vec<&Listener> = listeners.iter().filter(|l| l.local && l.port == port).collect();
    if let Some(other) = on_port.iter().find(|l| l.uid != me) {
        return Some(format!(
            "another user (uid {}) listens on port {port}: the registered token was not sent to it",
            other.uid
        ));
    }
    if on_port.is_empty() {
        return Some(format!(
            "no node of this user listens on port {port}: the registry entry is stale (the node stopped without \
             removing it)"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1 1 0 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0
   2: 0A00020F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 3 1 0 100 0 0 10 0
   3: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1002        0 4 1 0 100 0 0 10 0
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:1F92 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1003        0 5 1
   1: 00000000000000000000000000000000:1F93 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1004        0 6 1
   2: 0000000000000000FFFF00000100007F:1F94 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1005        0 7 1
   3: 000080FE00000000FF00000200000000:1F95 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1006        0 8 1
";

    #[test]
    fn listeners_are_read_with_port_address_kind_and_owner() {
        let l = |port, local, uid| Listener { port, local, uid };
        // The established connection (state 01) on line 3 is no listener, and reading
        // stops there: the kernel lists every listener before it.
        assert_eq!(parse_listeners(TCP), vec![l(8080, true, 1000), l(22, true, 0), l(8081, false, 1001)]);
        let after = format!("{TCP}   4: 0100007F:1F96 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1007\n");
        assert_eq!(parse_listeners(&after).len(), 3);
        assert_eq!(
            parse_listeners(TCP6),
            vec![l(8082, true, 1003), l(8083, true, 1004), l(8084, true, 1005), l(8085, false, 1006)]
        );
    }

    #[test]
    fn a_token_goes_only_to_a_port_where_every_local_listener_is_ours() {
        let listeners = parse_listeners(TCP);
        assert_eq!(judge(&listeners, 8080, 1000), None);
        assert!(judge(&listeners, 8080, 1001).unwrap().contains("another user (uid 1000)"));
        assert!(judge(&listeners, 9999, 1000).unwrap().contains("stale"));
        // A listener on a non-local address is not where `127.0.0.1:8081` leads.
        assert!(judge(&listeners, 8081, 1001).unwrap().contains("stale"));
    }

    #[test]
    fn a_real_listener_of_ours_is_found_and_gone_once_closed() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(foreign_listener(port), None);
        drop(listener);
        assert!(foreign_listener(port).unwrap().contains("stale"));
    }

    #[test]
    fn a_file_is_owner_only_until_others_may_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        check_owner_only(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        let e = check_owner_only(&path).unwrap_err();
        assert!(e.to_string().contains("readable by others (mode 640)"), "{e}");
    }
}
