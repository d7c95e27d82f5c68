//! The server: sockets, the UDP fast path, and the hickory adapter (the only file of the
//! crate that names a hickory type).
//!
//! Contract:
//!
//! * Serves UDP and TCP on sockets the caller bound, until the shutdown future resolves (the
//!   UDP socket is closed when `run` returns). Both loops are ours (hickory's `Server` is not
//!   used): UDP is one OS thread blocking on the socket, answering in batches (one
//!   `recvmmsg` takes every query queued, up to 32, and one `sendmmsg` sends their answers;
//!   off Linux one `recvfrom` and one `sendto` per query; no readiness polling; it wakes
//!   every 250 ms when idle to check for shutdown; see `server/udp.rs`);
//!   TCP is tokio tasks reading length-prefixed queries, at most 256 connections and 16 per
//!   source, each closed after 5 s idle (500 ms once half the slots are taken); see
//!   [`crate::limits`]. UDP responses go through response rate limiting when it is enabled
//!   ([`DnsServer::with_rrl`]).
//! * The full path: hickory decodes the query, the pure [`resolve()`]
//!   answers it from the snapshot current at that moment (one `ArcSwap` load, no lock) with a
//!   fresh per-query seed, and hickory encodes the response.
//! * The UDP fast path: a query of the common shape ([`crate::wire::parse_query`]) is looked
//!   up in the [`AnswerCache`] of the current snapshot; a hit is the cached bytes with the ID,
//!   RD/CD flags and question case patched; a miss takes the full path and is stored. Anything
//!   else (odd header, EDNS options, other opcodes) takes the full path, uncached.
//! * Every response is counted by code, every query with one question by type, and the time
//!   from the query's arrival (over UDP, its batch's) to the response handed to the socket
//!   goes into the latency histogram ([`DnsStats`]), all lock-free.
//! * The query ID and question are echoed; AA is set on every answer in our domain.
//! * EDNS (RFC 6891): when the query carries an OPT record the response carries one too, with
//!   version 0 and a payload size of `min(client's, MAX_UDP_PAYLOAD)` (never below 512). An
//!   EDNS version above 0 gets BADVERS. A query without OPT gets a response without OPT.
//! * Truncation: over UDP the response must fit the client's payload size (512 without
//!   EDNS, else the clamped EDNS size). If it does not, the response carries as many whole
//!   answer records as fit, no authority or additional records, the OPT record if the query
//!   had one, and TC=1, so the client retries over TCP; records are never dropped silently.
//!   Over TCP nothing is truncated (short of DNS's 64 KiB message limit).
//! * Forwarding ([`DnsServer::with_forwarding`], [`crate::forward`]): when upstreams are
//!   configured, a query the resolver would answer REFUSED (outside the domain, class IN) or
//!   NXDOMAIN without authority (a reverse name of an unknown address) is relayed to them
//!   instead, as the client sent it: over UDP on a tokio task (the UDP thread never waits
//!   for an upstream), at most [`crate::forward::ForwardConfig::max_in_flight`] at once
//!   (beyond it, SERVFAIL at once); over TCP within the connection. SERVFAIL when every
//!   upstream fails. Forwarded replies are never cached, and their time is not in the
//!   latency histogram (it is the upstream's). Our own answers then carry RA, as
//!   Consul's with recursors. Without upstreams nothing changes.
//! * Other datacenters ([`DnsServer::with_remote`], [`Remote`]): a name of another
//!   datacenter (`NAME.service.DC.D`, [`crate::name::remote_datacenter`]) is handed, as the
//!   client sent it, to the remote hook (the agent's WAN pool), which has it answered by an
//!   agent of that datacenter; the reply goes back as that agent made it (its ID is the
//!   client's). No reply within the hook's own bound → SERVFAIL. Over UDP on a tokio task, at
//!   most [`crate::forward::DEFAULT_MAX_IN_FLIGHT`] at once (beyond, SERVFAIL at once); never
//!   cached. Without the hook such names are NXDOMAIN, as any unknown name.
//! * Not exactly one question → FORMERR; a query hickory cannot decode → FORMERR if its header
//!   reads, else no answer; opcode other than QUERY → NOTIMP; class other than IN → REFUSED;
//!   a record that hickory cannot encode (e.g. a node name hickory rejects) → SERVFAIL,
//!   logged. Messages that are responses are never answered. Nothing in a request can make
//!   the server panic.
//!
//! hickory's API changes between minor versions; the crate pins `~0.26.3` and every change it
//! needs stays here.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::ProtoError;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, PTR, SOA, SRV, TXT};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record as HRecord};
use hickory_server::proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::server::Request;
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tracing::{debug, warn};

use crate::DnsError;
use crate::cache::CacheLimits;
use crate::forward::{ForwardConfig, Forwarder, servfail};
use crate::limits::{Rrl, RrlConfig, TcpLimits, TcpSlot, TcpSlots};
use crate::resolve::{Answer, QType, Question, Rcode, Record, resolve};
use crate::snapshot::{Instance, Node, ResolverConfig, Snapshot};
use crate::stats::{CountedRcode, DnsStats};
use relay::Relay;

pub use crate::wire::MAX_UDP_PAYLOAD;

/// How often the blocked UDP thread wakes to check for shutdown when no query comes.
const UDP_POLL: Duration = Duration::from_millis(250);

/// Largest UDP query read (anything longer is cut, and answered FORMERR or not at all).
const UDP_RECV_BUFFER: usize = 4096;

/// Size of the OPT record we add (root name, type, class, ttl, empty rdata).
const OPT_LEN: usize = 11;

/// Answers names of other datacenters (the agent's WAN pool): `query` is the client's DNS
/// message as it arrived, `tcp` whether it came over TCP (the remote end then does not
/// truncate). The future resolves to the reply to send, or `None` when the datacenter cannot
/// be reached in the hook's time bound (the server answers SERVFAIL).
pub trait Remote: Send + Sync + std::fmt::Debug + 'static {
    /// Has `query` answered in datacenter `dc`.
    fn query(
        &self,
        dc: String,
        query: Vec<u8>,
        tcp: bool,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<Vec<u8>>> + Send>>;

    /// Executes the prepared query `name` (`NAME.query.D`): the instances to answer (their
    /// `service` the query's name; already filtered, all answered) and the nodes that make
    /// their SRV targets `NODE.node.D` (an instance without one is named `HEX.addr.D`), or
    /// `None` when no such query exists (NXDOMAIN). The default knows none.
    #[allow(clippy::type_complexity)]
    fn prepared(
        &self,
        name: String,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<(Vec<Instance>, Vec<Node>)>> + Send>> {
        let _ = name;
        Box::pin(async { None })
    }
}

/// The remote hook with its concurrency bound.
#[derive(Debug)]
struct RemoteSlot {
    hook: Arc<dyn Remote>,
    permits: Arc<tokio::sync::Semaphore>,
}

/// Answers DNS messages from the server's snapshot without sockets, forwarding or remote
/// relaying: what an agent runs for a query another datacenter relayed to it.
#[derive(Debug, Clone)]
pub struct LocalAnswerer {
    handler: Arc<Handler>,
}

impl LocalAnswerer {
    /// The reply to `query` (`None`: nothing to send: not a query, or a name this datacenter
    /// does not resolve locally).
    pub fn answer(&self, query: &[u8], tcp: bool) -> Option<Vec<u8>> {
        let snapshot = self.handler.snapshot.load_full();
        let src = SocketAddr::from(([0, 0, 0, 0], 0));
        let protocol = if tcp { Protocol::Tcp } else { Protocol::Udp };
        match self.handler.reply(query, src, protocol, &snapshot) {
            Reply::Send(bytes) => Some(bytes),
            Reply::Forward | Reply::Remote(_) | Reply::Prepared(_) | Reply::Nothing => None,
        }
    }
}

/// A DNS server over a swappable catalog snapshot.
#[derive(Debug)]
pub struct DnsServer {
    handler: Handler,
    cache: CacheLimits,
    tcp: TcpLimits,
    rrl: Option<RrlConfig>,
}

impl DnsServer {
    /// A server answering from whatever snapshot `snapshot` holds at query time.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, cfg: ResolverConfig) -> Self {
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let handler = Handler {
            snapshot,
            cfg,
            stats: Arc::default(),
            seed,
            queries: AtomicU64::new(0),
            forward: None,
            remote: None,
        };
        DnsServer { handler, cache: CacheLimits::default(), tcp: TcpLimits::default(), rrl: None }
    }

    /// Replaces the TCP connection limits ([`crate::limits`]).
    pub fn with_tcp_limits(mut self, limits: TcpLimits) -> Self {
        self.tcp = limits;
        self
    }

    /// Enables response rate limiting of UDP answers ([`crate::limits::Rrl`]); off by default.
    pub fn with_rrl(mut self, cfg: Option<RrlConfig>) -> Self {
        self.rrl = cfg;
        self
    }

    /// Forwards names outside the domain (and reverse names of unknown addresses) to
    /// upstream resolvers instead of refusing them ([`crate::forward`]); `None` refuses.
    pub fn with_forwarding(mut self, cfg: Option<ForwardConfig>) -> Self {
        self.handler.forward = cfg.filter(|c| !c.upstreams.is_empty()).map(|c| Arc::new(Forwarder::new(c)));
        self
    }

    /// Relays names of other datacenters to `remote` (see [`Remote`]); `None`: they are
    /// NXDOMAIN.
    pub fn with_remote(mut self, remote: Option<Arc<dyn Remote>>) -> Self {
        self.handler.remote = remote.map(|hook| RemoteSlot {
            hook,
            permits: Arc::new(tokio::sync::Semaphore::new(crate::forward::DEFAULT_MAX_IN_FLIGHT)),
        });
        self
    }

    /// What answers queries relayed from other datacenters: this server's snapshot and
    /// configuration, with no forwarding and no relaying of its own (a relayed query is never
    /// relayed again). Its answers are counted apart from the server's.
    pub fn local_answerer(&self) -> LocalAnswerer {
        let h = &self.handler;
        let handler = Handler {
            snapshot: Arc::clone(&h.snapshot),
            cfg: h.cfg.clone(),
            stats: Arc::default(),
            seed: h.seed.rotate_left(17),
            queries: AtomicU64::new(0),
            forward: None,
            remote: None,
        };
        LocalAnswerer { handler: Arc::new(handler) }
    }

    /// Replaces the random base seed (per-query seeds derive from it), for reproducible tests.
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.handler.seed = seed;
        self
    }

    /// Replaces the bounds of the UDP answer cache ([`crate::cache`]); zero entries disables it.
    pub fn with_cache_limits(mut self, limits: CacheLimits) -> Self {
        self.cache = limits;
        self
    }

    /// The query counters of this server.
    pub fn stats(&self) -> Arc<DnsStats> {
        Arc::clone(&self.handler.stats)
    }

    /// Serves on sockets the caller bound, until `shutdown` resolves.
    ///
    /// Returns `Ok(())` after a graceful shutdown, or [`DnsError::Serve`] if a serving task
    /// stopped on its own first (the remaining tasks are then shut down too).
    pub async fn run(
        self,
        udp: UdpSocket,
        tcp: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DnsError> {
        let handler = Arc::new(self.handler);
        let udp = udp.into_std().and_then(|s| s.set_nonblocking(false).map(|()| s));
        let udp = udp.map_err(|e| DnsError::Serve(format!("udp: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (udp_done, mut udp_stopped) = tokio::sync::oneshot::channel();
        let (h, limits, flag) = (Arc::clone(&handler), self.cache, Arc::clone(&stop));
        let rrl = self.rrl.map(Rrl::new);
        let relay = match handler.forward.is_some() || handler.remote.is_some() {
            true => Some(Relay {
                runtime: tokio::runtime::Handle::current(),
                socket: Arc::new(udp.try_clone().map_err(|e| DnsError::Serve(format!("udp: {e}")))?),
            }),
            false => None,
        };
        std::thread::Builder::new()
            .name("dns-udp".into())
            .spawn(move || {
                let _ = udp_done.send(udp::serve_udp(&udp, &h, limits, rrl, relay, &flag));
            })
            .map_err(|e| DnsError::Serve(format!("udp thread: {e}")))?;
        let mut tcp_task = AbortOnDrop(tokio::spawn(serve_tcp(tcp, handler, TcpSlots::new(self.tcp))));
        tokio::pin!(shutdown);
        let result = tokio::select! {
            res = &mut udp_stopped => {
                Err(DnsError::Serve(format!("udp: {}", res.ok().flatten().map_or("stopped".into(), |e| e.to_string()))))
            }
            res = &mut tcp_task.0 => Err(DnsError::Serve(match res {
                Ok(error) => format!("tcp: {error}"),
                Err(error) => format!("tcp: {error}"),
            })),
            () = &mut shutdown => Ok(()),
        };
        // The UDP thread notices within UDP_POLL and closes the socket before we return.
        stop.store(true, Ordering::Relaxed);
        let _ = udp_stopped.await;
        result
    }
}

/// Aborts the task when dropped, so that a returning `run` leaves nothing behind.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Errors of a socket call that concern one peer or one datagram, not the socket.
fn transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::HostUnreachable
            | io::ErrorKind::NetworkUnreachable
    )
}

/// Accepts TCP connections within the [`TcpSlots`] limits until aborted.
async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, slots: Arc<TcpSlots>) -> io::Error {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, src)) => match slots.take(src.ip()) {
                    Some(slot) => {
                        connections.spawn(serve_tcp_connection(stream, src, Arc::clone(&handler), slot));
                    }
                    None => {
                        handler.stats.record_tcp_refused();
                        debug!(%src, "DNS TCP connection limit (total or per source) reached; closing a new one");
                    }
                },
                Err(error) => {
                    // Out of descriptors and the like: the listener itself is fine; back off.
                    warn!(%error, "DNS TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One TCP connection: length-prefixed queries answered in order, closed when idle for the
/// slot's idle timeout, on a zero length, or on any error.
async fn serve_tcp_connection(mut stream: TcpStream, src: SocketAddr, handler: Arc<Handler>, slot: TcpSlot) {
    let mut len = [0u8; 2];
    loop {
        if !matches!(timeout(slot.idle_timeout(), stream.read_exact(&mut len)).await, Ok(Ok(_))) {
            return;
        }
        let mut query = vec![0u8; usize::from(u16::from_be_bytes(len))];
        if query.is_empty() || !matches!(timeout(slot.idle_timeout(), stream.read_exact(&mut query)).await, Ok(Ok(_))) {
            return;
        }
        let start = Instant::now();
        let snapshot = handler.snapshot.load_full();
        let mut relayed = false;
        let answer = match handler.reply(&query, src, Protocol::Tcp, &snapshot) {
            Reply::Send(answer) => answer,
            Reply::Forward => match handler.forward.as_ref() {
                Some(forwarder) => match forwarder.try_permit() {
                    Some(_permit) => {
                        let Some(reply) = handler.relayed(forwarder, &query, true).await else { continue };
                        relayed = true;
                        reply
                    }
                    None => {
                        handler.stats.record_forwarded(false);
                        handler.stats.record(CountedRcode::ServFail);
                        let Some(reply) = servfail(&query) else { continue };
                        reply
                    }
                },
                None => continue,
            },
            Reply::Prepared(name) => {
                let Some(reply) = handler.prepared(name, &query, src, Protocol::Tcp).await else { continue };
                relayed = true;
                reply
            }
            Reply::Remote(dc) => {
                let Some(remote) = handler.remote.as_ref() else { continue };
                let reply = match Arc::clone(&remote.permits).try_acquire_owned() {
                    Ok(_permit) => remote.hook.query(dc, query.clone(), true).await,
                    Err(_) => None,
                };
                relayed = true;
                let Some(reply) = handler.count_remote(reply, &query) else { continue };
                reply
            }
            Reply::Nothing => continue,
        };
        let Ok(n) = u16::try_from(answer.len()) else { continue };
        let mut framed = Vec::with_capacity(answer.len() + 2);
        framed.extend_from_slice(&n.to_be_bytes());
        framed.extend_from_slice(&answer);
        if !matches!(timeout(slot.idle_timeout(), stream.write_all(&framed)).await, Ok(Ok(()))) {
            return;
        }
        if !relayed {
            handler.stats.record_latency(start.elapsed()); // an upstream's time is not ours
        }
    }
}

/// The per-server state shared by all queries.
#[derive(Debug)]
struct Handler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    cfg: ResolverConfig,
    stats: Arc<DnsStats>,
    seed: u64,
    queries: AtomicU64,
    forward: Option<Arc<Forwarder>>,
    remote: Option<RemoteSlot>,
}

/// What the full path decided for one query.
enum Reply {
    /// Send these bytes.
    Send(Vec<u8>),
    /// Relay the query to the upstreams (only when forwarding is on).
    Forward,
    /// Relay the query to this datacenter (only with a remote hook).
    Remote(String),
    /// Execute this prepared query through the hook, then answer from its results.
    Prepared(String),
    /// Send nothing.
    Nothing,
}

impl Handler {
    /// The full path without forwarding (unit tests).
    #[cfg(test)]
    fn answer(&self, raw: &[u8], src: SocketAddr, protocol: Protocol, snapshot: &Snapshot) -> Option<Vec<u8>> {
        match self.reply(raw, src, protocol, snapshot) {
            Reply::Send(bytes) => Some(bytes),
            Reply::Forward | Reply::Remote(_) | Reply::Prepared(_) | Reply::Nothing => None,
        }
    }

    /// The full path: decodes `raw` with hickory, resolves it against `snapshot` and encodes
    /// the answer (counted in the stats), or asks for it to be forwarded. Nothing is sent for
    /// fewer than 12 bytes, or a message that is itself a response (no reflection).
    fn reply(&self, raw: &[u8], src: SocketAddr, protocol: Protocol, snapshot: &Snapshot) -> Reply {
        self.reply_with(raw, src, protocol, snapshot, true)
    }

    /// [`Handler::reply`]; with `relays` false, names of other datacenters and prepared
    /// queries are resolved against `snapshot` as they are (a prepared query's results).
    fn reply_with(&self, raw: &[u8], src: SocketAddr, protocol: Protocol, snapshot: &Snapshot, relays: bool) -> Reply {
        let request = match Request::from_bytes(raw.to_vec(), src, protocol) {
            Ok(request) => request,
            Err(_) => {
                // As hickory's own server: FORMERR with no question if the header reads.
                let Ok(header) = Header::read(&mut BinDecoder::new(raw)) else { return Reply::Nothing };
                if header.metadata.message_type == MessageType::Response {
                    return Reply::Nothing;
                }
                let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else { return Reply::Nothing };
                let response =
                    MessageResponseBuilder::new(&queries, None).error_msg(&header.metadata, ResponseCode::FormErr);
                return Reply::Send(self.emit(response, 512));
            }
        };
        if request.metadata.message_type == MessageType::Response {
            return Reply::Nothing;
        }
        self.handle(&request, snapshot, relays)
    }

    fn handle(&self, request: &Request, snapshot: &Snapshot, relays: bool) -> Reply {
        let resp_edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns.set_version(0);
            edns
        });
        let edns = resp_edns.as_ref();
        let limit = match request.protocol() {
            Protocol::Udp => usize::from(edns.map_or(512, Edns::max_payload)),
            _ => usize::from(u16::MAX),
        };
        let builder = || MessageResponseBuilder::new(&request.queries, edns);
        let fail = |code| builder().error_msg(&request.metadata, code);

        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return Reply::Send(self.emit(fail(ResponseCode::BADVERS), limit));
        }
        if request.metadata.op_code != OpCode::Query {
            return Reply::Send(self.emit(fail(ResponseCode::NotImp), limit));
        }
        let Ok(info) = request.request_info() else {
            return Reply::Send(self.emit(fail(ResponseCode::FormErr), limit));
        };
        if info.query.query_class() != DNSClass::IN {
            self.stats.record_qtype(QType::from_u16(info.query.query_type().into()));
            return Reply::Send(self.emit(fail(ResponseCode::Refused), limit));
        }

        let qname = info.query.original().name();
        let question = Question::new(&qname.to_ascii(), QType::from_u16(info.query.query_type().into()));
        self.stats.record_qtype(question.qtype);
        if relays
            && self.remote.is_some()
            && let Some(dc) = crate::name::remote_datacenter(question.name(), &self.cfg.domain, &self.cfg.datacenter)
        {
            return Reply::Remote(dc);
        }
        let empty = Snapshot::default();
        let mut snapshot = snapshot;
        if relays
            && let crate::name::Query::Prepared { name } =
                crate::name::parse_in(question.name(), &self.cfg.domain, &self.cfg.datacenter)
        {
            if self.remote.is_some() {
                return Reply::Prepared(name);
            }
            snapshot = &empty;
        }
        let n = self.queries.fetch_add(1, Ordering::Relaxed);
        let answer = resolve(&question, snapshot, &self.cfg, self.seed ^ n);
        let not_ours = answer.rcode == Rcode::Refused || (answer.rcode == Rcode::NxDomain && !answer.authoritative);
        if not_ours && self.forward.is_some() {
            return Reply::Forward;
        }

        let (answers, authority, additional) = match convert(&answer, &question, qname) {
            Ok(sections) => sections,
            Err(error) => {
                warn!(%error, name = question.name(), "cannot encode answer");
                return Reply::Send(self.emit(fail(ResponseCode::ServFail), limit));
            }
        };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.recursion_available = self.forward.is_some();
        metadata.response_code = match answer.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::Refused => ResponseCode::Refused,
        };

        let upper_bound = 12
            + request.queries.as_bytes().len()
            + edns.map_or(0, |_| OPT_LEN)
            + [&answer.answers, &answer.authority, &answer.additional]
                .into_iter()
                .flatten()
                .map(Record::wire_len_upper_bound)
                .sum::<usize>();
        let full = || builder().build(metadata, &answers, &authority, [], &additional);
        if upper_bound <= limit || trial_encode(full(), limit).0 {
            return Reply::Send(self.emit(full(), limit));
        }

        // Too big for this UDP client: as many whole answers as fit next to the OPT record,
        // nothing else, and TC so that it retries over TCP.
        let room = limit.saturating_sub(edns.map_or(0, |_| OPT_LEN));
        let trial = MessageResponseBuilder::new(&request.queries, None).build(metadata, &answers, [], [], []);
        let kept = trial_encode(trial, room).1.min(answers.len());
        metadata.truncation = true;
        self.stats.record_truncated();
        let truncated = builder().build(metadata, &answers[..kept], [], [], []);
        Reply::Send(self.emit(truncated, limit))
    }

    /// Encodes `response` into at most `limit` bytes and counts it; an encoding error gives a
    /// bare SERVFAIL header, as hickory's own server sends.
    fn emit<'a>(
        &self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a HRecord> + Send + 'a,
            impl Iterator<Item = &'a HRecord> + Send + 'a,
            impl Iterator<Item = &'a HRecord> + Send + 'a,
            impl Iterator<Item = &'a HRecord> + Send + 'a,
        >,
        limit: usize,
    ) -> Vec<u8> {
        let metadata = *response.metadata();
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(u16::try_from(limit).unwrap_or(u16::MAX));
        if let Err(error) = response.destructive_emit(&mut encoder) {
            warn!(%error, id = metadata.id, "cannot encode DNS response");
            let mut failed = Metadata::new(metadata.id, MessageType::Response, OpCode::Query);
            failed.response_code = ResponseCode::ServFail;
            bytes.clear();
            let header = Header { metadata: failed, counts: HeaderCounts::default() };
            if header.emit(&mut BinEncoder::new(&mut bytes)).is_err() {
                bytes.clear();
            }
            self.stats.record(CountedRcode::ServFail);
            return bytes;
        }
        self.stats.record(counted(metadata.response_code));
        bytes
    }
}

/// Encodes `response` into at most `limit` bytes, as hickory does for UDP: whether it was
/// complete (nothing truncated) and how many answer records were written.
fn trial_encode<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a HRecord> + Send + 'a,
        impl Iterator<Item = &'a HRecord> + Send + 'a,
        impl Iterator<Item = &'a HRecord> + Send + 'a,
        impl Iterator<Item = &'a HRecord> + Send + 'a,
    >,
    limit: usize,
) -> (bool, usize) {
    let mut buf = Vec::with_capacity(limit);
    let mut encoder = BinEncoder::new(&mut buf);
    encoder.set_max_size(u16::try_from(limit).unwrap_or(u16::MAX));
    match response.destructive_emit(&mut encoder) {
        Ok(info) => (!info.truncation, usize::from(info.counts().answers)),
        Err(_) => (false, 0),
    }
}

fn counted(code: ResponseCode) -> CountedRcode {
    match code {
        ResponseCode::NoError => CountedRcode::NoError,
        ResponseCode::NXDomain => CountedRcode::NxDomain,
        ResponseCode::Refused => CountedRcode::Refused,
        ResponseCode::FormErr => CountedRcode::FormErr,
        ResponseCode::NotImp => CountedRcode::NotImp,
        ResponseCode::BADVERS => CountedRcode::BadVers,
        _ => CountedRcode::ServFail,
    }
}

/// The three sections of `answer` as hickory records.
type Sections = (Vec<HRecord>, Vec<HRecord>, Vec<HRecord>);

fn convert(answer: &Answer, question: &Question, qname: &Name) -> Result<Sections, ProtoError> {
    let section = |records: &[Record]| -> Result<Vec<HRecord>, ProtoError> {
        records.iter().map(|r| to_hickory(r, question, qname)).collect()
    };
    Ok((section(&answer.answers)?, section(&answer.authority)?, section(&answer.additional)?))
}

/// Converts one resolver record. Records owned by the question name reuse the client's own
/// `Name` (its exact bytes and case); other names are ones we generated, parsed as ASCII.
fn to_hickory(record: &Record, question: &Question, qname: &Name) -> Result<HRecord, ProtoError> {
    let owner = |s: &str| {
        if s == question.name() { Ok(qname.clone()) } else { Name::from_ascii(s) }
    };
    let secs = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    Ok(match record {
        Record::A { name, addr, ttl } => HRecord::from_rdata(owner(name)?, *ttl, RData::A(A(*addr))),
        Record::Aaaa { name, addr, ttl } => HRecord::from_rdata(owner(name)?, *ttl, RData::AAAA(AAAA(*addr))),
        Record::Srv { name, priority, weight, port, target, ttl } => {
            let srv = SRV::new(*priority, *weight, *port, Name::from_ascii(target)?);
            HRecord::from_rdata(owner(name)?, *ttl, RData::SRV(srv))
        }
        Record::Soa { name, mname, rname, serial, refresh, retry, expire, minimum, ttl } => {
            let soa = SOA::new(
                Name::from_ascii(mname)?,
                Name::from_ascii(rname)?,
                *serial,
                secs(*refresh),
                secs(*retry),
                secs(*expire),
                *minimum,
            );
            HRecord::from_rdata(owner(name)?, *ttl, RData::SOA(soa))
        }
        Record::Ptr { name, target, ttl } => {
            HRecord::from_rdata(owner(name)?, *ttl, RData::PTR(PTR(Name::from_ascii(target)?)))
        }
        Record::Ns { name, target, ttl } => {
            HRecord::from_rdata(owner(name)?, *ttl, RData::NS(NS(Name::from_ascii(target)?)))
        }
        Record::Txt { name, text, ttl } => {
            HRecord::from_rdata(owner(name)?, *ttl, RData::TXT(TXT::new(vec![text.clone()])))
        }
    })
}

mod relay;
#[cfg(test)]
mod tests;
mod udp;
