use clap::Parser;

#[tokio::main]
async fn main() {
    let cli = hakube::Cli::parse();
    if let Err(e) = hakube::run(cli).await {
        eprintln!("hakube: {e}");
        std::process::exit(1);
    }
}
