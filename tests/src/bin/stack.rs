//! `stack admin ENDPOINT | stack serve`: the deployed shape on 127.0.0.1 (`e2e::stack`), behind
//! `make stack` and the stack of `make test`; scripts/lib.sh starts the stand-ins it needs.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match e2e::stack::cli::run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
