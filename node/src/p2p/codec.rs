//! The request-response codec of `/shoal/owner/1`: a 4-byte big-endian length, then the
//! protobuf message. The length is checked against the cap before any byte of the body is
//! read, so a peer cannot make this node buffer more than the cap.

use std::io;

use libp2p::StreamProtocol;
use libp2p::futures::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use libp2p::request_response;
use shoal_protocol::peer::{
    MAX_REQUEST_SIZE, MAX_RESPONSE_SIZE, MessageError, OwnerRequest, OwnerResponse,
};

/// Encodes owner requests and responses for libp2p's request-response behaviour.
#[derive(Debug, Clone, Default)]
pub struct OwnerCodec;

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(invalid(MessageError::TooLarge { size: len, max }));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(body)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len()).map_err(|_| io::Error::other("frame over 4 GiB"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(body).await?;
    io.flush().await
}

/// Wraps a decoding refusal so that the asker can tell "the peer sent bad bytes" apart from
/// transport failures (see `P2pError::BadResponse`).
fn invalid(e: MessageError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl request_response::Codec for OwnerCodec {
    type Protocol = StreamProtocol;
    type Request = OwnerRequest;
    type Response = OwnerResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<OwnerRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, MAX_REQUEST_SIZE).await?;
        OwnerRequest::decode(&body).map_err(invalid)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<OwnerResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let body = read_frame(io, MAX_RESPONSE_SIZE).await?;
        OwnerResponse::decode(&body).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: OwnerRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &request.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: OwnerResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use libp2p::futures::executor::block_on;
    use libp2p::futures::io::Cursor;
    use libp2p::request_response::Codec as _;
    use shoal_protocol::peer::ErrorCode;

    use super::*;

    fn protocol() -> StreamProtocol {
        StreamProtocol::new(shoal_protocol::peer::OWNER_PROTOCOL)
    }

    #[test]
    fn frames_round_trip_with_a_length_prefix() {
        let response = OwnerResponse::Error(ErrorCode::NotFound);
        let mut out = Cursor::new(Vec::new());
        block_on(OwnerCodec.write_response(&protocol(), &mut out, response.clone())).unwrap();
        assert_eq!(out.get_ref(), &[0, 0, 0, 2, 0x18, 0x01]);
        let mut input = Cursor::new(out.into_inner());
        assert_eq!(block_on(OwnerCodec.read_response(&protocol(), &mut input)).unwrap(), response);
    }

    #[test]
    fn an_oversized_length_is_refused_without_reading_the_body() {
        // Only the prefix is there: reading any body would fail with UnexpectedEof instead.
        let claimed = (MAX_REQUEST_SIZE as u32 + 1).to_be_bytes();
        let mut input = Cursor::new(claimed.to_vec());
        let err = block_on(OwnerCodec.read_request(&protocol(), &mut input)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<MessageError>());
        assert!(matches!(inner, Some(MessageError::TooLarge { .. })), "{err}");
    }
}
