//! `norn admin pbs` and `norn admin model`: staleness predictions from the
//! cluster's live latencies (or a file), and the durability and
//! availability model (see norn-model for both models and their
//! assumptions).

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{bail, Context as _};
use norn_client::NodeSession as Session;
use norn_model::durability::{self, LossQuery, LossReport, QuorumAvailability};
use norn_model::live::Samples;
use norn_model::measured::MeasuredFailures;
use norn_model::pbs::{self, Latencies, Prediction, T_MS};
use norn_proto::{NodeLatencies, Request, Response};
use norn_ring::Ring;
use serde::Serialize;

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// What `norn admin pbs` predicts for.
#[derive(Debug, Clone, Copy)]
pub struct PbsArgs {
    pub n: u8,
    /// Percent of reads that ask every replica (the nodes'
    /// `data.read_repair_percent`).
    pub read_repair_percent: u8,
    pub trials: u32,
    pub seed: u64,
    pub json: bool,
}

/// A PBS table and where its latencies came from.
#[derive(Debug, Serialize)]
pub struct PbsReport {
    /// `live` (the nodes named), or the file read.
    pub source: String,
    pub nodes: Vec<String>,
    pub samples: Option<Samples>,
    pub read_repair_percent: u8,
    pub elapsed_ms: f64,
    pub predictions: Vec<Prediction>,
}

/// Every up member's answer to `request`, by name, as `extract` takes it
/// from the response; members that do not answer are warned of and left
/// out.
async fn ask_up_members<T>(
    session: &Session,
    request: Request,
    extract: impl Fn(Response) -> Result<T, Response>,
) -> anyhow::Result<Vec<(String, T)>> {
    let mut answers = Vec::new();
    for member in crate::admin::known_members(session).await? {
        if !member.up {
            continue;
        }
        let name = member.member.name.clone();
        let address = norn_net::Endpoint::resolve(&member.member.address)
            .await
            .with_context(|| name.clone())?;
        match session
            .call_at(address, request.clone())
            .await
            .map(&extract)
        {
            Ok(Ok(answer)) => answers.push((name, answer)),
            Ok(Err(other)) => bail!("{name}: unexpected response {other:?}"),
            Err(e) => eprintln!("warning: {name} did not answer ({e}); going on without it"),
        }
    }
    if answers.is_empty() {
        bail!("no member answered");
    }
    Ok(answers)
}

/// Every up member's latencies, by name.
async fn live_latencies(session: &Session) -> anyhow::Result<Vec<(String, NodeLatencies)>> {
    ask_up_members(
        session,
        Request::AdminLatencies,
        |response| match response {
            Response::Latencies(latencies) => Ok(latencies),
            other => Err(other),
        },
    )
    .await
}

/// `norn admin pbs`: from `file` (JSON, as norn-model's `Latencies`) or,
/// without one, from every up member's measured latencies.
pub async fn pbs(
    session: Option<&Session>,
    file: Option<&Path>,
    args: PbsArgs,
) -> anyhow::Result<()> {
    let (latencies, source, nodes, samples): (Latencies, _, _, _) = match (file, session) {
        (Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let latencies = serde_json::from_str(&text)
                .with_context(|| format!("{}: not a latencies file", path.display()))?;
            (latencies, path.display().to_string(), Vec::new(), None)
        }
        (None, Some(session)) => {
            let members = crate::admin::known_members(session).await?.len();
            let measured = live_latencies(session).await?;
            let nodes: Vec<String> = measured.iter().map(|(name, _)| name.clone()).collect();
            let latencies: Vec<NodeLatencies> = measured.into_iter().map(|(_, l)| l).collect();
            let every_node_a_replica = members <= usize::from(args.n);
            let (wars, samples) =
                norn_model::live::wars(&latencies, every_node_a_replica, args.seed)
                    .map_err(anyhow::Error::msg)?;
            (wars, "live".to_string(), nodes, Some(samples))
        }
        (None, None) => bail!("give --latencies FILE or a cluster to ask"),
    };
    let started = std::time::Instant::now();
    let predictions = pbs::table(
        &latencies,
        args.n,
        args.read_repair_percent,
        args.trials,
        args.seed,
    )
    .map_err(anyhow::Error::msg)?;
    let report = PbsReport {
        source,
        nodes,
        samples,
        read_repair_percent: args.read_repair_percent,
        elapsed_ms: started.elapsed().as_secs_f64() * 1000.0,
        predictions,
    };
    if args.json {
        return print_json(&report);
    }
    print_pbs(&report);
    Ok(())
}

fn print_pbs(report: &PbsReport) {
    match &report.samples {
        Some(s) => println!(
            "latencies measured on {} (replica writes: {} round trips, {} service times; reads: {}, {})",
            report.nodes.join(", "),
            s.write_round_trips,
            s.write_services,
            s.read_round_trips,
            s.read_services
        ),
        None => println!("latencies from {}", report.source),
    }
    let first = &report.predictions[0];
    println!(
        "N={}, {} trials per row, {}% of reads ask every replica; P(a read t ms after the write's acknowledgement returns it):",
        first.n, first.trials, report.read_repair_percent
    );
    let mut header = format!("{:<7}", "R W");
    for t in T_MS {
        header.push_str(&format!(" {:>9}", format!("t={t}")));
    }
    header.push_str(&format!(
        " {:>9} {:>9} {:>10} {:>11} {:>10}",
        "t 99%", "t 99.9%", "read p99", "write p99", "closed t=0"
    ));
    println!("{header}");
    for p in &report.predictions {
        let mut line = format!("{:<7}", format!("{} {}", p.r, p.w));
        for fresh in &p.fresh {
            line.push_str(&format!(" {:>8.3}%", 100.0 * fresh.probability));
        }
        line.push_str(&format!(
            " {:>7.2}ms {:>7.2}ms {:>8.2}ms {:>9.2}ms {:>9.3}%",
            p.t_99_ms,
            p.t_999_ms,
            p.read_p99_ms,
            p.write_p99_ms,
            100.0 * (1.0 - p.stale_closed_form)
        ));
        println!("{line}");
    }
    println!(
        "R + W > N always returns the write. closed t=0: the k-staleness closed form, 1 - C(N-W,R)/C(N,R), what t=0 gives when only the W fastest replicas have the write. {:.0} ms of Monte Carlo.",
        report.elapsed_ms
    );
}

/// What `norn admin model` is asked; an input left `None` is measured
/// on the cluster where it can be, else its default.
#[derive(Debug, Clone, Copy)]
pub struct ModelArgs {
    pub n: u8,
    /// The cluster's node count; `None` asks the cluster's ring.
    pub nodes: Option<u32>,
    pub failures_per_year: Option<f64>,
    pub repair_hours: Option<f64>,
    pub availability: Option<f64>,
    pub pw: u8,
    pub json: bool,
}

/// The inputs' values when neither given nor measured.
pub const DEFAULT_FAILURES_PER_YEAR: f64 = 0.05;
pub const DEFAULT_REPAIR_HOURS: f64 = 24.0;
pub const DEFAULT_AVAILABILITY: f64 = 0.999;

/// One input of the model and where its value came from.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Input {
    pub value: f64,
    /// `flag`, `measured` or `default`.
    pub source: &'static str,
}

fn input(flag: Option<f64>, measured: Option<f64>, default: f64) -> Input {
    match (flag, measured) {
        (Some(value), _) => Input {
            value,
            source: "flag",
        },
        (None, Some(value)) => Input {
            value,
            source: "measured",
        },
        (None, None) => Input {
            value: default,
            source: "default",
        },
    }
}

/// The model's inputs.
#[derive(Debug, Serialize)]
pub struct ModelInputs {
    pub failures_per_year: Input,
    pub repair_hours: Input,
    pub availability: Input,
}

/// The model's answers.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    pub inputs: ModelInputs,
    /// What the cluster's nodes saw, when asked.
    pub measured: Option<MeasuredFailures>,
    pub loss: LossReport,
    pub quorums: Vec<QuorumAvailability>,
}

/// What every up member saw of failures and repairs.
async fn measured_failures(session: &Session) -> anyhow::Result<MeasuredFailures> {
    let histories = ask_up_members(
        session,
        Request::AdminFailureHistory,
        |response| match response {
            Response::FailureHistory(history) => Ok(history),
            other => Err(other),
        },
    )
    .await?;
    let histories: Vec<_> = histories.into_iter().map(|(_, h)| h).collect();
    Ok(norn_model::measured::failures(&histories))
}

/// Distinct sets of N primaries among `ring`'s partitions.
fn replica_sets(ring: &Ring, n: u8) -> u64 {
    let sets: BTreeSet<Vec<norn_ring::NodeId>> = ring
        .partitions()
        .map(|p| {
            let mut primaries = ring.preference_list(p, usize::from(n)).primaries().to_vec();
            primaries.sort();
            primaries
        })
        .collect();
    sets.len() as u64
}

/// `norn admin model`: key loss per year and quorum availability, for the
/// cluster's ring (node count and replica sets) unless `--nodes` is given,
/// with the inputs not given measured on the cluster when it is asked.
pub async fn model(session: Option<&Session>, args: ModelArgs) -> anyhow::Result<()> {
    let (nodes, sets) = match (args.nodes, session) {
        (Some(nodes), _) => {
            let sets = pbs::binomial(nodes, u32::from(args.n));
            (
                nodes,
                if sets >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    sets as u64
                },
            )
        }
        (None, Some(session)) => {
            let Response::Ring(Some(ring)) = session.call(Request::AdminRing).await? else {
                bail!("the node holds no ring yet: give --nodes");
            };
            let members = u32::try_from(ring.members().len()).unwrap_or(u32::MAX);
            (members, replica_sets(&ring, args.n))
        }
        (None, None) => bail!("give --nodes or a cluster to ask"),
    };
    let all_given = args.failures_per_year.is_some()
        && args.repair_hours.is_some()
        && args.availability.is_some();
    let measured = match session {
        Some(session) if !all_given => Some(measured_failures(session).await?),
        _ => None,
    };
    let seen = measured.as_ref();
    let inputs = ModelInputs {
        failures_per_year: input(
            args.failures_per_year,
            seen.and_then(|m| m.failures_per_year),
            DEFAULT_FAILURES_PER_YEAR,
        ),
        repair_hours: input(
            args.repair_hours,
            seen.and_then(|m| m.repair_hours),
            DEFAULT_REPAIR_HOURS,
        ),
        availability: input(
            args.availability,
            seen.and_then(|m| m.availability),
            DEFAULT_AVAILABILITY,
        ),
    };
    let loss = durability::loss(LossQuery {
        n: args.n,
        nodes,
        failures_per_year: inputs.failures_per_year.value,
        repair_hours: inputs.repair_hours.value,
        replica_sets: sets.max(1),
    })
    .map_err(anyhow::Error::msg)?;
    let quorums =
        durability::quorum_availability(args.n, nodes, inputs.availability.value, args.pw)
            .map_err(anyhow::Error::msg)?;
    let report = ModelReport {
        inputs,
        measured,
        loss,
        quorums,
    };
    if args.json {
        return print_json(&report);
    }
    print_model(&report, args.pw);
    Ok(())
}

fn print_model(report: &ModelReport, pw: u8) {
    if let Some(m) = &report.measured {
        println!(
            "measured on {} nodes: {} down events in {:.1} peer-hours watched; peers up {}; {} B per node; repair moved {} B in {} ms ({}); anti-entropy sweep {}",
            m.nodes_reporting,
            m.down_events,
            m.peer_hours_watched,
            m.availability
                .map_or("(not watched)".to_string(), |a| format!("{:.4}%", 100.0 * a)),
            m.bytes_per_node,
            m.repair_bytes,
            m.repair_busy_ms,
            m.repair_bytes_per_s
                .map_or("no rate yet".to_string(), |r| format!("{:.0} B/s", r)),
            m.sweep_ms
                .map_or("not complete yet".to_string(), |s| format!("{s} ms")),
        );
    }
    let i = &report.inputs;
    println!(
        "inputs: {:.4} failures per node and year ({}), {:.3} h to re-create a replica ({}), nodes up {:.4}% of the time ({})",
        i.failures_per_year.value,
        i.failures_per_year.source,
        i.repair_hours.value,
        i.repair_hours.source,
        100.0 * i.availability.value,
        i.availability.source
    );
    let q = &report.loss.query;
    println!(
        "N={} on {} nodes ({} distinct replica sets):",
        q.n, q.nodes, q.replica_sets
    );
    println!(
        "  one key:  lost with probability {:.3e} per year (mean time to loss {:.3e} years)",
        report.loss.key_loss_per_year, report.loss.key_mttdl_years
    );
    println!(
        "  any key:  lost with probability {:.3e} per year (mean time to loss {:.3e} years)",
        report.loss.any_key_loss_per_year, report.loss.cluster_mttdl_years
    );
    println!("quorum availability:");
    println!(
        "{:<4} {:>14} {:>22}",
        "k",
        "k of N primaries",
        format!("sloppy write (PW={pw})")
    );
    for row in &report.quorums {
        println!(
            "{:<4} {:>13.6}% {:>21.6}%",
            row.k,
            100.0 * row.strict,
            100.0 * row.sloppy
        );
    }
}
