//! What the CLI prints to a terminal never carries raw control characters.
//!
//! Names and titles come from other people. The book refuses control characters in new
//! input, but a CLI must not trust a server (or an old record): an ESC can rewrite the
//! screen, a bidirectional override can make `ann` read as `nna`. Every string printed
//! goes through [`safe`] (tables, messages) or [`safe_json`] (`--json`), which write
//! such characters as `\u{…}` escapes (JSON: `\uXXXX`).

use serde_json::Value;

/// Whether `c` must not reach a terminal raw: C0/C1 controls, bidirectional controls,
/// and invisible characters (zero-width space and joiners, word joiner, BOM).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// `s` with every unsafe character written as `\u{XXXX}`.
pub fn safe(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            out.push_str(&format!("\\u{{{:04X}}}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// `v` as pretty JSON in which every unsafe character is a `\uXXXX` escape (still valid
/// JSON: such characters only occur inside strings).
pub fn safe_json(v: &Value) -> String {
    escape_json_text(&serde_json::to_string_pretty(v).expect("a JSON value serialises"))
}

/// `v` as one line of JSON, escaped like [`safe_json`].
pub fn safe_json_line(v: &Value) -> String {
    escape_json_text(&v.to_string())
}

/// Escapes unsafe characters in serialised JSON. Newlines are the pretty layout's own
/// (serde_json already escapes every C0 control inside strings), so they stay.
fn escape_json_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_unsafe(c) && c != '\n' {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
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
    use serde_json::json;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(safe("ann"), "ann");
        assert_eq!(safe("a\u{1b}[2Jb"), "a\\u{001B}[2Jb");
        assert_eq!(safe("\u{202E}nna"), "\\u{202E}nna");
        assert_eq!(safe("x\0\u{85}\u{200B}"), "x\\u{0000}\\u{0085}\\u{200B}");
        assert_eq!(safe("Zoë 🚀"), "Zoë 🚀");
    }

    #[test]
    fn json_output_stays_valid_and_has_no_raw_controls() {
        let v = json!({ "bidder": "\u{202E}nna\u{1b}", "title": "lamp\u{85}" });
        let text = safe_json(&v);
        assert!(!text.chars().any(|c| is_unsafe(c) && c != '\n'), "{text:?}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        let line = safe_json_line(&v);
        assert!(!line.chars().any(is_unsafe));
        assert_eq!(serde_json::from_str::<Value>(&line).unwrap(), v);
    }
}
