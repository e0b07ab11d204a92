//! Proves that the broker's request decoding path (`handlers::decode_request`: the bounded wire
//! check, then kafka-protocol) survives random bytes and mutated valid frames: it never panics,
//! never aborts, and never makes a single allocation above 64 MiB, whatever counts the bytes claim.
//!
//! A capped global allocator turns any oversized reservation into a test failure (it is refused and
//! recorded), which is exactly what an unguarded `Vec::with_capacity(wire_count)` would trip.
#![allow(unsafe_code)] // a global allocator needs `unsafe impl GlobalAlloc`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    fetch_request, metadata_request, produce_request, ApiKey, ApiVersionsRequest,
    CreateTopicsRequest, FetchRequest, MetadataRequest, ProduceRequest, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use proptest::prelude::*;
use shale_server::handlers::decode_request;

const LIMIT: usize = 64 * 1024 * 1024;
static LARGEST_REFUSED: AtomicUsize = AtomicUsize::new(0);

struct Capped;

unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > LIMIT {
            LARGEST_REFUSED.fetch_max(layout.size(), Ordering::Relaxed);
            // Refusing makes the process abort with "memory allocation of N bytes failed".
            return std::ptr::null_mut();
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Capped = Capped;

fn frame<T: Encodable>(key: ApiKey, version: i16, body: &T) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("fuzz")))
        .encode(&mut buf, key.request_header_version(version))
        .unwrap();
    body.encode(&mut buf, version).unwrap();
    buf.freeze()
}

fn seeds() -> Vec<Bytes> {
    let topic = TopicName(StrBytes::from_static_str("orders"));
    let metadata = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default().with_name(Some(topic.clone())),
    ]));
    let produce = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(1000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(topic.clone())
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(Bytes::from_static(&[0u8; 70]))),
            ])]);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(10)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(topic)
            .with_partitions(vec![
                fetch_request::FetchPartition::default().with_partition_max_bytes(1 << 20)
            ])]);
    let mut out = vec![
        frame(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default()),
        frame(ApiKey::ApiVersions, 0, &ApiVersionsRequest::default()),
        frame(ApiKey::CreateTopics, 5, &CreateTopicsRequest::default()),
    ];
    for v in [1, 4, 9, 12] {
        out.push(frame(ApiKey::Metadata, v, &metadata));
    }
    for v in [3, 9, 11] {
        out.push(frame(ApiKey::Produce, v, &produce));
    }
    for v in [4, 11, 12] {
        out.push(frame(ApiKey::Fetch, v, &fetch));
    }
    out
}

fn check(bytes: Vec<u8>) {
    let _ = decode_request(Bytes::from(bytes), 1_000_000);
    assert_eq!(
        LARGEST_REFUSED.load(Ordering::Relaxed),
        0,
        "an allocation above {LIMIT} bytes was attempted"
    );
}

#[test]
fn seeds_decode() {
    for s in seeds() {
        decode_request(s.clone(), 1_000_000)
            .unwrap_or_else(|e| panic!("valid frame rejected: {e}"));
    }
}

#[test]
fn known_killer_is_rejected() {
    // Metadata v1 whose topic array claims 0x7fffffff entries: kafka-protocol alone reserves ~150 GB.
    let mut bytes = frame(
        ApiKey::Metadata,
        1,
        &MetadataRequest::default().with_topics(Some(vec![])),
    )
    .to_vec();
    let n = bytes.len();
    bytes[n - 4..].copy_from_slice(&0x7fff_ffffi32.to_be_bytes());
    assert!(decode_request(Bytes::from(bytes), 1_000_000).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_crash(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        check(bytes);
    }

    #[test]
    fn random_frames_with_valid_headers_never_crash(
        key in prop_oneof![Just(0i16), Just(1), Just(3), Just(18), Just(19), Just(32)],
        version in 0i16..14,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&key.to_be_bytes());
        bytes.extend_from_slice(&version.to_be_bytes());
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&(-1i16).to_be_bytes());
        bytes.extend_from_slice(&body);
        check(bytes);
    }

    #[test]
    fn mutated_valid_frames_never_crash(
        seed in 0usize..14,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let seeds = seeds();
        let mut bytes = seeds[seed % seeds.len()].to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            // Favour bytes that make big counts and lengths.
            bytes[i] = if value % 3 == 0 { 0x7f } else if value % 3 == 1 { 0xff } else { value };
        }
        if truncate {
            let n = cut.index(bytes.len() + 1);
            bytes.truncate(n);
        }
        check(bytes);
    }
}
