use clap::Parser;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let options = hakube_operator::Options::parse();
    if let Err(e) = hakube_operator::run(options).await {
        eprintln!("hakube-operator: {e}");
        std::process::exit(1);
    }
}
