//! A peer that sends requests and never reads the responses is
//! disconnected once the node's writes have stalled for
//! `write_stall_timeout_ms`, instead of holding its responses forever.

use std::sync::Arc;
use std::time::Duration;

use norn_net::certs::{issue_client, issue_node, new_ca, write_pem, Issued, NODE_SERVER_NAME};
use norn_net::tls::TlsMaterial;
use norn_net::{Endpoint, EndpointLimits, Handler, TlsFiles};
use norn_proto::{encode_frame, ClientRole, ErrorCode, ErrorReply, Request, Response};
use norn_ring::NodeId;

fn material(dir: &std::path::Path, name: &str, issued: &Issued, ca: &Issued) -> TlsMaterial {
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    if !files.ca_cert.exists() {
        write_pem(&files.ca_cert, &ca.cert_pem, false).expect("ca");
    }
    write_pem(&files.cert, &issued.cert_pem, false).expect("cert");
    write_pem(&files.key, &issued.key_pem, true).expect("key");
    TlsMaterial::load(&files).expect("load")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_reading_its_responses_is_disconnected() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca("test").expect("ca");
    let node = issue_node(&ca, "server", NodeId(1)).expect("node");
    let server_tls = material(dir.path(), "server", &node, &ca);
    let client = issue_client(&ca, "reader", ClientRole::Data).expect("client");
    let client_tls = material(dir.path(), "reader", &client, &ca);
    let limits = EndpointLimits {
        write_stall_timeout_ms: 300,
        ..EndpointLimits::default()
    };
    let server = Arc::new(
        Endpoint::bind("127.0.0.1:0".parse().expect("addr"), &server_tls, limits).expect("bind"),
    );
    // Large answers, so that the stream's flow-control window fills.
    let handler: Handler = Arc::new(|_, _| {
        Box::pin(async {
            Response::Error(ErrorReply {
                code: ErrorCode::BadRequest,
                message: "x".repeat(256 << 10),
            })
        })
    });
    let addr = server.local_addr().expect("addr");
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(handler).await }
    });

    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(
        client_tls
            .client_crypto(&Default::default())
            .expect("client crypto"),
    )
    .expect("quic crypto");
    let mut raw = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    raw.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connection = raw
        .connect(addr, NODE_SERVER_NAME)
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, _never_read) = connection.open_bi().await.expect("stream");
    for id in 0..200u64 {
        let frame = encode_frame(id, &Request::Ping).expect("frame");
        send.write_all(&frame).await.expect("write");
    }
    let closed = tokio::time::timeout(Duration::from_secs(20), connection.closed()).await;
    match closed {
        Ok(quinn::ConnectionError::ApplicationClosed(close)) => {
            assert_eq!(close.reason.as_ref(), b"stopped reading");
        }
        other => panic!("the node did not disconnect a peer that stopped reading: {other:?}"),
    }
}
