//! What every module of the server shares and nothing else: [`ApiError`], a request-level
//! failure, and [`now_ms`], the wall clock. A leaf module, so that the group coordinator, the
//! partitions and the handlers can use them without depending on the broker that holds them.

use kafka_protocol::ResponseError;

/// A request-level failure: a Kafka error code and a message for the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub error: ResponseError,
    pub message: String,
}

impl ApiError {
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        Self {
            error,
            message: message.into(),
        }
    }
    pub fn code(&self) -> i16 {
        self.error.code()
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
