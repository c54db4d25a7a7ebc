//! A client that stops reading: once its socket has taken no bytes for `send_timeout`, writes
//! to it fail and hyper ends the connection, freeing its slot and the buffers its response held.
//!
//! hyper has no such limit. Without it a client that opens a pull and then never reads keeps a
//! connection, a slot under `max_connections` and up to a connection buffer plus a blob chunk
//! for good. Only a *pending* write is timed: an idle keep-alive connection, or a response
//! waiting for its bytes from a peer or the upstream, has nothing to write and is not cut here
//! (the idle timeout and the download's own stall limits deal with those).

use std::pin::Pin;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_io_timeout::TimeoutStream;

/// A client's socket with the send timeout applied.
pub(super) type ClientStream = Pin<Box<TimeoutStream<TcpStream>>>;

pub(super) fn apply(stream: TcpStream, send_timeout: Duration) -> ClientStream {
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(send_timeout));
    Box::pin(stream)
}

/// Whether a connection ended because its client stopped reading.
pub(super) fn is_send_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        cause = e.source();
    }
    false
}
