//! Plain data in and out of the resolver: a [`Question`], an [`Answer`] made of [`Record`]s.
//!
//! Contract: no hickory types and no wire format here; names are fully qualified strings in
//! presentation form. The hickory adapter converts these to and from DNS messages.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Query type, as far as the resolver cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QType {
    /// IPv4 address (1).
    A,
    /// IPv6 address (28).
    Aaaa,
    /// Service locator (33).
    Srv,
    /// Start of authority (6).
    Soa,
    /// Name server (2).
    Ns,
    /// Domain name pointer (12): answered for reverse names of known addresses.
    Ptr,
    /// Text (16): a node's metadata, `key=value` strings, as Consul answers it.
    Txt,
    /// Any (255): A + AAAA for service, node and address names; SOA + NS at the apex.
    Any,
    /// Any other type, by number: always NODATA for an existing name.
    Other(u16),
}

impl QType {
    /// Maps an RFC 1035 type number to a [`QType`].
    pub fn from_u16(value: u16) -> Self {
        match value {
            1 => QType::A,
            2 => QType::Ns,
            6 => QType::Soa,
            12 => QType::Ptr,
            16 => QType::Txt,
            28 => QType::Aaaa,
            33 => QType::Srv,
            255 => QType::Any,
            other => QType::Other(other),
        }
    }
}

/// One question: a name in presentation form and a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    name: String,
    /// What is asked for.
    pub qtype: QType,
}

impl Question {
    /// A question for `name` (presentation form, trailing dot optional, any case).
    pub fn new(name: &str, qtype: QType) -> Self {
        let name = match name.strip_suffix('.') {
            Some(_) => name.to_owned(),
            None => format!("{name}."),
        };
        Question { name, qtype }
    }

    /// The name, fully qualified (exactly one trailing dot), case as given. Records owned by
    /// the question name carry exactly this string.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Response code of an [`Answer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rcode {
    /// The name exists (the answer may still be empty: NODATA).
    NoError,
    /// The name does not exist in our domain.
    NxDomain,
    /// The name is outside our domain.
    Refused,
}

/// A resource record, as plain data. Names are fully qualified, in presentation form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// IPv4 address record.
    A {
        /// Owner name.
        name: String,
        /// The address.
        addr: Ipv4Addr,
        /// Time to live, seconds.
        ttl: u32,
    },
    /// IPv6 address record.
    Aaaa {
        /// Owner name.
        name: String,
        /// The address.
        addr: Ipv6Addr,
        /// Time to live, seconds.
        ttl: u32,
    },
    /// Service locator (RFC 2782).
    Srv {
        /// Owner name.
        name: String,
        /// Priority (always 1 here).
        priority: u16,
        /// Weight for RFC 2782 selection.
        weight: u16,
        /// Port to connect to.
        port: u16,
        /// Host to connect to, fully qualified.
        target: String,
        /// Time to live, seconds.
        ttl: u32,
    },
    /// Start of authority.
    Soa {
        /// Owner name (the apex).
        name: String,
        /// Primary name server.
        mname: String,
        /// Responsible mailbox, in domain-name form.
        rname: String,
        /// Serial: the snapshot index truncated to 32 bits.
        serial: u32,
        /// Refresh interval, seconds.
        refresh: u32,
        /// Retry interval, seconds.
        retry: u32,
        /// Expiry, seconds.
        expire: u32,
        /// Negative-caching TTL, seconds.
        minimum: u32,
        /// Time to live of the record itself, seconds.
        ttl: u32,
    },
    /// Domain name pointer (reverse mapping).
    Ptr {
        /// Owner name (the reverse name asked).
        name: String,
        /// The name the address belongs to, fully qualified.
        target: String,
        /// Time to live, seconds.
        ttl: u32,
    },
    /// Name server.
    Ns {
        /// Owner name (the apex).
        name: String,
        /// The name server's name.
        target: String,
        /// Time to live, seconds.
        ttl: u32,
    },
    /// Text: one character-string (at most 255 bytes).
    Txt {
        /// Owner name.
        name: String,
        /// The string.
        text: String,
        /// Time to live, seconds.
        ttl: u32,
    },
}

/// The resolver's answer to one [`Question`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Response code.
    pub rcode: Rcode,
    /// Whether the AA bit should be set (true for every name in our domain).
    pub authoritative: bool,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section (the SOA for NXDOMAIN and NODATA).
    pub authority: Vec<Record>,
    /// Additional section (addresses of SRV and NS targets).
    pub additional: Vec<Record>,
}

impl Answer {
    /// An answer with no records.
    pub fn empty(rcode: Rcode, authoritative: bool) -> Self {
        Answer { rcode, authoritative, answers: vec![], authority: vec![], additional: vec![] }
    }
}

impl Record {
    /// An upper bound of the record's encoded size, without name compression: a presentation
    /// name of `n` characters encodes in at most `n + 2` bytes. Lets the server skip a trial
    /// encoding when an answer obviously fits.
    pub fn wire_len_upper_bound(&self) -> usize {
        let name = |s: &str| s.len() + 2;
        let (owner, rdata) = match self {
            Record::A { name: n, .. } => (n, 4),
            Record::Aaaa { name: n, .. } => (n, 16),
            Record::Srv { name: n, target, .. } => (n, 6 + name(target)),
            Record::Soa { name: n, mname, rname, .. } => (n, name(mname) + name(rname) + 20),
            Record::Ns { name: n, target, .. } | Record::Ptr { name: n, target, .. } => (n, name(target)),
            Record::Txt { name: n, text, .. } => (n, 1 + text.len()),
        };
        name(owner) + 10 + rdata
    }
}
