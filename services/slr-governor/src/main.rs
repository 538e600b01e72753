//! `slr-governor`: a gRPC service that governs the IAM service-linked roles
//! of Amazon Connect instances across many AWS accounts. The binary only
//! parses its arguments; everything else is the library
//! (`slr_governor::cli::run`).

use clap::Parser;

fn main() -> std::process::ExitCode {
    slr_governor::cli::run(slr_governor::cli::Cli::parse())
}
