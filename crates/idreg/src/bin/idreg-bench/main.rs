//! `idreg-bench`: load generators for idreg nodes (and, where a benchmark
//! compares, for libcoap and etcd), kept out of the `idreg` binary that
//! operators run. Each run is bounded in count and time and prints
//! throughput, latency percentiles and the server's CPU per operation.

mod bench;
mod bench_device;
mod bench_enroll;
mod bench_firmware;
mod bench_import;
mod bench_observe;
mod bench_report;
mod bench_revoke;
mod bench_rl;
mod cli;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let cli::Cli { client, command } = cli;
    idreg::run_command(async move {
        match command {
            // In process: no server, no client credentials.
            cli::BenchCommand::RlSize { .. } | cli::BenchCommand::FwReport { .. } => {
                bench::run_local(client.output, command).await
            }
            command => bench::run(&client.target()?, client.output, command).await,
        }
    })
}
