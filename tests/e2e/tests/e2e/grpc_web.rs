//! gRPC-Web over HTTP/1.1, as a browser portal sends it: a raw HTTP/1.1
//! client (no gRPC library) posts `application/grpc-web+proto` frames and
//! reads the answer's data and trailer frames; CORS preflights from allowed
//! and other origins.

use prost::Message;
use slrgov_proto::slrgov::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::support::{Engine, TestDb, TestServer};

const PORTAL: &str = "https://portal.example.com";

/// One HTTP/1.1 exchange; returns the status, the headers (lower-case
/// names) and the body (de-chunked).
async fn http1(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(body).await.expect("write body");
    let mut raw = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut raw),
    )
    .await
    .expect("the server answers and closes")
    .expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status: u16 = status_line[9..12].parse().expect("a status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let size_text = String::from_utf8_lossy(&data[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .expect("a hex chunk size");
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// A gRPC-Web frame: flag, big-endian length, payload.
fn frame(message: &impl Message) -> Vec<u8> {
    let payload = message.encode_to_vec();
    let mut out = vec![0u8];
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&payload);
    out
}

/// The data frames' payloads and the trailers of a gRPC-Web body.
fn frames(mut body: &[u8]) -> (Vec<Vec<u8>>, Vec<(String, String)>) {
    let (mut data, mut trailers) = (Vec::new(), Vec::new());
    while body.len() >= 5 {
        let flag = body[0];
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        let payload = &body[5..5 + len];
        if flag & 0x80 != 0 {
            for line in String::from_utf8_lossy(payload).split("\r\n") {
                if let Some((n, v)) = line.split_once(':') {
                    trailers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
                }
            }
        } else {
            data.push(payload.to_vec());
        }
        body = &body[5 + len..];
    }
    assert!(body.is_empty(), "a truncated frame");
    (data, trailers)
}

#[tokio::test]
async fn grpc_web_over_http1_with_cors() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with(&db, &[("SLRGOV_CORS_ORIGINS", PORTAL)]).await;
    let grpc_web = [
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
        ("origin", PORTAL),
        ("x-request-id", "web-1"),
    ];

    // A unary call: one data frame (the Region), then the trailers.
    let (status, headers, body) = http1(
        server.addr,
        "POST",
        "/slrgov.v1.RegionService/GetRegion",
        &grpc_web,
        &frame(&pb::GetRegionRequest {
            name: "regions/eu-west-2".into(),
        }),
    )
    .await;
    assert_eq!(status, 200, "{headers:?}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/grpc-web+proto")
    );
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(PORTAL)
    );
    let (data, trailers) = frames(&body);
    assert_eq!(data.len(), 1, "{trailers:?}");
    let region = pb::Region::decode(data[0].as_slice()).expect("a Region");
    assert_eq!(region.name, "regions/eu-west-2");
    assert!(region.connect_available);
    assert_eq!(header(&trailers, "grpc-status"), Some("0"), "{trailers:?}");

    // A refusal arrives as trailers the browser client can read: code,
    // message and the rich details.
    let (status, headers, body) = http1(
        server.addr,
        "POST",
        "/slrgov.v1.AccountService/GetAccount",
        &grpc_web,
        &frame(&pb::GetAccountRequest {
            name: "accounts/999999999999".into(),
        }),
    )
    .await;
    assert_eq!(status, 200);
    let trailers_in_head = header(&headers, "grpc-status").map(str::to_owned);
    let (data, trailers) = frames(&body);
    assert!(data.is_empty());
    let code = header(&trailers, "grpc-status")
        .map(str::to_owned)
        .or(trailers_in_head)
        .expect("a grpc-status");
    assert_eq!(code, "5", "NOT_FOUND: {trailers:?} {headers:?}");
    let exposed = header(&headers, "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("grpc-status"), "{headers:?}");

    // Preflight from the portal: allowed, with the headers a gRPC-Web client
    // sends (authorization included).
    let (status, headers, _) = http1(
        server.addr,
        "OPTIONS",
        "/slrgov.v1.RegionService/GetRegion",
        &[
            ("origin", PORTAL),
            ("access-control-request-method", "POST"),
            (
                "access-control-request-headers",
                "content-type,x-grpc-web,authorization",
            ),
        ],
        b"",
    )
    .await;
    assert!((200..300).contains(&status), "preflight: {status}");
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some(PORTAL)
    );
    let allowed = header(&headers, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for needed in ["content-type", "x-grpc-web", "authorization"] {
        assert!(allowed.contains(needed), "{needed} not allowed: {allowed}");
    }

    // Another origin gets no CORS grant (the browser then refuses the
    // answer to the page).
    let (_, headers, _) = http1(
        server.addr,
        "OPTIONS",
        "/slrgov.v1.RegionService/GetRegion",
        &[
            ("origin", "https://evil.example.net"),
            ("access-control-request-method", "POST"),
        ],
        b"",
    )
    .await;
    assert_eq!(header(&headers, "access-control-allow-origin"), None);

    // Plain gRPC over HTTP/2 still works beside it.
    let mut c = server.clients().await;
    c.regions
        .get_region(pb::GetRegionRequest {
            name: "regions/us-east-1".into(),
        })
        .await
        .expect("gRPC over HTTP/2");
}

#[tokio::test]
async fn a_malformed_cors_origin_stops_the_server_at_start() {
    let db = TestDb::new(Engine::Sqlite).await;
    let output =
        TestServer::run_to_exit(&db, &[("SLRGOV_CORS_ORIGINS", "portal.example.com/path")]).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SLRGOV_CORS_ORIGINS"), "{stderr}");
}

/// Reads `stream` until the de-chunked body holds `count` data frames;
/// returns their payloads. The response is a live stream: it is read
/// incrementally, never to its end.
async fn read_frames(
    stream: &mut tokio::net::TcpStream,
    raw: &mut Vec<u8>,
    count: usize,
) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = complete_chunks(&raw[split + 4..]);
            let mut data = Vec::new();
            let mut rest = body.as_slice();
            while rest.len() >= 5 {
                let len = u32::from_be_bytes([rest[1], rest[2], rest[3], rest[4]]) as usize;
                if rest.len() < 5 + len {
                    break;
                }
                if rest[0] & 0x80 == 0 {
                    data.push(rest[5..5 + len].to_vec());
                }
                rest = &rest[5 + len..];
            }
            if data.len() >= count {
                return data;
            }
        }
        let mut buf = [0u8; 4096];
        let read = tokio::time::timeout_at(deadline, stream.read(&mut buf))
            .await
            .expect("the stream's next frames arrive in time")
            .expect("read");
        assert!(read > 0, "the stream closed early");
        raw.extend_from_slice(&buf[..read]);
    }
}

/// The payload of the complete chunks of a chunked body read so far.
fn complete_chunks(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..line_end]).to_string();
        let Ok(size) = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
        else {
            break;
        };
        if size == 0 || data.len() < line_end + 2 + size + 2 {
            break;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
    out
}

#[tokio::test]
async fn a_browser_portal_watches_instances_over_grpc_web() {
    let db = TestDb::new(Engine::Sqlite).await;
    let server = TestServer::start_with(&db, &[("SLRGOV_CORS_ORIGINS", PORTAL)]).await;
    let mut clients = server.clients().await;
    clients
        .register_instance(super::support::HOME, "us-east-1")
        .await;

    // The watch, as a gRPC-Web client posts it over HTTP/1.1.
    let body = frame(&pb::WatchInstancesRequest {
        parent: "accounts/-".into(),
        ..Default::default()
    });
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /slrgov.v1.InstanceService/WatchInstances HTTP/1.1\r\nhost: {}\r\n\
         content-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\norigin: {PORTAL}\r\n\
         content-length: {}\r\n\r\n",
        server.addr,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body).await.expect("write body");
    let mut raw = Vec::new();
    let first = read_frames(&mut stream, &mut raw, 1).await;
    let bookmark = pb::WatchInstancesResponse::decode(first[0].as_slice()).expect("a message");
    assert_eq!(
        bookmark.change_type,
        pb::watch_instances_response::ChangeType::Bookmark as i32
    );
    let head = String::from_utf8_lossy(
        &raw[..raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head")],
    )
    .to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains(&format!(
            "access-control-allow-origin: {}",
            PORTAL.to_lowercase()
        )),
        "{head}"
    );

    // A change made over gRPC arrives on the open gRPC-Web stream.
    let id = clients
        .add_instance(super::support::HOME, "eu-west-2")
        .await;
    let frames = read_frames(&mut stream, &mut raw, 2).await;
    let change = pb::WatchInstancesResponse::decode(frames[1].as_slice()).expect("a message");
    assert_eq!(
        change.change_type,
        pb::watch_instances_response::ChangeType::Changed as i32
    );
    assert_eq!(
        change.instance.map(|i| i.name),
        Some(format!("accounts/{}/instances/{id}", super::support::HOME))
    );
}
