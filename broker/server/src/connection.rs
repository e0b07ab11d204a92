//! One client connection: a reader task pulls frames off the socket into a bounded queue (the
//! per-connection in-flight bound), and the connection task handles them one at a time and
//! answers them strictly in order, as Kafka does — clients rely on responses arriving in request
//! order. An answer that waits (an acks=all produce's fsync) does not hold up the handling of
//! the requests after it, only their answers.
//!
//! Bounds on what a connection may hold:
//! - request bytes: before a frame's body is read, the reader takes that many bytes from the
//!   broker-wide `queued_max_request_bytes` budget and gives them back once the request is
//!   answered, so reading pauses (on every connection) while the budget is spent;
//! - time: a connection with nothing in flight that sends nothing for `connections_max_idle_ms`
//!   is closed, and so is one whose frame stops arriving for `request_read_timeout_ms`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::broker::Broker;
use crate::frame::{FrameError, FrameReader};
use crate::handlers::{handle_frame, Reply};

/// What the idle rule looks at: when the connection last received a request or sent an answer,
/// and how many of its requests are not answered yet.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn touch(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// How much longer the connection may stay silent; `None`: it has been idle too long. A
    /// connection waiting for its own answers (a long-polling fetch) is not idle.
    fn remaining(&self, idle: Duration) -> Option<Duration> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Some(idle);
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        let since = Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)));
        idle.checked_sub(since).filter(|left| !left.is_zero())
    }
}

pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
    request_budget: Arc<Semaphore>,
) {
    let _ = stream.set_nodelay(true);
    let (reader, mut writer) = stream.into_split();
    let config = &broker.config;
    let idle = Duration::from_millis(config.connections_max_idle_ms as u64);
    let stall = Duration::from_millis(config.request_read_timeout_ms as u64);
    let mut frames = FrameReader::new(reader, config.socket_request_max_bytes as usize, stall);
    let (tx, mut rx) = mpsc::channel::<(Bytes, OwnedSemaphorePermit)>(
        config.max_inflight_requests_per_connection as usize,
    );
    let activity = Arc::new(Activity::new());
    let reader_activity = Arc::clone(&activity);
    let reader_task = tokio::spawn(async move {
        let activity = reader_activity;
        loop {
            let size = match frames.read_size(|| activity.remaining(idle)).await {
                Ok(Some(size)) => size,
                Ok(None) => return,
                Err(e) => return log_close(peer, &e),
            };
            // Room in the broker-wide budget before the body is read: here reading pauses.
            let Ok(permit) = Arc::clone(&request_budget)
                .acquire_many_owned(size as u32)
                .await
            else {
                return;
            };
            let frame = match frames.read_body(size).await {
                Ok(frame) => frame,
                Err(e) => return log_close(peer, &e),
            };
            activity.in_flight.fetch_add(1, Ordering::Relaxed);
            activity.touch();
            if tx.send((frame, permit)).await.is_err() {
                return;
            }
        }
    });
    // Answers in request order. Most are ready when their request has been handled; an
    // acks=all produce's waits for its fsync (`Reply::Later`), and meanwhile the next requests
    // are handled, up to the in-flight bound, so a pipelining producer's next batches are
    // appended in time for the same group-commit round.
    // Only a produce is handled while answers wait: any other request (a long-poll fetch could
    // take max_wait_ms) is held until the answers before it are out, as before.
    let mut answers: FuturesOrdered<BoxFuture<'static, Reply>> = FuturesOrdered::new();
    let max_answers = config.max_inflight_requests_per_connection.max(1) as usize;
    let mut held: Option<(Bytes, OwnedSemaphorePermit)> = None;
    let mut closing = false;
    loop {
        if answers.is_empty() {
            if let Some((frame, permit)) = held.take() {
                let reply = handle_frame(&broker, frame, peer).await;
                drop(permit);
                closing |= matches!(reply, Reply::Close(_));
                answers.push_back(ready_or_later(reply));
                continue;
            }
            if closing {
                break;
            }
        }
        tokio::select! {
            biased;
            Some(reply) = answers.next(), if !answers.is_empty() => {
                match reply {
                    Reply::Send(bytes) => {
                        if let Err(e) = writer.write_all(&bytes).await {
                            tracing::debug!(%peer, error = %e, "connection write error");
                            break;
                        }
                    }
                    Reply::Nothing => {}
                    Reply::Close(reason) => {
                        tracing::warn!(%peer, %reason, "closing connection after a bad request");
                        break;
                    }
                    Reply::Later(_) => unreachable!("a later answer resolves to an answer"),
                }
                activity.touch();
                activity.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            frame = rx.recv(), if !closing && held.is_none() && answers.len() < max_answers => match frame {
                Some((frame, permit)) => {
                    if !answers.is_empty() && !is_produce(&frame) {
                        held = Some((frame, permit));
                        continue;
                    }
                    // Once a request is taken it is answered even if shutdown begins meanwhile.
                    let reply = handle_frame(&broker, frame, peer).await;
                    drop(permit);
                    // Nothing after a bad request is handled; the answers before it still go.
                    closing |= matches!(reply, Reply::Close(_));
                    answers.push_back(ready_or_later(reply));
                }
                None => closing = true,
            },
            _ = shutdown.changed(), if !closing => closing = true,
        }
    }
    reader_task.abort();
    let _ = writer.shutdown().await;
}

fn ready_or_later(reply: Reply) -> BoxFuture<'static, Reply> {
    match reply {
        Reply::Later(answer) => answer,
        ready => Box::pin(std::future::ready(ready)),
    }
}

fn is_produce(frame: &[u8]) -> bool {
    shale_formats::wire::peek_header(frame)
        .is_ok_and(|(key, _, _)| key == kafka_protocol::messages::ApiKey::Produce as i16)
}

fn log_close(peer: SocketAddr, e: &FrameError) {
    match e {
        FrameError::Io(e) => tracing::debug!(%peer, error = %e, "connection read error"),
        FrameError::Idle => tracing::info!(%peer, "closing an idle connection"),
        e => tracing::warn!(%peer, error = %e, "closing connection"),
    }
}
