//! The hickory adapter: the only file of the crate that names a hickory type.
//!
//! Contract:
//!
//! * Serves UDP and TCP on sockets the caller bound, until the shutdown future resolves.
//! * Each query reads the current snapshot with one `ArcSwap::load` (no lock), calls the pure
//!   [`resolve()`] with a fresh per-query seed, and writes the answer.
//! * Every response is counted by code, every query with one question by type, and the time
//!   from the handler's start to the response handed to the socket goes into the latency
//!   histogram ([`DnsStats`]), all lock-free.
//! * The query ID and question are echoed; AA is set on every answer in our domain.
//! * EDNS (RFC 6891): when the query carries an OPT record the response carries one too, with
//!   version 0 and a payload size of `min(client's, MAX_UDP_PAYLOAD)` (never below 512). An
//!   EDNS version above 0 gets BADVERS. A query without OPT gets a response without OPT.
//! * Truncation: over UDP the response must fit the client's payload size (512 without
//!   EDNS, else the clamped EDNS size). If it does not, the response carries as many whole
//!   answer records as fit, no authority or additional records, the OPT record if the query
//!   had one, and TC=1, so the client retries over TCP; records are never dropped silently.
//!   Over TCP nothing is truncated (short of DNS's 64 KiB message limit).
//! * Not exactly one question → FORMERR; opcode other than QUERY → NOTIMP; class other than IN
//!   → REFUSED; a record that hickory cannot encode (e.g. a node name hickory rejects) →
//!   SERVFAIL, logged. Nothing in a request can make the server panic.
//!
//! hickory-server's handler API changes between minor versions; the crate pins `~0.26.3` and
//! every change it needs stays here.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::ProtoError;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, NS, SOA, SRV};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record as HRecord};
use hickory_server::proto::serialize::binary::BinEncoder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tokio::net::{TcpListener, UdpSocket};
use tracing::warn;

use crate::DnsError;
use crate::resolve::{Answer, QType, Question, Rcode, Record, resolve};
use crate::snapshot::{ResolverConfig, Snapshot};
use crate::stats::{CountedRcode, DnsStats};

/// Largest UDP payload we advertise or fill (the DNS flag day 2020 value, which avoids IP
/// fragmentation on common paths).
pub const MAX_UDP_PAYLOAD: u16 = 1232;

/// A TCP connection idle this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Size of the OPT record we add (root name, type, class, ttl, empty rdata).
const OPT_LEN: usize = 11;

/// A DNS server over a swappable catalog snapshot.
#[derive(Debug)]
pub struct DnsServer {
    handler: Handler,
}

impl DnsServer {
    /// A server answering from whatever snapshot `snapshot` holds at query time.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, cfg: ResolverConfig) -> Self {
        let seed = std::collections::hash_map::RandomState::new().build_hasher().finish();
        let handler = Handler { snapshot, cfg, stats: Arc::default(), seed, queries: AtomicU64::new(0) };
        DnsServer { handler }
    }

    /// Replaces the random base seed (per-query seeds derive from it), for reproducible tests.
    pub fn with_rng_seed(mut self, seed: u64) -> Self {
        self.handler.seed = seed;
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
        let mut server = Server::new(self.handler);
        server.register_socket(udp);
        server.register_listener(tcp, TCP_IDLE_TIMEOUT, 32);
        let stopped_early = {
            let done = server.block_until_done();
            tokio::pin!(done, shutdown);
            tokio::select! {
                res = &mut done => Some(res),
                () = &mut shutdown => None,
            }
        };
        let graceful = server.shutdown_gracefully().await;
        match stopped_early {
            Some(res) => Err(DnsError::Serve(match res {
                Err(e) => e.to_string(),
                Ok(()) => "all serving tasks ended".to_owned(),
            })),
            None => graceful.map_err(|e| DnsError::Serve(e.to_string())),
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
}

// `RequestHandler` is declared with `#[async_trait]`; this is its expansion, written out so the
// crate does not depend on the `async-trait` macro.
impl RequestHandler for Handler {
    fn handle_request<'life0, 'life1, 'async_trait, R, T>(
        &'life0 self,
        request: &'life1 Request,
        response_handle: R,
    ) -> Pin<Box<dyn Future<Output = ResponseInfo> + Send + 'async_trait>>
    where
        R: 'async_trait + ResponseHandler,
        T: 'async_trait + Time,
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            let start = Instant::now();
            let info = self.handle(request, response_handle).await;
            self.stats.record_latency(start.elapsed());
            info
        })
    }
}

impl Handler {
    async fn handle<R: ResponseHandler>(&self, request: &Request, handle: R) -> ResponseInfo {
        let resp_edns = request.edns.as_ref().map(|req| {
            let mut edns = Edns::new();
            edns.set_max_payload(req.max_payload().clamp(512, MAX_UDP_PAYLOAD));
            edns.set_version(0);
            edns
        });
        let edns = resp_edns.as_ref();
        let builder = || MessageResponseBuilder::new(&request.queries, edns);
        let fail = |code| builder().error_msg(&request.metadata, code);

        if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            return self.send(handle, fail(ResponseCode::BADVERS)).await;
        }
        if request.metadata.op_code != OpCode::Query {
            return self.send(handle, fail(ResponseCode::NotImp)).await;
        }
        let Ok(info) = request.request_info() else {
            return self.send(handle, fail(ResponseCode::FormErr)).await;
        };
        if info.query.query_class() != DNSClass::IN {
            self.stats.record_qtype(QType::from_u16(info.query.query_type().into()));
            return self.send(handle, fail(ResponseCode::Refused)).await;
        }

        let qname = info.query.original().name();
        let question = Question::new(&qname.to_ascii(), QType::from_u16(info.query.query_type().into()));
        self.stats.record_qtype(question.qtype);
        let n = self.queries.fetch_add(1, Ordering::Relaxed);
        let answer = resolve(&question, &self.snapshot.load(), &self.cfg, self.seed ^ n);

        let (answers, authority, additional) = match convert(&answer, &question, qname) {
            Ok(sections) => sections,
            Err(error) => {
                warn!(%error, name = question.name(), "cannot encode answer");
                return self.send(handle, fail(ResponseCode::ServFail)).await;
            }
        };

        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.authoritative = answer.authoritative;
        metadata.response_code = match answer.rcode {
            Rcode::NoError => ResponseCode::NoError,
            Rcode::NxDomain => ResponseCode::NXDomain,
            Rcode::Refused => ResponseCode::Refused,
        };

        let limit = match request.protocol() {
            Protocol::Udp => usize::from(edns.map_or(512, Edns::max_payload)),
            _ => usize::from(u16::MAX),
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
            return self.send(handle, full()).await;
        }

        // Too big for this UDP client: as many whole answers as fit next to the OPT record,
        // nothing else, and TC so that it retries over TCP.
        let room = limit.saturating_sub(edns.map_or(0, |_| OPT_LEN));
        let trial = MessageResponseBuilder::new(&request.queries, None).build(metadata, &answers, [], [], []);
        let kept = trial_encode(trial, room).1.min(answers.len());
        metadata.truncation = true;
        self.stats.record_truncated();
        let truncated = builder().build(metadata, &answers[..kept], [], [], []);
        self.send(handle, truncated).await
    }

    async fn send<'a, R: ResponseHandler>(
        &self,
        mut handle: R,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a HRecord> + Send + 'a,
            impl Iterator<Item = &'a HRecord> + Send + 'a,
            impl Iterator<Item = &'a HRecord> + Send + 'a,
            impl Iterator<Item = &'a HRecord> + Send + 'a,
        >,
    ) -> ResponseInfo {
        let metadata = *response.metadata();
        self.stats.record(counted(metadata.response_code));
        match handle.send_response(response).await {
            Ok(info) => info,
            Err(error) => {
                warn!(%error, id = metadata.id, "failed to send DNS response");
                let mut metadata = metadata;
                metadata.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header { metadata, counts: HeaderCounts::default() })
            }
        }
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
        Record::Ns { name, target, ttl } => {
            HRecord::from_rdata(owner(name)?, *ttl, RData::NS(NS(Name::from_ascii(target)?)))
        }
    })
}
