//! A tiny HTTP/1.1 GET client for the CLI's read-only commands (no TLS, loopback or LAN only),
//! so the binary needs no HTTP client stack.

use anyhow::{bail, Context as _};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Largest response accepted (a big cluster's /state is a few MB).
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

/// GETs `http://{addr}{path}` and returns the body of a 200 answer.
pub fn get(addr: &str, path: &str) -> anyhow::Result<String> {
    request("GET", addr, path, None)
}

/// PUTs a JSON body to `http://{addr}{path}` and returns the body of a 200 answer.
pub fn put_json(addr: &str, path: &str, body: &str) -> anyhow::Result<String> {
    request("PUT", addr, path, Some(body))
}

/// POSTs a JSON body to `http://{addr}{path}` and returns the body of a 200 answer.
pub fn post_json(addr: &str, path: &str, body: &str) -> anyhow::Result<String> {
    request("POST", addr, path, Some(body))
}

fn request(method: &str, addr: &str, path: &str, body: Option<&str>) -> anyhow::Result<String> {
    let addr = addr.trim_start_matches("http://").trim_end_matches('/');
    let mut s = TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    match body {
        None => write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\n\r\n"
        )?,
        Some(b) => write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )?,
    }
    let mut raw = Vec::new();
    s.take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut raw)
        .context("reading the response")?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    let status = head.lines().next().unwrap_or("");
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    if code != 200 {
        bail!("{addr}{path} answered {status}: {}", body.trim());
    }
    Ok(body)
}

fn dechunk(mut s: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("bad chunk header")?;
        let n = usize::from_str_radix(size.trim(), 16).context("bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        if rest.len() < n {
            bail!("truncated chunk");
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
}
