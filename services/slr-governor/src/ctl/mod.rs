//! `slr-governor ctl`: the jobs operators repeat, run against a running
//! server over gRPC with the same credentials as any client (a bearer
//! token, TLS, mTLS). Nothing here starts the server's telemetry or opens
//! its database: `ctl` is a client.
//!
//! ```text
//! slr-governor ctl sync <account|accounts/->           SyncInstances, followed to the end
//! slr-governor ctl ensure-roles <account|accounts/->   EnsureLinkedRole of every instance
//!                  [--batch]                           ... as one server-side BatchEnsureLinkedRoles
//! slr-governor ctl findings <account|accounts/->       InspectLinkedRole of every instance
//!                  [--stored]                          ... or the reconciler's stored findings
//! slr-governor ctl operation <name> [--wait]           GetOperation / WaitOperation
//! ```
//!
//! `--output json` prints one JSON document on stdout (a refusal too, as
//! `{"error": {...}}`); progress bars and human messages go to stderr.
//!
//! Exit codes ([`EXIT_FAILED`], [`EXIT_USAGE`]): 0 the job succeeded; 1 the
//! job failed (a call was refused, an operation ended with an error, an
//! instance's ensure or inspection failed, a region could not be synced);
//! 2 usage or connection: bad arguments, an unreadable token or TLS file,
//! the server unreachable, or the credentials refused (UNAUTHENTICATED).

mod batch;
mod client;
mod ensure;
mod findings;
mod operation;
mod output;
mod stored;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::env;

pub use output::{OutputFormat, ProgressMode};

/// The job failed: a refusal, a failed operation, failed instances.
pub const EXIT_FAILED: u8 = 1;
/// Usage or connection: bad arguments or files, no connection, the
/// credentials refused.
pub const EXIT_USAGE: u8 = 2;

/// The arguments of `slr-governor ctl`: a parser of its own, so that the
/// server's options stay out of it.
#[derive(Debug, Parser)]
#[command(
    name = "slr-governor ctl",
    bin_name = "slr-governor ctl",
    version,
    about = "Operator jobs against a running slr-governor over gRPC.",
    after_help = "Exit codes: 0 the job succeeded; 1 the job failed (a refused call, a failed \
                  operation, an instance that failed); 2 usage or connection (bad arguments or \
                  files, the server unreachable, UNAUTHENTICATED)."
)]
pub struct CtlArgs {
    #[command(flatten)]
    global: Global,

    #[command(subcommand)]
    command: CtlCommand,
}

/// What every `ctl` command takes: where the server is, and how to show
/// the result.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The server, `http://host:port` or `https://host:port`.
    #[arg(long, env = env::CTL_SERVER, default_value = "http://127.0.0.1:50051", global = true)]
    pub server: String,

    /// A bearer token (JWT or static), sent as `authorization: Bearer`.
    /// Prefer --token-file: a command line is visible to other users.
    #[arg(long, env = env::CTL_TOKEN, hide_env_values = true, global = true)]
    pub token: Option<String>,

    /// A file holding the bearer token (surrounding whitespace ignored);
    /// wins over --token.
    #[arg(long, env = env::CTL_TOKEN_FILE, value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,

    /// The CA certificate (PEM) that signed the server's certificate;
    /// required with an https:// server.
    #[arg(long, env = env::CTL_CA, value_name = "PEM", global = true)]
    pub ca: Option<PathBuf>,

    /// A client certificate (PEM) for mTLS; needs --key.
    #[arg(long, env = env::CTL_CERT, value_name = "PEM", global = true)]
    pub cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(long, env = env::CTL_KEY, value_name = "PEM", global = true)]
    pub key: Option<PathBuf>,

    /// The name the server's certificate must hold, when it is not the
    /// host of --server.
    #[arg(long, value_name = "NAME", global = true)]
    pub tls_server_name: Option<String>,

    /// `text` for people, `json` for scripts (one document on stdout).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text, global = true)]
    pub output: OutputFormat,

    /// Progress bars on stderr: `auto` when stderr is a terminal and the
    /// output is text.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto, global = true)]
    pub progress: ProgressMode,

    /// The longest one call may take, e.g. `90s` (an ensure may wait 45 s
    /// for another one of the same instance).
    #[arg(long, default_value = "2m", value_parser = duration, global = true)]
    pub timeout: std::time::Duration,
}

fn duration(value: &str) -> Result<std::time::Duration, String> {
    crate::units::parse_duration(value).map_err(|e| e.to_string())
}

#[derive(Debug, Subcommand)]
enum CtlCommand {
    /// Discover the instances of an account (or `accounts/-`) from Amazon
    /// Connect: SyncInstances, followed to its end.
    Sync(sync::SyncArgs),
    /// Ensure the linked role of every instance of an account (or
    /// `accounts/-`), one EnsureLinkedRole each; goes on past failures.
    EnsureRoles(ensure::EnsureArgs),
    /// Inspect the linked role of every instance and list the findings.
    Findings(findings::FindingsArgs),
    /// Show a long-running operation; `--wait` follows it to its end.
    Operation(operation::OperationArgs),
}

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum CtlError {
    /// Bad arguments or files, or no connection ([`EXIT_USAGE`]).
    Usage(String),
    /// The server refused a call (`what` names it).
    Refused { what: String, status: tonic::Status },
    /// The job ran and failed; what failed is printed already.
    Failed,
}

impl CtlError {
    pub(crate) fn refused(what: impl Into<String>, status: tonic::Status) -> CtlError {
        CtlError::Refused {
            what: what.into(),
            status,
        }
    }
}

/// Parses `args` (what follows `slr-governor ctl`) and runs the command.
pub fn run_from(args: Vec<std::ffi::OsString>) -> ExitCode {
    let argv = std::iter::once(std::ffi::OsString::from("slr-governor ctl")).chain(args);
    match CtlArgs::try_parse_from(argv) {
        Ok(args) => run(args),
        Err(error) => {
            // Help and version to stdout (0), usage errors to stderr (2).
            let _ = error.print();
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE))
        }
    }
}

/// Runs `slr-governor ctl` on a runtime of its own.
pub fn run(args: CtlArgs) -> ExitCode {
    let ui = output::Ui::new(args.global.output, args.global.progress);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("slr-governor ctl: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = runtime.block_on(async {
        let client = client::Client::connect(&args.global).await?;
        match &args.command {
            CtlCommand::Sync(a) => sync::run(&client, &ui, a).await,
            CtlCommand::EnsureRoles(a) => ensure::run(&client, &ui, a).await,
            CtlCommand::Findings(a) => findings::run(&client, &ui, a).await,
            CtlCommand::Operation(a) => operation::run(&client, &ui, a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => ExitCode::from(ui.report(&error)),
    }
}

/// `accounts/{id}` from `{id}`, `accounts/{id}`, `-` or `accounts/-`.
pub(crate) fn parent(account: &str) -> String {
    let account = account.trim();
    if account.starts_with("accounts/") {
        account.to_owned()
    } else {
        format!("accounts/{account}")
    }
}

/// `operations/{id}` from `{id}` or `operations/{id}`.
pub(crate) fn operation_name(name: &str) -> String {
    let name = name.trim();
    if name.starts_with("operations/") {
        name.to_owned()
    } else {
        format!("operations/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line() {
        use clap::CommandFactory;
        CtlArgs::command().debug_assert();
        let args = CtlArgs::try_parse_from([
            "slr-governor ctl",
            "ensure-roles",
            "-",
            "--filter",
            "linked_role_state = ABSENT",
            "--output",
            "json",
            "--progress",
            "always",
            "--server",
            "https://governor:443",
        ])
        .expect("globals after the command");
        assert_eq!(args.global.output, OutputFormat::Json);
        assert_eq!(args.global.progress, ProgressMode::Always);
        assert_eq!(args.global.server, "https://governor:443");
        assert!(matches!(args.command, CtlCommand::EnsureRoles(_)));
        let error = CtlArgs::try_parse_from(["slr-governor ctl", "sync"]).expect_err("no account");
        assert_eq!(error.exit_code(), i32::from(EXIT_USAGE));
        let error = CtlArgs::try_parse_from(["slr-governor ctl", "--output", "yaml", "sync", "-"])
            .expect_err("no such output");
        assert_eq!(error.exit_code(), i32::from(EXIT_USAGE));
    }

    #[test]
    fn parents_and_operation_names() {
        assert_eq!(parent("123456789012"), "accounts/123456789012");
        assert_eq!(parent("accounts/123456789012"), "accounts/123456789012");
        assert_eq!(parent("-"), "accounts/-");
        assert_eq!(parent(" accounts/- "), "accounts/-");
        assert_eq!(operation_name("abc"), "operations/abc");
        assert_eq!(operation_name("operations/abc"), "operations/abc");
    }
}
