//! Consul service definitions: parsing, validation, and Consul's JSON shape.
//!
//! Three inputs are accepted, all JSON, each at most [`MAX_INPUT_BYTES`]:
//!
//! - the body of `PUT /v1/agent/service/register`: the service object itself
//!   ([`parse_register_body`]);
//! - a config file, `{"service": {...}}` and/or `{"services": [...]}` ([`parse_config_file`],
//!   [`load_config_dir`]);
//! - the list persisted in the data directory, a JSON array of service objects
//!   ([`parse_service_list`]).
//!
//! Decisions (Consul compatibility first, so an existing `sample-service.json` registers
//! unchanged):
//!
//! - Field names are matched case-insensitively and ignoring `_`, so the HTTP API's PascalCase
//!   (`EnableTagOverride`) and config files' snake_case (`enable_tag_override`) both work. The
//!   same field given twice under two spellings is an error.
//! - JSON `null` means "absent", as in Consul (Go).
//! - Known Consul fields that gossipd does not use (`EnableTagOverride`, `Kind`,
//!   `TaggedAddresses`, `Token`, `Namespace`, `Partition`, `Proxy`, `Connect`, ...) are ignored
//!   silently. Unknown fields are ignored with a `tracing` warning that names them: rejecting them
//!   would refuse definitions written for a newer Consul, and silently dropping them would hide
//!   typos. Unknown top-level keys of a config file are treated the same way; a config file with
//!   neither `service` nor `services` is an error.
//! - `Port` and `Weights` accept an integer or a string of digits (Consul's config files are
//!   weakly typed); anything else is an error.
//! - Lengths are counted in bytes (as Consul and DNS do).
//! - `Check` and `Checks` are kept as raw JSON objects (`Check` first), validated by
//!   [`crate::checks`] (errors read `Checks[0].Interval: ...`, numbered together, `Check` first).
//! - Every validation error names the field path and the reason, e.g.
//!   `services[1].Port: must be an integer in 0..=65535, got "abc"`. Duplicate IDs inside one
//!   input, or across the files of a config directory, are errors.
//!
//! No input makes these functions panic (property-tested); `serde_json`'s recursion limit bounds
//! nesting.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use gossip_core::types::ServiceInstance;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Largest accepted body or file, in bytes (1 MiB).
pub const MAX_INPUT_BYTES: usize = 1 << 20;
/// Most `Meta` keys per service (Consul's limit).
pub const MAX_META_KEYS: usize = 64;
/// Longest `Meta` key, in bytes (Consul's limit).
pub const MAX_META_KEY_LEN: usize = 128;
/// Longest `Meta` value, in bytes (Consul's limit).
pub const MAX_META_VALUE_LEN: usize = 512;
/// Longest service `ID`, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// Longest tag, in bytes (one DNS label, so it can be queried as `TAG.NAME.service`).
pub const MAX_TAG_LEN: usize = 63;

/// A validated service definition (Consul's `ServiceDefinition`, the fields gossipd uses).
///
/// Serializes to Consul's PascalCase definition shape (`ID`, `Name`, `Address`, `Port`, `Tags`,
/// `Meta`, `Weights`, `Checks`), which [`parse_register_body`] reads back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceDef {
    /// Instance id, unique on this agent; defaults to `name`.
    #[serde(rename = "ID")]
    pub id: String,
    /// Service name: a DNS label.
    #[serde(rename = "Name")]
    pub name: String,
    /// Address to connect to; `None` (Consul's empty `Address`) means the node's address.
    #[serde(rename = "Address", serialize_with = "serialize_address")]
    pub address: Option<IpAddr>,
    /// Port.
    #[serde(rename = "Port")]
    pub port: u16,
    /// Tags, in the given order.
    #[serde(rename = "Tags")]
    pub tags: Vec<String>,
    /// Metadata.
    #[serde(rename = "Meta")]
    pub meta: BTreeMap<String, String>,
    /// SRV weights by health.
    #[serde(rename = "Weights")]
    pub weights: Weights,
    /// Health check definitions, raw (`Check` first, then `Checks`); each is a JSON object.
    #[serde(rename = "Checks", skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<Value>,
}

/// SRV weights of an instance by health (Consul's `Weights`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Weights {
    /// Weight while passing, 1..=65535 (default 1).
    pub passing: u16,
    /// Weight while warning, 0..=65535 (default 1).
    pub warning: u16,
}

impl Default for Weights {
    fn default() -> Self {
        Weights { passing: 1, warning: 1 }
    }
}

fn serialize_address<S: Serializer>(addr: &Option<IpAddr>, s: S) -> Result<S::Ok, S::Error> {
    match addr {
        Some(ip) => s.collect_str(ip),
        None => s.serialize_str(""),
    }
}

impl ServiceDef {
    /// The instance that travels by gossip, with the health its checks start with (passing
    /// without checks); the agent's check runners decide it afterwards.
    pub fn to_instance(&self) -> ServiceInstance {
        ServiceInstance {
            id: self.id.clone(),
            name: self.name.clone(),
            address: self.address,
            port: self.port,
            tags: self.tags.clone(),
            meta: self.meta.clone().into(),
            weight_passing: self.weights.passing,
            weight_warning: self.weights.warning,
            health: crate::checks::initial_health(self),
        }
    }

    /// Consul's `AgentService` shape, one value of `GET /v1/agent/services` (`Service` instead
    /// of `Name`, plus `EnableTagOverride: false`).
    pub fn to_agent_service(&self) -> Value {
        serde_json::json!({
            "ID": self.id,
            "Service": self.name,
            "Tags": self.tags,
            "Meta": self.meta,
            "Port": self.port,
            "Address": self.address.map(|ip| ip.to_string()).unwrap_or_default(),
            "Weights": self.weights,
            "EnableTagOverride": false,
        })
    }
}

/// Why a definition was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("input is larger than the {MAX_INPUT_BYTES}-byte (1 MiB) limit")]
    TooLarge,
    /// The input is not JSON; the message carries line and column.
    #[error("invalid JSON: {0}")]
    Json(serde_json::Error),
    /// A field is missing or invalid.
    #[error("{path}: {reason}")]
    Invalid {
        /// Field path, e.g. `services[1].Port`.
        path: String,
        /// What is wrong, including the offending value.
        reason: String,
    },
}

/// Why a config directory could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigDirError {
    /// The directory could not be listed.
    #[error("cannot read config dir {}: {error}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// A file holds an invalid definition.
    #[error("{}: {error}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        error: DefError,
    },
    /// Two files define the same service ID.
    #[error("{}: duplicate service ID {id:?}, also defined in {}", path.display(), first.display())]
    DuplicateId {
        /// The duplicated ID.
        id: String,
        /// The later file.
        path: PathBuf,
        /// The file that defined it first.
        first: PathBuf,
    },
}

/// Parses the body of `PUT /v1/agent/service/register`: one service object.
pub fn parse_register_body(bytes: &[u8]) -> Result<ServiceDef, DefError> {
    service_from_value(&parse_json(bytes)?, "")
}

/// Parses a config file: `{"service": {...}}` and/or `{"services": [...]}`.
pub fn parse_config_file(bytes: &[u8]) -> Result<Vec<ServiceDef>, DefError> {
    config_from_value(&parse_json(bytes)?)
}

/// Parses either a config file or a bare service object (what `gossipd services register`
/// accepts): an object with a `service` or `services` key is a config file.
pub fn parse_file_or_body(bytes: &[u8]) -> Result<Vec<ServiceDef>, DefError> {
    let value = parse_json(bytes)?;
    let is_config = value
        .as_object()
        .is_some_and(|obj| obj.keys().any(|k| matches!(normalize(k).as_str(), "service" | "services")));
    if is_config { config_from_value(&value) } else { Ok(vec![service_from_value(&value, "")?]) }
}

/// Parses a JSON array of service objects (the persisted `services.json`).
pub fn parse_service_list(bytes: &[u8]) -> Result<Vec<ServiceDef>, DefError> {
    let value = parse_json(bytes)?;
    let items =
        value.as_array().ok_or_else(|| invalid("(top level)", format!("must be an array, got {}", got(&value))))?;
    let defs = items
        .iter()
        .enumerate()
        .map(|(i, v)| Ok((format!("[{i}]"), service_from_value(v, &format!("[{i}]"))?)))
        .collect::<Result<Vec<_>, DefError>>()?;
    unique_ids(defs)
}

/// Loads every `*.json` file of `dir`, in name order. Hidden files (`.name`) are skipped;
/// `*.hcl` files are skipped with a warning (HCL is not supported).
pub fn load_config_dir(dir: &Path) -> Result<Vec<ServiceDef>, ConfigDirError> {
    let read_dir_err = |error| ConfigDirError::ReadDir { path: dir.to_path_buf(), error };
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(read_dir_err)? {
        let path = entry.map_err(read_dir_err)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            tracing::warn!(path = %path.display(), "skipping config file with a non-UTF-8 name");
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        if name.ends_with(".hcl") {
            tracing::warn!(path = %path.display(), "skipping HCL config file: only JSON is supported");
        }
        if name.ends_with(".json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();

    let mut out = Vec::new();
    let mut seen: HashMap<String, PathBuf> = HashMap::new();
    for path in files {
        let bytes = read_bounded(&path)?;
        let defs = parse_config_file(&bytes).map_err(|error| ConfigDirError::Invalid { path: path.clone(), error })?;
        for def in defs {
            if let Some(first) = seen.get(&def.id) {
                return Err(ConfigDirError::DuplicateId { id: def.id, path, first: first.clone() });
            }
            seen.insert(def.id.clone(), path.clone());
            out.push(def);
        }
    }
    Ok(out)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, ConfigDirError> {
    let read_err = |error| ConfigDirError::ReadFile { path: path.to_path_buf(), error };
    let file = fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(read_err)?;
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ConfigDirError::Invalid { path: path.to_path_buf(), error: DefError::TooLarge });
    }
    Ok(bytes)
}

fn parse_json(bytes: &[u8]) -> Result<Value, DefError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(DefError::TooLarge);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    serde_json::from_slice(bytes).map_err(DefError::Json)
}

pub(crate) fn invalid(path: &str, reason: impl Into<String>) -> DefError {
    DefError::Invalid { path: path.to_string(), reason: reason.into() }
}

/// `Weights` under `services[1]` is `services[1].Weights`; at the top level it is `Weights`.
pub(crate) fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") }
}

/// Field-name matching key: lower case, without `_`.
fn normalize(key: &str) -> String {
    key.chars().filter(|&c| c != '_').map(|c| c.to_ascii_lowercase()).collect()
}

/// Describes a value for an error message: scalars as (truncated) JSON, containers by kind.
pub(crate) fn got(v: &Value) -> String {
    match v {
        Value::Object(_) => "an object".to_string(),
        Value::Array(_) => "an array".to_string(),
        _ => {
            let s = v.to_string();
            if s.len() > 40 {
                let cut = (0..=37).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                format!("{}...", &s[..cut])
            } else {
                s
            }
        }
    }
}

fn config_from_value(value: &Value) -> Result<Vec<ServiceDef>, DefError> {
    const WANT: &str = "a JSON object with a \"service\" or \"services\" field";
    let obj = value.as_object().ok_or_else(|| invalid("(top level)", format!("must be {WANT}, got {}", got(value))))?;
    let mut single = None;
    let mut list = None;
    for (key, v) in obj {
        let slot = match normalize(key).as_str() {
            "service" => &mut single,
            "services" => &mut list,
            _ => {
                tracing::warn!(field = %key, "ignoring unknown top-level field in config file");
                continue;
            }
        };
        if slot.replace((key, v)).is_some() {
            return Err(invalid(key, "given twice under different spellings"));
        }
    }
    if single.is_none() && list.is_none() {
        return Err(invalid("(top level)", format!("must be {WANT}")));
    }
    let mut defs = Vec::new();
    if let Some((_, v)) = single.filter(|(_, v)| !v.is_null()) {
        defs.push(("service".to_string(), service_from_value(v, "service")?));
    }
    if let Some((_, v)) = list.filter(|(_, v)| !v.is_null()) {
        let items = v.as_array().ok_or_else(|| invalid("services", format!("must be an array, got {}", got(v))))?;
        for (i, item) in items.iter().enumerate() {
            let path = format!("services[{i}]");
            let def = service_from_value(item, &path)?;
            defs.push((path, def));
        }
    }
    unique_ids(defs)
}

fn unique_ids(defs: Vec<(String, ServiceDef)>) -> Result<Vec<ServiceDef>, DefError> {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (path, def) in &defs {
        if let Some(first) = seen.insert(&def.id, path) {
            return Err(invalid(&join(path, "ID"), format!("duplicate service ID {:?} (also at {first})", def.id)));
        }
    }
    Ok(defs.into_iter().map(|(_, def)| def).collect())
}

/// The service fields gossipd reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Field {
    Id,
    Name,
    Address,
    Port,
    Tags,
    Meta,
    Weights,
    Check,
    Checks,
}

impl Field {
    fn from_key(norm: &str) -> Option<Field> {
        Some(match norm {
            "id" => Field::Id,
            "name" => Field::Name,
            "address" => Field::Address,
            "port" => Field::Port,
            "tags" => Field::Tags,
            "meta" => Field::Meta,
            "weights" => Field::Weights,
            "check" => Field::Check,
            "checks" => Field::Checks,
            _ => return None,
        })
    }

    fn canonical(self) -> &'static str {
        match self {
            Field::Id => "ID",
            Field::Name => "Name",
            Field::Address => "Address",
            Field::Port => "Port",
            Field::Tags => "Tags",
            Field::Meta => "Meta",
            Field::Weights => "Weights",
            Field::Check => "Check",
            Field::Checks => "Checks",
        }
    }
}

/// Consul service fields that gossipd accepts and ignores without a warning (normalized).
const IGNORED: &[&str] = &[
    "enabletagoverride",
    "kind",
    "taggedaddresses",
    "token",
    "namespace",
    "partition",
    "proxy",
    "connect",
    "socketpath",
    "locality",
    "peername",
    "datacenter",
    "locallyregisteredassidecar",
];

fn service_from_value(value: &Value, prefix: &str) -> Result<ServiceDef, DefError> {
    let here = if prefix.is_empty() { "(top level)" } else { prefix };
    let obj = value
        .as_object()
        .ok_or_else(|| invalid(here, format!("a service must be a JSON object, got {}", got(value))))?;
    let fields = collect_fields(obj, prefix, Field::from_key, IGNORED)?;
    let path = |f: Field| join(prefix, f.canonical());

    let name = match fields.get(&Field::Name) {
        None => return Err(invalid(&path(Field::Name), "required")),
        Some(v) => parse_name(v, &path(Field::Name))?,
    };
    let id = match fields.get(&Field::Id) {
        None => name.clone(),
        Some(v) => parse_id(v, &path(Field::Id))?.unwrap_or_else(|| name.clone()),
    };
    let address = match fields.get(&Field::Address) {
        None => None,
        Some(v) => parse_address(v, &path(Field::Address))?,
    };
    let port = match fields.get(&Field::Port) {
        None => 0,
        Some(v) => integer(v, &path(Field::Port), 0, u16::MAX)?,
    };
    let tags = match fields.get(&Field::Tags) {
        None => Vec::new(),
        Some(v) => parse_tags(v, &path(Field::Tags))?,
    };
    let meta = match fields.get(&Field::Meta) {
        None => BTreeMap::new(),
        Some(v) => parse_meta(v, &path(Field::Meta))?,
    };
    let weights = match fields.get(&Field::Weights) {
        None => Weights::default(),
        Some(v) => parse_weights(v, &path(Field::Weights))?,
    };
    let mut checks = Vec::new();
    if let Some(v) = fields.get(&Field::Check) {
        if !v.is_object() {
            return Err(invalid(&path(Field::Check), format!("must be an object, got {}", got(v))));
        }
        checks.push((*v).clone());
    }
    if let Some(v) = fields.get(&Field::Checks) {
        let items =
            v.as_array().ok_or_else(|| invalid(&path(Field::Checks), format!("must be an array, got {}", got(v))))?;
        for (i, item) in items.iter().enumerate() {
            if !item.is_object() {
                let p = format!("{}[{i}]", path(Field::Checks));
                return Err(invalid(&p, format!("must be an object, got {}", got(item))));
            }
            checks.push(item.clone());
        }
    }
    crate::checks::parse_checks(&id, &name, &checks, prefix)?;
    Ok(ServiceDef { id, name, address, port, tags, meta, weights, checks })
}

/// Sorts an object's keys into known fields (nulls dropped), warning about unknown ones.
pub(crate) fn collect_fields<'a, F: Ord + Copy>(
    obj: &'a Map<String, Value>,
    prefix: &str,
    lookup: impl Fn(&str) -> Option<F>,
    ignored: &[&str],
) -> Result<BTreeMap<F, &'a Value>, DefError> {
    let mut fields = BTreeMap::new();
    let mut spelled: BTreeMap<F, &str> = BTreeMap::new();
    for (key, v) in obj {
        let norm = normalize(key);
        let Some(field) = lookup(&norm) else {
            if !ignored.contains(&norm.as_str()) {
                tracing::warn!(field = %join(prefix, key), "ignoring unknown field");
            }
            continue;
        };
        if let Some(other) = spelled.insert(field, key) {
            return Err(invalid(&join(prefix, key), format!("given twice (as {other:?} and {key:?})")));
        }
        if !v.is_null() {
            fields.insert(field, v);
        }
    }
    Ok(fields)
}

fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn parse_name(v: &Value, path: &str) -> Result<String, DefError> {
    let s = v.as_str().ok_or_else(|| invalid(path, format!("must be a string, got {}", got(v))))?;
    if s.is_empty() {
        return Err(invalid(path, "required"));
    }
    if !is_dns_label(s) {
        return Err(invalid(
            path,
            format!(
                "must be a DNS label (1-63 letters, digits or '-') so that it can be queried \
                 as NAME.service.<domain>, got {}",
                got(v)
            ),
        ));
    }
    Ok(s.to_string())
}

/// `None` for an empty ID (which defaults to the name, as in Consul).
fn parse_id(v: &Value, path: &str) -> Result<Option<String>, DefError> {
    let s = v.as_str().ok_or_else(|| invalid(path, format!("must be a string, got {}", got(v))))?;
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > MAX_ID_LEN {
        return Err(invalid(path, format!("must be at most {MAX_ID_LEN} bytes, got {}", s.len())));
    }
    if s.contains('/') || s.chars().any(char::is_control) {
        return Err(invalid(path, format!("must not contain '/' or control characters, got {}", got(v))));
    }
    Ok(Some(s.to_string()))
}

fn parse_address(v: &Value, path: &str) -> Result<Option<IpAddr>, DefError> {
    let s = v.as_str().ok_or_else(|| invalid(path, format!("must be a string, got {}", got(v))))?;
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| {
        invalid(path, format!("must be an IP address or empty (host names are not supported), got {}", got(v)))
    })
}

/// An integer in `min..=max`, given as a JSON number or a string of digits.
fn integer(v: &Value, path: &str, min: u16, max: u16) -> Result<u16, DefError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse::<u64>().ok(),
        _ => None,
    };
    n.filter(|n| (u64::from(min)..=u64::from(max)).contains(n))
        .map(|n| n as u16)
        .ok_or_else(|| invalid(path, format!("must be an integer in {min}..={max}, got {}", got(v))))
}

fn parse_tags(v: &Value, path: &str) -> Result<Vec<String>, DefError> {
    let items = v.as_array().ok_or_else(|| invalid(path, format!("must be an array of strings, got {}", got(v))))?;
    let mut tags = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let s = item.as_str().ok_or_else(|| invalid(&p, format!("must be a string, got {}", got(item))))?;
        if s.len() > MAX_TAG_LEN {
            return Err(invalid(&p, format!("must be at most {MAX_TAG_LEN} bytes, got {}", s.len())));
        }
        tags.push(s.to_string());
    }
    Ok(tags)
}

fn parse_meta(v: &Value, path: &str) -> Result<BTreeMap<String, String>, DefError> {
    let obj = v.as_object().ok_or_else(|| invalid(path, format!("must be an object, got {}", got(v))))?;
    if obj.len() > MAX_META_KEYS {
        return Err(invalid(path, format!("at most {MAX_META_KEYS} keys, got {}", obj.len())));
    }
    let mut meta = BTreeMap::new();
    for (key, val) in obj {
        let valid_key = !key.is_empty()
            && key.len() <= MAX_META_KEY_LEN
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid_key {
            return Err(invalid(
                path,
                format!("key {} must be 1-{MAX_META_KEY_LEN} bytes of [A-Za-z0-9_-]", got(&Value::String(key.clone()))),
            ));
        }
        let p = format!("{path}.{key}");
        let s = val.as_str().ok_or_else(|| invalid(&p, format!("must be a string, got {}", got(val))))?;
        if s.len() > MAX_META_VALUE_LEN {
            return Err(invalid(&p, format!("must be at most {MAX_META_VALUE_LEN} bytes, got {}", s.len())));
        }
        meta.insert(key.clone(), s.to_string());
    }
    Ok(meta)
}

fn parse_weights(v: &Value, path: &str) -> Result<Weights, DefError> {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum W {
        Passing,
        Warning,
    }
    let obj = v.as_object().ok_or_else(|| invalid(path, format!("must be an object, got {}", got(v))))?;
    let lookup = |k: &str| match k {
        "passing" => Some(W::Passing),
        "warning" => Some(W::Warning),
        _ => None,
    };
    let fields = collect_fields(obj, path, lookup, &[])?;
    let mut weights = Weights::default();
    if let Some(v) = fields.get(&W::Passing) {
        weights.passing = integer(v, &format!("{path}.Passing"), 1, u16::MAX)?;
    }
    if let Some(v) = fields.get(&W::Warning) {
        weights.warning = integer(v, &format!("{path}.Warning"), 0, u16::MAX)?;
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(input: &str) -> String {
        parse_register_body(input.as_bytes()).expect_err(input).to_string()
    }

    fn cfg_err(input: &str) -> String {
        parse_config_file(input.as_bytes()).expect_err(input).to_string()
    }

    #[test]
    fn pascal_case_register_body() {
        let def = parse_register_body(
            br#"{"ID": "web-1", "Name": "web", "Address": "10.0.0.5", "Port": 8080,
                "Tags": ["v1", "primary"], "Meta": {"version": "1.2"},
                "Weights": {"Passing": 10, "Warning": 2},
                "EnableTagOverride": true, "Kind": "", "Check": {"TTL": "10s"}}"#,
        )
        .unwrap();
        assert_eq!(def.id, "web-1");
        assert_eq!(def.name, "web");
        assert_eq!(def.address, Some("10.0.0.5".parse().unwrap()));
        assert_eq!(def.port, 8080);
        assert_eq!(def.tags, ["v1", "primary"]);
        assert_eq!(def.meta["version"], "1.2");
        assert_eq!(def.weights, Weights { passing: 10, warning: 2 });
        assert_eq!(def.checks, [serde_json::json!({"TTL": "10s"})]);
    }

    #[test]
    fn snake_case_config_file_with_both_shapes() {
        let defs = parse_config_file(
            br#"{"service": {"name": "redis", "port": "6379", "tags": ["primary"],
                             "enable_tag_override": false,
                             "checks": [{"tcp": "localhost:6379", "interval": "10s"}]},
                 "services": [{"id": "api-1", "name": "api", "address": "::1",
                               "weights": {"passing": 3}},
                              {"ID": "api-2", "Name": "api"}],
                 "datacenter": "dc1"}"#,
        )
        .unwrap();
        assert_eq!(defs.len(), 3);
        assert_eq!(defs[0].id, "redis");
        assert_eq!(defs[0].port, 6379);
        assert_eq!(defs[0].checks.len(), 1);
        assert_eq!(defs[1].address, Some("::1".parse().unwrap()));
        assert_eq!(defs[1].weights, Weights { passing: 3, warning: 1 });
        assert_eq!(defs[2].id, "api-2");
    }

    #[test]
    fn defaults() {
        let def = parse_register_body(br#"{"Name": "web", "ID": "", "Address": null}"#).unwrap();
        assert_eq!(def.id, "web");
        assert_eq!(def.address, None);
        assert_eq!(def.port, 0);
        assert!(def.tags.is_empty() && def.meta.is_empty() && def.checks.is_empty());
        assert_eq!(def.weights, Weights::default());
        let inst = def.to_instance();
        assert_eq!((inst.weight_passing, inst.weight_warning), (1, 1));
        assert_eq!(inst.health, gossip_core::Health::Passing);
    }

    #[test]
    fn file_or_body_accepts_both() {
        let a = parse_file_or_body(br#"{"Name": "web", "Port": 80}"#).unwrap();
        let b = parse_file_or_body(br#"{"service": {"Name": "web", "Port": 80}}"#).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn serialize_round_trips_in_consul_shape() {
        let def = parse_register_body(
            br#"{"ID": "web-1", "Name": "web", "Address": "10.0.0.5", "Port": 80,
                "Tags": ["a"], "Meta": {"k": "v"}, "Checks": [{"HTTP": "http://x/", "Interval": "10s"}]}"#,
        )
        .unwrap();
        let json = serde_json::to_value(&def).unwrap();
        assert_eq!(json["ID"], "web-1");
        assert_eq!(json["Name"], "web");
        assert_eq!(json["Weights"]["Passing"], 1);
        let back = parse_register_body(&serde_json::to_vec(&def).unwrap()).unwrap();
        assert_eq!(back, def);
        let list = serde_json::to_vec(&vec![def.clone(), def.clone()]).unwrap();
        assert!(parse_service_list(&list).unwrap_err().to_string().contains("[1].ID"));
        let agent = def.to_agent_service();
        assert_eq!(agent["Service"], "web");
        assert_eq!(agent["Address"], "10.0.0.5");
    }

    #[test]
    fn every_validation_error_names_its_field() {
        let cases: &[(&str, &str)] = &[
            (r#"{}"#, "Name: required"),
            (r#"{"Name": ""}"#, "Name: required"),
            (r#"{"Name": 5}"#, "Name: must be a string, got 5"),
            (r#"{"Name": "my_web"}"#, "Name: must be a DNS label"),
            (r#"{"Name": "web", "ID": "a/b"}"#, "ID: must not contain '/'"),
            (r#"{"Name": "web", "ID": 3}"#, "ID: must be a string"),
            (r#"{"Name": "web", "Port": "abc"}"#, "Port: must be an integer in 0..=65535, got \"abc\""),
            (r#"{"Name": "web", "Port": 65536}"#, "Port: must be an integer in 0..=65535, got 65536"),
            (r#"{"Name": "web", "Port": -1}"#, "Port: must be an integer"),
            (r#"{"Name": "web", "Port": 1.5}"#, "Port: must be an integer"),
            (
                r#"{"Name": "web", "Address": "db.local"}"#,
                "Address: must be an IP address or empty (host names are not supported)",
            ),
            (r#"{"Name": "web", "Tags": "a"}"#, "Tags: must be an array of strings"),
            (r#"{"Name": "web", "Tags": ["a", 1]}"#, "Tags[1]: must be a string, got 1"),
            (r#"{"Name": "web", "Meta": []}"#, "Meta: must be an object"),
            (r#"{"Name": "web", "Meta": {"a b": "x"}}"#, "Meta: key \"a b\" must be"),
            (r#"{"Name": "web", "Meta": {"k": 1}}"#, "Meta.k: must be a string"),
            (
                r#"{"Name": "web", "Weights": {"Passing": 0}}"#,
                "Weights.Passing: must be an integer in 1..=65535, got 0",
            ),
            (r#"{"Name": "web", "Weights": {"Warning": -1}}"#, "Weights.Warning: must be an integer in 0..=65535"),
            (r#"{"Name": "web", "Weights": 1}"#, "Weights: must be an object"),
            (r#"{"Name": "web", "Check": []}"#, "Check: must be an object"),
            (r#"{"Name": "web", "Checks": [1]}"#, "Checks[0]: must be an object"),
            (r#"{"Name": "web", "name": "x"}"#, "given twice"),
            (r#"[]"#, "(top level): a service must be a JSON object, got an array"),
        ];
        for (input, want) in cases {
            let got = err(input);
            assert!(got.contains(want), "{input}: got {got:?}, want {want:?}");
        }
        let long = "x".repeat(129);
        assert!(err(&format!(r#"{{"Name": "web", "ID": "{long}"}}"#)).starts_with("ID: must be at most 128 bytes"));
        assert!(err(&format!(r#"{{"Name": "{}"}}"#, "a".repeat(64))).starts_with("Name: must be a DNS label"));
        assert!(
            err(&format!(r#"{{"Name": "w", "Tags": ["{}"]}}"#, "t".repeat(64)))
                .starts_with("Tags[0]: must be at most 63 bytes")
        );
        assert!(
            err(&format!(r#"{{"Name": "w", "Meta": {{"k": "{}"}}}}"#, "v".repeat(513)))
                .starts_with("Meta.k: must be at most 512 bytes")
        );
        assert!(err(&format!(r#"{{"Name": "w", "Meta": {{"{}": "v"}}}}"#, "k".repeat(129))).starts_with("Meta: key"));
        let many: Vec<String> = (0..65).map(|i| format!(r#""k{i}": "v""#)).collect();
        assert!(
            err(&format!(r#"{{"Name": "w", "Meta": {{{}}}}}"#, many.join(","))).starts_with("Meta: at most 64 keys")
        );
    }

    #[test]
    fn config_file_errors_name_their_path() {
        let cases: &[(&str, &str)] = &[
            (
                r#"{"services": [{"Name": "a"}, {"Name": "b", "Port": "abc"}]}"#,
                r#"services[1].Port: must be an integer in 0..=65535, got "abc""#,
            ),
            (r#"{"service": {"Port": 1}}"#, "service.Name: required"),
            (r#"{"services": {"Name": "a"}}"#, "services: must be an array, got an object"),
            (r#"{"datacenter": "dc1"}"#, r#"(top level): must be a JSON object with a "service" or "services" field"#),
            (r#"[1]"#, "(top level): must be a JSON object"),
            (
                r#"{"service": {"Name": "a"}, "services": [{"Name": "a"}]}"#,
                r#"services[0].ID: duplicate service ID "a" (also at service)"#,
            ),
            (r#"{"service": {"Name": "a"}, "Service": {"Name": "b"}}"#, "given twice"),
        ];
        for (input, want) in cases {
            let got = cfg_err(input);
            assert!(got.contains(want), "{input}: got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn invalid_json_and_size_limit() {
        let e = err("{\n  \"Name\": \"web\",\n  \"Port\": 80,\n}");
        assert!(e.starts_with("invalid JSON: ") && e.contains("line 4 column 1"), "{e}");
        let big = vec![b' '; MAX_INPUT_BYTES + 1];
        assert!(matches!(parse_register_body(&big), Err(DefError::TooLarge)));
        assert!(matches!(parse_config_file(&big), Err(DefError::TooLarge)));
        let bom = b"\xEF\xBB\xBF{\"Name\": \"web\"}";
        assert_eq!(parse_register_body(bom).unwrap().name, "web");
    }

    #[test]
    fn config_dir_in_name_order_with_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| fs::write(dir.path().join(name), body).unwrap();
        write("b.json", r#"{"service": {"Name": "b"}}"#);
        write("a.json", r#"{"services": [{"Name": "a"}]}"#);
        write("notes.txt", "not json");
        write(".hidden.json", "not json");
        write("c.hcl", "service {}");
        let names: Vec<_> = load_config_dir(dir.path()).unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["a", "b"]);

        write("c.json", r#"{"service": {"ID": "a", "Name": "c"}}"#);
        let e = load_config_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("c.json: duplicate service ID \"a\", also defined in") && e.contains("a.json"), "{e}");

        write("c.json", r#"{"service": {"Name": "c", "Port": true}}"#);
        let e = load_config_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("c.json: service.Port: must be an integer"), "{e}");

        write("c.json", &" ".repeat(MAX_INPUT_BYTES + 1));
        let e = load_config_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("c.json: input is larger than"), "{e}");

        let e = load_config_dir(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, ConfigDirError::ReadDir { .. }));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_register_body(&bytes);
            let _ = parse_config_file(&bytes);
            let _ = parse_file_or_body(&bytes);
            let _ = parse_service_list(&bytes);
        }

        #[test]
        fn arbitrary_json_never_panics(s in r#"\{("(?i:id|name|address|port|tags|meta|weights|checks?|services?|passing)": ?(null|-?[0-9]{1,6}|"[a-z0-9:./_ -]{0,70}"|\[[^\]]{0,20}\]|\{[^}]{0,20}\}),? ?){0,6}\}"#) {
            let _ = parse_register_body(s.as_bytes());
            let _ = parse_file_or_body(s.as_bytes());
        }

        #[test]
        fn valid_definitions_round_trip(
            name in "[a-z][a-z0-9-]{0,20}",
            port in any::<u16>(),
            tags in proptest::collection::vec("[ -~]{0,63}", 0..4),
            meta in proptest::collection::btree_map("[A-Za-z0-9_-]{1,20}", "\\PC{0,40}", 0..4),
            passing in 1u16..,
            warning in any::<u16>(),
            v6 in any::<bool>(),
        ) {
            let address = Some(if v6 { "fe80::1".parse().unwrap() } else { "10.1.2.3".parse().unwrap() });
            let def = ServiceDef {
                id: format!("{name}-1"), name, address, port, tags, meta,
                weights: Weights { passing, warning }, checks: vec![],
            };
            let back = parse_register_body(&serde_json::to_vec(&def).unwrap()).unwrap();
            prop_assert_eq!(back, def);
        }
    }
}
