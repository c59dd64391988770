//! What the `idreg` and `idreg-bench` binaries share: how a command-line
//! client picks its node and credentials and prints, and a process's CPU
//! and memory read from /proc, and how a command runs and exits.

pub mod client_args;
pub mod proc_sample;

/// Runs a command's future on a multi-threaded runtime and turns its
/// outcome into the exit code, the error printed whole.
pub fn run_command(
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    run_command_on(None, command)
}

/// As [`run_command`], on `threads` worker threads (`None`: tokio's
/// default, one per CPU).
pub fn run_command_on(
    threads: Option<usize>,
    command: impl std::future::Future<Output = anyhow::Result<()>>,
) -> std::process::ExitCode {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
