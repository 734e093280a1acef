//! Sends one signed delivery. The HTTP client resolves names through [`PublicOnly`], so it
//! connects only to addresses the endpoint check allows, whatever the name resolves to by then,
//! and it follows no redirect (a redirect is a failed attempt, with its status shown): a
//! redirect would be a way to a private address the check never saw.

use super::signature::WebhookSecret;
use super::target::{is_private, WebhookUrl};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long one attempt may take, connection included. A receiver should answer at once and
/// do its work later; one that takes longer is treated as failed and retried.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How much of a failed answer's body is kept to show the endpoint's owner.
const ERROR_BODY_BYTES: usize = 512;

/// One delivery's content: what is signed and sent.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// `webhook-id`: the same on every attempt, so a receiver can drop a repeat.
    pub id: &'a str,
    /// `webhook-timestamp`: seconds since the epoch, of this attempt.
    pub timestamp: i64,
    pub body: &'a [u8],
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The HTTP status, when the endpoint answered.
    pub status: Option<u16>,
    /// Why the attempt failed (none when it succeeded).
    pub error: Option<String>,
}

impl Attempt {
    pub fn succeeded(&self) -> bool {
        self.error.is_none()
    }
}

/// The client that sends every delivery of this process.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    allow_private: bool,
}

impl WebhookSender {
    pub fn new(allow_private: bool) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PublicOnly { allow_private }))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(ATTEMPT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(30))
            .user_agent(concat!("registrar-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(WebhookSender {
            client,
            allow_private,
        })
    }

    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// Posts one delivery to `url`, signed with `secret`. A 2xx answer is a success; anything
    /// else (another status, a redirect, a refused or timed-out connection) is a failure with
    /// its reason.
    pub async fn send(
        &self,
        url: &WebhookUrl,
        secret: &WebhookSecret,
        delivery: &Delivery<'_>,
    ) -> Attempt {
        // A literal address is never resolved, so the resolver cannot vet it: vet it here.
        if !self.allow_private {
            if let Some(ip) = literal_ip(url) {
                if is_private(ip) {
                    return failed(None, format!("{ip} is a private address"));
                }
            }
        }
        let signature = secret.sign(delivery.id, delivery.timestamp, delivery.body);
        let request = self
            .client
            .post(url.url().clone())
            .header("content-type", "application/json")
            .header("webhook-id", delivery.id)
            .header("webhook-timestamp", delivery.timestamp.to_string())
            .header("webhook-signature", signature)
            .body(delivery.body.to_vec());
        match request.send().await {
            Ok(response) if response.status().is_success() => Attempt {
                status: Some(response.status().as_u16()),
                error: None,
            },
            Ok(response) => {
                let status = response.status();
                let body = response.bytes().await.unwrap_or_default();
                let excerpt = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_BYTES)])
                    .trim()
                    .to_owned();
                let mut reason = format!("the endpoint answered {status}");
                if !excerpt.is_empty() {
                    reason.push_str(": ");
                    reason.push_str(&excerpt);
                }
                failed(Some(status.as_u16()), reason)
            }
            Err(e) => failed(None, describe(&e)),
        }
    }
}

fn failed(status: Option<u16>, error: String) -> Attempt {
    Attempt {
        status,
        error: Some(error),
    }
}

fn literal_ip(url: &WebhookUrl) -> Option<std::net::IpAddr> {
    match url.url().host()? {
        url::Host::Ipv4(ip) => Some(ip.into()),
        url::Host::Ipv6(ip) => Some(ip.into()),
        url::Host::Domain(_) => None,
    }
}

/// reqwest's error with its causes, which hold the useful part ("connection refused").
fn describe(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The client's resolver: the system's, with every private address dropped (unless allowed).
/// A name with nothing left fails to resolve, so no connection is made.
struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_private(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-shot HTTP server on loopback: answers `status` to one request and returns what
    /// it received.
    fn one_shot(status: &'static str) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut received = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let n = stream.read(&mut buffer).unwrap();
                received.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&received);
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if received.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let reply =
                format!("HTTP/1.1 {status}\r\ncontent-length: 4\r\nconnection: close\r\n\r\nnope");
            stream.write_all(reply.as_bytes()).unwrap();
            String::from_utf8_lossy(&received).into_owned()
        });
        (port, handle)
    }

    #[tokio::test]
    async fn a_delivery_is_signed_and_a_2xx_is_a_success() {
        let (port, server) = one_shot("204 No Content");
        let sender = WebhookSender::new(true).unwrap();
        let secret = WebhookSecret::generate().unwrap();
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/hook")).unwrap();
        let body = br#"{"type":"registration.created"}"#;
        let delivery = Delivery {
            id: "msg_1",
            timestamp: 1_700_000_000,
            body,
        };
        let attempt = sender.send(&url, &secret, &delivery).await;
        assert_eq!(
            attempt,
            Attempt {
                status: Some(204),
                error: None
            }
        );
        let request = server.join().unwrap();
        let header = |name: &str| {
            request
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .starts_with(&format!("{name}:"))
                        .then(|| l[name.len() + 1..].trim().to_owned())
                })
                .unwrap_or_else(|| panic!("no {name} in {request}"))
        };
        assert_eq!(header("webhook-id"), "msg_1");
        assert_eq!(header("webhook-timestamp"), "1700000000");
        assert!(secret.verify("msg_1", 1_700_000_000, body, &header("webhook-signature")));
        assert!(
            request.ends_with(std::str::from_utf8(body).unwrap()),
            "{request}"
        );
    }

    #[tokio::test]
    async fn other_statuses_and_redirects_fail_with_the_reason() {
        for (status, code) in [("500 Internal Server Error", 500), ("302 Found", 302)] {
            let (port, server) = one_shot(status);
            let sender = WebhookSender::new(true).unwrap();
            let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
            let delivery = Delivery {
                id: "msg_2",
                timestamp: 1,
                body: b"{}",
            };
            let attempt = sender
                .send(&url, &WebhookSecret::generate().unwrap(), &delivery)
                .await;
            assert_eq!(attempt.status, Some(code));
            let error = attempt.error.expect("a failure");
            assert!(
                error.contains(&code.to_string()) && error.ends_with("nope"),
                "{error}"
            );
            server.join().unwrap();
        }
    }

    #[tokio::test]
    async fn private_targets_are_never_contacted_unless_allowed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let sender = WebhookSender::new(false).unwrap();
        let secret = WebhookSecret::generate().unwrap();
        for host in ["127.0.0.1", "localhost"] {
            let url = WebhookUrl::parse(&format!("http://{host}:{port}/")).unwrap();
            let delivery = Delivery {
                id: "msg_3",
                timestamp: 1,
                body: b"{}",
            };
            let attempt = sender.send(&url, &secret, &delivery).await;
            assert_eq!(attempt.status, None, "{host}");
            assert!(attempt.error.is_some(), "{host}");
        }
        assert!(
            listener.accept().is_err(),
            "no connection reached the loopback listener"
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_failure_with_its_cause() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sender = WebhookSender::new(true).unwrap();
        let url = WebhookUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        let delivery = Delivery {
            id: "msg_4",
            timestamp: 1,
            body: b"{}",
        };
        let attempt = sender
            .send(&url, &WebhookSecret::generate().unwrap(), &delivery)
            .await;
        let error = attempt.error.expect("a failure");
        assert!(error.to_lowercase().contains("refused"), "{error}");
    }
}
