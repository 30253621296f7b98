//! Untrusted text made safe to print on a terminal.
//!
//! Strings that came from upstreams, clients or files (evidence records, their re-check
//! verdicts, parse errors quoting bad lines) may hold escape sequences that move the cursor,
//! rewrite the screen or the window title, or Unicode format characters that reorder or hide
//! what is shown. Printed, they can make a record look like something else. Every such string
//! goes through [`printable`] (text) or [`printable_json`] (JSON text) first.

use std::fmt::Write as _;

/// Whether `c` must not reach a terminal as it is: C0 and C1 control characters and DEL, and
/// the Unicode format characters that reorder or hide text (bidirectional overrides and
/// isolates, zero-width characters, line and paragraph separators, the BOM, interlinear
/// annotation marks).
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
        )
}

/// `s` with every unsafe character written as `\u{..}` (its code point in hex) and `\` as
/// `\\`, so that what is printed is what is stored, unambiguously.
pub(crate) fn printable(s: &str) -> String {
    if !s.chars().any(|c| c == '\\' || unsafe_char(c)) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// JSON text (as serde_json writes it, which escapes C0 controls already) with every other
/// unsafe character written as a `\uXXXX` escape: still valid JSON with the same value. Such
/// characters only occur inside strings, where the escape means the same character.
pub(crate) fn printable_json(json: &str) -> String {
    if !json.chars().any(unsafe_char) {
        return json.to_owned();
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        // Structural whitespace (pretty printing) is not in a string: keep it.
        if unsafe_char(c) && !matches!(c, '\n' | '\t' | '\r') {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert_eq!(printable("eth_getBalance"), "eth_getBalance");
        assert_eq!(
            printable("a\u{1b}[2J\u{7}b\u{9b}c\u{202e}d\u{7f}\\e\nf"),
            "a\\u{1b}[2J\\u{7}b\\u{9b}c\\u{202e}d\\u{7f}\\\\e\\u{a}f"
        );
        assert_eq!(printable("naïve ✓"), "naïve ✓");
    }

    #[test]
    fn json_stays_json_with_the_same_value() {
        let value = serde_json::json!({"m": "x\u{1b}y\u{9b}z\u{202e}\u{2028}\u{7f}"});
        for text in [
            serde_json::to_string(&value).unwrap_or_default(),
            serde_json::to_string_pretty(&value).unwrap_or_default(),
        ] {
            let safe = printable_json(&text);
            assert!(!safe.chars().any(|c| unsafe_char(c) && c != '\n'), "{safe}");
            let back: serde_json::Value = serde_json::from_str(&safe).unwrap_or_default();
            assert_eq!(back, value);
        }
    }
}
