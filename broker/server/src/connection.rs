//! One client connection: a reader task pulls frames off the socket into a bounded queue (the
//! per-connection in-flight bound), and the connection task answers them strictly in order, as
//! Kafka does — clients rely on responses arriving in request order.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::broker::Broker;
use crate::frame::{read_frame, FrameError};
use crate::handlers::{handle_frame, Reply};

pub async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let max_frame = broker.config.socket_request_max_bytes as usize;
    let (tx, mut rx) =
        mpsc::channel::<Bytes>(broker.config.max_inflight_requests_per_connection as usize);
    let reader_task = tokio::spawn(async move {
        loop {
            match read_frame(&mut reader, max_frame).await {
                Ok(Some(frame)) => {
                    if tx.send(frame).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(FrameError::Io(e)) => {
                    tracing::debug!(%peer, error = %e, "connection read error");
                    return;
                }
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing connection");
                    return;
                }
            }
        }
    });
    loop {
        let frame = tokio::select! {
            frame = rx.recv() => match frame {
                Some(f) => f,
                None => break,
            },
            _ = shutdown.changed() => break,
        };
        // Once a request is taken it is answered even if shutdown begins meanwhile.
        match handle_frame(&broker, frame, peer).await {
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
        }
    }
    reader_task.abort();
    let _ = writer.shutdown().await;
}
