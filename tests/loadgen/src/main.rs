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
    use hakube_loadgen::{run_apiserver, run_etcd, EtcdWrite};
    let (c, size) = (args.concurrency, args.size);
    let put = run_etcd(&args.etcd, EtcdWrite::Put, c, duration, size, &run_id).await;
    let txn = run_etcd(&args.etcd, EtcdWrite::CreateTxn, c, duration, size, &run_id).await;
    let api = run_apiserver(&target, c, duration, size, &run_id).await;
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
                    o.p50.as_secs_f64() * 1e3,
                    o.p99.as_secs_f64() * 1e3,
                    o.writes,
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
