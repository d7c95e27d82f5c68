//! Scale measurements: how fast a change converges and what an idle cluster costs, at N nodes.
//!
//! For each trial (its own seed derived from the master seed, N and the trial number):
//! 1. **Anti-entropy only** (`fanout = 0`, no rumors): in a warm (converged) cluster, one
//!    random node registers a service; we count gossip rounds (`gossip_interval`) until every
//!    node holds it: `ceil(delay / interval)`.
//! 2. **With rumors** (default fanout): the same change in another warm cluster, timed in ms,
//!    to 99% of the nodes and to all of them (anti-entropy repairs what the rumor missed).
//!    Before the change, `idle_rounds` idle rounds give the steady-state bytes sent per node
//!    per round (from `Gossip::stats().bytes_out`).
//!
//! Memory: the resident set (`VmRSS`, `VmHWM` from `/proc/self/status`) before and after
//! building the first cluster gives the bytes per replica (one node's copy of one owner).

use std::time::Duration;

use gossip_core::rng::Rng;

use crate::cluster::{SimConfig, push_pull_bound};
use crate::net::NetConfig;
use crate::sim::Sim;
use crate::{derive_seed, domain, service};

/// What to measure at one N.
#[derive(Debug, Clone)]
pub struct ScaleParams {
    /// Number of nodes.
    pub n: usize,
    /// Trials (each with its own seed).
    pub trials: usize,
    /// Idle rounds over which the steady-state cost is measured.
    pub idle_rounds: u32,
    /// Master seed.
    pub seed: u64,
    /// The network model.
    pub net: NetConfig,
    /// A change not everywhere after this many rounds counts as not converged.
    pub max_rounds: u32,
}

/// The figures measured at one N.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScaleRow {
    /// Number of nodes.
    pub n: usize,
    /// Trials run.
    pub trials: usize,
    /// Anti-entropy only: mean rounds until every node held the change.
    pub ae_rounds_mean: f64,
    /// Anti-entropy only: most rounds in any trial.
    pub ae_rounds_max: f64,
    /// Anti-entropy only: mean delay in fractional rounds.
    pub ae_rounds_exact: f64,
    /// `log3(N) + ln ln N`.
    pub bound: f64,
    /// With rumors: mean ms until every node held the change.
    pub rumor_ms_mean: f64,
    /// With rumors: most ms in any trial.
    pub rumor_ms_max: f64,
    /// With rumors: mean ms until 90% of the nodes held the change (the rumor's own reach).
    pub rumor_p90_ms: f64,
    /// With rumors: mean ms until 99% of the nodes held the change.
    pub rumor_p99_ms: f64,
    /// Idle: bytes sent per node per round.
    pub idle_bytes: f64,
    /// Peak resident set of the process, MiB.
    pub peak_rss_mib: f64,
    /// Resident bytes per replica (one node's copy of one owner's state).
    pub replica_bytes: f64,
    /// Trials in which a change did not reach every node within `max_rounds`.
    pub unconverged: usize,
}

impl ScaleRow {
    /// Column names of [`ScaleRow::to_csv`].
    pub const CSV_HEADER: &'static str = "n,trials,ae_rounds_mean,ae_rounds_max,ae_rounds_exact,bound,ratio,\
rumor_ms_mean,rumor_ms_max,rumor_p90_ms,rumor_p99_ms,idle_bytes_node_round,peak_rss_mib,replica_bytes,unconverged";

    /// Mean anti-entropy rounds over the bound.
    pub fn ratio(&self) -> f64 {
        self.ae_rounds_mean / self.bound
    }

    /// One CSV line (no newline).
    pub fn to_csv(&self) -> String {
        format!(
            "{},{},{:.3},{},{:.3},{:.3},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{:.1},{}",
            self.n,
            self.trials,
            self.ae_rounds_mean,
            self.ae_rounds_max,
            self.ae_rounds_exact,
            self.bound,
            self.ratio(),
            self.rumor_ms_mean,
            self.rumor_ms_max,
            self.rumor_p90_ms,
            self.rumor_p99_ms,
            self.idle_bytes,
            self.peak_rss_mib,
            self.replica_bytes,
            self.unconverged
        )
    }

    /// Parses a line written by [`ScaleRow::to_csv`].
    pub fn from_csv(line: &str) -> Option<ScaleRow> {
        let f: Vec<f64> = line.trim().split(',').map(|x| x.parse::<f64>()).collect::<Result<_, _>>().ok()?;
        if f.len() != 15 {
            return None;
        }
        Some(ScaleRow {
            n: f[0] as usize,
            trials: f[1] as usize,
            ae_rounds_mean: f[2],
            ae_rounds_max: f[3],
            ae_rounds_exact: f[4],
            bound: f[5],
            rumor_ms_mean: f[7],
            rumor_ms_max: f[8],
            rumor_p90_ms: f[9],
            rumor_p99_ms: f[10],
            idle_bytes: f[11],
            peak_rss_mib: f[12],
            replica_bytes: f[13],
            unconverged: f[14] as usize,
        })
    }
}

/// A human-readable table of rows.
pub fn table(rows: &[ScaleRow]) -> String {
    let mut s = String::from(
        "      N | AE rounds mean  max | bound | ratio | rumor ms p90   p99   all (max) | idle B/node/round | peak RSS MiB | B/replica\n",
    );
    s.push_str(&"-".repeat(s.len() - 1));
    s.push('\n');
    for r in rows {
        s.push_str(&format!(
            "{:>7} | {:>14.2} {:>4} | {:>5.2} | {:>5.2} | {:>12.1} {:>5.0} {:>5.0} ({:>4.0}) | {:>17.1} | {:>12.0} | {:>9.1}{}\n",
            r.n,
            r.ae_rounds_mean,
            r.ae_rounds_max,
            r.bound,
            r.ratio(),
            r.rumor_p90_ms,
            r.rumor_p99_ms,
            r.rumor_ms_mean,
            r.rumor_ms_max,
            r.idle_bytes,
            r.peak_rss_mib,
            r.replica_bytes,
            if r.unconverged > 0 { format!("  ({} trials unconverged)", r.unconverged) } else { String::new() }
        ));
    }
    s
}

/// Resident set and its peak, in KiB, from `/proc/self/status` (`None` where unavailable).
pub fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Delays until a change reached 90%, 99% and all of the live nodes.
#[derive(Debug, Clone, Copy)]
struct Reach {
    p90: Duration,
    p99: Duration,
    all: Duration,
}

/// One change followed to every node, or `None` past the limit.
fn follow_change(sim: &mut Sim, owner: usize, limit: Duration) -> Option<Reach> {
    let id = format!("probe-{}", sim.now().as_nanos());
    sim.register(owner, service(&id, "probe", 8080)).expect("a small service registers");
    sim.watch(owner);
    sim.run_until_cond(limit, Duration::from_millis(1), Sim::watch_done)?;
    let w = sim.watching()?;
    let n = sim.up_count();
    Some(Reach { p90: w.time_to((n * 9).div_ceil(10))?, p99: w.time_to((n * 99).div_ceil(100))?, all: w.time_to(n)? })
}

/// Measures one N (see the module doc). Progress goes to stderr.
pub fn measure(p: &ScaleParams) -> ScaleRow {
    let mut row = ScaleRow { n: p.n, trials: p.trials, bound: push_pull_bound(p.n), ..ScaleRow::default() };
    let (mut ae_sum, mut ae_exact_sum, mut rumor_sum, mut p90_sum, mut p99_sum, mut idle_sum) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for t in 0..p.trials {
        let trial_seed = derive_seed(p.seed, domain::TRIAL, p.n as u64, t as u64);
        let mut rng = Rng::from_seed(trial_seed);
        let owner = rng.index(p.n);
        let warmup = Duration::from_secs(2) + Duration::from_millis(rng.below(1000));

        // Anti-entropy only.
        let mut cfg = SimConfig::new(trial_seed, p.n);
        cfg.gossip.fanout = 0;
        cfg.net = p.net.clone();
        let interval = cfg.gossip.gossip_interval;
        let limit = interval * p.max_rounds;
        let before = rss_kib().map_or(0, |r| r.0);
        let mut sim = Sim::new(cfg);
        if t == 0 {
            let after = rss_kib().map_or(0, |r| r.0);
            let replicas = (p.n * p.n.saturating_sub(1)).max(1) as f64;
            row.replica_bytes = after.saturating_sub(before) as f64 * 1024.0 / replicas;
        }
        sim.run_for(warmup);
        match follow_change(&mut sim, owner, limit) {
            Some(reach) => {
                let exact = reach.all.as_secs_f64() / interval.as_secs_f64();
                let rounds = exact.ceil();
                ae_sum += rounds;
                ae_exact_sum += exact;
                row.ae_rounds_max = row.ae_rounds_max.max(rounds);
                eprintln!("  n={} trial {t}: anti-entropy {exact:.2} rounds ({rounds})", p.n);
            }
            None => {
                row.unconverged += 1;
                ae_sum += p.max_rounds as f64;
                row.ae_rounds_max = p.max_rounds as f64;
                eprintln!("  n={} trial {t}: anti-entropy did not converge in {} rounds", p.n, p.max_rounds);
            }
        }
        drop(sim);

        // Rumors plus anti-entropy (the default configuration).
        let mut cfg = SimConfig::new(trial_seed, p.n);
        cfg.net = p.net.clone();
        let mut sim = Sim::new(cfg);
        sim.run_for(warmup);
        let b0 = sim.bytes_out();
        sim.run_for(interval * p.idle_rounds);
        let idle = (sim.bytes_out() - b0) as f64 / p.n as f64 / p.idle_rounds.max(1) as f64;
        idle_sum += idle;
        match follow_change(&mut sim, owner, limit) {
            Some(reach) => {
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                let (p90_ms, p99_ms, all_ms) = (ms(reach.p90), ms(reach.p99), ms(reach.all));
                rumor_sum += all_ms;
                p90_sum += p90_ms;
                p99_sum += p99_ms;
                row.rumor_ms_max = row.rumor_ms_max.max(all_ms);
                eprintln!(
                    "  n={} trial {t}: rumor 90% {p90_ms:.1} ms, 99% {p99_ms:.1} ms, all {all_ms:.1} ms; idle {idle:.1} B",
                    p.n
                );
            }
            None => {
                row.unconverged += 1;
                eprintln!("  n={} trial {t}: rumor run did not converge in {} rounds", p.n, p.max_rounds);
            }
        }
    }
    let k = p.trials.max(1) as f64;
    row.ae_rounds_mean = ae_sum / k;
    row.ae_rounds_exact = ae_exact_sum / k;
    row.rumor_ms_mean = rumor_sum / k;
    row.rumor_p90_ms = p90_sum / k;
    row.rumor_p99_ms = p99_sum / k;
    row.idle_bytes = idle_sum / k;
    row.peak_rss_mib = rss_kib().map_or(0.0, |r| r.1 as f64 / 1024.0);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trips() {
        let p = ScaleParams { n: 30, trials: 1, idle_rounds: 3, seed: 5, net: NetConfig::default(), max_rounds: 40 };
        let row = measure(&p);
        assert_eq!(row.unconverged, 0);
        assert!(row.ae_rounds_mean >= 1.0 && row.idle_bytes > 0.0);
        let back = ScaleRow::from_csv(&row.to_csv()).unwrap();
        assert_eq!(back.to_csv(), row.to_csv());
        assert_eq!(ScaleRow::CSV_HEADER.split(',').count(), 15);
    }
}
