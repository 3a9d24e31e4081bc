//! Framing on QUIC streams: each [`Envelope`] is preceded by its encoded length as a varint.
//!
//! The length is checked against [`MAX_MESSAGE`] before anything is allocated, so a hostile
//! or corrupted length cannot make a peer reserve gigabytes; anything that does not decode is
//! an error that closes the connection, never a panic.

use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::proto::Envelope;

/// Largest message either side accepts (a telemetry batch is a few hundred kilobytes).
pub const MAX_MESSAGE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes is over the {MAX_MESSAGE}-byte limit")]
    TooLarge(usize),
    #[error("message length is not a valid varint")]
    BadLength,
    #[error("stream ended inside a message")]
    Truncated,
    #[error("message does not decode: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes one envelope (length prefix and body) in a single write.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &Envelope,
) -> Result<(), WireError> {
    let len = message.encoded_len();
    if len > MAX_MESSAGE {
        return Err(WireError::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(len + 5);
    message
        .encode_length_delimited(&mut buf)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    w.write_all(&buf).await?;
    Ok(())
}

/// Reads one envelope. `Ok(None)` is a clean end of stream between messages.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Envelope>, WireError> {
    let mut len: u64 = 0;
    for i in 0..10 {
        let byte = match r.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return if i == 0 {
                    Ok(None)
                } else {
                    Err(WireError::Truncated)
                };
            }
            Err(e) => return Err(e.into()),
        };
        len |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            let len = usize::try_from(len).map_err(|_| WireError::BadLength)?;
            if len > MAX_MESSAGE {
                return Err(WireError::TooLarge(len));
            }
            let mut body = vec![0u8; len];
            r.read_exact(&mut body).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => WireError::Truncated,
                _ => WireError::Io(e),
            })?;
            return Ok(Some(Envelope::decode(body.as_slice())?));
        }
    }
    Err(WireError::BadLength)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{envelope::Body, Ack, Hello, StreamState};
    use proptest::prelude::*;

    fn hello() -> Envelope {
        Envelope {
            body: Some(Body::Hello(Hello {
                protocol_version: 1,
                software: "edge-daemon test".into(),
                streams: vec![StreamState {
                    stream: crate::stream::Stream::Telemetry.name().into(),
                    oldest_held: 1,
                    newest: 1_000,
                    believed_acked: 900,
                }],
            })),
        }
    }

    fn read_all(bytes: Vec<u8>) -> Vec<Result<Option<Envelope>, String>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut r = bytes.as_slice();
            let mut out = Vec::new();
            loop {
                let m = read_message(&mut r).await.map_err(|e| e.to_string());
                let done = !matches!(m, Ok(Some(_)));
                out.push(m);
                if done {
                    return out;
                }
            }
        })
    }

    #[tokio::test]
    async fn messages_round_trip_over_a_stream() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        let ack = Envelope {
            body: Some(Body::Ack(Ack {
                stream: crate::stream::Stream::Telemetry.name().into(),
                seq: 42,
            })),
        };
        write_message(&mut a, &hello()).await.unwrap();
        write_message(&mut a, &ack).await.unwrap();
        drop(a);
        assert_eq!(read_message(&mut b).await.unwrap(), Some(hello()));
        assert_eq!(read_message(&mut b).await.unwrap(), Some(ack));
        assert_eq!(read_message(&mut b).await.unwrap(), None, "clean end");
    }

    #[test]
    fn a_huge_length_is_refused_before_allocating() {
        // Varint for 2^40.
        let bytes = vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
        let r = read_all(bytes);
        assert!(r[0].as_ref().unwrap_err().contains("limit"), "{r:?}");
    }

    #[test]
    fn a_cut_message_is_truncated_not_eof() {
        let mut bytes = Vec::new();
        hello().encode_length_delimited(&mut bytes).unwrap();
        bytes.truncate(bytes.len() - 3);
        let r = read_all(bytes);
        assert!(r[0].as_ref().unwrap_err().contains("ended inside"), "{r:?}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_are_errors_or_messages_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_all(bytes);
        }
    }
}
