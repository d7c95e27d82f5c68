//! Registration changes: staged in `local` as commands arrive, persisted once per driver turn
//! (group commit), then applied to the core and acknowledged. Persist first, then apply and
//! acknowledge: a crash after an acknowledgement loses nothing.

use std::collections::BTreeSet;
use std::time::Instant;

use tokio::sync::oneshot;

use super::{Driver, RegisterError, ReloadReport};
use crate::checks;
use crate::persist::ServiceChange;
use crate::service_def::ServiceDef;

/// A registration change applied to `local`, waiting for the turn's single persist.
#[derive(Debug)]
pub(super) enum Staged {
    Register { def: ServiceDef, previous: Option<ServiceDef>, reply: oneshot::Sender<Result<(), RegisterError>> },
    Deregister { old: ServiceDef, reply: oneshot::Sender<Result<bool, RegisterError>> },
}

impl Driver {
    /// Journals the staged changes (one append and fsync for the batch: O(the changes), not
    /// O(every registration)); when the journal outgrows the snapshot, rewrites the snapshot and
    /// empties the journal.
    pub(super) fn persist(&mut self, staged: &[Staged]) -> Result<(), RegisterError> {
        let changes: Vec<ServiceChange> = staged
            .iter()
            .map(|s| match s {
                Staged::Register { def, .. } => ServiceChange::Put(def.clone()),
                Staged::Deregister { old, .. } => ServiceChange::Delete(old.id.clone()),
            })
            .collect();
        let len = self.data.append_services(&changes).map_err(|e| RegisterError::Persist(e.to_string()))?;
        // Compact when the journal is larger than a snapshot would be (about 300 bytes per
        // registration) and than 256 KiB: amortized O(1) per change.
        if len > (256 * 1024).max(self.local.len() as u64 * 300 * 2) {
            let defs: Vec<ServiceDef> = self.local.values().cloned().collect();
            if let Err(e) = self.data.compact_services(&defs) {
                // The journal holds everything: a failed compaction loses nothing.
                tracing::warn!(error = %e, "cannot compact the registrations journal; will retry at the next change");
            }
        }
        Ok(())
    }

    /// Applies `def` to `local` (checked, not yet persisted); answered by [`Self::commit`].
    pub(super) fn stage_register(&mut self, def: ServiceDef, reply: oneshot::Sender<Result<(), RegisterError>>) {
        let staged_checks = self.staged.iter().filter_map(|s| match s {
            Staged::Register { def: other, .. } if other.id != def.id => Some(other),
            _ => None,
        });
        let staged_checks: Vec<(String, String)> =
            staged_checks.flat_map(|o| checks::of(o).into_iter().map(|c| (c.id, o.id.clone()))).collect();
        for c in checks::of(&def) {
            let running = self.running.get(&c.id).filter(|o| o.service_id != def.id).map(|o| o.service_id.clone());
            let staged = staged_checks.iter().find(|(id, _)| *id == c.id).map(|(_, sid)| sid.clone());
            if let Some(other) = running.or(staged) {
                let _ = reply.send(Err(RegisterError::Check(format!(
                    "check ID {:?} is already used by service {:?}",
                    c.id, other
                ))));
                return;
            }
        }
        let pending_new = self.staged.iter().filter(|s| matches!(s, Staged::Register { previous: None, .. })).count();
        if let Err(e) = self.gossip.check_register(def.to_instance(), pending_new) {
            let _ = reply.send(Err(e.into()));
            return;
        }
        let previous = self.local.insert(def.id.clone(), def.clone());
        self.staged.push(Staged::Register { def, previous, reply });
    }

    /// Removes `id` from `local` (not yet persisted); answered by [`Self::commit`].
    pub(super) fn stage_deregister(&mut self, id: &str, reply: oneshot::Sender<Result<bool, RegisterError>>) {
        match self.local.remove(id) {
            Some(old) => self.staged.push(Staged::Deregister { old, reply }),
            None => {
                let _ = reply.send(Ok(false));
            }
        }
    }

    /// Persists the staged changes once, then applies them to the core and answers each:
    /// persist first, then apply and acknowledge, so a crash after an acknowledgement loses
    /// nothing. If persisting fails every staged change is rolled back and refused.
    pub(super) fn commit(&mut self, now: Instant) {
        if self.staged.is_empty() {
            return;
        }
        let staged = std::mem::take(&mut self.staged);
        if let Err(e) = self.persist(&staged) {
            let reason = match e {
                RegisterError::Persist(reason) => reason,
                other => other.to_string(),
            };
            for change in staged.into_iter().rev() {
                match change {
                    Staged::Register { def, previous, reply } => {
                        match previous {
                            Some(p) => self.local.insert(p.id.clone(), p),
                            None => self.local.remove(&def.id),
                        };
                        let _ = reply.send(Err(RegisterError::Persist(reason.clone())));
                    }
                    Staged::Deregister { old, reply } => {
                        self.local.insert(old.id.clone(), old);
                        let _ = reply.send(Err(RegisterError::Persist(reason.clone())));
                    }
                }
            }
            return;
        }
        for change in staged {
            match change {
                Staged::Register { def, reply, .. } => {
                    let inst = def.to_instance();
                    let result = self.gossip.register(now, inst.clone()).map_err(RegisterError::from);
                    if result.is_ok() {
                        self.health.insert(def.id.clone(), inst.health);
                        self.start_checks(&def);
                        tracing::info!(id = %def.id, name = %def.name, "service registered");
                    }
                    let _ = reply.send(result);
                }
                Staged::Deregister { old, reply } => {
                    let result = self.gossip.deregister(now, &old.id).map(|_| true).map_err(RegisterError::from);
                    self.health.remove(&old.id);
                    self.stop_checks(&old.id);
                    tracing::info!(id = %old.id, "service deregistered");
                    let _ = reply.send(result);
                }
            }
        }
        self.publish_checks();
    }

    /// [`Self::stage_register`] and [`Self::commit`] at once.
    pub(super) fn register(&mut self, now: Instant, def: ServiceDef) -> Result<(), RegisterError> {
        let (tx, mut rx) = oneshot::channel();
        self.stage_register(def, tx);
        self.commit(now);
        rx.try_recv().unwrap_or_else(|_| Err(RegisterError::Persist("not committed".into())))
    }

    /// Applies a re-read config directory through the normal register/deregister path (so
    /// persistence and checks follow). Unchanged definitions keep their checks running.
    pub(super) fn reload_config(&mut self, now: Instant, defs: Vec<ServiceDef>) -> ReloadReport {
        let mut report = ReloadReport::default();
        let new_ids: BTreeSet<String> = defs.iter().map(|d| d.id.clone()).collect();
        // Removals first: they may free check ids the new definitions reuse.
        let gone: Vec<String> = self.config_ids.difference(&new_ids).cloned().collect();
        for id in gone {
            match self.deregister(now, &id) {
                Ok(existed) => {
                    self.config_ids.remove(&id);
                    if existed {
                        report.deregistered.push(id);
                    }
                }
                Err(e) => report.errors.push(format!("cannot deregister {id:?}: {e}")),
            }
        }
        for def in defs {
            let id = def.id.clone();
            if self.local.get(&id) == Some(&def) {
                self.config_ids.insert(id);
                report.unchanged += 1;
                continue;
            }
            match self.register(now, def) {
                Ok(()) => {
                    self.config_ids.insert(id.clone());
                    report.registered.push(id);
                }
                Err(e) => report.errors.push(format!("cannot register {id:?}: {e}")),
            }
        }
        report
    }

    /// [`Self::stage_deregister`] and [`Self::commit`] at once.
    pub(super) fn deregister(&mut self, now: Instant, id: &str) -> Result<bool, RegisterError> {
        let (tx, mut rx) = oneshot::channel();
        self.stage_deregister(id, tx);
        self.commit(now);
        rx.try_recv().unwrap_or_else(|_| Err(RegisterError::Persist("not committed".into())))
    }
}
