//! Human output of names that come from a repository, a user or the file
//! system (host names, tags, descriptions, paths, link targets).

use std::borrow::Cow;
use std::fmt::Write;

/// `s` with terminal control characters escaped, for human (not JSON)
/// output: C0 controls and DEL as `\n`, `\t`, `\r` or `\xHH`; C1 controls
/// and the Unicode bidirectional overrides/isolates (which reorder the
/// rest of a line) as `\u{HHHH}`. Everything else, including other
/// non-ASCII text, is unchanged; a string without such characters is
/// returned as is.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The first 8 characters of an object name for display (a short id); a
/// name listed from the repository may be shorter or not ASCII, so this
/// never slices inside a character.
pub fn short(name: &str) -> String {
    name.chars().take(8).collect()
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_controls_only() {
        assert_eq!(escape("plain/päth"), "plain/päth");
        assert_eq!(escape("a\x1b[31mred\x07"), "a\\x1b[31mred\\x07");
        assert_eq!(escape("l1\nl2\tx\r"), "l1\\nl2\\tx\\r");
        assert_eq!(escape("\u{9b}2J\u{202e}txt"), "\\u{009b}2J\\u{202e}txt");
        assert_eq!(escape("\x7f"), "\\x7f");
    }
}
