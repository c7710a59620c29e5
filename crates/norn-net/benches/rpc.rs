//! `make bench-net`: request/response over norn-net on loopback (mutual
//! TLS, one connection, frames multiplexed over long-lived streams), with 1
//! and 32 requests in flight, on a runtime of one worker thread (as each
//! node of `make cluster` on two cores runs) and of two. Prints requests
//! per second and the process's CPU time per request (both sides run in
//! this one process): the difference between the two runtimes is the cost
//! of waking another thread for each message.
//!
//! `NORN_BENCH_SECONDS` sets the time per case (default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use norn_net::certs::{issue_client, issue_node, new_ca, write_pem};
use norn_net::tls::TlsMaterial;
use norn_net::{Endpoint, EndpointLimits, Handler, TlsFiles};
use norn_proto::{Request, Response};
use norn_ring::NodeId;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
    });
    ticks / 100.0
}

fn material(
    dir: &std::path::Path,
    name: &str,
    issued: &norn_net::certs::Issued,
    ca: &norn_net::certs::Issued,
) -> TlsMaterial {
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        cert: dir.join(format!("{name}.pem")),
        key: dir.join(format!("{name}.key")),
    };
    if !files.ca_cert.exists() {
        write_pem(&files.ca_cert, &ca.cert_pem, false).expect("write ca");
    }
    write_pem(&files.cert, &issued.cert_pem, false).expect("write cert");
    write_pem(&files.key, &issued.key_pem, true).expect("write key");
    TlsMaterial::load(&files).expect("load")
}

fn main() {
    let seconds: u64 = std::env::var("NORN_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    println!(
        "norn-net request/response on loopback, mutual TLS, one connection, {seconds} s per case"
    );
    println!(
        "{:>8} {:>10} {:>12} {:>16}",
        "workers", "in flight", "requests/s", "CPU us/request"
    );
    for workers in [1, 2] {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(cases(workers, seconds));
    }
}

/// Both cases (1 and 32 in flight) on the current runtime.
async fn cases(worker_threads: usize, seconds: u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = new_ca("bench").expect("ca");
    let server_tls = material(
        dir.path(),
        "server",
        &issue_node(&ca, "server", NodeId(1)).expect("node"),
        &ca,
    );
    let client_tls = material(
        dir.path(),
        "client",
        &issue_client(&ca, "bench", norn_proto::ClientRole::Data).expect("client"),
        &ca,
    );
    let server = Arc::new(
        Endpoint::bind(
            "127.0.0.1:0".parse().expect("addr"),
            &server_tls,
            EndpointLimits::default(),
        )
        .expect("bind"),
    );
    let handler: Handler = Arc::new(|_, _| Box::pin(async { Response::Stored { synced: false } }));
    let addr = server.local_addr().expect("addr");
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(handler).await }
    });
    let client =
        Arc::new(Endpoint::client(&client_tls, EndpointLimits::default()).expect("client"));
    let request = Request::ReplicaGet {
        bucket: b"bench".to_vec(),
        key: vec![7; 16],
    };
    client
        .call(addr, &request, Duration::from_secs(5))
        .await
        .expect("warm up");
    for in_flight in [1usize, 32] {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let (started, cpu_before) = (Instant::now(), cpu_seconds());
        let workers: Vec<_> = (0..in_flight)
            .map(|_| {
                let (client, request) = (client.clone(), request.clone());
                tokio::spawn(async move {
                    let mut done = 0u64;
                    while Instant::now() < deadline {
                        client
                            .call(addr, &request, Duration::from_secs(5))
                            .await
                            .expect("call");
                        done += 1;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for worker in workers {
            total += worker.await.expect("worker");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu_before;
        println!(
            "{:>8} {:>10} {:>12.0} {:>16.1}",
            worker_threads,
            in_flight,
            total as f64 / elapsed,
            cpu * 1e6 / total as f64
        );
    }
}
