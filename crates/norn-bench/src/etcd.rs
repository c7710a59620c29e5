//! The comparison store: etcd v3 through its gRPC API, with the two calls
//! the workloads need written out as prost messages (the fields of etcd's
//! `rpc.proto` and `kv.proto` they use), so that no protobuf compiler is
//! needed to build it. Requests go round-robin over the endpoints given,
//! one HTTP/2 connection each, as etcd's own clients balance.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use tonic::codec::ProstCodec;
use tonic::transport::Channel;

/// `etcdserverpb.PutRequest`: key 1, value 2.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.PutResponse`; its header is not read.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PutResponse {}

/// `etcdserverpb.RangeRequest`: key 1, serializable 7.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bool, tag = "7")]
    pub serializable: bool,
}

/// `mvccpb.KeyValue`: key 1, value 5.
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub value: Vec<u8>,
}

/// `etcdserverpb.RangeResponse`: kvs 2.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RangeResponse {
    #[prost(message, repeated, tag = "2")]
    pub kvs: Vec<KeyValue>,
}

/// A client of one etcd cluster.
#[derive(Debug)]
pub struct Etcd {
    channels: Vec<Channel>,
    next: AtomicUsize,
    serializable: bool,
}

impl Etcd {
    /// Connects to every endpoint (`http://host:port`).
    pub async fn connect(endpoints: &[String], serializable: bool) -> anyhow::Result<Etcd> {
        anyhow::ensure!(!endpoints.is_empty(), "no etcd endpoint given");
        let mut channels = Vec::new();
        for endpoint in endpoints {
            let channel = Channel::from_shared(endpoint.clone())
                .with_context(|| format!("etcd endpoint {endpoint}"))?
                .connect()
                .await
                .with_context(|| format!("connecting to etcd at {endpoint}"))?;
            channels.push(channel);
        }
        Ok(Etcd {
            channels,
            next: AtomicUsize::new(0),
            serializable,
        })
    }

    fn channel(&self) -> Channel {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.channels.len();
        self.channels[i].clone()
    }

    async fn unary<Q, A>(&self, path: &'static str, request: Q) -> Result<A, String>
    where
        Q: prost::Message + Send + Sync + 'static,
        A: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = tonic::client::Grpc::new(self.channel());
        grpc.ready().await.map_err(|_| "network".to_string())?;
        let path = http::uri::PathAndQuery::from_static(path);
        grpc.unary(
            tonic::Request::new(request),
            path,
            ProstCodec::<Q, A>::default(),
        )
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| format!("{:?}", status.code()).to_lowercase())
    }

    /// Reads `key`, linearizable unless the client was made serializable.
    pub async fn read(&self, key: &str) -> Result<(), String> {
        let request = RangeRequest {
            key: key.as_bytes().to_vec(),
            serializable: self.serializable,
        };
        let _: RangeResponse = self.unary("/etcdserverpb.KV/Range", request).await?;
        Ok(())
    }

    /// Writes `value` to `key`.
    pub async fn write(&self, key: &str, value: Vec<u8>) -> Result<(), String> {
        let request = PutRequest {
            key: key.as_bytes().to_vec(),
            value,
        };
        let _: PutResponse = self.unary("/etcdserverpb.KV/Put", request).await?;
        Ok(())
    }
}
