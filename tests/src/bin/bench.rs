//! `bench <login|list|cache|enrichment|coldstart|latency>`: the benchmarks behind `make bench-*`
//! (`e2e::bench`). Run through the make targets: scripts/bench.sh starts the services each
//! needs and builds the functions beside this binary first.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match e2e::bench::run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
