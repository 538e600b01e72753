//! The listener: accepts TCP connections for the server, at most
//! `SLRGOV_MAX_CONNECTIONS_PER_PEER` at once from one IP address. A
//! connection over the limit is closed at once, before any byte is read,
//! so that one host cannot hold an unbounded number of connections (each
//! with its own HTTP/2 state and streams). The streams of one connection
//! are bounded by HTTP/2's `max_concurrent_streams`, set on the server.
//!
//! Behind a proxy every connection comes from the proxy's address: raise the
//! limit to what the proxy pools, or turn it off with `0`.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Open connections per peer address.
type Counts = Arc<Mutex<HashMap<IpAddr, u32>>>;

/// One accepted connection; its peer's count goes down when it is dropped.
#[derive(Debug)]
pub struct PeerConnection {
    stream: TcpStream,
    peer: Option<IpAddr>,
    counts: Counts,
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        let Some(peer) = self.peer else { return };
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&peer) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&peer);
            }
        }
    }
}

impl Connected for PeerConnection {
    type ConnectInfo = TcpConnectInfo;
    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for PeerConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for PeerConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections of `listener`, at most `per_peer` at once from one IP
/// address (`0`: no limit). Accept errors (out of file descriptors) are
/// logged and retried after a short pause, never the end of the server.
pub fn incoming(
    listener: TcpListener,
    per_peer: u32,
) -> impl Stream<Item = io::Result<PeerConnection>> + Send + 'static {
    let counts = Counts::default();
    futures::stream::unfold(
        (listener, counts, 0u64),
        move |(listener, counts, mut refused)| async move {
            loop {
                let (stream, address) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let peer = address.ip();
                let admitted = per_peer == 0 || {
                    let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
                    let count = map.entry(peer).or_insert(0);
                    if *count >= per_peer {
                        false
                    } else {
                        *count += 1;
                        true
                    }
                };
                if !admitted {
                    refused += 1;
                    // Logged on the first refusal and then every 1,000th, so
                    // a flood cannot flood the log too.
                    if refused % 1000 == 1 {
                        tracing::warn!(
                            %peer,
                            limit = per_peer,
                            refused,
                            "connection refused: the peer has its limit of open connections"
                        );
                    }
                    drop(stream);
                    continue;
                }
                // Small gRPC messages go out at once.
                let _ = stream.set_nodelay(true);
                let connection = PeerConnection {
                    stream,
                    peer: (per_peer != 0).then_some(peer),
                    counts: counts.clone(),
                };
                return Some((Ok(connection), (listener, counts, refused)));
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_peer_over_its_limit_is_closed_and_its_slot_comes_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut incoming = Box::pin(incoming(listener, 2));
        let first = TcpStream::connect(address).await.expect("connect");
        let a = incoming.next().await.expect("first").expect("ok");
        let _second = TcpStream::connect(address).await.expect("connect");
        let _b = incoming.next().await.expect("second").expect("ok");
        // The third is accepted by the kernel, then closed by the limit:
        // reading it sees the end of the stream.
        let mut third = TcpStream::connect(address).await.expect("connect");
        let pending = tokio::time::timeout(Duration::from_millis(300), incoming.next()).await;
        assert!(pending.is_err(), "the third connection is not handed over");
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read(&mut third, &mut byte),
        )
        .await
        .expect("closed, not left open");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
        // Closing one gives its slot back.
        drop(a);
        drop(first);
        let _fourth = TcpStream::connect(address).await.expect("connect");
        let fourth = tokio::time::timeout(Duration::from_secs(2), incoming.next())
            .await
            .expect("accepted once a slot is free");
        assert!(fourth.is_some_and(|c| c.is_ok()));
    }
}
