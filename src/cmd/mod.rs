//! The command line: one module per command, each holding its clap arguments, their
//! conversion into the library's typed config, the library call and the printed summary.
//! Flags shared by several commands are defined once ([`read::ReadArgs`],
//! [`connect::ConnectArgs`], the global `--quiet` / `--log-format`) and flattened in.
//!
//! This is the program's edge: the only place that prints and the only user of `anyhow`;
//! everything it calls returns typed errors.

pub mod check;
pub mod completions;
pub mod connect;
pub mod delete;
pub mod events;
pub mod export;
pub mod fields;
pub mod import;
pub mod read;
pub mod reconcile;
pub mod sandbox;
pub mod undo;
pub mod validate;

use crate::{Error, Exit};
use clap::{Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  all good
  1  finished, but some rows were rejected or failed
  2  usage or configuration error (nothing was done)
  3  aborted (I/O failure, credentials refused, …)";

/// Move customer bases in and out of helpdesk platforms (Omnidesk, Udesk).
#[derive(Debug, Parser)]
#[command(name = "deskport", version, about, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// No progress bar and no summary on stderr (errors are still printed).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Format of the summary and messages on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// How summaries and errors are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line, for schedulers and log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check and normalize a customer file; write the clean rows, the rejects and a report.
    #[command(after_help = EXIT_CODES)]
    Validate(validate::ValidateArgs),
    /// Write the valid rows of a file to Omnidesk or Udesk, with a journal so a stopped run resumes.
    #[command(after_help = import::HELP)]
    Import(import::ImportArgs),
    /// Delete exactly the customers an import created (from its journal); resumable.
    #[command(after_help = undo::HELP)]
    Undo(undo::UndoArgs),
    /// Delete (or, on Omnidesk, purge) the customers a file names; dry run, resumable.
    #[command(after_help = delete::HELP)]
    Delete(delete::DeleteArgs),
    /// Add one Omnidesk timeline entry per row (externalEvent), exactly once, resumable.
    #[command(after_help = events::HELP)]
    Events(events::EventsArgs),
    /// Export the platform's customers to CSV or JSONL, with a checkpoint so a stopped export resumes.
    #[command(after_help = export::HELP)]
    Export(export::ExportArgs),
    /// Check that every valid row of a file is on the platform with the same values.
    #[command(after_help = reconcile::HELP)]
    Reconcile(reconcile::ReconcileArgs),
    /// Check an account with read-only calls before a migration: what deskport understood of each reply.
    #[command(after_help = check::HELP)]
    Check(check::CheckArgs),
    /// List the account's custom fields (key, title, type, options, required); save them for --fields.
    #[command(after_help = fields::HELP)]
    Fields(fields::FieldsArgs),
    /// Run the built-in emulated Omnidesk + Udesk server in the foreground.
    #[command(after_long_help = crate::sandbox::DECISIONS)]
    Sandbox(sandbox::SandboxArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) to stdout.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff): `deskport man > deskport.1`, or every command's with --out-dir.
    Man(completions::ManArgs),
}

/// Where a command's messages go: whether to print a summary at all, and in which format.
#[derive(Debug, Clone, Copy)]
pub struct Ui {
    /// `--quiet`: no progress bar and no summary.
    pub quiet: bool,
    /// `--log-format`.
    pub log_format: LogFormat,
}

impl Ui {
    /// Whether a progress bar may be drawn (it is still hidden off a terminal).
    pub fn progress(self) -> bool {
        !self.quiet && self.log_format == LogFormat::Text
    }

    /// Prints the end-of-run summary: the text for people, or one JSON line.
    pub fn summary(self, text: impl FnOnce() -> String, json: impl FnOnce() -> serde_json::Value) {
        if self.quiet {
            return;
        }
        match self.log_format {
            LogFormat::Text => eprint!("{}", text()),
            LogFormat::Json => eprintln!("{}", json()),
        }
    }
}

/// Runs the command the line asks for.
pub fn run(cli: Cli) -> anyhow::Result<Exit> {
    let ui = Ui {
        quiet: cli.quiet,
        log_format: cli.log_format,
    };
    match cli.command {
        Command::Validate(args) => validate::run(args, ui),
        Command::Import(args) => import::run(args, ui),
        Command::Undo(args) => undo::run(args, ui),
        Command::Delete(args) => delete::run(args, ui),
        Command::Events(args) => events::run(args, ui),
        Command::Export(args) => export::run(args, ui),
        Command::Reconcile(args) => reconcile::run(args, ui),
        Command::Check(args) => check::run(args, ui),
        Command::Fields(args) => fields::run(args, ui),
        Command::Sandbox(args) => sandbox::run(args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
    }
}

impl Cli {
    /// The `--log-format` asked for (errors are printed in it too).
    pub fn log_format(&self) -> LogFormat {
        self.log_format
    }
}

/// Prints a command's error in the log format and gives the exit code it stands for. A
/// closed stdout (`deskport … | head`) is not an error.
pub fn report_error(err: &anyhow::Error, log_format: LogFormat) -> Exit {
    if is_broken_pipe(err) {
        return Exit::Ok;
    }
    let exit = err
        .downcast_ref::<Error>()
        .map_or(Exit::Aborted, Error::exit);
    let message = message_of(err);
    match log_format {
        LogFormat::Text => eprintln!("error: {message}"),
        LogFormat::Json => eprintln!(
            "{}",
            serde_json::json!({"level": "error", "message": message, "exit_code": exit as u8})
        ),
    }
    exit
}

/// The error and its causes, each said once (many of our errors already name their cause).
fn message_of(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A library error at the edge: a usage error (exit 2) when its exit says so, else one that
/// aborts (exit 3).
fn failure(exit: Exit, e: impl std::fmt::Display) -> anyhow::Error {
    match exit {
        Exit::Usage => Error::Usage(e.to_string()).into(),
        _ => anyhow::anyhow!(e.to_string()),
    }
}

/// `yes` (`--yes`), or a terminal's "yes" to `question`; without a terminal to ask on,
/// the usage error `refusal`. For commands that delete customers.
pub fn confirm(yes: bool, question: &str, refusal: &str) -> anyhow::Result<bool> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(true);
    }
    if !std::io::stdin().is_terminal() {
        return Err(usage(refusal));
    }
    eprint!("{question} Type yes to go on: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim().eq_ignore_ascii_case("yes"))
}

/// A usage error: exit 2, nothing done.
fn usage(message: impl Into<String>) -> anyhow::Error {
    Error::Usage(message.into()).into()
}

/// A non-negative number of seconds from a flag.
fn seconds(name: &str, value: f64) -> anyhow::Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(value)
        .map_err(|_| usage(format!("{name} must be a non-negative number of seconds")))
}

/// The command tree, for completions and the man page.
fn command() -> clap::Command {
    <Cli as clap::CommandFactory>::command()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let err = anyhow::Error::from(crate::Error::Input(crate::input::InputError::Open {
            path: "x.csv".into(),
            source: io,
        }));
        assert_eq!(
            super::message_of(&err),
            "cannot open input x.csv: No such file"
        );
        let err = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::message_of(&err), "outer: inner");
    }

    #[test]
    fn the_command_line_is_consistent() {
        super::command().debug_assert();
    }
}
