//! `slr-governor`: a gRPC service that governs the IAM service-linked roles
//! of Amazon Connect instances across many AWS accounts.
//!
//! ```text
//! slr-governor [serve]     serve the API (the default)
//! slr-governor migrate     apply the database migrations and exit
//! slr-governor token       mint a development JWT and its JWKS
//! slr-governor --version
//! ```

mod admission;
mod api;
mod auth;
mod caller;
mod config;
mod convert;
mod env;
mod lifecycle;
mod mask;
mod regions;
mod server;
mod status;
mod telemetry;
mod worker;

use crate::config::{Config, Overrides};
use clap::{Parser, Subcommand};

/// Governs the IAM service-linked roles of Amazon Connect instances.
#[derive(Debug, Parser)]
#[command(name = "slr-governor", version, about)]
struct Cli {
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
    Token(Box<auth::mint::TokenArgs>),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Token(args)) = &cli.command {
        return match auth::mint::run(args) {
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
        match telemetry::Telemetry::init(config.log_format) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                eprintln!("slr-governor: {error}");
                return std::process::ExitCode::from(2);
            }
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => server::serve(config).await,
            Command::Migrate => server::migrate(config).await,
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
#[cfg(test)]
mod proptests;
