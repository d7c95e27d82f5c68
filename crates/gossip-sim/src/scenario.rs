//! Scenarios as data: a list of [`Step`]s applied in order to a [`Sim`].
//!
//! In the style of chitchat's `tests/cluster_test.rs`: operations (run, register, partition,
//! kill, restart…) interleaved with assertions that wait, in virtual time, up to a bound for a
//! property to hold. The first failed step stops the run with a [`SimError`] that names the
//! step and the seed that replays it.

use std::fmt;
use std::time::Duration;

use gossip_core::ServiceInstance;

use crate::cluster::SimConfig;
use crate::sim::Sim;

/// Which nodes an assertion is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    /// Every running node.
    All,
    /// These nodes (those of them that are running).
    Only(Vec<usize>),
}

/// One operation or assertion.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Step {
    /// Let virtual time pass.
    Run(Duration),
    /// Register (or replace) a service instance on a node.
    Register {
        /// Node index.
        node: usize,
        /// The instance.
        service: ServiceInstance,
    },
    /// Deregister a service instance of a node (it must be registered).
    Deregister {
        /// Node index.
        node: usize,
        /// Instance id.
        id: String,
    },
    /// A node leaves gracefully.
    Leave {
        /// Node index.
        node: usize,
    },
    /// Split the network into groups that cannot reach each other (unlisted nodes form one more).
    Partition {
        /// The groups of node indices.
        groups: Vec<Vec<usize>>,
    },
    /// Remove the partition.
    Heal,
    /// Stop a node abruptly.
    Kill {
        /// Node index.
        node: usize,
    },
    /// Restart a node with a higher generation, knowing only the seeds.
    Restart {
        /// Node index.
        node: usize,
    },
    /// Set the loss probability of every link.
    SetLoss(f64),
    /// Every running node holds the same table within this delay.
    AssertConverged {
        /// Longest virtual delay allowed.
        within: Duration,
    },
    /// A service of `owner` is (or is not) visible on the given nodes within a delay.
    AssertService {
        /// Node index of the owner.
        owner: usize,
        /// Instance id.
        id: String,
        /// Whether it must be present (true) or absent (false).
        present: bool,
        /// Nodes that must see it so.
        on: Who,
        /// Longest virtual delay allowed (zero: must hold now).
        within: Duration,
    },
    /// Every running node knows `owner` at exactly `generation` within a delay.
    AssertGeneration {
        /// Node index of the owner.
        owner: usize,
        /// The generation expected.
        generation: u64,
        /// Longest virtual delay allowed.
        within: Duration,
    },
}

/// A simulation and the steps to apply to it.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The cluster.
    pub config: SimConfig,
    /// The steps.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Builds the cluster and runs every step. On success returns the simulation (for further
    /// checks) and the report.
    pub fn run(&self) -> Result<(Sim, Report), SimError> {
        let mut sim = Sim::new(self.config.clone());
        let report = run_steps(&mut sim, &self.steps)?;
        Ok((sim, report))
    }
}

/// A failed step, with the seed that replays the run.
#[derive(Debug, Clone, thiserror::Error)]
#[error("step {step} ({what}) failed at t={at:?}: {reason}; replay with SIM_SEED={seed}")]
pub struct SimError {
    /// Master seed of the run.
    pub seed: u64,
    /// Index of the failed step.
    pub step: usize,
    /// The step, as written.
    pub what: String,
    /// Virtual time of the failure.
    pub at: Duration,
    /// What went wrong.
    pub reason: String,
}

/// What a successful run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// For each assertion step: its index and the virtual delay until it held.
    pub waits: Vec<(usize, Duration)>,
    /// Virtual time at the end.
    pub end: Duration,
    /// Events processed.
    pub events: u64,
    /// Datagrams sent through the network.
    pub datagrams: u64,
    /// Datagrams dropped by loss or partitions.
    pub dropped: u64,
    /// Largest datagram sent, in bytes (never over 1200: the simulator asserts it).
    pub largest: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "virtual time {:.3} s, {} events, {} datagrams ({} dropped, largest {} bytes)",
            self.end.as_secs_f64(),
            self.events,
            self.datagrams,
            self.dropped,
            self.largest
        )?;
        for (step, wait) in &self.waits {
            writeln!(f, "  step {step}: held after {:.3} s", wait.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Applies `steps` in order.
pub fn run_steps(sim: &mut Sim, steps: &[Step]) -> Result<Report, SimError> {
    let mut report = Report::default();
    for (index, step) in steps.iter().enumerate() {
        let fail = |sim: &Sim, reason: String| SimError {
            seed: sim.seed(),
            step: index,
            what: format!("{step:?}"),
            at: sim.now(),
            reason,
        };
        if let Some(bad) = node_of(step).filter(|&n| n >= sim.len()) {
            return Err(fail(sim, format!("no node {bad} in a cluster of {}", sim.len())));
        }
        match step {
            Step::Run(d) => sim.run_for(*d),
            Step::Register { node, service } => {
                sim.register(*node, service.clone()).map_err(|e| fail(sim, e.to_string()))?;
            }
            Step::Deregister { node, id } => match sim.deregister(*node, id) {
                Ok(true) => {}
                Ok(false) => return Err(fail(sim, format!("node {node} has no service {id:?}"))),
                Err(e) => return Err(fail(sim, e.to_string())),
            },
            Step::Leave { node } => sim.leave(*node),
            Step::Partition { groups } => {
                let n = sim.len();
                sim.net_mut().partition(n, groups);
            }
            Step::Heal => sim.net_mut().heal(),
            Step::Kill { node } => sim.kill(*node),
            Step::Restart { node } => sim.restart(*node),
            Step::SetLoss(p) => sim.net_mut().set_loss(*p),
            Step::AssertConverged { within } => {
                let waited = wait(sim, *within, Sim::converged).ok_or_else(|| {
                    let reason = format!(
                        "{} distinct tables among {} running nodes after {within:?}",
                        sim.distinct_fingerprints(),
                        sim.up_count()
                    );
                    fail(sim, reason)
                })?;
                report.waits.push((index, waited));
            }
            Step::AssertService { owner, id, present, on, within } => {
                let targets: Vec<usize> = match on {
                    Who::All => sim.up_nodes().collect(),
                    Who::Only(v) => v.iter().copied().filter(|&i| i < sim.len() && sim.is_up(i)).collect(),
                };
                let ok = |s: &Sim| targets.iter().all(|&i| s.holds_service(i, *owner, id) == *present);
                let waited = wait(sim, *within, ok).ok_or_else(|| {
                    let wrong = targets.iter().filter(|&&i| sim.holds_service(i, *owner, id) != *present).count();
                    let verb = if *present { "lack" } else { "still hold" };
                    fail(sim, format!("{wrong} of {} nodes {verb} service {id:?} of node {owner}", targets.len()))
                })?;
                report.waits.push((index, waited));
            }
            Step::AssertGeneration { owner, generation, within } => {
                let ok = |s: &Sim| s.up_nodes().all(|i| s.generation_of(i, *owner) == *generation);
                let waited = wait(sim, *within, ok).ok_or_else(|| {
                    let wrong = sim.up_nodes().filter(|&i| sim.generation_of(i, *owner) != *generation).count();
                    fail(sim, format!("{wrong} nodes do not hold node {owner} at generation {generation}"))
                })?;
                report.waits.push((index, waited));
            }
        }
    }
    report.end = sim.now();
    report.events = sim.events_processed();
    let net = sim.net().stats();
    report.datagrams = net.sent;
    report.dropped = net.lost + net.partitioned;
    report.largest = net.largest;
    Ok(report)
}

/// Waits up to `within` for `cond`, checking every twentieth of a gossip round.
fn wait(sim: &mut Sim, within: Duration, cond: impl FnMut(&Sim) -> bool) -> Option<Duration> {
    let every = (sim.config().gossip.gossip_interval / 20).max(Duration::from_millis(1));
    sim.run_until_cond(within, every, cond)
}

/// The node a step acts on, if any.
fn node_of(step: &Step) -> Option<usize> {
    match step {
        Step::Register { node, .. }
        | Step::Deregister { node, .. }
        | Step::Leave { node }
        | Step::Kill { node }
        | Step::Restart { node } => Some(*node),
        Step::AssertService { owner, .. } | Step::AssertGeneration { owner, .. } => Some(*owner),
        _ => None,
    }
}
