use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use hakube_loadgen::watchcache::{self, FanOut, FanOutPlan};
use hakube_loadgen::{deployment, scheduler};
use hakube_loadgen::{
    percentile, run_apiserver, run_etcd, ApiTarget, EtcdWrite, LoadError, Outcome,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Create throughput of hakube-apiserver and of raw etcd in one run.
    Write,
    /// Lists from the watch cache against serialization in process, watch fan-out latency
    /// and losses, and the API server's memory with the Pods and watchers.
    WatchCache,
    /// hakube-scheduler's throughput beside direct Bindings, and its algorithm's cost a pod.
    Scheduler,
    /// A Deployment scaled 0 -> N by hakube-controller-manager beside N direct pod creates.
    ControllerManager,
}

/// Benchmarks hakube-apiserver: writes (the default) or its watch cache.
#[derive(Parser)]
struct Args {
    #[arg(long, value_enum, default_value_t = Mode::Write)]
    mode: Mode,
    /// hakube-apiserver host and port.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long)]
    port: u16,
    #[arg(long)]
    ca: PathBuf,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// The etcd the API server writes to, for the raw comparison (the write load).
    #[arg(long)]
    etcd: Option<String>,
    /// Concurrent writers (the write load), or Pod creators (watch-cache).
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// The run is split into this many rounds of each load, taken in turn (the write load and
    /// the controller-manager benchmark).
    #[arg(long, default_value_t = 4)]
    rounds: u32,
    /// Watch-cache: Pods created in namespace `bench`, and the JSON size of each.
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    #[arg(long, default_value_t = 2048)]
    pod_size: usize,
    /// Watch-cache: lists of each kind measured.
    #[arg(long, default_value_t = 30)]
    lists: usize,
    /// Watch-cache: watchers in the fan-out, over this many HTTP/2 connections (hyper's server
    /// allows 200 streams on each).
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    #[arg(long, default_value_t = 8)]
    watch_connections: usize,
    /// Watch-cache: Pod updates a second while the watchers are open, and for how long.
    #[arg(long, default_value_t = 20)]
    updates_per_second: u32,
    #[arg(long, default_value_t = 30)]
    watch_seconds: u64,
    /// Watch-cache: the API server's pid, whose resident memory is read from /proc.
    #[arg(long)]
    apiserver_pid: Option<u32>,
    /// Scheduler: Ready nodes created (pods come from --pods).
    #[arg(long, default_value_t = 5000)]
    nodes: usize,
    /// Scheduler: the hakube-scheduler binary and the kubeconfig it uses.
    #[arg(long)]
    scheduler_bin: Option<PathBuf>,
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Controller-manager: the hakube-controller-manager binary (it uses --kubeconfig).
    #[arg(long)]
    controller_manager_bin: Option<PathBuf>,
    /// Controller-manager: the Deployment's replicas.
    #[arg(long, default_value_t = 1000)]
    replicas: usize,
    /// Scheduler and controller-manager: where configs and logs go.
    #[arg(long, default_value = "/var/tmp")]
    work_dir: PathBuf,
}

fn add(
    total: Result<Outcome, LoadError>,
    round: Result<Outcome, LoadError>,
) -> Result<Outcome, LoadError> {
    Ok(total?.merge(round?))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let target = ApiTarget {
        host: &args.host,
        port: args.port,
        ca: &args.ca,
        cert: &args.cert,
        key: &args.key,
    };
    let result = match (args.mode, &args.etcd) {
        (Mode::Write, Some(etcd)) => write(&args, &target, etcd).await,
        (Mode::Write, None) => Err(LoadError::Unexpected("--mode write needs --etcd".into())),
        (Mode::WatchCache, _) => watch_cache(&args, &target).await,
        (Mode::Scheduler, _) => scheduler(&args, &target).await,
        (Mode::ControllerManager, _) => controller_manager(&args, &target).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("load run failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn write(args: &Args, target: &ApiTarget<'_>, etcd: &str) -> Result<(), LoadError> {
    let duration = Duration::from_secs(args.seconds);
    let run_id = format!("r{}", std::process::id());
    // The three loads take turns in short rounds, so noise from other tenants of a shared
    // machine falls on all of them alike.
    let (c, size) = (args.concurrency, args.size);
    let round = duration / args.rounds.max(1);
    let (mut put, mut txn, mut api) = (
        Ok(Outcome::empty()),
        Ok(Outcome::empty()),
        Ok(Outcome::empty()),
    );
    for r in 0..args.rounds.max(1) {
        let id = format!("{run_id}-{r}");
        put = add(
            put,
            run_etcd(etcd, EtcdWrite::Put, c, round, size, &id).await,
        );
        txn = add(
            txn,
            run_etcd(etcd, EtcdWrite::CreateTxn, c, round, size, &id).await,
        );
        api = add(api, run_apiserver(target, c, round, size, &id).await);
    }
    let (put, txn, api) = (put?, txn?, api?);
    for (name, o) in [
        ("etcd (raw put)", &put),
        ("etcd (create txn)", &txn),
        ("hakube-apiserver (POST)", &api),
    ] {
        println!(
            "{name:<26} {:>9.0} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  ({} writes, {} errors)",
            o.rate(),
            o.percentile(0.5).as_secs_f64() * 1e3,
            o.percentile(0.99).as_secs_f64() * 1e3,
            o.writes(),
            o.errors
        );
    }
    println!("ratio apiserver/etcd put: {:.2}", api.rate() / put.rate());
    println!(
        "ratio apiserver/etcd create txn: {:.2}",
        api.rate() / txn.rate()
    );
    Ok(())
}

async fn scheduler(args: &Args, target: &ApiTarget<'_>) -> Result<(), LoadError> {
    let (Some(scheduler_bin), Some(kubeconfig)) = (&args.scheduler_bin, &args.kubeconfig) else {
        return Err(LoadError::Unexpected(
            "--mode scheduler needs --scheduler-bin and --kubeconfig".into(),
        ));
    };
    let plan = scheduler::Plan {
        nodes: args.nodes,
        pods: args.pods,
        concurrency: args.concurrency,
        scheduler_bin: scheduler_bin.clone(),
        kubeconfig: kubeconfig.clone(),
        work_dir: args.work_dir.clone(),
    };
    scheduler::run(target, &plan).await
}

async fn controller_manager(args: &Args, target: &ApiTarget<'_>) -> Result<(), LoadError> {
    let (Some(bin), Some(kubeconfig)) = (&args.controller_manager_bin, &args.kubeconfig) else {
        return Err(LoadError::Unexpected(
            "--mode controller-manager needs --controller-manager-bin and --kubeconfig".into(),
        ));
    };
    let plan = deployment::Plan {
        replicas: args.replicas,
        concurrency: args.concurrency,
        rounds: args.rounds,
        controller_manager_bin: bin.clone(),
        kubeconfig: kubeconfig.clone(),
        work_dir: args.work_dir.clone(),
    };
    deployment::run(target, &plan).await
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "NOT met"
    }
}

/// The three watch-cache benchmarks on one set of Pods. A failed one is reported and the rest
/// still run; the run then fails with the first error.
async fn watch_cache(args: &Args, target: &ApiTarget<'_>) -> Result<(), LoadError> {
    let rss = |what: &str| -> Result<(), LoadError> {
        if let Some(pid) = args.apiserver_pid {
            println!(
                "  apiserver RSS {what}: {:.1} MiB",
                mib(watchcache::rss(pid)?)
            );
        }
        Ok(())
    };
    rss("before the Pods")?;
    let took = watchcache::create_pods(target, args.pods, args.pod_size, args.concurrency).await?;
    println!(
        "  created {} Pods of {} B JSON and wrote their status in {:.1} s ({} streams)",
        args.pods,
        args.pod_size,
        took.as_secs_f64(),
        args.concurrency
    );
    rss("with the Pods")?;

    let mut failed = None;
    if let Err(e) = list_benchmark(args, target).await {
        println!("list benchmark failed: {e}");
        failed.get_or_insert(e);
    }
    rss("after the lists")?;

    println!(
        "watch fan-out: {} Pod updates/s for {} s, write (PATCH sent) to receipt at each watcher",
        args.updates_per_second, args.watch_seconds
    );
    let mut runs = Vec::new();
    for (watchers, connections) in [(args.watchers, args.watch_connections), (1, 1)] {
        let plan = FanOutPlan {
            watchers,
            connections,
            pods: args.pods,
            updates_per_second: args.updates_per_second,
            duration: Duration::from_secs(args.watch_seconds),
            apiserver_pid: args.apiserver_pid,
        };
        match watchcache::fan_out(target, &plan).await {
            Ok(run) => {
                print_fan_out(&run, connections.clamp(1, watchers));
                runs.push(run);
            }
            Err(e) => {
                println!("fan-out to {watchers} watcher(s) failed: {e}");
                failed.get_or_insert(e);
            }
        }
    }
    let worst = runs
        .iter()
        .map(|r| percentile(&r.latencies, 0.99))
        .max()
        .unwrap_or_default();
    let complete = runs.len() == 2 && runs.iter().all(|r| r.updates > 0 && r.lost == 0);
    println!(
        "goal p99 <= 50 ms and none lost: {}",
        met(complete && worst <= Duration::from_millis(50))
    );

    let open = runs.first().filter(|r| r.watchers == args.watchers);
    if let Some((open, peak)) = open.and_then(|r| Some((r.rss_open?, r.rss_peak?))) {
        println!(
            "memory: apiserver RSS with {} Pods and {} watchers open: {:.1} MiB (peak {:.1} MiB while they received updates; goal <= 150 MiB: {})",
            args.pods,
            args.watchers,
            mib(open),
            mib(peak),
            met(peak <= 150 << 20)
        );
    } else if let Some(pid) = args.apiserver_pid {
        println!(
            "memory: apiserver RSS with {} Pods, the watchers not open: {:.1} MiB",
            args.pods,
            mib(watchcache::rss(pid)?)
        );
    }
    failed.map_or(Ok(()), Err)
}

async fn list_benchmark(args: &Args, target: &ApiTarget<'_>) -> Result<(), LoadError> {
    let lists = watchcache::lists(target, args.lists).await?;
    println!(
        "list benchmark: {} Pods, {:.1} MiB a list ({} B a Pod as served), {} lists of each kind, one at a time",
        lists.items,
        mib(lists.bytes as u64),
        lists.bytes / lists.items.max(1),
        args.lists
    );
    let floor = percentile(&lists.floor, 0.99);
    for (name, samples) in [
        ("serialize in process (floor)", &lists.floor),
        ("GET ?resourceVersion=0", &lists.cached),
        ("GET consistent (no RV)", &lists.consistent),
    ] {
        println!(
            "{name:<30} p50 {:>8.1} ms  p99 {:>8.1} ms",
            ms(percentile(samples, 0.5)),
            ms(percentile(samples, 0.99))
        );
    }
    let ratio = |samples: &[Duration]| {
        percentile(samples, 0.99).as_secs_f64() / floor.as_secs_f64().max(f64::EPSILON)
    };
    let (cached, consistent) = (ratio(&lists.cached), ratio(&lists.consistent));
    println!(
        "ratio RV=0 p99 / floor p99: {cached:.2} (goal <= 3: {})",
        met(cached <= 3.0)
    );
    println!("ratio consistent p99 / floor p99: {consistent:.2}");
    Ok(())
}

fn print_fan_out(run: &FanOut, connections: usize) {
    let label = format!(
        "{} watcher{} / {} conn",
        run.watchers,
        if run.watchers == 1 { "" } else { "s" },
        connections
    );
    println!(
        "{label:<24} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms  ({} of {} events, {} lost, {} extra; open in {:.1} s)",
        ms(percentile(&run.latencies, 0.5)),
        ms(percentile(&run.latencies, 0.99)),
        ms(percentile(&run.latencies, 1.0)),
        run.received,
        run.updates * run.watchers as u64,
        run.lost,
        run.extra,
        run.open_time.as_secs_f64()
    );
    println!(
        "{:<24} PATCH p50 {:>5.1} ms  p99 {:>5.1} ms  ({} updates, {} failed{})",
        "",
        ms(percentile(&run.update_latencies, 0.5)),
        ms(percentile(&run.update_latencies, 0.99)),
        run.updates,
        run.failed_updates,
        run.first_failure
            .as_deref()
            .map(|f| format!("; first: {f}"))
            .unwrap_or_default()
    );
    let cores = |cpu: Duration| cpu.as_secs_f64() / run.window.as_secs_f64().max(f64::EPSILON);
    println!(
        "{:<24} CPU while updating: apiserver {}, loadgen {:.2} cores",
        "",
        run.apiserver_cpu
            .map(|c| format!("{:.2} cores", cores(c)))
            .unwrap_or_else(|| "unknown".into()),
        cores(run.loadgen_cpu)
    );
    if run.ended > 0 {
        println!(
            "{:<24} {} watchers ended early; first: {}",
            "",
            run.ended,
            run.first_end.as_deref().unwrap_or("")
        );
    }
}
