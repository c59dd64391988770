//! `GET /metrics` over plain HTTP/1.1: the registry encoded in the
//! OpenMetrics text format, one response per connection. Requests are
//! bounded (8 KiB of head, 5 s to send it, 16 connections at a time);
//! anything else gets a short error status, never a crash.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tracing::debug;

const MAX_HEAD: usize = 8 * 1024;
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_CONNECTIONS: usize = 16;
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Serves `registry` on `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (conn, _) = tokio::select! {
            _ = stop.changed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    debug!("metrics accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Busy: the scraper retries at its next interval.
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = answer(conn, &registry).await {
                debug!("metrics connection: {e}");
            }
        });
    }
}

/// The response to one request head.
fn respond(head: &[u8], registry: &Registry) -> (&'static str, &'static str, String) {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next(), parts.next());
    let path = target.map(|t| t.split('?').next().unwrap_or(t));
    match (method, path) {
        (Some("GET"), Some("/metrics")) => {
            let mut body = String::new();
            match prometheus_client::encoding::text::encode(&mut body, registry) {
                Ok(()) => ("200 OK", CONTENT_TYPE, body),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        }
        (Some("GET"), Some(_)) => ("404 Not Found", "text/plain", "only /metrics\n".into()),
        (Some(_), Some(_)) => ("405 Method Not Allowed", "text/plain", "only GET\n".into()),
        _ => ("400 Bad Request", "text/plain", "bad request\n".into()),
    }
}

async fn answer(mut conn: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let complete = tokio::time::timeout(HEAD_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(head.windows(4).any(|w| w == b"\r\n\r\n"))
    })
    .await;
    let (status, content_type, body) = match complete {
        Ok(Ok(true)) => respond(&head, registry),
        Ok(Ok(false)) => (
            "400 Bad Request",
            "text/plain",
            "incomplete request head\n".to_string(),
        ),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Ok(()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(response.as_bytes()).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_get_metrics_is_served() {
        let registry = Registry::default();
        let ok = respond(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &registry);
        assert_eq!(ok.0, "200 OK");
        assert!(ok.2.ends_with("# EOF\n"), "{}", ok.2);
        assert_eq!(
            respond(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n", &registry).0,
            "200 OK"
        );
        assert_eq!(
            respond(b"GET / HTTP/1.1\r\n\r\n", &registry).0,
            "404 Not Found"
        );
        assert_eq!(
            respond(b"POST /metrics HTTP/1.1\r\n\r\n", &registry).0,
            "405 Method Not Allowed"
        );
        assert_eq!(respond(b"\xff\xfe\r\n\r\n", &registry).0, "400 Bad Request");
        assert_eq!(respond(b"", &registry).0, "400 Bad Request");
    }
}
