//! Qt INI files (Linux and other Unixes), edited in place; see the parent
//! module for the format.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::Path;

use super::{
    qt_variant_string, ApplyError, ApplyReport, PreviousValue, KEY_ICE_SERVERS, KEY_RENDEZVOUS_URL,
};
use crate::settings::{unix_seconds, unused_sibling, write_atomic};

/// Writes the two keys into a Qt INI file, in place. See the module
/// documentation for the format. A missing file (and its folder) is
/// created; an existing one is first copied to `<name>.bak-<unix-seconds>`
/// (with the same permissions: MidiEditor's file also holds AI API keys),
/// then replaced atomically. When both keys already hold these values
/// nothing is written and no backup is made.
pub fn apply_to_ini(
    path: &Path,
    rendezvous_url: &str,
    ice_list: &str,
) -> Result<ApplyReport, ApplyError> {
    let original = match fs::read(path) {
        Ok(b) => Some(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ApplyError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let values = [
        (KEY_RENDEZVOUS_URL, rendezvous_url),
        (KEY_ICE_SERVERS, ice_list),
    ];
    let old: &[u8] = original.as_deref().unwrap_or_default();
    let before = parse_qt_ini(old);
    let previous = values
        .iter()
        .map(|(k, _)| PreviousValue {
            key: (*k).to_owned(),
            value: before.get(*k).and_then(QtValue::to_text),
        })
        .collect();
    let updated = set_ini_values(old, &values);
    // Read the result back as Qt would: a hand-edited file with, say, an
    // unclosed quote can hide the lines we wrote; then write nothing.
    let check = parse_qt_ini(&updated);
    if let Some((key, _)) = values
        .iter()
        .find(|(k, v)| check.get(*k) != Some(&QtValue::Text((*v).to_owned())))
    {
        return Err(ApplyError::Format {
            path: path.to_path_buf(),
            reason: format!(
                "after the change MidiEditor would not read {key} back; an unclosed \" in the file?"
            ),
        });
    }
    let changed = original.as_deref() != Some(updated.as_slice());
    let mut backup = None;
    if changed {
        if let Some(orig) = &original {
            let b = unused_sibling(path, &format!(".bak-{}", unix_seconds()));
            write_new_file(&b, orig, path).map_err(|source| ApplyError::Backup {
                path: b.clone(),
                source,
            })?;
            backup = Some(b);
        }
        write_atomic(path, &updated).map_err(|source| ApplyError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(ApplyReport {
        path: path.to_path_buf(),
        backup,
        keys_written: values.iter().map(|(k, _)| (*k).to_owned()).collect(),
        changed,
        previous,
        notes: Vec::new(),
    })
}

/// Creates `path` (never replacing a file) holding `bytes`, with the
/// permissions of `like`.
pub(super) fn write_new_file(path: &Path, bytes: &[u8], like: &Path) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    if let Ok(meta) = fs::metadata(like) {
        f.set_permissions(meta.permissions())?;
    }
    f.write_all(bytes)?;
    f.sync_all()
}

/// A value as QSettings reads it from an INI file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QtValue {
    /// A string (also any `@Type(...)` value, left as its text).
    Text(String),
    /// A string list (unquoted commas).
    List(Vec<String>),
    /// `@Invalid()`: an empty list or no value.
    Invalid,
}

impl QtValue {
    /// The value as text: a list's items joined with `, `.
    pub fn to_text(&self) -> Option<String> {
        match self {
            QtValue::Text(s) => Some(s.clone()),
            QtValue::List(items) => Some(items.join(", ")),
            QtValue::Invalid => None,
        }
    }
}

/// One logical line of an INI file, as byte offsets.
#[derive(Debug, Clone, Copy)]
struct Line {
    /// End of the content: before the line break or an unquoted `;`.
    end: usize,
    /// The first `=` outside double quotes.
    equals: Option<usize>,
    /// End of the physical line (its line break, or the end of the file),
    /// past any trailing comment.
    line_end: usize,
}

#[derive(Debug)]
enum Item {
    /// `[name]`, `name` as a logical key prefix without the `/` (empty for
    /// `[General]`).
    Section { name: String, line: Line },
    /// `key=value`, `key` as the full logical key.
    Entry { key: String, line: Line },
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn end_of_physical_line(data: &[u8], mut i: usize) -> usize {
    while i < data.len() && data[i] != b'\n' && data[i] != b'\r' {
        i += 1;
    }
    i
}

/// Splits an INI file into sections and entries exactly as Qt's
/// `readIniLine`/`readIniFile` do (comments, continuation lines, quoted
/// line breaks), keeping byte offsets so edits can be made in place.
fn scan(data: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    let n = data.len();
    let mut pos = if data.starts_with(BOM) { BOM.len() } else { 0 };
    let mut prefix = String::new();
    while pos < n {
        while pos < n && matches!(data[pos], b' ' | b'\t' | b'\r' | b'\n') {
            pos += 1;
        }
        if pos >= n {
            break;
        }
        if data[pos] == b';' {
            pos = end_of_physical_line(data, pos);
            continue;
        }
        let start = pos;
        let mut i = pos;
        let mut in_quotes = false;
        let mut equals = None;
        let end = loop {
            if i >= n {
                break n;
            }
            match data[i] {
                b'=' => {
                    if !in_quotes && equals.is_none() {
                        equals = Some(i);
                    }
                    i += 1;
                }
                b'\n' | b'\r' if !in_quotes => break i,
                b'\\' => {
                    i += 1;
                    if i < n {
                        let ch = data[i];
                        i += 1;
                        if i < n {
                            let ch2 = data[i];
                            if (ch == b'\n' && ch2 == b'\r') || (ch == b'\r' && ch2 == b'\n') {
                                i += 1;
                            }
                        }
                    }
                }
                b'"' => {
                    in_quotes = !in_quotes;
                    i += 1;
                }
                b';' if !in_quotes => break i,
                _ => i += 1,
            }
        };
        let line_end = end_of_physical_line(data, end);
        let line = Line {
            end,
            equals,
            line_end,
        };
        let content = &data[start..end];
        if content.first() == Some(&b'[') {
            let inner = match content.iter().position(|&b| b == b']') {
                Some(idx) => &content[1..idx],
                None => &content[1..],
            };
            let inner = inner.trim_ascii();
            let name = if inner.eq_ignore_ascii_case(b"general") {
                String::new()
            } else if inner.eq_ignore_ascii_case(b"%general") {
                String::from_utf8_lossy(&inner[1..]).into_owned()
            } else {
                normalized_key(&unescape_ini_key(inner))
            };
            prefix = if name.is_empty() {
                String::new()
            } else {
                format!("{name}/")
            };
            items.push(Item::Section { name, line });
        } else if let Some(eq) = equals {
            let key = data[start..eq].trim_ascii();
            let key = normalized_key(&format!("{prefix}{}", unescape_ini_key(key)));
            items.push(Item::Entry { key, line });
        }
        // Anything else is a malformed line: Qt skips it, and so do we
        // (leaving it in the file untouched).
        pos = line_end;
    }
    items
}

/// QSettings' key normalization: no leading, trailing or doubled `/`.
fn normalized_key(key: &str) -> String {
    key.split('/')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

fn hex_value(units: &[u16]) -> Option<u16> {
    let mut v: u16 = 0;
    for &u in units {
        let d = char::from_u32(u32::from(u))?.to_digit(16)?;
        v = v.checked_mul(16)?.checked_add(d as u16)?;
    }
    Some(v)
}

/// Qt's `iniUnescapedKey`: `\` is `/`, `%XX` and `%UXXXX` are characters.
fn unescape_ini_key(raw: &[u8]) -> String {
    let units: Vec<u16> = String::from_utf8_lossy(raw).encode_utf16().collect();
    let mut out: Vec<u16> = Vec::with_capacity(units.len());
    let mut i = 0;
    while i < units.len() {
        let u = units[i];
        if u == u16::from(b'\\') {
            out.push(u16::from(b'/'));
            i += 1;
            continue;
        }
        if u != u16::from(b'%') || i == units.len() - 1 {
            out.push(u);
            i += 1;
            continue;
        }
        let (first, digits) = if units[i + 1] == u16::from(b'U') {
            (i + 2, 4)
        } else {
            (i + 1, 2)
        };
        match units.get(first..first + digits).and_then(hex_value) {
            Some(v) => {
                out.push(v);
                i = first + digits;
            }
            None => {
                out.push(u);
                i += 1;
            }
        }
    }
    String::from_utf16_lossy(&out)
}

/// Qt's `iniEscapedKey` for one key (`/` becomes `\`).
pub fn qt_escape_ini_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for u in key.encode_utf16() {
        match u {
            0x2F => out.push('\\'),
            _ if u < 0x80
                && (u8::try_from(u).is_ok_and(|b| b.is_ascii_alphanumeric())
                    || u == 0x5F
                    || u == 0x2D
                    || u == 0x2E) =>
            {
                out.push(char::from(u as u8));
            }
            _ if u <= 0xFF => out.push_str(&format!("%{u:02X}")),
            _ => out.push_str(&format!("%U{u:04X}")),
        }
    }
    out
}

/// Qt's `iniEscapedString` for a string value (after `variantToString`).
///
/// One deliberate choice: characters above U+007E are written as `\xNNNN`
/// escapes (what Qt 5 writes without an INI codec) rather than as raw UTF-8
/// (what Qt 6 writes). Both Qt 5 and Qt 6 read the escapes back exactly,
/// while raw UTF-8 would come out garbled in a Qt 5 build. After such an
/// escape a following hex digit is escaped too, so it cannot be taken as
/// part of the number.
pub fn qt_escape_ini_value(value: &str) -> String {
    let s = qt_variant_string(value);
    let mut out = String::with_capacity(s.len() + 2);
    let mut needs_quotes = false;
    let mut escape_next_if_digit = false;
    for u in s.encode_utf16() {
        if u == u16::from(b';') || u == u16::from(b',') || u == u16::from(b'=') {
            needs_quotes = true;
        }
        let is_hex_digit = u < 0x80 && (u as u8).is_ascii_hexdigit();
        if escape_next_if_digit && is_hex_digit {
            out.push_str(&format!("\\x{u:x}"));
            continue;
        }
        escape_next_if_digit = false;
        match u {
            0 => {
                out.push_str("\\0");
                escape_next_if_digit = true;
            }
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            0x0C => out.push_str("\\f"),
            0x0A => out.push_str("\\n"),
            0x0D => out.push_str("\\r"),
            0x09 => out.push_str("\\t"),
            0x0B => out.push_str("\\v"),
            0x22 | 0x5C => {
                out.push('\\');
                out.push(char::from(u as u8));
            }
            _ if u <= 0x1F || u >= 0x7F => {
                out.push_str(&format!("\\x{u:x}"));
                escape_next_if_digit = true;
            }
            _ => out.push(char::from(u as u8)),
        }
    }
    if needs_quotes || out.starts_with(' ') || out.ends_with(' ') {
        format!("\"{out}\"")
    } else {
        out
    }
}

fn chop_trailing_spaces(s: &mut Vec<u16>, limit: usize) {
    while s.len() > limit && matches!(s.last(), Some(0x20 | 0x09)) {
        s.pop();
    }
}

/// Qt's `iniUnescapedStringList` (and `stringToVariant` for `@@` and
/// `@Invalid()`): reads a raw value the way QSettings does.
fn unescape_ini_value(raw: &[u8]) -> QtValue {
    let n = raw.len();
    let mut list: Option<Vec<String>> = None;
    let mut cur: Vec<u16> = Vec::new();
    let mut in_quotes = false;
    let mut cur_quoted = false;
    let mut i = 0;
    let skip_spaces = |i: &mut usize| {
        while *i < n && (raw[*i] == b' ' || raw[*i] == b'\t') {
            *i += 1;
        }
    };
    skip_spaces(&mut i);
    let mut chop_limit = 0;
    let mut chop_at_end = true;
    while i < n {
        match raw[i] {
            b'\\' => {
                i += 1;
                if i >= n {
                    chop_at_end = false;
                    break;
                }
                let ch = raw[i];
                i += 1;
                let simple = match ch {
                    b'a' => Some(0x07),
                    b'b' => Some(0x08),
                    b'f' => Some(0x0C),
                    b'n' => Some(0x0A),
                    b'r' => Some(0x0D),
                    b't' => Some(0x09),
                    b'v' => Some(0x0B),
                    b'"' | b'?' | b'\'' | b'\\' => Some(u16::from(ch)),
                    _ => None,
                };
                if let Some(c) = simple {
                    cur.push(c);
                } else if ch == b'x' {
                    if i < n && raw[i].is_ascii_hexdigit() {
                        let mut v: u16 = 0;
                        while i < n && raw[i].is_ascii_hexdigit() {
                            let d = (raw[i] as char).to_digit(16).unwrap_or(0) as u16;
                            v = v.wrapping_shl(4).wrapping_add(d);
                            i += 1;
                        }
                        cur.push(v);
                    }
                } else if (b'0'..=b'7').contains(&ch) {
                    let mut v = u16::from(ch - b'0');
                    while i < n && (b'0'..=b'7').contains(&raw[i]) {
                        v = v.wrapping_shl(3).wrapping_add(u16::from(raw[i] - b'0'));
                        i += 1;
                    }
                    cur.push(v);
                } else if (ch == b'\n' || ch == b'\r')
                    && i < n
                    && (raw[i] == b'\n' || raw[i] == b'\r')
                    && raw[i] != ch
                {
                    // A continued line ending in \r\n or \n\r.
                    i += 1;
                }
                // Any other escaped character is dropped, as Qt does.
                chop_limit = cur.len();
            }
            b'"' => {
                i += 1;
                cur_quoted = true;
                in_quotes = !in_quotes;
                if !in_quotes {
                    skip_spaces(&mut i);
                    chop_limit = cur.len();
                }
            }
            b',' if !in_quotes => {
                if !cur_quoted {
                    chop_trailing_spaces(&mut cur, chop_limit);
                }
                list.get_or_insert_with(Vec::new)
                    .push(String::from_utf16_lossy(&cur));
                cur.clear();
                cur_quoted = false;
                i += 1;
                skip_spaces(&mut i);
                chop_limit = 0;
            }
            _ => {
                let mut j = i + 1;
                while j < n && !matches!(raw[j], b'\\' | b'"' | b',') {
                    j += 1;
                }
                cur.extend(String::from_utf8_lossy(&raw[i..j]).encode_utf16());
                i = j;
            }
        }
    }
    if chop_at_end && !cur_quoted {
        chop_trailing_spaces(&mut cur, chop_limit);
    }
    let last = String::from_utf16_lossy(&cur);
    match list {
        Some(mut items) => {
            items.push(last);
            QtValue::List(
                items
                    .into_iter()
                    .map(|s| match s.strip_prefix("@@") {
                        Some(rest) => format!("@{rest}"),
                        None => s,
                    })
                    .collect(),
            )
        }
        None if last == "@Invalid()" => QtValue::Invalid,
        None => QtValue::Text(match last.strip_prefix("@@") {
            Some(rest) => format!("@{rest}"),
            None => last,
        }),
    }
}

/// Every key of a Qt INI file as QSettings reads it (`Collab/wan/x` for
/// `[Collab]` `wan\x=`; `[General]` keys without a section). When a key
/// appears more than once the last one wins.
pub fn parse_qt_ini(bytes: &[u8]) -> BTreeMap<String, QtValue> {
    let mut map = BTreeMap::new();
    for item in scan(bytes) {
        if let Item::Entry { key, line } = item {
            if let Some(eq) = line.equals {
                map.insert(key, unescape_ini_value(&bytes[eq + 1..line.end]));
            }
        }
    }
    map
}

/// `original` with each `(key, value)` set, edited in place:
///
/// - a key already present (in whatever spelling Qt would read as that key,
///   e.g. `[Collab]` `wan\rendezvousUrl` or `[General]`
///   `Collab\wan\rendezvousUrl`) has its value replaced where it stands,
///   every occurrence of it;
/// - a missing key is added after the last entry of the last section named
///   as its first path segment (`[Collab]`);
/// - a missing section is appended at the end, after a blank line.
///
/// Every other byte stays as it was; new lines use the file's line breaks.
pub fn set_ini_values(original: &[u8], values: &[(&str, &str)]) -> Vec<u8> {
    let items = scan(original);
    let eol: &[u8] = if original.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    // (from, to, replacement): a replacement, or an insertion when from == to.
    let mut edits: Vec<(usize, usize, Vec<u8>)> = Vec::new();
    let mut new_sections: Vec<(String, Vec<String>)> = Vec::new();
    for (key, value) in values {
        let key = normalized_key(key);
        let escaped = qt_escape_ini_value(value);
        let mut found = false;
        for item in &items {
            if let Item::Entry { key: k, line } = item {
                if *k == key {
                    if let Some(eq) = line.equals {
                        edits.push((eq + 1, line.end, escaped.clone().into_bytes()));
                        found = true;
                    }
                }
            }
        }
        if found {
            continue;
        }
        let (section, sub) = match key.split_once('/') {
            Some((s, rest)) => (s.to_owned(), rest.to_owned()),
            None => (String::new(), key.clone()),
        };
        let text = format!("{}={escaped}", qt_escape_ini_key(&sub));
        match insertion_point(&items, &section) {
            Some(pos) => {
                let mut bytes = eol.to_vec();
                if pos == original.len() && ends_with_continuation(original) {
                    // `x=a\` at the very end: our line break would only
                    // continue that line; a second one ends it.
                    bytes.extend_from_slice(eol);
                }
                bytes.extend_from_slice(text.as_bytes());
                edits.push((pos, pos, bytes));
            }
            None if section.is_empty() => {
                // Before the first section: where Qt reads [General] keys.
                let pos = if original.starts_with(BOM) {
                    BOM.len()
                } else {
                    0
                };
                let mut bytes = text.into_bytes();
                bytes.extend_from_slice(eol);
                edits.push((pos, pos, bytes));
            }
            None => match new_sections.iter_mut().find(|(s, _)| *s == section) {
                Some((_, lines)) => lines.push(text),
                None => new_sections.push((section, vec![text])),
            },
        }
    }
    edits.sort_by_key(|(from, _, _)| *from);
    let mut out = Vec::with_capacity(original.len() + 256);
    let mut cursor = 0;
    for (from, to, bytes) in edits {
        if from < cursor {
            continue; // Overlap: cannot happen with distinct entries; be safe.
        }
        out.extend_from_slice(&original[cursor..from]);
        out.extend_from_slice(&bytes);
        cursor = to;
    }
    out.extend_from_slice(&original[cursor..]);
    for (section, lines) in new_sections {
        if !out.is_empty() {
            if out.last() == Some(&b'\r') && eol == b"\n" {
                // A lone CR and our LF would pair up as one line break
                // (which a continuation `\` before it would swallow).
                out.extend_from_slice(eol);
            }
            if !matches!(out.last(), Some(b'\n' | b'\r')) {
                out.extend_from_slice(eol);
            }
            out.extend_from_slice(eol);
        }
        let header = if section.eq_ignore_ascii_case("general") {
            format!("[%{section}]")
        } else {
            format!("[{}]", qt_escape_ini_key(&section))
        };
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(eol);
        for line in lines {
            out.extend_from_slice(line.as_bytes());
            out.extend_from_slice(eol);
        }
    }
    out
}

/// Whether `data` ends in an odd number of backslashes: a `\` escaping
/// whatever comes next, so a line break added there would continue the
/// line instead of ending it.
fn ends_with_continuation(data: &[u8]) -> bool {
    data.iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1
}

/// Where a new key of `section` goes: after the last entry of the last
/// `[section]` (or after its header when it has none).
fn insertion_point(items: &[Item], section: &str) -> Option<usize> {
    let header = items
        .iter()
        .rposition(|it| matches!(it, Item::Section { name, .. } if name == section))?;
    let mut pos = match &items[header] {
        Item::Section { line, .. } | Item::Entry { line, .. } => line.line_end,
    };
    for item in &items[header + 1..] {
        match item {
            Item::Section { .. } => break,
            Item::Entry { line, .. } => pos = line.line_end,
        }
    }
    Some(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_escape_like_qt() {
        assert_eq!(qt_escape_ini_key("wan/rendezvousUrl"), r"wan\rendezvousUrl");
        assert_eq!(qt_escape_ini_key("a b=c"), "a%20b%3Dc");
        assert_eq!(qt_escape_ini_key("é€"), "%E9%U20AC");
        assert_eq!(unescape_ini_key(br"wan\x%20y%U20AC"), "wan/x y€");
        // A lone or malformed % stays literal.
        assert_eq!(unescape_ini_key(b"a%"), "a%");
        assert_eq!(unescape_ini_key(b"a%zz"), "a%zz");
    }

    #[test]
    fn values_escape_like_qt() {
        assert_eq!(
            qt_escape_ini_value("https://rdv.example.org"),
            "https://rdv.example.org"
        );
        // Multi-line: one line with \n escapes; no quotes unless ; , = or
        // outer spaces.
        assert_eq!(
            qt_escape_ini_value("stun:a:1\nstun:b:2"),
            r"stun:a:1\nstun:b:2"
        );
        assert_eq!(
            qt_escape_ini_value("turn:h:3478?transport=tcp"),
            r#""turn:h:3478?transport=tcp""#
        );
        assert_eq!(qt_escape_ini_value(" x"), r#"" x""#);
        assert_eq!(qt_escape_ini_value("a;b"), r#""a;b""#);
        assert_eq!(qt_escape_ini_value("a,b"), r#""a,b""#);
        assert_eq!(qt_escape_ini_value(r#"say "hi" \o/"#), r#"say \"hi\" \\o/"#);
        assert_eq!(qt_escape_ini_value("@x"), "@@x");
        // Non-ASCII as \x escapes; a hex digit after one is escaped too.
        assert_eq!(qt_escape_ini_value("Müller"), r"M\xfcller");
        assert_eq!(qt_escape_ini_value("é1"), r"\xe9\x31");
        assert_eq!(qt_escape_ini_value("a\0b"), r"a\0\x62");
        assert_eq!(qt_escape_ini_value("🎹"), r"\xd83c\xdfb9");
        assert_eq!(qt_escape_ini_value("%41"), "%41");
    }

    #[test]
    fn values_unescape_like_qt() {
        let text = |s: &str| QtValue::Text(s.to_owned());
        assert_eq!(unescape_ini_value(br"a\nb"), text("a\nb"));
        assert_eq!(unescape_ini_value(br#""a;b, c""#), text("a;b, c"));
        assert_eq!(
            unescape_ini_value(b"a , b"),
            QtValue::List(vec!["a".into(), "b".into()])
        );
        assert_eq!(unescape_ini_value(b"  x  "), text("x"));
        assert_eq!(unescape_ini_value(br#"" x ""#), text(" x "));
        assert_eq!(unescape_ini_value(br"M\xfcller"), text("Müller"));
        assert_eq!(unescape_ini_value("Müller".as_bytes()), text("Müller"));
        assert_eq!(unescape_ini_value(br"\xd83c\xdfb9"), text("🎹"));
        assert_eq!(unescape_ini_value(br"\101"), text("A"));
        assert_eq!(unescape_ini_value(b"@@x"), text("@x"));
        assert_eq!(unescape_ini_value(b"@Invalid()"), QtValue::Invalid);
        assert_eq!(unescape_ini_value(b""), text(""));
        // Whatever bytes come, no panic.
        for raw in [&b"\\"[..], b"\\x", b"\"", b"\\\r", b",", b"\xff\xfe"] {
            let _ = unescape_ini_value(raw);
        }
    }

    #[test]
    fn escaping_round_trips_awkward_strings() {
        for s in [
            "",
            " ",
            "plain",
            "a\nb\r\nc\td",
            "; not a comment",
            "x=y, z",
            "\"quoted\"",
            "back\\slash",
            "é1 ü 日本 🎹 0",
            "\u{7f}\u{1}9",
            "@ByteArray(x)",
            "trailing \\",
            "# none (LAN only)",
        ] {
            let escaped = qt_escape_ini_value(s);
            let file = format!("[S]\nk={escaped}\n");
            assert_eq!(
                parse_qt_ini(file.as_bytes()).get("S/k"),
                Some(&QtValue::Text(s.to_owned())),
                "{s:?} escaped as {escaped:?}"
            );
        }
    }

    #[test]
    fn scanner_follows_qt_line_rules() {
        let ini = b"\xEF\xBB\xBF; comment\n[General]\ntop=1\n[A%20B]\nk=v ; trailing\n\
                    q=\"multi\nline\"\ncont=a\\\nb\n# not a comment\n[%General]\ng=2\n[C\\D]\ne=3\n";
        let map = parse_qt_ini(ini);
        assert_eq!(map.get("top"), Some(&QtValue::Text("1".into())));
        assert_eq!(map.get("A B/k"), Some(&QtValue::Text("v".into())));
        assert_eq!(map.get("A B/q"), Some(&QtValue::Text("multi\nline".into())));
        assert_eq!(map.get("A B/cont"), Some(&QtValue::Text("ab".into())));
        assert_eq!(map.get("General/g"), Some(&QtValue::Text("2".into())));
        assert_eq!(map.get("C/D/e"), Some(&QtValue::Text("3".into())));
        assert_eq!(map.len(), 6);
    }

    #[test]
    fn set_values_edits_in_place_adds_and_appends() {
        let vals = [
            (KEY_RENDEZVOUS_URL, "http://h:1"),
            (KEY_ICE_SERVERS, "stun:a:1"),
        ];
        // Present in an unusual spelling: replaced where it stands.
        let ini = b"[General]\nCollab\\wan\\rendezvousUrl=old\n[Collab\\lan]\niceServers=x\n";
        let out = set_ini_values(ini, &vals);
        assert_eq!(
            out,
            b"[General]\nCollab\\wan\\rendezvousUrl=http://h:1\n[Collab\\lan]\niceServers=stun:a:1\n"
        );
        // Section present, keys missing: added after its last entry.
        let ini = b"[Collab]\nenabled=true\n\n[MIDI]\nx=1";
        let out = String::from_utf8(set_ini_values(ini, &vals)).unwrap();
        assert_eq!(
            out,
            "[Collab]\nenabled=true\nwan\\rendezvousUrl=http://h:1\nlan\\iceServers=stun:a:1\n\n[MIDI]\nx=1"
        );
        // No section, no final line break, CRLF: appended in kind.
        let ini = b"[MIDI]\r\nx=1";
        let out = String::from_utf8(set_ini_values(ini, &vals)).unwrap();
        assert_eq!(
            out,
            "[MIDI]\r\nx=1\r\n\r\n[Collab]\r\nwan\\rendezvousUrl=http://h:1\r\nlan\\iceServers=stun:a:1\r\n"
        );
        // Empty file.
        let out = String::from_utf8(set_ini_values(b"", &vals)).unwrap();
        assert_eq!(
            out,
            "[Collab]\nwan\\rendezvousUrl=http://h:1\nlan\\iceServers=stun:a:1\n"
        );
        // Keys without a section go to the top (General).
        let out = String::from_utf8(set_ini_values(b"[A]\nb=1\n", &[("top", "v")])).unwrap();
        assert_eq!(out, "top=v\n[A]\nb=1\n");
    }

    #[test]
    fn multi_line_values_and_continuations_are_replaced_whole() {
        let ini = b"[Collab]\nlan\\iceServers=\"a\nb\"\nwan\\rendezvousUrl=x\\\ny ; note\nz=1\n";
        let vals = [(KEY_RENDEZVOUS_URL, "u"), (KEY_ICE_SERVERS, "i")];
        let out = String::from_utf8(set_ini_values(ini, &vals)).unwrap();
        assert_eq!(
            out,
            "[Collab]\nlan\\iceServers=i\nwan\\rendezvousUrl=u; note\nz=1\n"
        );
        let map = parse_qt_ini(out.as_bytes());
        assert_eq!(
            map.get(KEY_RENDEZVOUS_URL),
            Some(&QtValue::Text("u".into()))
        );
        assert_eq!(map.get("Collab/z"), Some(&QtValue::Text("1".into())));
    }

    #[test]
    fn an_unclosed_quote_is_refused_not_half_written() {
        let dir = std::env::temp_dir().join(format!("app-me-quote-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("NONE.conf");
        let original = b"[AI]\nmodel=\"oops\n[MIDI]\nthru=false\n";
        fs::write(&path, original).unwrap();
        let err = apply_to_ini(&path, "http://h:1", "stun:a:1").unwrap_err();
        assert!(matches!(err, ApplyError::Format { .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), original);
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            1,
            "no backup, no temp file"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    /// Arbitrary files, built from the bytes that matter to the format:
    /// nothing panics, and whenever the edit is accepted Qt's reading of
    /// the result gives our values.
    #[test]
    fn arbitrary_files_never_panic() {
        const PIECES: &[&[u8]] = &[
            b"[",
            b"]",
            b"=",
            b";",
            b"\"",
            b"\\",
            b"\n",
            b"\r",
            b"\r\n",
            b" ",
            b"\t",
            b",",
            b"%",
            b"%U",
            b"@",
            b"Collab",
            b"wan",
            b"lan",
            b"General",
            b"rendezvousUrl",
            b"iceServers",
            b"x",
            b"0",
            b"\xff",
            b"\xc3\xa9",
            b"\xEF\xBB\xBF",
            b"/",
        ];
        let mut state: u64 = 0x2545_F491_4F6C_DD1D;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let values = [
            (KEY_RENDEZVOUS_URL, "http://h:1"),
            (KEY_ICE_SERVERS, "a\nb=c"),
        ];
        let mut accepted = 0;
        for _ in 0..3000 {
            let len = next() % 40;
            let file: Vec<u8> = (0..len)
                .flat_map(|_| {
                    PIECES[(next() % PIECES.len() as u64) as usize]
                        .iter()
                        .copied()
                })
                .collect();
            let _ = parse_qt_ini(&file);
            let out = set_ini_values(&file, &values);
            let back = parse_qt_ini(&out);
            let ok = values
                .iter()
                .all(|(k, v)| back.get(*k) == Some(&QtValue::Text((*v).to_owned())));
            if !file.contains(&b'"') {
                assert!(
                    ok,
                    "{:?} -> {:?}",
                    String::from_utf8_lossy(&file),
                    String::from_utf8_lossy(&out)
                );
            }
            accepted += usize::from(ok);
        }
        assert!(accepted > 2000, "{accepted}");
    }
}
