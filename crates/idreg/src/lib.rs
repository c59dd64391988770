//! What the `idreg` and `idreg-bench` binaries share: how a command-line
//! client picks its node and credentials and prints, and a process's CPU
//! and memory read from /proc.

pub mod client_args;
pub mod proc_sample;
