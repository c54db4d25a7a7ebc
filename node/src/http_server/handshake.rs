//! The TLS handshake of one connection, before hyper sees it: bounded by the header timeout
//! (a client that opens a socket and says nothing must not hold its slot), and a client that
//! speaks plain HTTP to the HTTPS port is told so in plain HTTP, as Go's servers do, instead
//! of seeing the connection drop — "use https://" is what a user has to change.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::send_timeout::ClientStream;

/// The first byte of every TLS record that opens a connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

const PLAIN_HTTP_ANSWER: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 79\r\n\r\nThis port serves the registry API over HTTPS: use https:// to reach this node.\n";

/// The connection once the handshake is done, or `None` (logged at debug: failed handshakes
/// are the client's business, and a port scan must not flood the log).
pub(super) async fn accept(
    stream: ClientStream,
    acceptor: TlsAcceptor,
    timeout: Duration,
) -> Option<TlsStream<ClientStream>> {
    let handshake = async {
        let mut first = [0u8; 1];
        if stream.get_ref().peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE_RECORD {
            let mut stream = stream;
            stream.write_all(PLAIN_HTTP_ANSWER).await?;
            let _ = stream.shutdown().await;
            return Err(std::io::Error::other("plain HTTP on the HTTPS port"));
        }
        acceptor.accept(stream).await
    };
    match tokio::time::timeout(timeout, handshake).await {
        Ok(Ok(stream)) => Some(stream),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(?timeout, "TLS handshake not finished in time");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    #[test]
    fn the_plain_http_answer_has_the_length_it_says() {
        let text = std::str::from_utf8(PLAIN_HTTP_ANSWER).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
    }

    #[tokio::test]
    async fn plain_http_is_told_to_use_https_and_silence_is_cut_off() {
        let pki = crate::tls::test_pki::Pki::new();
        let leaf = pki.leaf();
        let dir = tempfile::tempdir().unwrap();
        let files =
            crate::tls::TlsFiles { cert: dir.path().join("c.pem"), key: dir.path().join("k.pem") };
        std::fs::write(&files.cert, &leaf.cert_pem).unwrap();
        std::fs::write(&files.key, &leaf.key_pem).unwrap();
        let tls = crate::tls::ServerTls::load(&files).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = tls.acceptor().clone();
        let server = tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..2 {
                let (stream, _) = listener.accept().await.unwrap();
                let stream = super::super::send_timeout::apply(stream, Duration::from_secs(5));
                let accepted = accept(stream, acceptor.clone(), Duration::from_millis(300)).await;
                outcomes.push(accepted.is_some());
            }
            outcomes
        });

        let mut plain = TcpStream::connect(address).await.unwrap();
        plain.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut answer = String::new();
        plain.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 400") && answer.contains("https://"), "{answer}");

        let silent = TcpStream::connect(address).await.unwrap();
        assert_eq!(server.await.unwrap(), [false, false]);
        drop(silent);
    }
}
