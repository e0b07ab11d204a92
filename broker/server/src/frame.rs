//! Kafka framing: a 4-byte big-endian size, then that many bytes. Reading never allocates more
//! than has actually arrived, so a peer announcing a 100 MiB frame and sending nothing costs
//! nothing; a frame over the limit or a negative size ends the connection.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds the limit of {max} bytes (socket_request_max_bytes)")]
    TooLarge { size: i64, max: usize },
    #[error("frame size {size} is negative")]
    Negative { size: i32 },
    #[error(
        "connection closed in the middle of a frame ({received} of {expected} bytes received)"
    )]
    Truncated { received: usize, expected: usize },
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// How much to ask the kernel for at a time while a large frame arrives.
const READ_CHUNK: usize = 256 * 1024;

/// Reads one frame body (without its size prefix). `Ok(None)` is a clean end of stream between
/// frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut size_buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = reader.read(&mut size_buf[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated {
                    received: got,
                    expected: 4,
                })
            };
        }
        got += n;
    }
    let size = i32::from_be_bytes(size_buf);
    if size < 0 {
        return Err(FrameError::Negative { size });
    }
    let size = size as usize;
    if size > max {
        return Err(FrameError::TooLarge {
            size: size as i64,
            max,
        });
    }
    let mut buf = BytesMut::with_capacity(size.min(READ_CHUNK));
    while buf.len() < size {
        let want = (size - buf.len()).min(READ_CHUNK);
        buf.reserve(want);
        let n = (&mut *reader).take(want as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(FrameError::Truncated {
                received: buf.len(),
                expected: size,
            });
        }
    }
    Ok(Some(buf.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_frames_and_rejects_bad_sizes() {
        let mut data: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c'];
        assert_eq!(
            read_frame(&mut data, 10).await.unwrap().unwrap(),
            &b"abc"[..]
        );
        assert!(read_frame(&mut data, 10).await.unwrap().is_none());

        let mut big: &[u8] = &[0, 0, 1, 0];
        assert!(matches!(
            read_frame(&mut big, 10).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 10).await,
            Err(FrameError::Negative { .. })
        ));
        let mut short: &[u8] = &[0, 0, 0, 5, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 10).await,
            Err(FrameError::Truncated { .. })
        ));
    }
}
