//! Which web pages may open a WebSocket session.
//!
//! Any page a user visits can ask the browser to open `ws://127.0.0.1:…`, so the
//! `Origin` a browser sends is the only thing telling the node's own control panel
//! from someone else's page. The `Host` header is not trusted for this: under DNS
//! rebinding a foreign page's Origin and Host agree. Clients that are not browsers
//! send no Origin; they are let in, and control still needs the token.

use std::net::IpAddr;

/// Origins allowed to open a session, normalised (lower case, no trailing `/`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// The origin of a page served at `host:port` (the listener's own address), its
    /// loopback spellings when the listener is reachable on loopback, and `extra`
    /// (`--allow-origin`, e.g. `http://example.org:8080`).
    pub fn for_listener(host: &str, port: u16, extra: &[String]) -> Result<Self, String> {
        let mut hosts = vec![bracket(host)];
        let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok();
        let on_loopback =
            host.eq_ignore_ascii_case("localhost") || ip.is_some_and(|ip| ip.is_loopback() || ip.is_unspecified());
        if on_loopback {
            hosts.extend(["localhost", "127.0.0.1", "[::1]"].map(String::from));
        }
        let mut allowed = Vec::new();
        for h in hosts {
            allowed.push(format!("http://{h}:{port}"));
            if port == 80 {
                // Browsers leave out the scheme's default port.
                allowed.push(format!("http://{h}"));
            }
        }
        for origin in extra {
            allowed.push(parse_origin(origin)?);
        }
        let mut allowed: Vec<String> = allowed.iter().map(|o| normalise(o)).collect();
        allowed.dedup();
        Ok(Self { allowed })
    }

    /// Whether a handshake with this `Origin` header value may proceed.
    pub fn allows(&self, origin: &str) -> bool {
        let origin = normalise(origin);
        self.allowed.contains(&origin)
    }

    /// Whether a request's `Host` header (`host[:port]`) names one of the allowed
    /// origins: the pages this listener serves answer to the names its sessions accept.
    pub fn allows_host(&self, host: &str) -> bool {
        ["http://", "https://"].iter().any(|scheme| self.allows(&format!("{scheme}{host}")))
    }

    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn normalise(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// Checks that a user-given origin is `scheme://host[:port]`, as browsers send it.
fn parse_origin(origin: &str) -> Result<String, String> {
    let o = origin.trim().trim_end_matches('/');
    let rest = o
        .strip_prefix("http://")
        .or_else(|| o.strip_prefix("https://"))
        .ok_or_else(|| format!("allowed origin {origin:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!("allowed origin {origin:?} must be scheme://host[:port], without a path"));
    }
    Ok(o.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origin_and_loopback_spellings_are_allowed() {
        let p = OriginPolicy::for_listener("127.0.0.1", 8001, &[]).unwrap();
        assert!(p.allows("http://127.0.0.1:8001"));
        assert!(p.allows("http://LOCALHOST:8001/"));
        assert!(p.allows("http://[::1]:8001"));
        assert!(!p.allows("http://127.0.0.1:8002"));
        assert!(!p.allows("http://evil.example:8001"));
        assert!(!p.allows("null"));
        assert!(!p.allows("https://127.0.0.1:8001"));
    }

    #[test]
    fn other_hosts_only_allow_themselves_and_extras() {
        let p = OriginPolicy::for_listener("10.1.2.3", 80, &["https://panel.example".into()]).unwrap();
        assert!(p.allows("http://10.1.2.3"));
        assert!(p.allows("http://10.1.2.3:80"));
        assert!(!p.allows("http://localhost:80"));
        assert!(p.allows("https://panel.example"));
        assert!(OriginPolicy::for_listener("::", 9, &[]).unwrap().allows("http://localhost:9"));
    }

    #[test]
    fn bad_extra_origins_are_explained() {
        for bad in ["panel.example", "http://", "http://a/b", "ftp://a"] {
            let err = OriginPolicy::for_listener("h", 1, &[bad.into()]).unwrap_err();
            assert!(err.contains("allowed origin"), "{bad}: {err}");
        }
    }
}
