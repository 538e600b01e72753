//! The command line:
//!
//! ```text
//! slr-governor [serve]     serve the API (the default)
//! slr-governor migrate     apply the database migrations and exit
//! slr-governor token       mint a development JWT and its JWKS
//! slr-governor ctl ...     operator jobs against a running server (see `ctl`)
//! slr-governor --version
//! ```
//!
//! Exit codes: 0 ok, 1 failure, 2 bad configuration (`ctl`: 1 the job
//! failed, 2 usage or connection).

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
    /// Operator jobs against a running server over gRPC: sync, ensure the
    /// roles of many instances, list findings, follow an operation
    /// (`slr-governor ctl --help`).
    // Its own parser: the server's options above are no part of it.
    #[command(disable_help_flag = true)]
    Ctl {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            num_args = 0..,
            value_name = "ARGS"
        )]
        args: Vec<std::ffi::OsString>,
    },
}

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> std::process::ExitCode {
    // A client: no configuration, telemetry or database.
    if let Some(Command::Ctl { args }) = cli.command {
        return crate::ctl::run_from(args);
    }
    if let Some(Command::Token(args)) = &cli.command {
        return match crate::auth::mint::run(args) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("slr-governor token: {error:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    // The configuration is read before logging can start (logging needs
    // its format): what reading it logs (a JWKS key skipped, a token
    // file's warning) is held and logged once logging runs.
    let startup = StartupLog::default();
    let resolved =
        tracing::subscriber::with_default(startup.subscriber(), || Config::resolve(&cli.overrides));
    let config = match resolved {
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
    startup.replay();
    let result = runtime.block_on(async {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => crate::server::serve(config).await,
            Command::Migrate => crate::server::migrate(config).await,
            Command::Token(_) | Command::Ctl { .. } => Ok(()),
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

/// What is logged before logging starts, held as text lines.
#[derive(Clone, Default)]
struct StartupLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for StartupLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl StartupLog {
    /// A subscriber that writes into this log (info and above).
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let log = self.clone();
        tracing_subscriber::fmt()
            .with_writer(move || log.clone())
            .with_ansi(false)
            .with_target(false)
            .without_time()
            .with_max_level(tracing::Level::INFO)
            .finish()
    }

    /// Logs what was held, each line at its own level.
    fn replay(&self) {
        let held = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for line in String::from_utf8_lossy(&held).lines() {
            // `LEVEL message key=value...`
            let (level, message) = line.trim().split_once(' ').unwrap_or(("INFO", line));
            let message = message.trim();
            match level {
                "ERROR" => tracing::error!(target: "slr_governor::config", "{message}"),
                "WARN" => tracing::warn!(target: "slr_governor::config", "{message}"),
                _ if !message.is_empty() => {
                    tracing::info!(target: "slr_governor::config", "{message}")
                }
                _ => {}
            }
        }
    }
}
