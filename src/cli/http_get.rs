//! A tiny HTTP/1.1 client for the CLI: GETs, and JSON PUT/POST sent on to the leader (no TLS,
//! loopback or LAN only), so the binary needs no HTTP client stack.

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

fn request(method: &str, addr: &str, path: &str, body: Option<&str>) -> anyhow::Result<String> {
    let answer = exchange(method, addr, path, body)?;
    if answer.code != 200 {
        bail!(
            "{}{path} answered {}: {}",
            answer.addr,
            answer.status,
            answer.body.trim()
        );
    }
    Ok(answer.body)
}

/// One HTTP answer, whatever its status.
struct Answer {
    addr: String,
    code: u16,
    status: String,
    /// The `Location` header of a redirect.
    location: Option<String>,
    body: String,
}

/// Sends the request to the first of `masters` that answers and follows a standby's `307` to
/// the leader once; returns the body of a 200 answer.
pub fn to_leader(
    method: &str,
    masters: &[String],
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<String> {
    let mut last = None;
    for m in masters {
        let answer = match exchange(method, m, path, body) {
            Ok(a) => a,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        let answer = match (answer.code, &answer.location) {
            (307, Some(loc)) => {
                let leader = loc
                    .trim_start_matches("http://")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                exchange(method, &leader, path, body)
                    .with_context(|| format!("{m} says the leader is {leader}"))?
            }
            _ => answer,
        };
        match answer.code {
            200 => return Ok(answer.body),
            // No leader known (an election under way): another master may know better.
            503 => last = Some(anyhow::anyhow!("{m}{path}: {}", answer.body.trim())),
            _ => bail!(
                "{}{path} answered {}: {}",
                answer.addr,
                answer.status,
                answer.body.trim()
            ),
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no master answered")))
}

fn exchange(method: &str, addr: &str, path: &str, body: Option<&str>) -> anyhow::Result<Answer> {
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
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    Ok(Answer {
        addr: addr.to_string(),
        code,
        status: status.to_string(),
        location,
        body,
    })
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
