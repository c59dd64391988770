//! The idreg binary: `idreg serve` runs a node; `idreg device …` talks to one.

mod ca_cmd;
mod cli;
mod closable_io;
mod cluster_cmd;
mod device_cmd;
mod firmware_cmd;
mod firmware_release_cmd;
mod group_cmd;
mod import_cmd;
mod initial_cluster;
mod k8s;
mod kek_file;
mod metrics_http;
mod node_metrics;
mod output;
mod pki;
mod private_file;
mod rl_cmd;
mod serve;
mod serve_config;
mod serve_tls;
mod session_cmd;
mod tenant_cmd;
mod time_arg;

use clap::Parser;

/// mimalloc, not glibc malloc: a server's tasks allocate on one worker
/// thread and free on another, which glibc pays for in arena locks and
/// consolidation (a quarter of the leader's CPU at 100 writers).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    if let cli::Commands::Serve(args) = cli.command {
        // The node's settings choose its runtime's size: resolved first.
        return serve::main(*args);
    }
    idreg::run_command(async move {
        match cli.command {
            cli::Commands::Serve(_) => unreachable!("served above"),
            cli::Commands::Device { client, command } => {
                device_cmd::run(&client.target()?, client.output, command).await
            }
            cli::Commands::Session { client, command } => {
                session_cmd::run(&client.target()?, client.output, command).await
            }
            cli::Commands::Cluster { client, command } => {
                let target = match command.needs_client_credentials() {
                    true => client.target()?,
                    false => idreg_client::Target::plaintext(&client.endpoint),
                };
                cluster_cmd::run(&target, client.output, command).await
            }
            cli::Commands::EnrollmentGroup { client, command } => {
                group_cmd::run(&client.target()?, client.output, command).await
            }
            cli::Commands::Firmware { client, command } => {
                firmware_cmd::run(&client.target()?, client.output, command).await
            }
            cli::Commands::Tenant { client, command } => {
                tenant_cmd::run(&client.target()?, client.output, command).await
            }
            cli::Commands::Rl { client, command } => match command {
                cli::RlCommand::Verify { file, key } => rl_cmd::verify(&file, &key, client.output),
                command => rl_cmd::run(&client.target()?, client.output, command).await,
            },
            cli::Commands::Ca { client, command } => {
                ca_cmd::run(&client.target()?, client.output, command).await
            }
            cli::Commands::Pki { command } => pki::run(command),
        }
    })
}
