//! Kafka framing: a 4-byte big-endian size, then that many bytes. Reading never allocates more
//! than has actually arrived, so a peer announcing a 100 MiB frame and sending nothing costs
//! nothing; a frame over the limit or a negative size ends the connection.
//!
//! Two clocks bound a peer that stops talking:
//! - between frames, the caller's idle rule (`connections_max_idle_ms`): [`FrameReader::read_size`]
//!   asks it how much longer to wait for the first byte of the next frame;
//! - inside a frame, `request_read_timeout_ms`: once a frame has begun, every read must make
//!   progress within it, so a half-sent frame cannot hold memory or a connection slot forever.

use std::time::Duration;

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
    #[error(
        "no bytes for {}ms in the middle of a frame ({received} of {expected} bytes received; request_read_timeout_ms)",
        after.as_millis()
    )]
    Stalled {
        received: usize,
        expected: usize,
        after: Duration,
    },
    #[error("idle for longer than connections_max_idle_ms")]
    Idle,
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
}

/// How much to ask the kernel for at a time while a large frame arrives.
const READ_CHUNK: usize = 256 * 1024;

/// Reads frames off one connection: [`read_size`](Self::read_size), then (once the caller has
/// made room for it) [`read_body`](Self::read_body).
pub struct FrameReader<R> {
    reader: R,
    max: usize,
    stall: Duration,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `max`: the largest frame accepted; `stall`: the longest wait for the next byte of a frame
    /// that has begun.
    pub fn new(reader: R, max: usize, stall: Duration) -> Self {
        Self { reader, max, stall }
    }

    /// The size of the next frame; `Ok(None)` is a clean end of stream between frames. Before
    /// the first byte arrives, `idle()` says how much longer to wait (it is asked again after
    /// each wait, so the caller may extend it); `None` from it ends the wait with
    /// [`FrameError::Idle`].
    pub async fn read_size(
        &mut self,
        mut idle: impl FnMut() -> Option<Duration>,
    ) -> Result<Option<usize>, FrameError> {
        let mut size_buf = [0u8; 4];
        let mut got = loop {
            let wait = idle().ok_or(FrameError::Idle)?;
            // `read` is cancel-safe: a timed-out wait consumed nothing.
            match tokio::time::timeout(wait, self.reader.read(&mut size_buf)).await {
                Err(_) => continue,
                Ok(n) => match n? {
                    0 => return Ok(None),
                    n => break n,
                },
            }
        };
        while got < 4 {
            got += self.read_prefix(&mut size_buf[got..], got).await?;
        }
        let size = i32::from_be_bytes(size_buf);
        if size < 0 {
            return Err(FrameError::Negative { size });
        }
        let size = size as usize;
        if size > self.max {
            return Err(FrameError::TooLarge {
                size: size as i64,
                max: self.max,
            });
        }
        Ok(Some(size))
    }

    /// The `size` bytes of the frame whose size was just read.
    pub async fn read_body(&mut self, size: usize) -> Result<Bytes, FrameError> {
        let mut buf = BytesMut::with_capacity(size.min(READ_CHUNK));
        while buf.len() < size {
            let want = (size - buf.len()).min(READ_CHUNK);
            buf.reserve(want);
            let received = buf.len();
            let mut chunk = (&mut self.reader).take(want as u64);
            let read = tokio::time::timeout(self.stall, chunk.read_buf(&mut buf)).await;
            stalled_or(read, received, size, self.stall)?;
        }
        Ok(buf.freeze())
    }

    /// One read of the size prefix once it has begun, bounded like the body's.
    async fn read_prefix(&mut self, into: &mut [u8], received: usize) -> Result<usize, FrameError> {
        let read = tokio::time::timeout(self.stall, self.reader.read(into)).await;
        stalled_or(read, received, 4, self.stall)
    }
}

/// A read inside a frame must return bytes within the stall timeout.
fn stalled_or(
    read: Result<std::io::Result<usize>, tokio::time::error::Elapsed>,
    received: usize,
    expected: usize,
    after: Duration,
) -> Result<usize, FrameError> {
    match read {
        Err(_) => Err(FrameError::Stalled {
            received,
            expected,
            after,
        }),
        Ok(Ok(0)) => Err(FrameError::Truncated { received, expected }),
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    const STALL: Duration = Duration::from_secs(5);

    async fn one_frame(bytes: &[u8], max: usize) -> Result<Option<Bytes>, FrameError> {
        let mut frames = FrameReader::new(bytes, max, STALL);
        match frames.read_size(|| Some(STALL)).await? {
            Some(size) => frames.read_body(size).await.map(Some),
            None => Ok(None),
        }
    }

    #[tokio::test]
    async fn reads_frames_and_rejects_bad_sizes() {
        let data: &[u8] = &[0, 0, 0, 3, b'a', b'b', b'c'];
        let mut frames = FrameReader::new(data, 10, STALL);
        let size = frames.read_size(|| Some(STALL)).await.unwrap().unwrap();
        assert_eq!(frames.read_body(size).await.unwrap(), &b"abc"[..]);
        assert!(frames.read_size(|| Some(STALL)).await.unwrap().is_none());

        assert!(matches!(
            one_frame(&[0, 0, 1, 0], 10).await,
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            one_frame(&[0xff, 0xff, 0xff, 0xff], 10).await,
            Err(FrameError::Negative { .. })
        ));
        assert!(matches!(
            one_frame(&[0, 0, 0, 5, 1, 2], 10).await,
            Err(FrameError::Truncated { .. })
        ));
        assert!(matches!(
            one_frame(&[0, 0], 10).await,
            Err(FrameError::Truncated { .. })
        ));
    }

    /// A silent peer is idle for as long as the caller allows; a half-sent frame stalls.
    #[tokio::test(start_paused = true)]
    async fn silence_between_frames_is_idle_and_inside_a_frame_is_a_stall() {
        let (_silent, server) = tokio::io::duplex(64);
        let mut frames = FrameReader::new(server, 100, STALL);
        let mut asked = 0;
        let idle = frames
            .read_size(|| {
                asked += 1;
                (asked <= 3).then_some(Duration::from_secs(1))
            })
            .await;
        assert!(matches!(idle, Err(FrameError::Idle)), "{idle:?}");
        assert_eq!(asked, 4, "the idle rule is asked again after each wait");

        let (mut client, server) = tokio::io::duplex(64);
        let mut frames = FrameReader::new(server, 100, STALL);
        client.write_all(&[0, 0, 0, 10, 1, 2, 3]).await.unwrap();
        let size = frames.read_size(|| Some(STALL)).await.unwrap().unwrap();
        let started = tokio::time::Instant::now();
        match frames.read_body(size).await {
            Err(FrameError::Stalled {
                received, expected, ..
            }) => assert_eq!((received, expected), (3, 10)),
            other => panic!("expected a stall, got {other:?}"),
        }
        assert_eq!(started.elapsed(), STALL);
        drop(client);
    }
}
