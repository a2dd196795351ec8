//! Process-level streaming: a 1 GiB upload through the real sidecar binary reaches
//! the service byte for byte while the sidecar's memory stays flat (the request body
//! is never read whole).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::*;

const GIB: u64 = 1 << 30;

/// A service that reads a `content-length` body to its end without keeping it and
/// answers with the number of bytes it read.
fn counting_service() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut length = 0u64;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut buf = vec![0u8; 1 << 16];
                let mut read = 0u64;
                while read < length {
                    let want = buf.len().min((length - read) as usize);
                    match r.read(&mut buf[..want]) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => read += n as u64,
                    }
                }
                let body = read.to_string();
                let mut s = s;
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}

/// A process's resident memory, in KiB (`VmRSS` or `VmHWM` of /proc).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_1_gib_upload_streams_through_the_sidecar_with_flat_memory() {
    let dir = tempfile::tempdir().unwrap();
    let service = counting_service();
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(&snapshot, OPEN_API_SNAPSHOT).unwrap();
    let (proxy, f) = proxy_from_snapshot(&snapshot, service);
    let edge = field(&f, "Edge listener").to_string();
    let pid = proxy.pid();
    // Warm up (pools, allocator), then take the baseline.
    assert_eq!(get(&edge, "/warm"), (200, "0".to_string()));
    let before = memory_kib(pid, "VmRSS");

    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut peak = 0;
            while !done.load(Ordering::Relaxed) {
                peak = peak.max(memory_kib(pid, "VmRSS"));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        })
    };
    let mut s = TcpStream::connect(&edge).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        s,
        "POST /upload HTTP/1.1\r\nhost: api\r\ncontent-length: {GIB}\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 1 << 16];
    for _ in 0..(GIB / chunk.len() as u64) {
        s.write_all(&chunk).unwrap();
    }
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    done.store(true, Ordering::Relaxed);
    let peak = sampler.join().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.ends_with(&GIB.to_string()),
        "the service read every byte: {response}"
    );
    let grew = peak.saturating_sub(before);
    eprintln!("sidecar RSS: {before} KiB before, {peak} KiB peak during the 1 GiB upload");
    assert!(
        grew < 16 * 1024,
        "sidecar RSS grew {grew} KiB during a 1 GiB upload (from {before} KiB)"
    );
}
