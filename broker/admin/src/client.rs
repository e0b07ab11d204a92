//! One connection to one broker: size-prefixed framing, ApiVersions negotiation, and bounds on
//! time and response size. One request is in flight at a time, which is all an operator command
//! needs and keeps correlation trivial.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::ResponseHeader;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::AdminError;

/// The APIs this client speaks: `(api key, name, lowest, highest version we have tested)`.
/// A request goes out at min(the broker's max, our max), and fails cleanly when the two ranges do
/// not overlap.
const TESTED: &[(ApiKey, &str, i16, i16)] = &[
    (ApiKey::Metadata, "Metadata", 1, 12),
    (ApiKey::ListOffsets, "ListOffsets", 1, 9),
    (ApiKey::CreateTopics, "CreateTopics", 2, 7),
    (ApiKey::DeleteTopics, "DeleteTopics", 1, 6),
    (ApiKey::DescribeConfigs, "DescribeConfigs", 1, 4),
    (
        ApiKey::IncrementalAlterConfigs,
        "IncrementalAlterConfigs",
        0,
        1,
    ),
    (ApiKey::DescribeCluster, "DescribeCluster", 0, 2),
    (ApiKey::DescribeQuorum, "DescribeQuorum", 0, 2),
    (ApiKey::FindCoordinator, "FindCoordinator", 0, 4),
    (ApiKey::ListGroups, "ListGroups", 0, 5),
    (ApiKey::DescribeGroups, "DescribeGroups", 0, 5),
    (ApiKey::OffsetFetch, "OffsetFetch", 1, 8),
    (ApiKey::OffsetCommit, "OffsetCommit", 2, 8),
];

/// ApiVersions v3 is the first flexible version; a broker that cannot parse it answers in v0.
const API_VERSIONS_VERSION: i16 = 3;
const UNSUPPORTED_VERSION: i16 = 35;

/// The name of `key` for messages, from [`TESTED`].
pub fn api_name(key: i16) -> &'static str {
    if key == ApiKey::ApiVersions as i16 {
        return "ApiVersions";
    }
    TESTED
        .iter()
        .find(|(k, ..)| *k as i16 == key)
        .map(|(_, name, ..)| *name)
        .unwrap_or("unknown")
}

/// Bounds and identity of a connection.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long one request may take, connect included.
    pub request_timeout: Duration,
    /// A response larger than this is refused before it is read.
    pub response_bytes_max: usize,
    pub client_id: String,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(30),
            response_bytes_max: 100 << 20,
            client_id: "shale-admin".to_string(),
        }
    }
}

/// A connected, version-negotiated client of one broker.
pub struct Client {
    addr: String,
    stream: BufReader<TcpStream>,
    options: ClientOptions,
    correlation_id: i32,
    /// The broker's `(api key, min, max)`, from ApiVersions.
    broker_versions: Vec<(i16, i16, i16)>,
}

impl Client {
    /// Connects to `addr` (HOST:PORT) and asks which API versions it serves.
    pub async fn connect(addr: &str, options: ClientOptions) -> Result<Client, AdminError> {
        let connect = TcpStream::connect(addr);
        let stream = match tokio::time::timeout(options.request_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(AdminError::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
            Err(_) => {
                return Err(AdminError::Connect {
                    addr: addr.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {:?}", options.request_timeout),
                    ),
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let mut client = Client {
            addr: addr.to_string(),
            stream: BufReader::new(stream),
            options,
            correlation_id: 0,
            broker_versions: Vec::new(),
        };
        client.negotiate().await?;
        Ok(client)
    }

    /// The address this client is connected to.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn negotiate(&mut self) -> Result<(), AdminError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("shale-admin"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let body = self.exchange(&request, API_VERSIONS_VERSION).await?;
        // Every ApiVersions response starts with its error code, whatever the version, so a
        // broker that answered in v0 can be recognised before decoding.
        let code = body.clone().try_get_i16().unwrap_or(0);
        let response = if code == UNSUPPORTED_VERSION {
            let body = self.exchange(&ApiVersionsRequest::default(), 0).await?;
            self.decode::<ApiVersionsRequest>(body, 0)?
        } else {
            self.decode::<ApiVersionsRequest>(body, API_VERSIONS_VERSION)?
        };
        check_versions_response(&self.addr, &response)?;
        self.broker_versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        Ok(())
    }

    /// The version `R` goes out at, or why there is none.
    pub fn version<R: Request>(&self) -> Result<i16, AdminError> {
        let (_, name, ours_min, ours_max) = *TESTED
            .iter()
            .find(|(k, ..)| *k as i16 == R::KEY)
            .unwrap_or_else(|| panic!("api key {} is missing from TESTED", R::KEY));
        let broker = self
            .broker_versions
            .iter()
            .find(|(k, ..)| *k == R::KEY)
            .map(|(_, lo, hi)| (*lo, *hi));
        let unsupported = |broker: Option<(i16, i16)>| AdminError::Unsupported {
            addr: self.addr.clone(),
            api: name,
            broker,
            ours_min,
            ours_max,
        };
        let Some((lo, hi)) = broker else {
            return Err(unsupported(None));
        };
        let version = hi.min(ours_max);
        if version < lo.max(ours_min) {
            return Err(unsupported(Some((lo, hi))));
        }
        Ok(version)
    }

    /// Sends `request` at the negotiated version and decodes the response.
    pub async fn send<R: Request>(&mut self, request: &R) -> Result<R::Response, AdminError> {
        let version = self.version::<R>()?;
        self.send_at(request, version).await
    }

    /// Sends `request` at `version` (from [`Client::version`]) and decodes the response.
    pub async fn send_at<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, AdminError> {
        let body = self.exchange(request, version).await?;
        self.decode::<R>(body, version)
    }

    fn decode<R: Request>(&self, mut body: Bytes, version: i16) -> Result<R::Response, AdminError> {
        R::Response::decode(&mut body, version).map_err(|e| AdminError::Protocol {
            addr: self.addr.clone(),
            api: api_name(R::KEY),
            version,
            reason: format!("{e:#}"),
        })
    }

    /// Writes one request and reads its response; returns the body after the response header.
    async fn exchange<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<Bytes, AdminError> {
        let api = api_name(R::KEY);
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let correlation_id = self.correlation_id;
        let frame = encode_request(request, version, correlation_id, &self.options.client_id)
            .map_err(|reason| AdminError::Encode {
                api,
                version,
                reason,
            })?;
        let timeout = self.options.request_timeout;
        let io = async {
            self.stream.get_mut().write_all(&frame).await?;
            read_frame(&mut self.stream, self.options.response_bytes_max).await
        };
        let frame = match tokio::time::timeout(timeout, io).await {
            Err(_) => {
                return Err(AdminError::Timeout {
                    addr: self.addr.clone(),
                    api,
                    timeout_ms: timeout.as_millis() as u64,
                })
            }
            Ok(Err(FrameError::Io(source))) => {
                return Err(AdminError::Io {
                    addr: self.addr.clone(),
                    api,
                    source,
                })
            }
            Ok(Err(FrameError::TooLarge(size))) => {
                return Err(AdminError::ResponseTooLarge {
                    addr: self.addr.clone(),
                    api,
                    size,
                    limit: self.options.response_bytes_max,
                })
            }
            Ok(Ok(frame)) => frame,
        };
        let mut body = frame;
        let header_version = R::Response::header_version(version);
        let protocol = |reason: String| AdminError::Protocol {
            addr: self.addr.clone(),
            api,
            version,
            reason,
        };
        let header = ResponseHeader::decode(&mut body, header_version)
            .map_err(|e| protocol(format!("unreadable response header: {e:#}")))?;
        if header.correlation_id != correlation_id {
            return Err(protocol(format!(
                "correlation id {} does not match request {correlation_id}",
                header.correlation_id
            )));
        }
        Ok(body)
    }
}

fn encode_request<R: Request>(
    request: &R,
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut buf = BytesMut::with_capacity(128);
    buf.put_i32(0); // size, patched below
    header
        .encode(&mut buf, R::header_version(version))
        .and_then(|()| request.encode(&mut buf, version))
        .map_err(|e| format!("{e:#}"))?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

enum FrameError {
    Io(std::io::Error),
    TooLarge(i64),
}

impl From<std::io::Error> for FrameError {
    fn from(e: std::io::Error) -> Self {
        FrameError::Io(e)
    }
}

/// Reads one size-prefixed frame, refusing a size over `bytes_max` before allocating for it.
async fn read_frame(
    stream: &mut BufReader<TcpStream>,
    bytes_max: usize,
) -> Result<Bytes, FrameError> {
    let size = stream.read_i32().await?;
    if size < 0 || size as usize > bytes_max {
        return Err(FrameError::TooLarge(i64::from(size)));
    }
    let mut buf = vec![0u8; size as usize];
    stream.read_exact(&mut buf).await?;
    Ok(Bytes::from(buf))
}

fn check_versions_response(addr: &str, r: &ApiVersionsResponse) -> Result<(), AdminError> {
    match ResponseError::try_from_code(r.error_code) {
        None => Ok(()),
        Some(code) => Err(AdminError::Broker {
            context: format!("negotiate API versions with {addr}"),
            code,
            message: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ListGroupsRequest, MetadataRequest};

    #[test]
    fn request_frame_carries_size_header_and_body() {
        let frame = encode_request(&MetadataRequest::default(), 12, 7, "t").unwrap();
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        assert_eq!(
            i16::from_be_bytes([frame[4], frame[5]]),
            ApiKey::Metadata as i16
        );
        assert_eq!(i16::from_be_bytes([frame[6], frame[7]]), 12);
        assert_eq!(i32::from_be_bytes(frame[8..12].try_into().unwrap()), 7);
    }

    /// A fake broker: answers each request frame with `answer(api_version, correlation_id)`,
    /// the response body after the header; `None` closes the connection.
    async fn fake_broker(answer: impl Fn(i16, i32) -> Option<Vec<u8>> + Send + 'static) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            loop {
                let Ok(size) = stream.read_i32().await else {
                    return;
                };
                let mut frame = vec![0; size as usize];
                stream.read_exact(&mut frame).await.unwrap();
                let version = i16::from_be_bytes([frame[2], frame[3]]);
                let correlation_id = i32::from_be_bytes(frame[4..8].try_into().unwrap());
                let Some(body) = answer(version, correlation_id) else {
                    return;
                };
                let mut out = Vec::new();
                out.extend(((body.len() + 4) as i32).to_be_bytes());
                out.extend(correlation_id.to_be_bytes());
                out.extend(body);
                stream.write_all(&out).await.unwrap();
            }
        });
        addr
    }

    fn api_versions_v0(error_code: i16, keys: &[(ApiKey, i16, i16)]) -> Vec<u8> {
        use kafka_protocol::messages::api_versions_response::ApiVersion;
        let response = ApiVersionsResponse::default()
            .with_error_code(error_code)
            .with_api_keys(
                keys.iter()
                    .map(|(k, lo, hi)| {
                        ApiVersion::default()
                            .with_api_key(*k as i16)
                            .with_min_version(*lo)
                            .with_max_version(*hi)
                    })
                    .collect(),
            );
        let mut buf = BytesMut::new();
        response.encode(&mut buf, 0).unwrap();
        buf.to_vec()
    }

    #[tokio::test]
    async fn an_old_broker_is_asked_again_in_api_versions_v0() {
        let addr = fake_broker(|version, _| {
            Some(if version == 0 {
                api_versions_v0(0, &[(ApiKey::ApiVersions, 0, 2), (ApiKey::Metadata, 0, 5)])
            } else {
                // As Kafka does: an ApiVersions it cannot parse gets a v0 UNSUPPORTED_VERSION.
                api_versions_v0(UNSUPPORTED_VERSION, &[(ApiKey::ApiVersions, 0, 2)])
            })
        })
        .await;
        let client = Client::connect(&addr, ClientOptions::default())
            .await
            .unwrap();
        assert_eq!(client.version::<MetadataRequest>().unwrap(), 5);
        let e = client.version::<ListGroupsRequest>().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{addr} does not serve ListGroups requests")
        );
        assert_eq!(e.exit_code(), crate::EXIT_BROKER);
    }

    #[tokio::test]
    async fn versions_that_do_not_overlap_are_refused() {
        let addr =
            fake_broker(|_, _| Some(api_versions_v0(0, &[(ApiKey::Metadata, 13, 20)]))).await;
        // The v3 request is answered in v0 bytes with no error; that does not decode as v3.
        let e = Client::connect(&addr, ClientOptions::default()).await;
        assert!(
            matches!(e, Err(AdminError::Protocol { .. })),
            "{:?}",
            e.err()
        );

        let addr = fake_broker(|version, _| {
            let mut buf = BytesMut::new();
            ApiVersionsResponse::default()
                .with_api_keys(vec![
                    kafka_protocol::messages::api_versions_response::ApiVersion::default()
                        .with_api_key(ApiKey::Metadata as i16)
                        .with_min_version(13)
                        .with_max_version(20),
                ])
                .encode(&mut buf, version)
                .unwrap();
            Some(buf.to_vec())
        })
        .await;
        let client = Client::connect(&addr, ClientOptions::default())
            .await
            .unwrap();
        let e = client.version::<MetadataRequest>().unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{addr} serves Metadata v13 to v20, and shale admin speaks only v1 to v12")
        );
    }

    #[tokio::test]
    async fn oversized_responses_and_closed_connections_are_errors() {
        let addr = fake_broker(|_, _| Some(vec![0; 2048])).await;
        let options = ClientOptions {
            response_bytes_max: 1024,
            ..ClientOptions::default()
        };
        let e = Client::connect(&addr, options).await.err().unwrap();
        assert!(
            matches!(
                e,
                AdminError::ResponseTooLarge {
                    size: 2052,
                    limit: 1024,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.exit_code(), crate::EXIT_USAGE);

        let addr = fake_broker(|_, _| None).await;
        let e = Client::connect(&addr, ClientOptions::default())
            .await
            .err()
            .unwrap();
        assert!(
            matches!(
                e,
                AdminError::Io {
                    api: "ApiVersions",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_silent_broker_times_out() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let options = ClientOptions {
            request_timeout: Duration::from_millis(100),
            ..ClientOptions::default()
        };
        let e = Client::connect(&addr, options).await.err().unwrap();
        assert!(
            matches!(
                e,
                AdminError::Timeout {
                    timeout_ms: 100,
                    ..
                }
            ),
            "{e}"
        );
        drop(listener);
    }

    #[test]
    fn every_tested_api_is_within_kafka_protocol_range() {
        for (key, name, lo, hi) in TESTED {
            assert!(lo <= hi, "{name}: {lo} > {hi}");
            assert_eq!(api_name(*key as i16), *name);
        }
    }
}
