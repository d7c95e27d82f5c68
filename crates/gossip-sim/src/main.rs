//! `gossip-sim`: run simulated gossipd clusters.
//!
//! ```text
//! gossip-sim scale [--n 100,1000,10000] [--trials 5] [--idle-rounds 20] [--max-rounds 60]
//!                  [--seed S] [--loss P] [--csv PATH] [--mem-budget-gib G]
//! gossip-sim scenario NAME [--n N] [--seed S]      NAME: join registration loss loss-join partition churn
//! ```
//!
//! `scale` measures each N in a child process (`scale-one`), so that each N's peak resident
//! set is its own, skips an N whose estimated memory exceeds the budget, prints a table and
//! writes the CSV. The seed defaults to `SIM_SEED`, else 1.

use std::io::Write;
use std::process::{Command, ExitCode};
use std::time::Duration;

use gossip_sim::net::NetConfig;
use gossip_sim::scale::{ScaleParams, ScaleRow, measure, table};
use gossip_sim::{parse_seed, scenarios, seed_from_env};

/// Parsed `--key value` options.
struct Opts(Vec<(String, String)>);

impl Opts {
    fn parse(args: &[String]) -> Result<Opts, String> {
        let mut out = Vec::new();
        let mut it = args.iter();
        while let Some(k) = it.next() {
            let key = k.strip_prefix("--").ok_or_else(|| format!("unexpected argument {k:?}"))?;
            let v = it.next().ok_or_else(|| format!("--{key} needs a value"))?;
            out.push((key.to_owned(), v.clone()));
        }
        Ok(Opts(out))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Result<T, String> {
        self.get(key).map_or(Ok(default), |v| v.parse().map_err(|_| format!("--{key}: bad value {v:?}")))
    }

    fn seed(&self) -> Result<u64, String> {
        match self.get("seed") {
            Some(s) => parse_seed(s).ok_or_else(|| format!("--seed: bad value {s:?}")),
            None => Ok(seed_from_env(1)),
        }
    }

    fn allow(&self, keys: &[&str]) -> Result<(), String> {
        match self.0.iter().find(|(k, _)| !keys.contains(&k.as_str())) {
            Some((k, _)) => Err(format!("unknown option --{k}")),
            None => Ok(()),
        }
    }
}

const SCALE_KEYS: &[&str] = &["n", "trials", "idle-rounds", "max-rounds", "seed", "loss", "csv", "mem-budget-gib"];

fn params(o: &Opts, n: usize) -> Result<ScaleParams, String> {
    Ok(ScaleParams {
        n,
        trials: o.num("trials", 5)?,
        idle_rounds: o.num("idle-rounds", 20)?,
        seed: o.seed()?,
        net: NetConfig { loss: o.num("loss", 0.0)?, ..NetConfig::default() },
        max_rounds: o.num("max-rounds", 60)?,
    })
}

/// Measures one N in this process and prints its CSV row on stdout.
fn scale_one(o: &Opts) -> Result<(), String> {
    o.allow(SCALE_KEYS)?;
    let n: usize = o.num("n", 100)?;
    let p = params(o, n)?;
    // Wall time is reported for information only; it never feeds the simulation.
    #[allow(clippy::disallowed_methods)]
    let t0 = std::time::Instant::now();
    let row = measure(&p);
    eprintln!("  n={n}: measured in {:.1} s wall", t0.elapsed().as_secs_f64());
    println!("{}", row.to_csv());
    Ok(())
}

/// Available memory from `/proc/meminfo`, in bytes.
fn mem_available() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: f64 =
        info.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024.0)
}

fn scale(o: &Opts) -> Result<(), String> {
    o.allow(SCALE_KEYS)?;
    let ns: Vec<usize> = o
        .get("n")
        .unwrap_or("100,1000,10000")
        .split(',')
        .map(|s| s.trim().parse().map_err(|_| format!("--n: bad value {s:?}")))
        .collect::<Result<_, _>>()?;
    let budget = match o.get("mem-budget-gib") {
        Some(g) => g.parse::<f64>().map_err(|_| format!("--mem-budget-gib: bad value {g:?}"))? * (1u64 << 30) as f64,
        None => mem_available().unwrap_or(8.0 * (1u64 << 30) as f64) * 0.8,
    };
    let seed = o.seed()?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut rows: Vec<ScaleRow> = Vec::new();
    let mut skipped = Vec::new();
    for &n in &ns {
        let _ = params(o, n)?;
        if let Some(prev) = rows.iter().filter(|r| r.peak_rss_mib > 0.0).max_by_key(|r| r.n) {
            // Replicas share their owner table and peer set (persistent trees), so memory
            // grows with N log N, not N²: the peak at the largest N so far, scaled by N, with
            // half again for the log factor and the allocator.
            let need = prev.peak_rss_mib * (1 << 20) as f64 * (n as f64 / prev.n as f64) * 1.5;
            if need > budget {
                let msg = format!(
                    "N={n}: skipped, needs about {:.1} GiB ({:.0} MiB at N={} x {n}/{} x 1.5) > budget {:.1} GiB",
                    need / (1u64 << 30) as f64,
                    prev.peak_rss_mib,
                    prev.n,
                    prev.n,
                    budget / (1u64 << 30) as f64
                );
                eprintln!("{msg}");
                skipped.push(msg);
                continue;
            }
        }
        eprintln!("N={n}: measuring (seed {seed})");
        let mut cmd = Command::new(&exe);
        cmd.arg("scale-one").arg("--n").arg(n.to_string()).arg("--seed").arg(seed.to_string());
        for (k, v) in &o.0 {
            if !matches!(k.as_str(), "n" | "seed" | "csv" | "mem-budget-gib") {
                cmd.arg(format!("--{k}")).arg(v);
            }
        }
        let out = cmd.stderr(std::process::Stdio::inherit()).output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.lines().last().and_then(ScaleRow::from_csv) {
            Some(row) if out.status.success() => rows.push(row),
            _ => return Err(format!("N={n}: measurement failed ({}); replay with SIM_SEED={seed}", out.status)),
        }
    }
    println!("seed {seed}; AE = anti-entropy only (fanout 0); rumor = default fanout; round = 1 s");
    print!("{}", table(&rows));
    for s in &skipped {
        println!("{s}");
    }
    if let Some(path) = o.get("csv") {
        let mut csv = format!("{}\n", ScaleRow::CSV_HEADER);
        for r in &rows {
            csv.push_str(&r.to_csv());
            csv.push('\n');
        }
        std::fs::write(path, csv).map_err(|e| format!("{path}: {e}"))?;
        println!("wrote {path}");
    }
    Ok(())
}

fn scenario(args: &[String]) -> Result<(), String> {
    let (name, rest) =
        args.split_first().ok_or("scenario: which one? one of join registration loss loss-join partition churn")?;
    let o = Opts::parse(rest)?;
    o.allow(&["n", "seed"])?;
    let seed = o.seed()?;
    let n: usize = o.num("n", 50)?;
    if n < 4 {
        return Err("--n: at least 4 nodes".into());
    }
    let sc = scenarios::by_name(name, seed, n)
        .ok_or_else(|| format!("unknown scenario {name:?}; one of {}", scenarios::NAMES.join(" ")))?;
    match sc.run() {
        Ok((sim, report)) => {
            let b = sim.bytes_out() as f64 / n as f64 / report.end.max(Duration::from_secs(1)).as_secs_f64();
            let text =
                format!("scenario {name}, {n} nodes, seed {seed}: ok\n{report}  {b:.0} bytes/s per node on average\n");
            // A closed pipe (`| head`) is not a failure of the scenario.
            let _ = std::io::stdout().write_all(text.as_bytes());
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.split_first() {
        Some((cmd, rest)) if cmd == "scale" => Opts::parse(rest).and_then(|o| scale(&o)),
        Some((cmd, rest)) if cmd == "scale-one" => Opts::parse(rest).and_then(|o| scale_one(&o)),
        Some((cmd, rest)) if cmd == "scenario" => scenario(rest),
        _ => Err("usage: gossip-sim scale [--n 100,1000,10000] [--trials K] [--idle-rounds R] [--max-rounds M] \
[--seed S] [--loss P] [--csv PATH] [--mem-budget-gib G]\n       gossip-sim scenario NAME [--n N] [--seed S]"
            .into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gossip-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
