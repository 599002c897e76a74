use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Measures create throughput of hakube-apiserver and of raw etcd in one run.
#[derive(Parser)]
struct Args {
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
    /// The etcd the API server writes to, for the raw comparison.
    #[arg(long)]
    etcd: String,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// The run is split into this many rounds of each load, taken in turn.
    #[arg(long, default_value_t = 4)]
    rounds: u32,
}

fn add(
    total: Result<hakube_loadgen::Outcome, hakube_loadgen::LoadError>,
    round: Result<hakube_loadgen::Outcome, hakube_loadgen::LoadError>,
) -> Result<hakube_loadgen::Outcome, hakube_loadgen::LoadError> {
    Ok(total?.merge(round?))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let duration = Duration::from_secs(args.seconds);
    let run_id = format!("r{}", std::process::id());
    let target = hakube_loadgen::ApiTarget {
        host: &args.host,
        port: args.port,
        ca: &args.ca,
        cert: &args.cert,
        key: &args.key,
    };
    use hakube_loadgen::{run_apiserver, run_etcd, EtcdWrite, Outcome};
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
            run_etcd(&args.etcd, EtcdWrite::Put, c, round, size, &id).await,
        );
        txn = add(
            txn,
            run_etcd(&args.etcd, EtcdWrite::CreateTxn, c, round, size, &id).await,
        );
        api = add(api, run_apiserver(&target, c, round, size, &id).await);
    }
    match (put, txn, api) {
        (Ok(put), Ok(txn), Ok(api)) => {
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
            std::process::ExitCode::SUCCESS
        }
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("load run failed: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
