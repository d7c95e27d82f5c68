//! Authority: every replica checks an owner's certificate before applying anything of it
//! (docs/PROTOCOL.md section 6). Grants, quotas, the operator role, revocations, and the
//! bounds on keyring stamps.

use std::sync::Arc;
use std::time::Instant;

use super::{CommandError, Event, Gossip};
use crate::cert::{CertError, Certificate, Revocation};
use crate::message::{self, Delta, Value};
use crate::secure::keys::IdentityPub;
use crate::types::{NodeId, ServiceInstance};

/// Entries an owner may hold beyond its service quota: status, key binding, keyring,
/// revocations and accusations.
pub const QUOTA_ALLOWANCE: usize = 256;
/// Certificates whose signature was verified, remembered by digest (then forgotten wholesale).
const MAX_VERIFIED: usize = 4096;
/// Refusals reported (logged) once each, at most this many remembered.
const MAX_REPORTED: usize = 1024;

/// Why a replica refused an owner's delta.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The owner proved no certificate (or one whose digest does not match).
    #[error("no certificate")]
    Uncertified,
    /// The owner's certificate does not check.
    #[error("certificate: {0}")]
    Cert(#[from] CertError),
    /// A service entry its certificate does not grant.
    #[error("service {service:?} is not granted by its certificate (grants: {grants})")]
    NotGranted {
        /// The service name.
        service: String,
        /// The grants, comma-separated.
        grants: String,
    },
    /// More entries than its quota.
    #[error("{live} entries, more than its quota of {quota}")]
    Quota {
        /// Entries it would hold.
        live: usize,
        /// Its quota.
        quota: u32,
    },
    /// A cluster-wide change (keyring) without the operator role.
    #[error("a keyring change without the operator role")]
    NotOperator,
    /// A keyring stamp beyond the tolerated clock skew.
    #[error("keyring stamp {stamp} is more than {ahead} s ahead of this clock ({wall})")]
    StampAhead {
        /// The stamp.
        stamp: u64,
        /// This node's wall clock (unix seconds).
        wall: u64,
        /// Tolerance.
        ahead: u64,
    },
    /// A revocation no trusted CA signed.
    #[error("a revocation not signed by a trusted CA")]
    BadRevocation,
}

/// Authority state of a [`Gossip`].
#[derive(Debug, Default)]
pub(super) struct Authority {
    verified: std::collections::BTreeSet<[u8; 16]>,
    reported: std::collections::BTreeSet<(NodeId, String)>,
}

impl Gossip {
    fn wall_secs(&self, now: Instant) -> u64 {
        self.secure.wall_nanos(now) / 1_000_000_000
    }

    /// How far ahead of the local clock a keyring stamp may be.
    fn stamp_ahead(&self) -> u64 {
        self.secure.max_skew().as_secs()
    }

    /// The certificate of the owner of `delta`: the one it carries, or the one held for the same
    /// generation and digest.
    fn owner_cert(&self, delta: &Delta) -> Option<Arc<Certificate>> {
        if let Some(c) = &delta.node.cert {
            return Some(c.clone());
        }
        let held = self.table.get(&delta.node.id).filter(|n| n.info.generation == delta.node.generation)?;
        let c = held.info.cert.clone()?;
        (Some(c.digest()) == delta.node.cert_digest).then_some(c)
    }

    /// Checks a delta against its owner's certificate before it is applied: certified by a
    /// trusted CA for this identity and name, current and unrevoked; every service granted;
    /// within quota; keyring changes only from an operator, with a stamp not far ahead.
    pub(super) fn authorize(&mut self, now: Instant, delta: &Delta) -> Result<(), Refusal> {
        let wall = self.wall_secs(now);
        for e in &delta.entries {
            if let Value::Keyring { stamp, .. } = &e.value {
                let ahead = self.stamp_ahead();
                if *stamp > wall.saturating_add(ahead) {
                    return Err(Refusal::StampAhead { stamp: *stamp, wall, ahead });
                }
            }
        }
        let Some(trust) = self.secure.trust() else { return Ok(()) };
        let cert = self.owner_cert(delta).ok_or(Refusal::Uncertified)?;
        if cert.identity != delta.node.identity {
            return Err(CertError::WrongIdentity.into());
        }
        if cert.name != delta.node.name {
            return Err(CertError::WrongName { cert: cert.name.clone(), claimed: delta.node.name.clone() }.into());
        }
        trust.check_bounds(&cert, wall)?;
        let digest = cert.digest();
        if !self.authority.verified.contains(&digest) {
            if !cert.signature_ok() {
                return Err(CertError::BadSignature.into());
            }
            if self.authority.verified.len() >= MAX_VERIFIED {
                self.authority.verified.clear();
            }
            self.authority.verified.insert(digest);
        }
        for e in &delta.entries {
            match &e.value {
                Value::Service(s) if !cert.grants(&s.name) => {
                    return Err(Refusal::NotGranted { service: s.name.clone(), grants: cert.services.join(",") });
                }
                Value::Keyring { .. } if !cert.is_operator() => return Err(Refusal::NotOperator),
                Value::Revocation(r) if trust.check_revocation(r).is_err() => return Err(Refusal::BadRevocation),
                _ => {}
            }
        }
        let quota = trust.quota(&cert);
        let held = self.table.get(&delta.node.id).filter(|n| n.info.generation == delta.node.generation);
        // Check notes (at most one per service, written when it fails) are counted apart, so
        // that an owner at its quota whose services all fail is not refused; they are bounded
        // by the same quota.
        let (mut live, mut notes) = held.map_or((0, 0), |n| (n.live, n.notes));
        for e in &delta.entries {
            let old = held.and_then(|n| n.entries.get(&e.key));
            if old.is_some_and(|old| old.version >= e.version) {
                continue;
            }
            let (was_live, was_note) = old.map_or((false, false), |o| (o.value.counts_live(), o.value.is_note()));
            live = (live + usize::from(e.value.counts_live())).saturating_sub(usize::from(was_live));
            notes = (notes + usize::from(e.value.is_note())).saturating_sub(usize::from(was_note));
        }
        if live > quota as usize + QUOTA_ALLOWANCE {
            return Err(Refusal::Quota { live, quota });
        }
        if notes > quota as usize + QUOTA_ALLOWANCE {
            return Err(Refusal::Quota { live: notes, quota });
        }
        Ok(())
    }

    /// Counts a refused delta and reports it once per owner and reason.
    pub(super) fn refused(&mut self, delta: &Delta, why: Refusal) {
        self.stats.refused_deltas += 1;
        let reason = why.to_string();
        let key = (delta.node.id, reason.clone());
        if self.authority.reported.len() < MAX_REPORTED && self.authority.reported.insert(key) {
            self.events.push_back(Event::Refused { owner: delta.node.id, name: delta.node.name.clone(), reason });
        }
    }

    /// Reports handshakes the secure layer refused for their certificate, and peers whose clock
    /// is off.
    pub(super) fn report_handshake_findings(&mut self) {
        for (peer, identity, offset_secs) in self.secure.take_skews() {
            // Once per identity and order of magnitude of the offset.
            let key = (identity.node_id(), format!("skew {}", offset_secs.unsigned_abs().ilog10()));
            if self.authority.reported.len() < MAX_REPORTED && self.authority.reported.insert(key) {
                let tolerated = self.secure.max_skew().as_secs();
                self.events.push_back(Event::ClockSkew { peer, identity, offset_secs, tolerated });
            }
        }
        for (peer, identity, theirs) in self.secure.take_version_refusals() {
            let key = (identity.node_id(), format!("versions {theirs}"));
            if self.authority.reported.len() < MAX_REPORTED && self.authority.reported.insert(key) {
                let ours = self.secure.versions();
                self.events.push_back(Event::VersionRefused { peer, identity, ours, theirs });
            }
        }
        for (peer, identity, why) in self.secure.take_refusals() {
            let reason = why.to_string();
            if self.authority.reported.len() < MAX_REPORTED
                && self.authority.reported.insert((identity.node_id(), reason.clone()))
            {
                self.events.push_back(Event::CertRefused { peer, identity, reason });
            }
        }
    }

    /// Learns the revocations in an owner's entries (after its delta applied).
    pub(super) fn consider_revocations(&mut self, now: Instant, delta: &Delta) {
        for e in &delta.entries {
            if let Value::Revocation(r) = &e.value {
                self.apply_revocation(now, **r);
            }
        }
    }

    fn apply_revocation(&mut self, _now: Instant, r: Revocation) -> bool {
        match self.secure.revoke(r) {
            Ok(true) => {}
            _ => return false,
        }
        self.events.push_back(Event::Revoked(r));
        self.drop_identity(&r.identity);
        true
    }

    /// Forgets every trace of a revoked identity: its state, its membership, its sessions.
    fn drop_identity(&mut self, identity: &IdentityPub) {
        let id = identity.node_id();
        if id == self.local.id {
            return;
        }
        if let Some(n) = self.table.remove(&id) {
            self.peers.remove(&id);
            self.active.retain(|a| *a != id);
            self.suspicions.remove(&id);
            self.probes.retain(|p| p.target != id);
            self.events.push_back(Event::MemberLeft(n.info.clone()));
            self.events.push_back(Event::CatalogChanged);
        }
    }

    /// Installs a CA-signed revocation here and spreads it as this node's own entry, so that
    /// every agent drops the revoked identity and newcomers learn it. Ok(false) if it was
    /// already held.
    pub fn add_revocation(&mut self, now: Instant, r: Revocation) -> Result<bool, CommandError> {
        if self.left {
            return Err(CommandError::Left);
        }
        let Some(trust) = self.secure.trust() else { return Err(CommandError::NoTrust) };
        trust.check_revocation(&r).map_err(|e| CommandError::BadRevocation(e.to_string()))?;
        if r.identity == self.secure.identity() {
            return Err(CommandError::BadRevocation("it revokes this node's own identity".into()));
        }
        let key = format!("{}{}", message::REVOKE_PREFIX, r.identity.node_id().to_hex());
        let new = self.apply_revocation(now, r);
        let held = self.table.get(&self.local.id).is_some_and(|n| n.entries.contains_key(key.as_str()));
        if !held {
            self.write_local(now, &key, Value::Revocation(Box::new(r)));
        }
        Ok(new)
    }

    /// Writes an entry with no local check at all: a rogue member, for tests.
    #[cfg(feature = "testing")]
    pub fn write_unchecked(&mut self, now: Instant, key: &str, value: Value) {
        self.write_local(now, key, value);
    }

    /// Every revocation in force here.
    pub fn revocations(&self) -> Vec<Revocation> {
        self.secure.trust().map(|t| t.revocations().copied().collect()).unwrap_or_default()
    }

    /// What [`Gossip::register`] would refuse of `inst` (size, id, grant, quota), counting
    /// `pending_new` registrations of new ids not yet applied. Changes nothing.
    pub fn check_register(&self, inst: ServiceInstance, pending_new: usize) -> Result<(), CommandError> {
        let (key, value) = super::check_instance(inst)?;
        self.check_own_write_with(&key, &value, pending_new)
    }

    /// Refuses a local write its own certificate does not allow: an ungranted service, a new
    /// entry past the quota, a keyring change without the operator role.
    pub(super) fn check_own_write(&self, key: &str, value: &Value) -> Result<(), CommandError> {
        self.check_own_write_with(key, value, 0)
    }

    fn check_own_write_with(&self, key: &str, value: &Value, pending_new: usize) -> Result<(), CommandError> {
        let Some(cert) = self.secure.cert() else { return Ok(()) };
        match value {
            Value::Service(s) if !cert.grants(&s.name) => {
                Err(CommandError::NotGranted { service: s.name.clone(), grants: cert.services.join(",") })
            }
            Value::Service(_) => {
                let quota = self.secure.trust().map_or(cert.max_entries, |t| t.quota(cert));
                let me = self.table.get(&self.local.id);
                let held = me.and_then(|n| n.entries.get(key)).is_some_and(|e| matches!(e.value, Value::Service(_)));
                let services = me.map_or(0, |n| n.services);
                if quota > 0 && !held && services + pending_new >= quota as usize {
                    return Err(CommandError::Quota { max: quota });
                }
                Ok(())
            }
            Value::Keyring { .. } if !cert.is_operator() => Err(CommandError::NotOperator),
            _ => Ok(()),
        }
    }

    /// The next keyring stamp: above every stamp seen, never wrapping, and not far ahead of
    /// this clock (a stamp there would be refused by every other agent).
    pub(super) fn next_keyring_stamp(&self, now: Instant) -> Result<u64, CommandError> {
        let wall = self.wall_secs(now);
        let ahead = self.stamp_ahead();
        let stamp = self.keyring_stamp.checked_add(1).map(|s| s.max(wall));
        match stamp {
            Some(s) if s <= wall.saturating_add(ahead) => Ok(s),
            _ => Err(CommandError::KeyringStamp { stamp: self.keyring_stamp, wall }),
        }
    }
}
