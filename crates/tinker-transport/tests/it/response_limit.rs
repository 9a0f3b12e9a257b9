//! The response size limit over real sockets: a gzip bomb, an over-long streamed body and
//! an over-long declared `Content-Length` all fail fast with `ResponseTooLarge`, are not
//! retried, and never buffer past the limit.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tinker_testkit::clock::*;
use tinker_testkit::*;
use tinker_transport::http::connect::ProxyConfig;
use tinker_transport::{DEFAULT_MAX_RESPONSE_BYTES, ErrorKind, RequestSpec, Transport};

const LIMIT: u64 = 8 * 1024 * 1024;

fn transport(url: &str) -> Result<Transport, tinker_transport::TransportError> {
    Transport::builder()
        .base_url(url)
        .env(tinker_transport::Env::from_pairs([(
            "HOME",
            "/nonexistent",
        )]))
        .api_key(KEY.to_owned().into())
        .runtime(runtime(RecordingClock::new(0.0)))
        .proxy(ProxyConfig::None)
        .read_timeout(Duration::from_secs(10))
        .max_response_bytes(LIMIT)
        .build()
}

fn post(path: &str) -> RequestSpec {
    RequestSpec::post(path).with_body(&b"{}"[..], "application/json")
}

/// `len` zero bytes compressed with `encoding`, written in 1 MiB steps (small memory).
fn bomb(encoding: &str, len: usize) -> std::io::Result<Bytes> {
    fn fill(w: &mut impl Write, len: usize) -> std::io::Result<()> {
        let block = vec![0u8; 1 << 20];
        for _ in 0..len / block.len() {
            w.write_all(&block)?;
        }
        Ok(())
    }
    let bytes = match encoding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            fill(&mut e, len)?;
            e.finish()?
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            fill(&mut e, len)?;
            e.finish()?
        }
        _ => {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 3)?;
            fill(&mut e, len)?;
            e.finish()?
        }
    };
    Ok(Bytes::from(bytes))
}

/// Peak resident memory of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A small compressed reply that inflates to 512 MiB (the 782 KB gzip became
/// 768 MiB) fails at the limit, for each content encoding, without being retried and
/// without the process ever holding the inflated body.
#[tokio::test]
async fn compression_bombs_stop_at_the_limit() {
    const INFLATED: usize = 512 * 1024 * 1024;
    for encoding in ["gzip", "deflate", "zstd"] {
        let body = bomb(encoding, INFLATED).unwrap();
        assert!(body.len() < 1024 * 1024, "{encoding}: {} bytes", body.len());
        let server = Server::start(move |_, _| Reply::Full {
            status: 200,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("content-encoding".into(), encoding.into()),
            ],
            body: body.clone(),
        })
        .await;
        #[allow(clippy::disallowed_methods)] // measures real elapsed time, not the SDK clock
        let started = Instant::now();
        let err = transport(&server.url)
            .unwrap()
            .send(post("/api/v1/bomb"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ResponseTooLarge, "{encoding}: {err}");
        assert_eq!(err.size_limit(), Some(LIMIT));
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("decoded"), "{err}");
        assert_eq!(server.seen_at("/api/v1/bomb").len(), 1, "not retried");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{encoding}: took {:?}",
            started.elapsed()
        );
    }
    // Inflating any of the bombs would have needed 512 MiB at once.
    if let Some(peak) = peak_rss() {
        assert!(peak < 256 * 1024 * 1024, "peak RSS {peak} bytes");
    }
}

/// A raw body streamed without `Content-Length` fails as soon as it passes the limit:
/// the server is still sending (it would send 64 MiB) when the client gives up.
#[tokio::test]
async fn an_over_long_streamed_body_fails_at_the_limit() {
    let server = Server::start(|_, _| Reply::Streamed {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        chunks: (0..64)
            .map(|_| Chunk::Data(Bytes::from(vec![b' '; 1 << 20])))
            .collect(),
    })
    .await;
    let err = transport(&server.url)
        .unwrap()
        .send(post("/api/v1/long"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResponseTooLarge, "{err}");
    assert_eq!(err.size_limit(), Some(LIMIT));
    assert_eq!(server.seen_at("/api/v1/long").len(), 1, "not retried");
    assert!(err.to_string().contains(&LIMIT.to_string()), "{err}");
}

/// A declared `Content-Length` over the limit fails before the body is read; a body of
/// exactly the limit passes.
#[tokio::test]
async fn a_declared_length_over_the_limit_fails_and_the_limit_itself_passes() {
    let at_limit = Bytes::from(vec![b'x'; usize::try_from(LIMIT).unwrap()]);
    let over = Bytes::from(vec![b'x'; usize::try_from(LIMIT).unwrap() + 1]);
    let server = Server::start(move |seen, _| Reply::Full {
        status: 200,
        headers: vec![],
        body: if seen.uri.path().ends_with("over") {
            over.clone()
        } else {
            at_limit.clone()
        },
    })
    .await;
    let t = transport(&server.url).unwrap();
    let err = t.send(post("/api/v1/over")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ResponseTooLarge, "{err}");
    assert_eq!(server.seen_at("/api/v1/over").len(), 1, "not retried");
    let ok = t.send(post("/api/v1/exact")).await.unwrap();
    assert_eq!(ok.body().len() as u64, LIMIT);
}

#[test]
fn the_default_limit_fits_the_largest_forward_backward_reply() {
    // 1024 datums x 2048 tokens x 2 float32 outputs, as JSON at ~21 bytes per number.
    let json = 1024u64 * 2048 * 2 * 21;
    assert!(DEFAULT_MAX_RESPONSE_BYTES > 2 * json);
}
