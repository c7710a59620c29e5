//! The data path on a node: coordinating quorum reads and writes, and the
//! replica side they call. The decisions are the sans-IO tallies of
//! [`crate::coordinator`]; this module sends, waits and stores.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use norn_clock::{Context, Object, Sibling};
use norn_proto::{ErrorCode, GetReply, PutReply, QuorumOptions, Request, Response};
use norn_ring::{NodeId, Partition, PreferenceList, Ring};
use norn_storage::{DataKey, Durability};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::coordinator::{
    choose_write_targets, Quorum, QuorumDefaults, ReadOutcome, ReadTally, WriteOutcome, WriteTally,
    WriteTarget,
};
use crate::node::{error, Node};
use crate::replica::{self, CoordinatedWrite, LocalWriteError};

/// Waits for a write's acknowledgements until it is decided. A failed write
/// still waits for its outstanding replicas (until the timeout), so that
/// the receipt says how many did write.
async fn await_write(
    tally: &mut WriteTally,
    mut outcome: WriteOutcome,
    mut acks: mpsc::Receiver<(NodeId, Option<bool>)>,
    timeout: Duration,
) -> WriteOutcome {
    let deadline = tokio::time::Instant::now() + timeout;
    while outcome == WriteOutcome::Pending
        || (matches!(outcome, WriteOutcome::Failed(_)) && !tally.all_in())
    {
        outcome = match tokio::time::timeout_at(deadline, acks.recv()).await {
            Ok(Some((node, Some(synced)))) => tally.on_ack(node, synced),
            Ok(Some((node, None))) => tally.on_failure(node),
            Ok(None) | Err(_) => tally.on_timeout(),
        };
    }
    outcome
}

impl Node {
    fn quorum(&self, options: QuorumOptions, ring: &Ring) -> Result<Quorum, Response> {
        let defaults = QuorumDefaults {
            n: self.config.ring.default_n,
            n_max: self.config.ring.n_max,
        };
        Quorum::resolve(options, defaults, ring.members().len())
            .map_err(|e| error(ErrorCode::BadRequest, e.to_string()))
    }

    fn check_sizes(&self, bucket: &[u8], key: &[u8], value: Option<&[u8]>) -> Result<(), Response> {
        let data = &self.config.data;
        let too_long = |what: &str, len: usize, max: usize| {
            error(
                ErrorCode::BadRequest,
                format!(
                    "{what} of {len} bytes exceeds the limit of {max} bytes; nothing was written"
                ),
            )
        };
        if bucket.len() > data.max_bucket_bytes {
            return Err(too_long("bucket", bucket.len(), data.max_bucket_bytes));
        }
        if key.len() > data.max_key_bytes {
            return Err(too_long("key", key.len(), data.max_key_bytes));
        }
        match value {
            Some(value) if value.len() > data.max_value_bytes => Err(error(
                ErrorCode::TooLarge,
                format!(
                    "value of {} bytes exceeds the limit of {} bytes; nothing was written",
                    value.len(),
                    data.max_value_bytes
                ),
            )),
            _ => Ok(()),
        }
    }

    fn timeout(&self, timeout_ms: Option<u64>) -> Duration {
        Duration::from_millis(
            timeout_ms
                .unwrap_or(self.config.data.request_timeout_ms)
                .clamp(1, 600_000),
        )
    }

    pub(crate) fn data_key_in(ring: &Ring, bucket: &[u8], key: &[u8]) -> Result<DataKey, Response> {
        DataKey::new(ring.partition_of_key(bucket, key), bucket, key)
            .map_err(|e| error(ErrorCode::BadRequest, e.to_string()))
    }

    /// This node's copy of a key.
    pub(crate) fn local_get(&self, key: &DataKey) -> Result<Option<Object>, String> {
        self.replica().read(key)
    }

    pub(crate) fn address_of(&self, node: NodeId) -> Option<SocketAddr> {
        self.membership()
            .member(node)
            .and_then(|m| m.address.parse().ok())
    }

    /// Sends `request` to `node`; `None` if it is unknown or unreachable.
    pub(crate) async fn call_node(
        &self,
        node: NodeId,
        request: &Request,
        timeout: Duration,
    ) -> Option<Response> {
        let addr = self.address_of(node)?;
        match self.endpoint.call(addr, request, timeout).await {
            Ok(response) => Some(response),
            Err(e) => {
                tracing::debug!(peer = %node, error = %e, "replica request failed");
                None
            }
        }
    }

    /// The first N reachable nodes of `list` (see [`choose_write_targets`]);
    /// only reachable primaries when hinted handoff is off.
    fn targets(&self, list: &PreferenceList) -> Vec<WriteTarget> {
        let membership = self.membership();
        let mut targets = choose_write_targets(list, |n| membership.is_up(n));
        if !self.config.data.hinted_handoff {
            targets.retain(|t| t.hint_for.is_none());
        }
        targets
    }

    /// Up nodes still handing `partition` off to its owners (ownership
    /// transfer) that are not among `targets`: they get reads and writes
    /// too until their transfer is done, so requests keep their N.
    fn handoff_holders(&self, partition: Partition, targets: &[NodeId]) -> Vec<NodeId> {
        let mut holders = self.membership().handing_off(partition);
        holders.retain(|node| !targets.contains(node));
        holders
    }

    /// Checks a request and finds where its key lives: its quorum, its
    /// storage key and its preference list. Any refusal is the reply.
    fn route(
        &self,
        bucket: &[u8],
        key: &[u8],
        value: Option<&[u8]>,
        options: QuorumOptions,
    ) -> Result<(Quorum, DataKey, PreferenceList), Response> {
        self.check_sizes(bucket, key, value)?;
        let ring = self
            .ring()
            .ok_or_else(|| error(ErrorCode::Unavailable, "this node holds no ring yet"))?;
        let quorum = self.quorum(options, &ring)?;
        let data_key = Self::data_key_in(&ring, bucket, key)?;
        let list = ring.preference_list(data_key.partition, usize::from(quorum.n));
        Ok((quorum, data_key, list))
    }

    /// A quorum read: replies as soon as R (and PR) replicas answered; then
    /// waits for the rest (until the timeout) and sends the merged object to
    /// every replica that answered with less (read repair).
    pub(crate) async fn coordinate_get(
        self: &Arc<Self>,
        bucket: Vec<u8>,
        key: Vec<u8>,
        options: QuorumOptions,
        timeout_ms: Option<u64>,
    ) -> Response {
        let started = std::time::Instant::now();
        let response = self.quorum_get(bucket, key, options, timeout_ms).await;
        self.metrics.observe("get", &response, started.elapsed());
        response
    }

    async fn quorum_get(
        self: &Arc<Self>,
        bucket: Vec<u8>,
        key: Vec<u8>,
        options: QuorumOptions,
        timeout_ms: Option<u64>,
    ) -> Response {
        let (quorum, data_key, list) = match self.route(&bucket, &key, None, options) {
            Ok(route) => route,
            Err(response) => return response,
        };
        let mut targets: Vec<(NodeId, bool)> = self
            .targets(&list)
            .into_iter()
            .map(|t| (t.node, t.hint_for.is_none()))
            .collect();
        let chosen: Vec<NodeId> = targets.iter().map(|(node, _)| *node).collect();
        targets.extend(
            self.handoff_holders(data_key.partition, &chosen)
                .into_iter()
                .map(|node| (node, false)),
        );
        if targets.is_empty() {
            return error(
                ErrorCode::QuorumNotMet,
                "no replica of this key is reachable",
            );
        }
        let timeout = self.timeout(timeout_ms);
        let replies = self.spawn_replica_reads(&data_key, &targets, timeout);
        let first_rx = self.spawn_read_tally(data_key, quorum, targets, replies, timeout);
        match first_rx.await {
            Ok(ReadOutcome::Done { merged }) => Response::Value(self.get_reply(merged, quorum)),
            Ok(ReadOutcome::Failed { replies, required }) => error(
                ErrorCode::QuorumNotMet,
                format!("read quorum not met: {replies} of R={required} replicas answered"),
            ),
            _ => error(ErrorCode::Timeout, "read timed out"),
        }
    }

    /// Asks each target for its copy (this node reads its own); replies
    /// arrive on the returned channel, `None` for a failed replica.
    fn spawn_replica_reads(
        self: &Arc<Self>,
        key: &DataKey,
        targets: &[(NodeId, bool)],
        timeout: Duration,
    ) -> mpsc::Receiver<(NodeId, Option<Option<Object>>)> {
        let (tx, rx) = mpsc::channel(targets.len().max(1));
        for &(node, _) in targets {
            let (this, tx, key) = (self.clone(), tx.clone(), key.clone());
            let request = Request::ReplicaGet {
                bucket: key.bucket.clone(),
                key: key.key.clone(),
            };
            let read = async move {
                let reply = if node == this.id() {
                    this.local_get(&key).ok()
                } else {
                    match this.call_node(node, &request, timeout).await {
                        Some(Response::Replica { object }) => Some(object),
                        _ => None,
                    }
                };
                let _ = tx.send((node, reply)).await;
            };
            tokio::spawn(read.instrument(self.span.clone()));
        }
        rx
    }

    /// Tallies the replies: the first decision goes to the returned
    /// receiver (the client's answer); the task then waits for the other
    /// replicas until the timeout and read-repairs the stale ones.
    fn spawn_read_tally(
        self: &Arc<Self>,
        key: DataKey,
        quorum: Quorum,
        targets: Vec<(NodeId, bool)>,
        mut replies: mpsc::Receiver<(NodeId, Option<Option<Object>>)>,
        timeout: Duration,
    ) -> tokio::sync::oneshot::Receiver<ReadOutcome> {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let this = self.clone();
        let tally_task = async move {
            let mut tally = ReadTally::new(quorum, targets);
            let deadline = tokio::time::Instant::now() + timeout;
            let mut first = Some(first_tx);
            let mut outcome = ReadOutcome::Pending;
            while !tally.all_in() {
                outcome = match tokio::time::timeout_at(deadline, replies.recv()).await {
                    Ok(Some((from, Some(object)))) => tally.on_reply(from, object),
                    Ok(Some((from, None))) => tally.on_failure(from),
                    Ok(None) | Err(_) => tally.on_timeout(),
                };
                if outcome != ReadOutcome::Pending {
                    if let Some(first) = first.take() {
                        let _ = first.send(outcome.clone());
                    }
                }
            }
            if let Some(first) = first.take() {
                let _ = first.send(outcome);
            }
            this.read_repair(&key, quorum.n, &tally, timeout).await;
        };
        tokio::spawn(tally_task.instrument(self.span.clone()));
        first_rx
    }

    fn get_reply(&self, merged: Option<Object>, quorum: Quorum) -> GetReply {
        let (siblings, context) = match merged {
            Some(object) => (
                object.values().cloned().collect::<Vec<_>>(),
                object.context(),
            ),
            None => (Vec::new(), Context::default()),
        };
        let warn = self.config.data.siblings_warn as usize;
        let warning = (siblings.len() > warn).then(|| {
            format!(
                "{} siblings (warning past {warn}); write with the merged context to resolve them",
                siblings.len()
            )
        });
        GetReply {
            siblings,
            context,
            replies: quorum.r,
            warning,
        }
    }

    async fn read_repair(&self, key: &DataKey, n: u8, tally: &ReadTally, timeout: Duration) {
        let Some(merged) = tally.merged() else { return };
        for stale in tally.stale_replicas(&merged) {
            let repaired = if stale == self.id() {
                self.replica()
                    .merge(key, n, &merged, Durability::Buffered, None)
                    .is_ok()
            } else {
                let request = replica::put_request(key, n, &merged, None, false);
                matches!(
                    self.call_node(stale, &request, timeout).await,
                    Some(Response::Stored { .. })
                )
            };
            if repaired {
                self.metrics
                    .read_repairs
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            tracing::debug!(replica = %stale, key = %key, repaired, "read repair");
        }
    }

    /// A quorum write (or delete, with `value: None`). A node outside the
    /// key's primaries forwards it to the first reachable primary, which
    /// gives the write its own dot.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn coordinate_put(
        self: &Arc<Self>,
        bucket: Vec<u8>,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: Option<Context>,
        options: QuorumOptions,
        timeout_ms: Option<u64>,
        forwarded: bool,
    ) -> Response {
        let op = if value.is_some() { "put" } else { "delete" };
        let started = std::time::Instant::now();
        let response = self
            .quorum_put(bucket, key, value, context, options, timeout_ms, forwarded)
            .await;
        self.metrics.observe(op, &response, started.elapsed());
        response
    }

    #[allow(clippy::too_many_arguments)]
    async fn quorum_put(
        self: &Arc<Self>,
        bucket: Vec<u8>,
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        context: Option<Context>,
        options: QuorumOptions,
        timeout_ms: Option<u64>,
        forwarded: bool,
    ) -> Response {
        let (quorum, data_key, list) = match self.route(&bucket, &key, value.as_deref(), options) {
            Ok(route) => route,
            Err(response) => return response,
        };
        let targets = self.targets(&list);
        let timeout = self.timeout(timeout_ms);
        if !targets.iter().any(|t| t.node == self.id()) {
            if forwarded {
                return error(
                    ErrorCode::Unavailable,
                    "forwarded write reached a node that is not among its replicas",
                );
            }
            let request = Request::Put {
                bucket,
                key,
                value,
                context,
                options,
                timeout_ms,
                forwarded: true,
            };
            return self.forward_put(&targets, request, timeout).await;
        }
        let sync = quorum.dw > 0;
        let context = context.unwrap_or_default();
        let write = CoordinatedWrite {
            key: &data_key,
            n: quorum.n,
            context: &context,
            sibling: value.map_or(Sibling::Tombstone, Sibling::Value),
            hint_for: targets
                .iter()
                .find(|t| t.node == self.id())
                .and_then(|t| t.hint_for),
            durability: Durability::synced_if(sync),
        };
        let object = match self.replica().coordinate_write(write) {
            Ok(object) => object,
            Err(refused) => return self.local_write_refused(refused),
        };
        let chosen: Vec<NodeId> = targets.iter().map(|t| t.node).collect();
        for holder in self.handoff_holders(data_key.partition, &chosen) {
            self.spawn_handoff_copy(holder, &data_key, quorum.n, &object, timeout);
        }
        let mut tally = WriteTally::new(quorum, targets.clone());
        let first = tally.on_ack(self.id(), sync || self.config.storage.sync_every_write);
        let (tx, acks) = mpsc::channel(targets.len().max(1));
        for target in targets.into_iter().filter(|t| t.node != self.id()) {
            self.spawn_replica_put(target, &data_key, quorum, &object, timeout, tx.clone());
        }
        drop(tx);
        let outcome = await_write(&mut tally, first, acks, timeout).await;
        self.write_reply(outcome, &tally, quorum, &object)
    }

    /// The client's answer to a write its coordinator refused: nothing was
    /// written anywhere.
    fn local_write_refused(&self, refused: LocalWriteError) -> Response {
        match refused {
            LocalWriteError::TooManySiblings(count) => error(
                ErrorCode::TooManySiblings,
                format!("the write would leave {count} siblings (limit {}); read and write with the merged context; nothing was written", self.config.data.siblings_max),
            ),
            LocalWriteError::TooLarge { bytes, max } => error(
                ErrorCode::TooLarge,
                format!("the write would leave an object of {bytes} bytes with its siblings (limit {max}); read and write with the merged context to resolve them; nothing was written"),
            ),
            LocalWriteError::Failed(reason) => error(ErrorCode::Storage, reason),
        }
    }

    /// Passes a write to the first reachable primary, which coordinates it.
    async fn forward_put(
        &self,
        targets: &[WriteTarget],
        request: Request,
        timeout: Duration,
    ) -> Response {
        let Some(coordinator) = targets.first().map(|t| t.node) else {
            return error(
                ErrorCode::QuorumNotMet,
                "no replica of this key is reachable; nothing was written",
            );
        };
        match self.call_node(coordinator, &request, timeout).await {
            Some(response) => response,
            None => error(
                ErrorCode::Timeout,
                format!("forwarding to {coordinator} failed; the write may have happened"),
            ),
        }
    }

    /// The client's answer to a coordinated write.
    fn write_reply(
        &self,
        outcome: WriteOutcome,
        tally: &WriteTally,
        quorum: Quorum,
        object: &Object,
    ) -> Response {
        let siblings = object.value_count() as u32;
        let warn = self.config.data.siblings_warn;
        let warning =
            (siblings > warn).then(|| format!("{siblings} siblings (warning past {warn})"));
        let receipt = match outcome {
            WriteOutcome::Succeeded(receipt) => {
                let context = object.context();
                return Response::Written(PutReply {
                    receipt,
                    context,
                    siblings,
                    warning,
                });
            }
            WriteOutcome::Failed(receipt) => receipt,
            // Only a decided tally is awaited; a pending one is reported as
            // the failure it would be.
            WriteOutcome::Pending => tally.receipt(),
        };
        let message = format!(
            "write quorum not met: {} of {} replicas acknowledged (W={}, PW={}, DW={}), {} primaries, {} fallbacks, {} synced",
            receipt.acked(), receipt.sent, quorum.w, quorum.pw, quorum.dw, receipt.primaries.len(), receipt.fallbacks.len(), receipt.synced
        );
        Response::WriteFailed { receipt, message }
    }

    fn spawn_replica_put(
        self: &Arc<Self>,
        target: WriteTarget,
        key: &DataKey,
        quorum: Quorum,
        object: &Object,
        timeout: Duration,
        tx: mpsc::Sender<(NodeId, Option<bool>)>,
    ) {
        let request = replica::put_request(key, quorum.n, object, target.hint_for, quorum.dw > 0);
        let node = self.clone();
        tokio::spawn(
            async move {
                let acked = match node.call_node(target.node, &request, timeout).await {
                    Some(Response::Stored { synced }) => Some(synced),
                    _ => None,
                };
                let _ = tx.send((target.node, acked)).await;
            }
            .instrument(self.span.clone()),
        );
    }

    /// Sends a write to a node still handing its partition off; best effort,
    /// not counted toward the quorum (the new owners are).
    fn spawn_handoff_copy(
        self: &Arc<Self>,
        holder: NodeId,
        key: &DataKey,
        n: u8,
        object: &Object,
        timeout: Duration,
    ) {
        let request = replica::put_request(key, n, object, None, false);
        let node = self.clone();
        tokio::spawn(
            async move {
                let stored = node.call_node(holder, &request, timeout).await;
                tracing::debug!(holder = %holder, stored = matches!(stored, Some(Response::Stored { .. })), "write copied to a node handing off");
            }
            .instrument(self.span.clone()),
        );
    }

    /// The replica side of a write: merge, and keep a hint when standing in
    /// for `hint_for`.
    pub(crate) fn replica_put(
        &self,
        bucket: &[u8],
        key: &[u8],
        n: u8,
        object: &Object,
        hint_for: Option<NodeId>,
        sync: bool,
    ) -> Response {
        let Some(ring) = self.ring() else {
            return error(ErrorCode::Unavailable, "this node holds no ring yet");
        };
        let data_key = match Self::data_key_in(&ring, bucket, key) {
            Ok(key) => key,
            Err(response) => return response,
        };
        let durability = Durability::synced_if(sync);
        match self
            .replica()
            .store_replica_write(&data_key, n, object, hint_for, durability)
        {
            Ok(_) => Response::Stored {
                synced: sync || self.config.storage.sync_every_write,
            },
            Err(reason) => error(ErrorCode::Storage, reason),
        }
    }

    pub(crate) fn replica_get(&self, bucket: &[u8], key: &[u8]) -> Response {
        let Some(ring) = self.ring() else {
            return error(ErrorCode::Unavailable, "this node holds no ring yet");
        };
        let data_key = match Self::data_key_in(&ring, bucket, key) {
            Ok(key) => key,
            Err(response) => return response,
        };
        match self.local_get(&data_key) {
            Ok(object) => Response::Replica { object },
            Err(reason) => error(ErrorCode::Storage, reason),
        }
    }
}
