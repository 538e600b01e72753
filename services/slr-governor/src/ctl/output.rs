//! How `ctl` shows things: the result on stdout (text, or one JSON
//! document), progress bars and messages on stderr, and errors with their
//! gRPC code, message and ErrorInfo reason.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};
use prost::Message;
use serde_json::{Value, json};
use slrgov_proto::google::rpc;
use tonic_types::StatusExt;

use super::{CtlError, EXIT_FAILED, EXIT_USAGE};

/// The form of the result on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Lines and tables for people.
    Text,
    /// One JSON document, for scripts.
    Json,
}

/// When progress bars are drawn (on stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// When stderr is a terminal and the output is text.
    Auto,
    /// Always, even into a pipe or a file.
    Always,
    /// Never.
    Never,
}

/// Where bars are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bars {
    Hidden,
    /// The terminal on stderr.
    Terminal,
    /// stderr, whatever it is (`--progress always`).
    Forced,
}

/// The output format and the progress bars of one command.
pub(crate) struct Ui {
    format: OutputFormat,
    bars: Bars,
}

impl Ui {
    pub(crate) fn new(format: OutputFormat, progress: ProgressMode) -> Ui {
        Ui {
            format,
            bars: bars(progress, format, std::io::stderr().is_terminal()),
        }
    }

    /// Whether the result is one JSON document.
    pub(crate) fn json(&self) -> bool {
        self.format == OutputFormat::Json
    }

    /// A progress bar of `len` steps (a spinner until the length is
    /// known: [`set_length`]), labelled `prefix`; hidden when bars are off.
    pub(crate) fn bar(&self, prefix: &str, len: Option<u64>) -> ProgressBar {
        let target = match self.bars {
            Bars::Hidden => ProgressDrawTarget::hidden(),
            Bars::Terminal => ProgressDrawTarget::stderr_with_hz(10),
            Bars::Forced => ProgressDrawTarget::term_like_with_hz(Box::new(Stderr), 10),
        };
        // Styled before it is shown: the default style is never drawn.
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
        bar.set_prefix(prefix.to_owned());
        match len {
            Some(len) => set_length(&bar, len),
            None => bar.set_style(style("{spinner} {prefix} [{elapsed}] {wide_msg}")),
        }
        bar.set_draw_target(target);
        if len.is_none() {
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
        }
        bar
    }

    /// A message for people, on stderr (above a bar, if one is drawn).
    pub(crate) fn note(&self, bar: Option<&ProgressBar>, message: &str) {
        match bar {
            Some(bar) if !bar.is_hidden() => bar.suspend(|| eprintln!("{message}")),
            _ => eprintln!("{message}"),
        }
    }

    /// Prints `value` as the command's JSON document.
    pub(crate) fn print_json(&self, value: &Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "{text}");
        let _ = stdout.flush();
    }

    /// Prints `error` (stderr, and `{"error": ...}` on stdout with JSON
    /// output) and returns the exit code.
    pub(crate) fn report(&self, error: &CtlError) -> u8 {
        match error {
            CtlError::Failed => EXIT_FAILED,
            CtlError::Usage(message) => {
                eprintln!("slr-governor ctl: {message}");
                if self.json() {
                    self.print_json(&json!({"error": {"code": "USAGE", "message": message}}));
                }
                EXIT_USAGE
            }
            CtlError::Refused { what, status } => {
                eprintln!("slr-governor ctl: {what}: {}", describe(status));
                if self.json() {
                    let mut error = status_json(status);
                    error["call"] = json!(what);
                    self.print_json(&json!({ "error": error }));
                }
                if status.code() == tonic::Code::Unauthenticated {
                    EXIT_USAGE
                } else {
                    EXIT_FAILED
                }
            }
        }
    }
}

fn bars(progress: ProgressMode, format: OutputFormat, terminal: bool) -> Bars {
    match progress {
        ProgressMode::Never => Bars::Hidden,
        ProgressMode::Always if terminal => Bars::Terminal,
        ProgressMode::Always => Bars::Forced,
        ProgressMode::Auto if terminal && format == OutputFormat::Text => Bars::Terminal,
        ProgressMode::Auto => Bars::Hidden,
    }
}

/// Turns `bar` into a bar of `len` steps.
pub(crate) fn set_length(bar: &ProgressBar, len: u64) {
    if bar.length() != Some(len) {
        bar.disable_steady_tick();
        bar.set_style(
            style("{prefix} [{bar:30}] {pos}/{len} [{elapsed}] {wide_msg}").progress_chars("=> "),
        );
        bar.set_length(len);
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

/// stderr as indicatif's terminal, drawn even when it is not one.
#[derive(Debug)]
struct Stderr;

impl Stderr {
    fn write(text: &str) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(text.as_bytes())
    }
}

impl TermLike for Stderr {
    fn width(&self) -> u16 {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            // No terminal to fit: room for the longest line.
            .unwrap_or(200)
    }

    fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        Self::write(&format!("\x1b[{n}A"))
    }

    fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        Self::write(&format!("\x1b[{n}B"))
    }

    fn move_cursor_right(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        Self::write(&format!("\x1b[{n}C"))
    }

    fn move_cursor_left(&self, n: usize) -> std::io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        Self::write(&format!("\x1b[{n}D"))
    }

    fn write_line(&self, s: &str) -> std::io::Result<()> {
        Self::write(&format!("{s}\n"))
    }

    fn write_str(&self, s: &str) -> std::io::Result<()> {
        Self::write(s)
    }

    fn clear_line(&self) -> std::io::Result<()> {
        Self::write("\r\x1b[2K")
    }

    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The canonical name of a gRPC code, e.g. `PERMISSION_DENIED`.
pub(crate) fn code_name(code: i32) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// The ErrorInfo reason of a status, if it carries one.
pub(crate) fn reason(status: &tonic::Status) -> Option<String> {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .filter(|r| !r.is_empty())
}

/// `CODE: message (reason REASON)`.
pub(crate) fn describe(status: &tonic::Status) -> String {
    line(
        code_name(status.code() as i32),
        status.message(),
        reason(status),
    )
}

/// `{"code", "message", "reason"}` of a status.
pub(crate) fn status_json(status: &tonic::Status) -> Value {
    json!({
        "code": code_name(status.code() as i32),
        "message": status.message(),
        "reason": reason(status),
    })
}

/// The ErrorInfo of a `google.rpc.Status` (an operation's error).
fn error_info(status: &rpc::Status) -> Option<rpc::ErrorInfo> {
    status
        .details
        .iter()
        .find(|any| any.type_url == "type.googleapis.com/google.rpc.ErrorInfo")
        .and_then(|any| rpc::ErrorInfo::decode(any.value.as_slice()).ok())
}

/// `CODE: message (reason REASON)` of an operation's error.
pub(crate) fn describe_rpc(status: &rpc::Status) -> String {
    line(
        code_name(status.code),
        &status.message,
        error_info(status).map(|i| i.reason),
    )
}

/// `{"code", "message", "reason", "metadata"}` of an operation's error.
pub(crate) fn rpc_status_json(status: &rpc::Status) -> Value {
    let info = error_info(status);
    json!({
        "code": code_name(status.code),
        "message": status.message,
        "reason": info.as_ref().map(|i| i.reason.clone()),
        "metadata": info.map(|i| i.metadata).unwrap_or_default(),
    })
}

fn line(code: &str, message: &str, reason: Option<String>) -> String {
    match reason {
        Some(reason) if !reason.is_empty() => format!("{code}: {message} (reason {reason})"),
        _ => format!("{code}: {message}"),
    }
}

/// An RFC 3339 time, or null.
pub(crate) fn time(t: Option<&prost_types::Timestamp>) -> Value {
    t.map_or(Value::Null, |t| json!(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn when_bars_are_drawn() {
        use OutputFormat::{Json, Text};
        use ProgressMode::{Always, Auto, Never};
        assert_eq!(bars(Auto, Text, true), Bars::Terminal);
        assert_eq!(bars(Auto, Json, true), Bars::Hidden);
        assert_eq!(bars(Auto, Text, false), Bars::Hidden);
        assert_eq!(bars(Always, Json, false), Bars::Forced);
        assert_eq!(bars(Always, Text, true), Bars::Terminal);
        assert_eq!(bars(Never, Text, true), Bars::Hidden);
    }

    #[test]
    fn statuses_read_with_their_reason() {
        let mut details = tonic_types::ErrorDetails::new();
        details.set_error_info("ROLE_IN_USE", "slrgov.v1", std::collections::HashMap::new());
        let status =
            tonic::Status::with_error_details(tonic::Code::FailedPrecondition, "in use", details);
        assert_eq!(
            describe(&status),
            "FAILED_PRECONDITION: in use (reason ROLE_IN_USE)"
        );
        assert_eq!(status_json(&status)["reason"], "ROLE_IN_USE");
        assert_eq!(
            describe(&tonic::Status::not_found("gone")),
            "NOT_FOUND: gone"
        );
        assert_eq!(
            status_json(&tonic::Status::not_found("gone"))["reason"],
            Value::Null
        );
        let info = rpc::ErrorInfo {
            reason: "ROLE_IN_USE".into(),
            domain: "slrgov.v1".into(),
            metadata: [("role_usage.us-east-1".to_owned(), "x".to_owned())].into(),
        };
        let op_error = rpc::Status {
            code: 9,
            message: "in use".into(),
            details: vec![slrgov_proto::to_any(&info)],
        };
        assert_eq!(
            describe_rpc(&op_error),
            "FAILED_PRECONDITION: in use (reason ROLE_IN_USE)"
        );
        assert_eq!(
            rpc_status_json(&op_error)["metadata"]["role_usage.us-east-1"],
            "x"
        );
    }

    #[test]
    fn code_names() {
        assert_eq!(
            code_name(tonic::Code::PermissionDenied as i32),
            "PERMISSION_DENIED"
        );
        assert_eq!(
            code_name(tonic::Code::Unauthenticated as i32),
            "UNAUTHENTICATED"
        );
        assert_eq!(code_name(99), "UNKNOWN");
    }
}
