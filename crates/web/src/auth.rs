//! Access control: the access token (random, printed once at start), its
//! constant-time check on every request, the cookie the page keeps it in,
//! and the WebSocket `Origin` check (no cross-site WebSocket hijacking).

use std::io::Read;

use axum::http::{header, HeaderMap, Uri};

use crate::Error;

/// A new random access token: 32 bytes from the kernel's CSPRNG, in hex.
pub fn new_token() -> Result<String, Error> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| Error::Io("cannot read /dev/urandom".into(), e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// `a == b` in time that depends only on the lengths (never on where the
/// first difference is).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The cookie name for a server on `port` (two servers on one host keep
/// their own tokens: cookies do not tell ports apart).
pub fn cookie_name(port: u16) -> String {
    format!("umlkit_web_{port}")
}

/// The `Set-Cookie` value that keeps the token in the browser.
pub fn set_cookie(port: u16, token: &str) -> String {
    format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict",
        cookie_name(port)
    )
}

/// The token a request carries: `Authorization: Bearer T`, the cookie, or
/// `?token=T` (the URL printed at start).
pub fn presented(headers: &HeaderMap, uri: &Uri, port: u16) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(v.trim().to_string());
    }
    let name = cookie_name(port);
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for kv in v.split(';') {
            if let Some((k, val)) = kv.trim().split_once('=') {
                if k == name {
                    return Some(val.to_string());
                }
            }
        }
    }
    query_token(uri)
}

/// `token=` in the query string.
pub fn query_token(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_string)
}

/// A WebSocket upgrade's `Origin` is acceptable: absent (not a browser;
/// the token still has to be right) or the very host the request was sent
/// to (`http://HOST` with HOST the request's `Host` header).
pub fn origin_ok(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    origin == format!("http://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abcd", b"abcd"));
        assert!(!same(b"abcd", b"abce"));
        assert!(!same(b"abcd", b"abc"));
        assert!(!same(b"", b"a"));
        let t = new_token().unwrap();
        assert_eq!(t.len(), 64);
        assert_ne!(t, new_token().unwrap());
    }

    #[test]
    fn token_is_found_in_header_cookie_or_query() {
        let mut h = HeaderMap::new();
        let u: Uri = "/x?a=1&token=q".parse().unwrap();
        assert_eq!(presented(&h, &u, 80).as_deref(), Some("q"));
        h.insert(header::COOKIE, "a=b; umlkit_web_80=c".parse().unwrap());
        assert_eq!(presented(&h, &u, 80).as_deref(), Some("c"));
        assert_eq!(
            presented(&h, &"/".parse().unwrap(), 81),
            None,
            "another port's cookie"
        );
        h.insert(header::AUTHORIZATION, "Bearer h".parse().unwrap());
        assert_eq!(presented(&h, &u, 80).as_deref(), Some("h"));
    }

    #[test]
    fn foreign_origins_are_refused() {
        let mut h = HeaderMap::new();
        assert!(origin_ok(&h));
        h.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
        h.insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
        assert!(origin_ok(&h));
        h.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!origin_ok(&h));
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(!origin_ok(&h));
    }
}
