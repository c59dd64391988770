//! Where a client command connects, with which credentials, and how it
//! prints: the flags every client subcommand of `idreg` and `idreg-bench`
//! shares.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Where a client command connects and how it prints.
#[derive(Args, Debug)]
pub struct ClientArgs {
    /// The node to talk to (host:port).
    #[arg(
        long,
        global = true,
        env = "IDREG_ENDPOINT",
        default_value = "127.0.0.1:50051"
    )]
    pub endpoint: String,
    /// CA that issued the nodes' certificates [default: ./data/pki/peer-ca.crt].
    #[arg(long, global = true, env = "IDREG_CACERT")]
    pub cacert: Option<PathBuf>,
    /// Client certificate (its role is in it) [default: ./data/pki/admin.crt].
    #[arg(long, global = true, env = "IDREG_CERT")]
    pub cert: Option<PathBuf>,
    /// Key of --cert [default: ./data/pki/admin.key].
    #[arg(long, global = true, env = "IDREG_KEY")]
    pub key: Option<PathBuf>,
    /// Plaintext, for a node started with --insecure.
    // Boolish: IDREG_INSECURE_CLIENT=1 (or yes/on/true) works, as users write it.
    #[arg(
        long,
        global = true,
        env = "IDREG_INSECURE_CLIENT",
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub insecure: bool,
    /// How to print results.
    #[arg(long, short, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

/// Where the CLI looks for credentials when none are given: the development
/// PKI that `idreg serve` makes in `./data`.
const DEV_PKI: &str = "data/pki";

impl ClientArgs {
    /// The endpoint with the caller's credentials.
    pub fn target(&self) -> anyhow::Result<idreg_client::Target> {
        use anyhow::Context;
        if self.insecure {
            return Ok(idreg_client::Target::plaintext(&self.endpoint));
        }
        let dev = std::path::Path::new(DEV_PKI);
        let ca = self
            .cacert
            .clone()
            .unwrap_or_else(|| dev.join("peer-ca.crt"));
        let cert = self.cert.clone().unwrap_or_else(|| dev.join("admin.crt"));
        let key = self.key.clone().unwrap_or_else(|| dev.join("admin.key"));
        let tls = idreg_client::ClientTls::from_files(&ca, &cert, &key).with_context(|| {
            "no client credentials: give --cacert, --cert and --key (or IDREG_CACERT, \
             IDREG_CERT, IDREG_KEY); without them the development PKI in ./data/pki is used, \
             which `idreg serve` makes on its first start"
        })?;
        Ok(idreg_client::Target::tls(&self.endpoint, tls))
    }
}
