//! Prepared queries (Consul's `/v1/query`), replicated within their datacenter: each is an
//! application record (`app/query/<ID>`, compact JSON, at most 768 bytes) of the agent it was
//! created on, signed by it and held by every agent of the datacenter, persisted in that
//! agent's data directory (`queries.json`) so that a restart keeps it. A query lives as long as
//! the agent that holds it: create it on a long-lived agent (or on several, under one name,
//! which execution then takes from the first holder by node name).
//!
//! Executing one (`GET /v1/query/:id_or_name/execute`, DNS `NAME.query.<domain>`) answers the
//! healthy instances of its service in this datacenter (passing, and warning unless
//! `OnlyPassing`; only those with every tag of `Tags`); if there are none, the first
//! datacenter in failover order that has some: the `NearestN` nearest other datacenters (by the
//! WAN pool's measured round trips), then `Datacenters` in their order, each once.

use serde::{Deserialize, Serialize};

/// The record name prefix (under the core's `app/`).
pub const RECORD_PREFIX: &str = "query/";
/// The file the local queries are persisted in.
pub const QUERIES_FILE: &str = "queries.json";

/// `Service.Failover`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failover {
    /// How many of the nearest other datacenters to try, first.
    #[serde(rename = "NearestN", default)]
    pub nearest_n: u32,
    /// Datacenters to try after those, in order.
    #[serde(rename = "Datacenters", default)]
    pub datacenters: Vec<String>,
}

/// `Service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryService {
    /// The service name.
    #[serde(rename = "Service")]
    pub service: String,
    /// Instances must carry every one of these tags.
    #[serde(rename = "Tags", default)]
    pub tags: Vec<String>,
    /// Passing instances only (otherwise warning ones too; critical never).
    #[serde(rename = "OnlyPassing", default)]
    pub only_passing: bool,
    /// Where to look when this datacenter has no healthy instance.
    #[serde(rename = "Failover", default)]
    pub failover: Failover,
}

/// A prepared query as stored and listed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedQuery {
    /// Its id (a UUID, chosen at creation).
    #[serde(rename = "ID", default)]
    pub id: String,
    /// Its name: `NAME.query.<domain>` in DNS (a DNS label), unique in the datacenter.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// What it asks.
    #[serde(rename = "Service")]
    pub service: QueryService,
}

/// What a client sends to create or update one (Consul's fields that gossipd does not
/// implement are refused by name, not ignored).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// Ignored on create (an id is chosen); must match on update.
    #[serde(rename = "ID", default)]
    pub id: Option<String>,
    /// The name.
    #[serde(rename = "Name", default)]
    pub name: String,
    /// What it asks.
    #[serde(rename = "Service")]
    pub service: QueryService,
}

/// Most tags and failover datacenters in one query.
const MAX_LIST: usize = 16;

fn is_label(s: &str) -> bool {
    (1..=63).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl PreparedQuery {
    /// Checks a definition, naming the field and the reason.
    pub fn validate(&self) -> Result<(), String> {
        if !is_label(&self.name) {
            return Err(format!(
                "Name {:?}: must be a DNS label (1-63 letters, digits or '-'), to be asked as NAME.query.<domain>",
                self.name
            ));
        }
        let s = &self.service;
        if s.service.is_empty() || s.service.len() > 255 {
            return Err("Service.Service: the service name is required (at most 255 bytes)".into());
        }
        if s.tags.len() > MAX_LIST || s.tags.iter().any(|t| t.is_empty() || t.len() > 255) {
            return Err(format!("Service.Tags: at most {MAX_LIST} non-empty tags of at most 255 bytes"));
        }
        if s.failover.nearest_n > 64 {
            return Err("Service.Failover.NearestN: at most 64".into());
        }
        if s.failover.datacenters.len() > MAX_LIST || !s.failover.datacenters.iter().all(|d| is_label(d)) {
            return Err(format!("Service.Failover.Datacenters: at most {MAX_LIST} datacenter names (DNS labels)"));
        }
        let size = self.encode().len();
        if size > gossip_core::MAX_APP_RECORD {
            return Err(format!(
                "the query is {size} bytes encoded, at most {} (fewer or shorter tags and datacenters)",
                gossip_core::MAX_APP_RECORD
            ));
        }
        Ok(())
    }

    /// The record bytes (compact JSON).
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record (`None`: not a query this build reads).
    pub fn decode(bytes: &[u8]) -> Option<PreparedQuery> {
        serde_json::from_slice::<PreparedQuery>(bytes).ok().filter(|q| q.validate().is_ok())
    }

    /// The datacenters to try after this one, in order: the `NearestN` nearest of `by_distance`
    /// (other datacenters, nearest first), then `Datacenters`, each once and never `local`.
    pub fn failover_order(&self, local: &str, by_distance: &[String]) -> Vec<String> {
        let f = &self.service.failover;
        let mut out: Vec<String> = Vec::new();
        let candidates = by_distance.iter().filter(|d| !d.eq_ignore_ascii_case(local)).take(f.nearest_n as usize);
        for d in candidates.chain(f.datacenters.iter()) {
            let d = d.to_ascii_lowercase();
            if d != local && !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }
}

/// The prepared queries persisted in `data` (none without the file); a file that does not
/// read is refused, naming it and the reason (nothing is dropped silently).
pub fn load(data: &crate::persist::DataDir) -> anyhow::Result<Vec<PreparedQuery>> {
    let Some(bytes) = data.read(QUERIES_FILE)? else { return Ok(Vec::new()) };
    let path = data.path().join(QUERIES_FILE);
    let list: Vec<PreparedQuery> = serde_json::from_slice(&bytes).map_err(|e| {
        anyhow::anyhow!("{} is corrupt: {e} (restore it or remove it to drop the queries)", path.display())
    })?;
    for q in &list {
        q.validate().map_err(|e| anyhow::anyhow!("{}: query {:?}: {e}", path.display(), q.id))?;
    }
    Ok(list)
}

/// A fresh random UUID (version 4 layout).
pub fn new_id() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("OS RNG: {e}"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str) -> PreparedQuery {
        PreparedQuery {
            id: "8f246b77-f3e1-4f88-9b48-8ec93abf3e05".into(),
            name: name.into(),
            service: QueryService {
                service: "web".into(),
                tags: vec!["v1".into()],
                only_passing: true,
                failover: Failover { nearest_n: 2, datacenters: vec!["dc3".into(), "dc9".into()] },
            },
        }
    }

    #[test]
    fn definitions_round_trip_and_bad_ones_name_their_field() {
        let good = q("web-failover");
        assert_eq!(PreparedQuery::decode(&good.encode()), Some(good.clone()));
        for (bad, field) in [
            (PreparedQuery { name: "no spaces".into(), ..good.clone() }, "Name"),
            (
                PreparedQuery {
                    service: QueryService { service: String::new(), ..good.service.clone() },
                    ..good.clone()
                },
                "Service.Service",
            ),
            (
                PreparedQuery {
                    service: QueryService { tags: vec!["t".into(); 17], ..good.service.clone() },
                    ..good.clone()
                },
                "Service.Tags",
            ),
            (
                PreparedQuery {
                    service: QueryService {
                        failover: Failover { nearest_n: 1, datacenters: vec!["a.b".into()] },
                        ..good.service.clone()
                    },
                    ..good.clone()
                },
                "Service.Failover.Datacenters",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.starts_with(field), "{e}");
            assert_eq!(PreparedQuery::decode(&bad.encode()), None);
        }
        let unknown: Result<QueryRequest, _> =
            serde_json::from_str(r#"{"Name": "x", "Service": {"Service": "web", "Near": "_agent"}}"#);
        assert!(unknown.unwrap_err().to_string().contains("Near"), "an unimplemented field is refused by name");
    }

    #[test]
    fn failover_order_is_nearest_then_listed_each_once() {
        let by_distance: Vec<String> = ["dc1", "dc3", "dc2", "dc4"].map(String::from).to_vec();
        assert_eq!(q("x").failover_order("dc1", &by_distance), ["dc3", "dc2", "dc9"]);
        let none =
            PreparedQuery { service: QueryService { failover: Failover::default(), ..q("x").service }, ..q("x") };
        assert!(none.failover_order("dc1", &by_distance).is_empty());
        assert!(new_id().expect("id").len() == 36);
    }
}
