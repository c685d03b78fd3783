//! `deskport completions SHELL` and `deskport man`: generated from the same clap definitions
//! as the parser, so they never drift from the flags.

use crate::Exit;
use anyhow::Context;
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// `deskport completions`' arguments.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell, e.g. `deskport completions bash > /etc/bash_completion.d/deskport`.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

/// Writes the completion script for the shell to stdout.
pub fn completions(args: CompletionsArgs) -> anyhow::Result<Exit> {
    let mut command = super::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "deskport", &mut script);
    std::io::stdout()
        .write_all(&script)
        .context("writing the completion script")?;
    Ok(Exit::Ok)
}

/// `deskport man`'s arguments.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write one page per command (deskport.1, deskport-import.1, …) into this directory
    /// instead of printing deskport.1 to stdout.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
}

/// Writes the man page (roff) to stdout, or every command's page to `--out-dir`.
pub fn man(args: ManArgs) -> anyhow::Result<Exit> {
    let command = super::command();
    match args.out_dir {
        Some(dir) => std::fs::create_dir_all(&dir)
            .and_then(|()| clap_mangen::generate_to(command, &dir))
            .with_context(|| format!("writing man pages to {}", dir.display()))?,
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(command)
                .render(&mut page)
                .context("rendering the man page")?;
            std::io::stdout()
                .write_all(&page)
                .context("writing the man page")?;
        }
    }
    Ok(Exit::Ok)
}
