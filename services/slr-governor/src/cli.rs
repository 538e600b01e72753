//! The command line:
//!
//! ```text
//! slr-governor [serve]     serve the API (the default)
//! slr-governor migrate     apply the database migrations and exit
//! slr-governor token       mint a development JWT and its JWKS
//! slr-governor --version
//! ```
//!
//! Exit codes: 0 ok, 1 failure, 2 bad configuration.

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides};

/// Governs the IAM service-linked roles of Amazon Connect instances.
#[derive(Debug, Parser)]
#[command(name = "slr-governor", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gRPC API (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Mint a signed JWT from a local private key (created when missing),
    /// for development: prints the token, and writes the matching JWKS.
    Token(Box<crate::auth::mint::TokenArgs>),
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> std::process::ExitCode {
    if let Some(Command::Token(args)) = &cli.command {
        return match crate::auth::mint::run(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("slr-governor token: {error:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    let config = match Config::resolve(&cli.overrides) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("slr-governor: {error:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("slr-governor: cannot start the runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    // Logs, and the OTLP exporters (whose channels live on the runtime).
    let telemetry = {
        let _runtime = runtime.enter();
        match crate::telemetry::Telemetry::init(config.log_format) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("slr-governor: {error}");
                return std::process::ExitCode::from(2);
            }
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => crate::server::serve(config).await,
            Command::Migrate => crate::server::migrate(config).await,
            Command::Token(_) => Ok(()),
        }
    });
    // Export what is still buffered while the runtime still runs.
    telemetry.shutdown();
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
