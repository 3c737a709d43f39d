//! `snap completions SHELL` and `snap man`: generated from the clap
//! definitions with `clap_complete` and `clap_mangen`.

use super::Cli;
use anyhow::Result;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// Shell to generate for.
    shell: Shell,
}

/// Writes the completion script for `a.shell` to stdout.
pub fn run(a: &CompletionsArgs) -> Result<u8> {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "snap", &mut std::io::stdout());
    Ok(0)
}

/// Writes the man page (section 1, roff) to stdout, with one section per subcommand.
pub fn man() -> Result<u8> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("snap {}", sub.get_name());
        let sub = sub.clone().bin_name(name.clone()).display_name(name);
        let m = clap_mangen::Man::new(sub.clone());
        let mut page = Vec::new();
        m.render_synopsis_section(&mut page)?;
        m.render_options_section(&mut page)?;
        let about = sub
            .get_about()
            .map(|a| format!("{a}\n.PP\n"))
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&page)
            .replace(
                ".SH SYNOPSIS\n",
                &format!(".SH \"{}\"\n{about}", sub.get_name().to_uppercase()),
            )
            .replace(".SH OPTIONS", ".SS Options");
        out.extend_from_slice(text.as_bytes());
    }
    man.render_extra_section(&mut out)?;
    man.render_version_section(&mut out)?;
    man.render_authors_section(&mut out)?;
    // Each render_* call starts with the same roff preamble; keep the first.
    let mut seen = std::collections::HashSet::new();
    let text: String = String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| {
            !(l.starts_with(".ie \\n(.g") || l.starts_with(".el .ds")) || seen.insert(l.to_string())
        })
        .map(|l| format!("{l}\n"))
        .collect();
    use std::io::Write;
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(0)
}
