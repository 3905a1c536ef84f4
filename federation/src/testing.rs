//! Test support: a tiny HTTP/1.1 server on loopback and resolver seams. Tests never send a
//! packet anywhere but 127.0.0.0/8 and ::1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::guard::{Resolve, ResolveFuture};

/// What the test server saw.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) path: String,
}

/// What the test server answers.
#[derive(Debug, Clone)]
pub(crate) enum Reply {
    /// A complete answer.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `total` zero bytes, with or without a `Content-Length`, written as fast as the peer
    /// reads them.
    Stream { content_length: bool, total: u64 },
    /// A `Content-Length` of `total`, then one byte every `every`.
    Trickle { total: u64, every: Duration },
    /// Waits, then answers.
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    pub(crate) fn json(body: impl Into<Vec<u8>>) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    pub(crate) fn status(status: u16) -> Reply {
        Reply::Full {
            status,
            headers: vec![],
            body: b"nope".to_vec(),
        }
    }

    pub(crate) fn redirect(location: &str) -> Reply {
        Reply::Full {
            status: 302,
            headers: vec![("Location".into(), location.into())],
            body: vec![],
        }
    }

    pub(crate) fn with_header(mut self, name: &str, value: &str) -> Reply {
        if let Reply::Full { headers, .. } = &mut self {
            headers.push((name.into(), value.into()));
        }
        self
    }
}

type Handler = dyn Fn(&Request) -> Reply + Send + Sync;

/// A loopback HTTP server; stops when dropped.
pub(crate) struct TestServer {
    pub(crate) addr: SocketAddr,
    /// Requests answered.
    pub(crate) hits: Arc<AtomicUsize>,
    /// Body bytes written, over all requests.
    pub(crate) written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    pub(crate) fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// Serves `handler` on `bind` (a loopback address, port 0 for any).
pub(crate) async fn serve(
    bind: &str,
    handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> io::Result<TestServer> {
    let addr: SocketAddr = bind.parse().map_err(io::Error::other)?;
    assert!(addr.ip().is_loopback(), "test servers only bind loopback");
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let hits = Arc::new(AtomicUsize::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let handler: Arc<Handler> = Arc::new(handler);
    let (h, w) = (Arc::clone(&hits), Arc::clone(&written));
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (handler, hits, written) = (Arc::clone(&handler), Arc::clone(&h), Arc::clone(&w));
            tokio::spawn(async move {
                let _ = answer(stream, &*handler, &hits, &written).await;
            });
        }
    });
    Ok(TestServer {
        addr,
        hits,
        written,
        task,
    })
}

async fn answer(
    mut stream: TcpStream,
    handler: &Handler,
    hits: &AtomicUsize,
    written: &AtomicU64,
) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    let path = text
        .lines()
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    hits.fetch_add(1, Ordering::SeqCst);
    let mut reply = handler(&Request { path });
    while let Reply::Delayed(d, inner) = reply {
        tokio::time::sleep(d).await;
        reply = *inner;
    }
    match reply {
        Reply::Full {
            status,
            headers,
            body,
        } => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
            written.fetch_add(body.len() as u64, Ordering::SeqCst);
        }
        Reply::Stream {
            content_length,
            total,
        } => {
            let mut head = "HTTP/1.1 200 OK\r\nConnection: close\r\n".to_string();
            if content_length {
                head.push_str(&format!("Content-Length: {total}\r\n"));
            }
            head.push_str("\r\n");
            stream.write_all(head.as_bytes()).await?;
            let block = vec![0u8; 64 * 1024];
            let mut sent = 0u64;
            while sent < total {
                let n = block.len().min((total - sent) as usize);
                stream.write_all(&block[..n]).await?;
                sent += n as u64;
                written.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
        Reply::Trickle { total, every } => {
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n");
            stream.write_all(head.as_bytes()).await?;
            for _ in 0..total {
                stream.write_all(b"x").await?;
                stream.flush().await?;
                written.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(every).await;
            }
        }
        Reply::Delayed(..) => {}
    }
    stream.shutdown().await
}

/// A resolver seam: fixed answers per name, and a log of every lookup. Unknown names fail.
#[derive(Default)]
pub(crate) struct MapResolver {
    answers: Mutex<HashMap<String, Vec<Vec<IpAddr>>>>,
    lookups: Mutex<Vec<String>>,
}

impl MapResolver {
    /// `name` resolves to `ips` (every time).
    pub(crate) fn with(self, name: &str, ips: &[&str]) -> MapResolver {
        self.sequence(name, &[ips])
    }

    /// `name` resolves to `answers[0]`, then `answers[1]`, ...; the last answer repeats.
    pub(crate) fn sequence(self, name: &str, answers: &[&[&str]]) -> MapResolver {
        let parsed = answers
            .iter()
            .map(|a| a.iter().map(|ip| ip.parse().unwrap()).collect())
            .collect();
        self.answers
            .lock()
            .unwrap()
            .insert(name.to_string(), parsed);
        self
    }

    /// Every name looked up so far, in order.
    pub(crate) fn lookups(&self) -> Vec<String> {
        self.lookups.lock().unwrap().clone()
    }
}

impl Resolve for MapResolver {
    fn resolve<'a>(&'a self, host: &'a str) -> ResolveFuture<'a> {
        self.lookups.lock().unwrap().push(host.to_string());
        let mut answers = self.answers.lock().unwrap();
        let result = match answers.get_mut(host) {
            Some(seq) if seq.len() > 1 => Ok(seq.remove(0)),
            Some(seq) => Ok(seq.first().cloned().unwrap_or_default()),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host}: no such test name"),
            )),
        };
        Box::pin(async move { result })
    }
}
