//! The documentation cannot drift from the program: every `snap …` command
//! shown in `README.md` and `docs/*.md` (fenced `sh`/`bash`/`cron` blocks and
//! inline code spans) must parse with today's command line, and every
//! `snap.toml` shown must load as a profile file. What the commands *do* is
//! run by `tests/docs.rs` (the README's Quick start) and the recipe tests.

use clap::Parser;
use std::path::{Path, PathBuf};

/// One documented command: where it stands and its words after `snap`.
#[derive(Debug)]
struct DocCommand {
    place: String,
    words: Vec<String>,
    /// From an inline code span in prose, which may name a command without
    /// its required arguments (`snap run`, `snap restore ID --pg`).
    fragment: bool,
}

/// The markdown files the project ships.
fn doc_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    files
}

/// Splits one shell line into commands (at `|`, `||`, `&&`, `;`) and keeps
/// those that run `snap`, without redirections, `sudo` or variable
/// assignments in front.
fn snap_commands(line: &str) -> Result<Vec<Vec<String>>, String> {
    let words = shell_words::split(line).map_err(|e| format!("{e}: {line}"))?;
    let words: Vec<String> = words
        .into_iter()
        .take_while(|w| !w.starts_with('#'))
        .collect();
    let mut out = Vec::new();
    for seg in words.split(|w| ["|", "||", "&&", ";"].contains(&w.as_str())) {
        let mut it = seg.iter().peekable();
        while let Some(w) = it.peek() {
            let is_assignment = w.split_once('=').is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c == '_' || c.is_ascii_alphanumeric())
            });
            if *w == "sudo" || *w == "exec" || is_assignment {
                it.next();
            } else {
                break;
            }
        }
        if it.next().map(String::as_str) != Some("snap") {
            continue;
        }
        let mut args = Vec::new();
        let mut skip_next = false;
        for w in it {
            if skip_next {
                skip_next = false;
                continue;
            }
            let redirect = ["<", ">", ">>", "2>", "2>>", "&>"];
            if redirect.contains(&w.as_str()) {
                skip_next = true;
                continue;
            }
            if w.starts_with('>')
                || w.starts_with('<')
                || w.starts_with("2>")
                || w.starts_with("&>")
            {
                continue;
            }
            args.push(w.clone());
        }
        out.push(args);
    }
    Ok(out)
}

/// A word of a synopsis rather than of a command: alternatives such as
/// `bash|zsh|fish`, `--add/--remove/--set` or `list/add/remove`.
fn is_synopsis(word: &str) -> bool {
    word.contains('|')
        || (word.starts_with("--") && word.contains('/') && !word.contains('='))
        || (word.contains('/') && word.chars().all(|c| c.is_ascii_lowercase() || c == '/'))
}

/// Every documented command, and every documented `snap.toml` (heredoc
/// bodies written to a `.toml` file and fenced `toml` blocks that hold a
/// `[profile.…]` or `[repository.…]` table).
fn collect() -> (Vec<DocCommand>, Vec<(String, String)>) {
    let mut cmds = Vec::new();
    let mut tomls = Vec::new();
    for file in doc_files() {
        let text = std::fs::read_to_string(&file).expect("doc file is readable");
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let mut fence: Option<String> = None;
        let mut heredoc: Option<(String, bool, usize, String)> = None;
        let mut pending = String::new();
        let mut pending_at = 0;
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            if let Some((end, is_toml, at, body)) = &mut heredoc {
                if line.trim() == end.as_str() {
                    if *is_toml {
                        tomls.push((format!("{name}:{at}"), std::mem::take(body)));
                    }
                    heredoc = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
                continue;
            }
            if let Some(rest) = line.trim_start().strip_prefix("```") {
                match &fence {
                    None => {
                        fence = Some(rest.trim().to_string());
                        if rest.trim() == "toml" {
                            tomls.push((format!("{name}:{n}"), String::new()));
                        }
                    }
                    Some(_) => fence = None,
                }
                continue;
            }
            match fence.as_deref() {
                Some("toml") => {
                    let last = tomls.last_mut().unwrap();
                    last.1.push_str(line);
                    last.1.push('\n');
                }
                Some("sh" | "bash" | "cron" | "") => {
                    if pending.is_empty() {
                        pending_at = n;
                    }
                    if let Some(cont) = line.strip_suffix('\\') {
                        pending.push_str(cont);
                        pending.push(' ');
                        continue;
                    }
                    pending.push_str(line);
                    let full = std::mem::take(&mut pending);
                    if let Some(pos) = full.find("<<") {
                        let end = full[pos + 2..]
                            .trim_start_matches('-')
                            .trim()
                            .trim_matches(['\'', '"'])
                            .split_whitespace()
                            .next()
                            .unwrap_or("EOF")
                            .to_string();
                        heredoc = Some((end, full.contains(".toml"), pending_at, String::new()));
                    }
                    let line = full.split("<<").next().unwrap_or("");
                    for words in
                        snap_commands(line).unwrap_or_else(|e| panic!("{name}:{pending_at}: {e}"))
                    {
                        cmds.push(DocCommand {
                            place: format!("{name}:{pending_at}"),
                            words,
                            fragment: false,
                        });
                    }
                }
                Some(_) => {}
                None => {
                    // Inline code spans that are commands, not synopses.
                    for (k, span) in line.split('`').enumerate() {
                        let synopsis = ['[', '…', '<'].iter().any(|c| span.contains(*c))
                            || span.contains("...");
                        if k % 2 == 1 && span.starts_with("snap ") && !synopsis {
                            for words in snap_commands(span).unwrap_or_default() {
                                if words.iter().any(|w| is_synopsis(w)) {
                                    continue;
                                }
                                cmds.push(DocCommand {
                                    place: format!("{name}:{n}"),
                                    words,
                                    fragment: true,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
    tomls.retain(|(_, body)| body.contains("[profile.") || body.contains("[repository."));
    (cmds, tomls)
}

#[test]
fn every_documented_command_parses() {
    let (cmds, _) = collect();
    assert!(
        cmds.len() > 50,
        "found only {} documented commands",
        cmds.len()
    );
    let mut bad = Vec::new();
    for c in &cmds {
        let argv = std::iter::once("snap".to_string()).chain(c.words.iter().cloned());
        if let Err(e) = super::Cli::try_parse_from(argv) {
            use clap::error::ErrorKind as K;
            let shown = matches!(e.kind(), K::DisplayHelp | K::DisplayVersion);
            // A fragment may leave out required arguments or a last value.
            let incomplete = c.fragment
                && (matches!(e.kind(), K::MissingRequiredArgument)
                    || e.to_string().contains("but none was supplied"));
            if !shown && !incomplete {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                bad.push(format!("{}: snap {}: {first}", c.place, c.words.join(" ")));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "documented commands that do not parse:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_documented_profile_file_loads() {
    let (_, tomls) = collect();
    assert!(!tomls.is_empty(), "no snap.toml found in the docs");
    for (place, body) in &tomls {
        crate::cli::profile::Config::parse(body, Path::new(place))
            .unwrap_or_else(|e| panic!("{place}: documented snap.toml does not load: {e}"));
    }
}
