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
    // Generated in memory: clap_complete panics on a failed write.
    let mut script = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "snap", &mut script);
    std::io::Write::write_all(&mut super::stdout(), &script)?;
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
    // One section per subcommand, nested ones (`snap key add`) included.
    let mut todo: Vec<(Vec<String>, clap::Command)> = cmd
        .get_subcommands()
        .filter(|s| s.get_name() != "help")
        .map(|s| (vec![s.get_name().to_string()], s.clone()))
        .collect();
    todo.reverse();
    while let Some((path, sub)) = todo.pop() {
        let name = format!("snap {}", path.join(" "));
        let sub = sub.bin_name(name.clone()).display_name(name);
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
                &format!(".SH \"{}\"\n{about}", path.join(" ").to_uppercase()),
            )
            .replace(".SH OPTIONS", ".SS Options");
        out.extend_from_slice(text.as_bytes());
        let mut children: Vec<_> = sub
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .map(|s| {
                let mut p = path.clone();
                p.push(s.get_name().to_string());
                (p, s.clone())
            })
            .collect();
        children.reverse();
        todo.extend(children);
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
    super::stdout().write_all(text.as_bytes())?;
    Ok(0)
}
