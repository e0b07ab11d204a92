//! InitProducerId v0–5, for idempotent producers: a fresh producer id, or (KIP-360) the same id
//! with a bumped epoch when a producer asks to recover. Transactional ids are refused until the
//! transaction coordinator exists.

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::RequestContext;
use crate::broker::Broker;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub fn handle(
    broker: &Broker,
    _ctx: &RequestContext,
    req: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let resp = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if req.transactional_id.is_some() {
        return resp.with_error_code(ResponseError::UnsupportedVersion.code());
    }
    // An epoch bump for an existing idempotent producer, unless the epoch would overflow.
    if req.producer_id.0 >= 0 && req.producer_epoch >= 0 && req.producer_epoch < i16::MAX - 1 {
        return resp
            .with_producer_id(req.producer_id)
            .with_producer_epoch(req.producer_epoch + 1);
    }
    match broker.allocate_producer_id() {
        Ok(id) => resp
            .with_producer_id(ProducerId(id.get()))
            .with_producer_epoch(0),
        Err(e) => resp.with_error_code(e.code()),
    }
}
