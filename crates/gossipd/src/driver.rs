//! The tokio driver: owns the UDP socket and the [`Gossip`] state machine, feeds it datagrams,
//! the clock and commands, sends what it asks, and republishes views when the table changes.
//! One timer, reset to `poll_timeout()` after every input (as quinn's driver).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use gossip_core::{CommandError, Event, Gossip};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};

use crate::persist::DataDir;
use crate::service_def::ServiceDef;
use crate::view::{self, Catalog};

/// A request to the driver from the HTTP API.
#[derive(Debug)]
pub enum Command {
    /// Register or replace a local service.
    Register(ServiceDef, oneshot::Sender<Result<(), RegisterError>>),
    /// Deregister a local service; answers whether it existed.
    Deregister(String, oneshot::Sender<Result<bool, RegisterError>>),
    /// The local services as registered.
    LocalServices(oneshot::Sender<Vec<ServiceDef>>),
    /// The cluster keyring (primary first), with its stamp.
    Keyring(oneshot::Sender<(u64, Vec<[u8; 32]>)>),
    /// Changes the cluster keyring; answers the new keyring or why not.
    ChangeKeyring(KeyringOp, oneshot::Sender<Result<Vec<[u8; 32]>, String>>),
}

/// A keyring change, as `serf keys` / Consul's operator keyring API.
#[derive(Debug, Clone, Copy)]
pub enum KeyringOp {
    /// Accept this key too.
    Install([u8; 32]),
    /// Send with this (installed) key.
    Use([u8; 32]),
    /// Stop accepting this (non-primary) key.
    Remove([u8; 32]),
}

/// Why a registration change was refused. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The core refused it (too large, bad id).
    #[error(transparent)]
    Core(#[from] CommandError),
    /// It could not be persisted; it was rolled back.
    #[error("could not persist the registration: {0}")]
    Persist(String),
}

/// What the rest of the agent sees of the driver.
#[derive(Debug, Clone)]
pub struct Handle {
    /// Commands in.
    pub commands: mpsc::Sender<Command>,
    /// The current catalog.
    pub catalog: Arc<ArcSwap<Catalog>>,
    /// Raised with the catalog index at each rebuild (blocking queries wait on it).
    pub index: watch::Receiver<u64>,
    /// Gossip and secure-layer counters, refreshed with each loop turn.
    pub stats: Arc<ArcSwap<(gossip_core::Stats, gossip_core::secure::SecureStats)>>,
}

/// The driver task's state.
pub struct Driver {
    gossip: Gossip,
    socket: UdpSocket,
    data: DataDir,
    local: BTreeMap<String, ServiceDef>,
    commands: mpsc::Receiver<Command>,
    catalog: Arc<ArcSwap<Catalog>>,
    dns: Arc<ArcSwap<dns_front::snapshot::Snapshot>>,
    index_tx: watch::Sender<u64>,
    stats: Arc<ArcSwap<(gossip_core::Stats, gossip_core::secure::SecureStats)>>,
    index: u64,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver").field("local", &self.gossip.local()).finish()
    }
}

impl Driver {
    /// Wires a driver around a started state machine whose local services are `local`.
    pub fn new(
        gossip: Gossip,
        socket: UdpSocket,
        data: DataDir,
        local: Vec<ServiceDef>,
        dns: Arc<ArcSwap<dns_front::snapshot::Snapshot>>,
    ) -> (Driver, Handle) {
        let (tx, rx) = mpsc::channel(256);
        let (index_tx, index_rx) = watch::channel(0);
        let catalog = Arc::new(ArcSwap::from_pointee(Catalog::default()));
        let stats = Arc::new(ArcSwap::from_pointee(Default::default()));
        let handle = Handle { commands: tx, catalog: catalog.clone(), index: index_rx, stats: stats.clone() };
        let local = local.into_iter().map(|d| (d.id.clone(), d)).collect();
        let mut d = Driver { gossip, socket, data, local, commands: rx, catalog, dns, index_tx, stats, index: 0 };
        d.publish();
        (d, handle)
    }

    /// Rebuilds and swaps in the views.
    fn publish(&mut self) {
        self.index += 1;
        let (catalog, snapshot) = view::build(&self.gossip, self.index, Instant::now());
        self.catalog.store(Arc::new(catalog));
        self.dns.store(Arc::new(snapshot));
        self.index_tx.send_replace(self.index);
    }

    /// Runs until `shutdown` resolves, then announces the leave, flushes and returns.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 2048];
        loop {
            let deadline = self.gossip.poll_timeout().map(tokio::time::Instant::from_std);
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = self.socket.recv_from(&mut buf) => match r {
                    Ok((n, from)) => self.gossip.handle_datagram(Instant::now(), from, &buf[..n]),
                    Err(e) => tracing::debug!(error = %e, "udp receive error"),
                },
                () = sleep => self.gossip.handle_timeout(Instant::now()),
                Some(cmd) = self.commands.recv() => self.command(cmd),
                () = &mut shutdown => break,
            }
            self.after_input().await;
        }
        tracing::info!("leaving the cluster");
        self.gossip.leave(Instant::now());
        self.after_input().await;
        Ok(())
    }

    async fn after_input(&mut self) {
        while let Some(t) = self.gossip.poll_transmit() {
            if let Err(e) = self.socket.send_to(&t.payload, t.dst).await {
                tracing::debug!(dst = %t.dst, error = %e, "udp send error");
            }
        }
        let mut changed = false;
        while let Some(ev) = self.gossip.poll_event() {
            match &ev {
                Event::MemberJoined(n) => tracing::info!(node = %n.name, addr = %n.addr, "member joined"),
                Event::MemberLeft(n) => tracing::info!(node = %n.name, addr = %n.addr, "member left"),
                Event::Banned { identity, reason, period } => {
                    tracing::warn!(node = %identity.node_id(), %reason, ?period, "peer banned")
                }
                Event::Equivocation { owner, key, version } => {
                    tracing::warn!(node = %owner, %key, version, "node signed two records under one version")
                }
                Event::MemberSuspect(id) => tracing::info!(node = %id, "member suspected (missed its probes)"),
                Event::MemberFailed(id) => tracing::warn!(node = %id, "member failed: removed from answers"),
                Event::SelfPreservation { engaged: true, failing, cluster } => tracing::error!(
                    failing,
                    cluster,
                    "SELF-PRESERVATION ENGAGED: too many peers seem to fail at once; suspecting our own network, \
                     no node is declared dead and the last known instances keep being served"
                ),
                Event::SelfPreservation { engaged: false, .. } => {
                    tracing::warn!("self-preservation released: peers answer again, normal eviction resumes")
                }
                Event::KeyringChanged { stamp, keys } => {
                    let fps: Vec<String> = keys.iter().map(crate::keys::fingerprint).collect();
                    tracing::info!(stamp, keys = ?fps, "cluster keyring changed");
                    if let Err(e) = crate::keys::save(&self.data, *stamp, keys) {
                        tracing::error!(error = %e, "cannot persist the keyring");
                    }
                }
                _ => {}
            }
            changed = true;
        }
        if changed {
            self.publish();
        }
        self.stats.store(Arc::new((self.gossip.stats().clone(), self.gossip.secure_stats().clone())));
    }

    fn command(&mut self, cmd: Command) {
        let now = Instant::now();
        match cmd {
            Command::Register(def, reply) => {
                let result = self.register(now, def);
                let _ = reply.send(result);
            }
            Command::Deregister(id, reply) => {
                let result = self.deregister(now, &id);
                let _ = reply.send(result);
            }
            Command::LocalServices(reply) => {
                let _ = reply.send(self.local.values().cloned().collect());
            }
            Command::Keyring(reply) => {
                let _ = reply.send((self.gossip.keyring_stamp(), self.keyring()));
            }
            Command::ChangeKeyring(op, reply) => {
                let result = self.change_keyring(now, op);
                let _ = reply.send(result);
            }
        }
    }

    fn keyring(&self) -> Vec<[u8; 32]> {
        self.gossip.secure().keyring().keys().iter().map(|k| *k.bytes()).collect()
    }

    fn change_keyring(&mut self, now: Instant, op: KeyringOp) -> Result<Vec<[u8; 32]>, String> {
        let mut keys = self.keyring();
        let fp = |k: &[u8; 32]| crate::keys::fingerprint(k);
        match op {
            KeyringOp::Install(k) if keys.contains(&k) => return Ok(keys),
            KeyringOp::Install(k) => keys.push(k),
            KeyringOp::Use(k) => {
                let i = keys.iter().position(|x| *x == k).ok_or_else(|| format!("key {} is not installed", fp(&k)))?;
                let k = keys.remove(i);
                keys.insert(0, k);
            }
            KeyringOp::Remove(k) => match keys.iter().position(|x| *x == k) {
                None => return Err(format!("key {} is not installed", fp(&k))),
                Some(0) => return Err(format!("key {} is the primary key: make another key primary first", fp(&k))),
                Some(i) => {
                    keys.remove(i);
                }
            },
        }
        self.gossip.change_keyring(now, keys.clone()).map_err(|e| e.to_string())?;
        Ok(keys)
    }

    fn persist(&self) -> Result<(), RegisterError> {
        let defs: Vec<ServiceDef> = self.local.values().cloned().collect();
        self.data.save_services(&defs).map_err(|e| RegisterError::Persist(e.to_string()))
    }

    /// Persists first, then applies: a crash after the acknowledgement loses nothing.
    fn register(&mut self, now: Instant, def: ServiceDef) -> Result<(), RegisterError> {
        let previous = self.local.insert(def.id.clone(), def.clone());
        let rollback = |this: &mut Self| match &previous {
            Some(p) => {
                this.local.insert(p.id.clone(), p.clone());
            }
            None => {
                this.local.remove(&def.id);
            }
        };
        if let Err(e) = gossip_core::check_instance(def.to_instance()) {
            rollback(self);
            return Err(e.into());
        }
        if let Err(e) = self.persist() {
            rollback(self);
            return Err(e);
        }
        self.gossip.register(now, def.to_instance())?;
        tracing::info!(id = %def.id, name = %def.name, "service registered");
        Ok(())
    }

    fn deregister(&mut self, now: Instant, id: &str) -> Result<bool, RegisterError> {
        let Some(old) = self.local.remove(id) else { return Ok(false) };
        if let Err(e) = self.persist() {
            self.local.insert(old.id.clone(), old);
            return Err(e);
        }
        self.gossip.deregister(now, id)?;
        tracing::info!(id, "service deregistered");
        Ok(true)
    }
}
