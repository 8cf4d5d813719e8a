//! Telegram MarkdownV2: escaping, a small builder that cannot produce invalid markup, and
//! splitting of long messages at places where no escape sequence or entity is cut.
//!
//! Telegram rejects a MarkdownV2 text with any of `_*[]()~`>#+-=|{}.!` unescaped outside an
//! entity, so `BRK.B`, `-1.2%` or `(x)` must all be escaped; inside `code` and `pre` only
//! `` ` `` and `\` are escaped, inside a link's URL only `)` and `\`.

use std::fmt;

use tickwatch_schema::wire::ParseMode;

/// The characters Telegram reserves in MarkdownV2 text.
pub const RESERVED: &str = "_*[]()~`>#+-=|{}.!";

/// Telegram's limit on a message's text, in UTF-16 code units.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Escapes plain text for MarkdownV2 (outside any entity): teloxide's.
pub fn escape(text: &str) -> String {
    teloxide::utils::markdown::escape(text)
}

/// Escapes text for the inside of `` `code` `` or a ```` ```pre``` ```` block: teloxide's.
pub fn escape_code(text: &str) -> String {
    teloxide::utils::markdown::escape_code(text)
}

/// Escapes a URL for the `(…)` part of a link: `)` and `\`, as Telegram's documentation
/// asks. (teloxide's `escape_link_url` escapes `` ` `` and `)` but not `\`, which would
/// let a URL ending in a backslash swallow the closing parenthesis.)
pub fn escape_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if c == '\\' || c == ')' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A MarkdownV2 text built from parts, each escaped as it is added.
///
/// ```
/// use tickwatch_notifier::markdown::MarkdownV2;
/// let text = MarkdownV2::new()
///     .bold("BRK.B")
///     .text(" crossed ")
///     .code("412.50")
///     .text(" (-1.2%)");
/// assert_eq!(text.as_str(), r"*BRK\.B* crossed `412.50` \(\-1\.2%\)");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MarkdownV2(String);

impl MarkdownV2 {
    pub fn new() -> Self {
        Self::default()
    }

    /// Plain text.
    pub fn text(mut self, text: impl AsRef<str>) -> Self {
        self.0.push_str(&escape(text.as_ref()));
        self
    }

    /// Bold text.
    pub fn bold(self, text: impl AsRef<str>) -> Self {
        self.wrapped("*", &escape(text.as_ref()), "*")
    }

    /// Italic text.
    pub fn italic(self, text: impl AsRef<str>) -> Self {
        self.wrapped("_", &escape(text.as_ref()), "_")
    }

    /// Inline code (monospace), e.g. a price.
    pub fn code(self, text: impl AsRef<str>) -> Self {
        self.wrapped("`", &escape_code(text.as_ref()), "`")
    }

    /// A preformatted block, optionally with a language.
    pub fn pre(self, text: impl AsRef<str>, language: Option<&str>) -> Self {
        // The language ends at whitespace or a backtick; keep only what survives.
        let language: String = language
            .unwrap_or("")
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '`' && *c != '\\')
            .collect();
        let opener = format!("```{language}\n");
        self.wrapped(&opener, &escape_code(text.as_ref()), "\n```")
    }

    /// A link.
    pub fn link(mut self, label: impl AsRef<str>, url: impl AsRef<str>) -> Self {
        self.separate_from("[");
        self.0.push('[');
        self.0.push_str(&escape(label.as_ref()));
        self.0.push_str("](");
        self.0.push_str(&escape_url(url.as_ref()));
        self.0.push(')');
        self
    }

    /// A line break.
    pub fn newline(mut self) -> Self {
        self.0.push('\n');
        self
    }

    /// Appends another built text.
    pub fn append(mut self, other: &MarkdownV2) -> Self {
        self.separate_from(&other.0);
        self.0.push_str(&other.0);
        self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn wrapped(mut self, open: &str, inner: &str, close: &str) -> Self {
        self.separate_from(open);
        self.0.push_str(open);
        self.0.push_str(inner);
        self.0.push_str(close);
        self
    }

    /// An italic closer `_` directly followed by `_` would be read as an underline marker;
    /// an empty bold entity (`**`, which Telegram drops) keeps them apart.
    fn separate_from(&mut self, next: &str) {
        if self.0.ends_with('_') && !self.0.ends_with("\\_") && next.starts_with('_') {
            self.0.push_str("**");
        }
    }
}

impl fmt::Display for MarkdownV2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<MarkdownV2> for String {
    fn from(value: MarkdownV2) -> Self {
        value.0
    }
}

/// An entity open at some point of the text, and how to close and reopen it there.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Open {
    kind: Kind,
    /// The opening marker as written (a code block's includes its language line).
    opener: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bold,
    Italic,
    Underline,
    Strike,
    Spoiler,
    Code,
    Pre,
    Link,
}

impl Kind {
    /// How to close the entity early; a link cannot be cut (its URL comes at its end).
    fn closer(self) -> Option<&'static str> {
        match self {
            Kind::Bold => Some("*"),
            Kind::Italic => Some("_"),
            Kind::Underline => Some("__"),
            Kind::Strike => Some("~"),
            Kind::Spoiler => Some("||"),
            Kind::Code => Some("`"),
            Kind::Pre => Some("```"),
            Kind::Link => None,
        }
    }
}

/// The smallest piece of text that must stay whole: a character, an escape sequence, or an
/// entity marker.
#[derive(Debug, Clone)]
struct Atom {
    start: usize,
    end: usize,
    units: usize,
    /// A line break outside any entity.
    line_break: bool,
    /// Whitespace outside any entity.
    space: bool,
    /// A line break anywhere (inside a code block it is the best place to cut one).
    newline: bool,
    /// The entities open after this atom.
    open_after: Vec<Open>,
}

pub fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Splits `text` into messages of at most `max_len` UTF-16 code units (Telegram's limit is
/// [`MAX_MESSAGE_LEN`]), preferring line breaks, then spaces, outside entities. With
/// MarkdownV2 no escape sequence is cut; an entity longer than a message is closed at the
/// cut and reopened in the next part (a link, which cannot be, is kept whole when it fits).
/// Parts that would be blank are dropped.
pub fn split(text: &str, parse_mode: Option<ParseMode>, max_len: usize) -> Vec<String> {
    let max_len = max_len.max(16);
    if utf16_len(text) <= max_len {
        return if text.trim().is_empty() {
            Vec::new()
        } else {
            vec![text.to_string()]
        };
    }
    let atoms = match parse_mode {
        Some(ParseMode::MarkdownV2) => markdown_atoms(text),
        Some(ParseMode::Html) => html_atoms(text),
        None => plain_atoms(text),
    };
    let mut parts = Vec::new();
    let mut first = 0;
    let mut prefix = String::new();
    while first < atoms.len() {
        let start = atoms[first].start;
        let rest_units: usize = atoms[first..].iter().map(|a| a.units).sum();
        let prefix_units = utf16_len(&prefix);
        if prefix_units + rest_units <= max_len {
            push_part(&mut parts, format!("{prefix}{}", &text[start..]));
            break;
        }
        let budget = max_len.saturating_sub(prefix_units);
        let cut = choose_cut(&atoms, first, budget);
        let (part, next, reopen) = match cut {
            Cut::Before(k) => (
                text[start..atoms[k].start].to_string(),
                k + 1,
                String::new(),
            ),
            Cut::After(k) => (text[start..atoms[k].end].to_string(), k + 1, String::new()),
            Cut::Reopen(k) => {
                let open = &atoms[k].open_after;
                let mut part = text[start..atoms[k].end].to_string();
                for o in open.iter().rev() {
                    part.push_str(o.kind.closer().unwrap_or(""));
                }
                let reopen: String = open.iter().map(|o| o.opener.as_str()).collect();
                (part, k + 1, reopen)
            }
        };
        push_part(&mut parts, format!("{prefix}{part}"));
        prefix = reopen;
        first = next;
    }
    parts
}

fn push_part(parts: &mut Vec<String>, part: String) {
    if !part.trim().is_empty() {
        parts.push(part);
    }
}

enum Cut {
    /// End the part before atom k (a line break, dropped).
    Before(usize),
    /// End the part after atom k.
    After(usize),
    /// End after atom k, closing the open entities, and reopen them in the next part.
    Reopen(usize),
}

fn choose_cut(atoms: &[Atom], first: usize, budget: usize) -> Cut {
    let (mut line, mut space, mut any) = (None, None, None);
    let (mut reopen_line, mut reopen) = (None, None);
    let mut used = 0;
    for (k, atom) in atoms.iter().enumerate().skip(first) {
        used += atom.units;
        if atom.line_break && used - atom.units <= budget && k > first {
            line = Some(k);
        }
        if used > budget {
            break;
        }
        if atom.open_after.is_empty() {
            any = Some(k);
            if atom.space {
                space = Some(k);
            }
        } else if atom.open_after.iter().all(|o| o.kind.closer().is_some()) {
            let closing: usize = atom
                .open_after
                .iter()
                .filter_map(|o| o.kind.closer())
                .map(str::len)
                .sum();
            if used + closing <= budget {
                reopen = Some(k);
                if atom.newline {
                    reopen_line = Some(k);
                }
            }
        }
    }
    if let Some(k) = line {
        Cut::Before(k)
    } else if let Some(k) = space {
        Cut::After(k)
    } else if let Some(k) = reopen_line {
        Cut::Reopen(k)
    } else if let Some(k) = any {
        Cut::After(k)
    } else if let Some(k) = reopen {
        Cut::Reopen(k)
    } else {
        // Nothing fits (a link longer than a message): cut after as much as fits, at least
        // one atom, so the split always advances.
        let mut used = 0;
        let mut last = first;
        for (k, atom) in atoms.iter().enumerate().skip(first) {
            used += atom.units;
            if used > budget && k > first {
                break;
            }
            last = k;
        }
        Cut::After(last)
    }
}

fn plain_atoms(text: &str) -> Vec<Atom> {
    text.char_indices()
        .map(|(start, c)| Atom {
            start,
            end: start + c.len_utf8(),
            units: c.len_utf16(),
            line_break: c == '\n',
            space: c.is_whitespace(),
            newline: c == '\n',
            open_after: Vec::new(),
        })
        .collect()
}

/// HTML: tags and character references stay whole; tags spanning lines are not tracked.
fn html_atoms(text: &str) -> Vec<Atom> {
    let mut atoms = Vec::new();
    let mut rest = text.char_indices().peekable();
    while let Some((start, c)) = rest.next() {
        let mut end = start + c.len_utf8();
        let closing = match c {
            '<' => Some('>'),
            '&' => Some(';'),
            _ => None,
        };
        if let Some(closing) = closing
            && let Some(offset) = text[end..].find(closing)
        {
            end += offset + 1;
            while rest.peek().is_some_and(|(i, _)| *i < end) {
                rest.next();
            }
        }
        atoms.push(Atom {
            start,
            end,
            units: utf16_len(&text[start..end]),
            line_break: c == '\n',
            space: c.is_whitespace(),
            newline: c == '\n',
            open_after: Vec::new(),
        });
    }
    atoms
}

/// MarkdownV2, read the way Telegram reads it (see tdlib's `parse_markdown_v2`).
fn markdown_atoms(text: &str) -> Vec<Atom> {
    let bytes = text.as_bytes();
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let mut atoms = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let c = bytes[i];
        let in_code = matches!(stack.last().map(|o| o.kind), Some(Kind::Code | Kind::Pre));
        let top_level = stack.is_empty();
        let mut line_break = false;
        let mut space = false;
        let mut newline = false;
        let reserved = if in_code { "`" } else { RESERVED };
        if c == b'\\' {
            i += if (1..=126).contains(&at(i + 1)) { 2 } else { 1 };
        } else if !reserved.as_bytes().contains(&c)
            || (c == b'>' && (i == 0 || bytes[i - 1] == b'\n'))
        {
            let ch = text[i..].chars().next().unwrap_or(' ');
            newline = ch == '\n';
            line_break = newline && top_level;
            space = ch.is_whitespace() && top_level;
            i += ch.len_utf8();
        } else {
            let closes = stack.last().is_some_and(|o| match o.kind {
                Kind::Bold => c == b'*',
                Kind::Italic => c == b'_' && at(i + 1) != b'_',
                Kind::Code => c == b'`',
                Kind::Pre => c == b'`' && at(i + 1) == b'`' && at(i + 2) == b'`',
                Kind::Link => c == b']',
                Kind::Underline => c == b'_' && at(i + 1) == b'_',
                Kind::Strike => c == b'~',
                Kind::Spoiler => c == b'|' && at(i + 1) == b'|',
            });
            if closes {
                match stack.pop().map(|o| o.kind) {
                    Some(Kind::Underline | Kind::Spoiler) => i += 2,
                    Some(Kind::Pre) => i += 3,
                    Some(Kind::Link) => {
                        i += 1;
                        if at(i) == b'(' {
                            while i < bytes.len() && bytes[i] != b')' {
                                i += if bytes[i] == b'\\' && (1..=126).contains(&at(i + 1)) {
                                    2
                                } else {
                                    1
                                };
                            }
                            i = (i + 1).min(bytes.len());
                        }
                    }
                    _ => i += 1,
                }
            } else {
                let kind = match c {
                    b'_' if at(i + 1) == b'_' => Some((Kind::Underline, 2)),
                    b'_' => Some((Kind::Italic, 1)),
                    b'*' => Some((Kind::Bold, 1)),
                    b'~' => Some((Kind::Strike, 1)),
                    b'|' if at(i + 1) == b'|' => Some((Kind::Spoiler, 2)),
                    b'[' => Some((Kind::Link, 1)),
                    b'!' if at(i + 1) == b'[' => Some((Kind::Link, 2)),
                    b'`' if at(i + 1) == b'`' && at(i + 2) == b'`' => {
                        // The language and one line break belong to the marker.
                        let mut end = i + 3;
                        while end < bytes.len()
                            && !bytes[end].is_ascii_whitespace()
                            && bytes[end] != b'`'
                        {
                            end += 1;
                        }
                        if at(end) == b'\r' && at(end + 1) == b'\n' {
                            end += 2;
                        } else if at(end) == b'\n' || at(end) == b'\r' {
                            end += 1;
                        }
                        Some((Kind::Pre, end - i))
                    }
                    b'`' => Some((Kind::Code, 1)),
                    // An unescaped reserved character: invalid, kept as one character.
                    _ => None,
                };
                match kind {
                    Some((kind, len)) => {
                        stack.push(Open {
                            kind,
                            opener: text[i..i + len].to_string(),
                        });
                        i += len;
                    }
                    None => i += 1,
                }
            }
        }
        // Escapes and markers are ASCII; characters advance by whole UTF-8 sequences.
        let end = i.min(bytes.len());
        atoms.push(Atom {
            start,
            end,
            units: utf16_len(&text[start..end]),
            line_break,
            space,
            newline,
            open_after: stack.clone(),
        });
    }
    atoms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reserved_character_is_escaped() {
        assert_eq!(
            escape("_*[]()~`>#+-=|{}.!\\"),
            r"\_\*\[\]\(\)\~\`\>\#\+\-\=\|\{\}\.\!\\"
        );
        assert_eq!(escape("BRK.B -1.5"), r"BRK\.B \-1\.5");
        assert_eq!(escape("삼성전자 005930"), "삼성전자 005930");
        assert_eq!(escape_code("a`b\\c.d"), r"a\`b\\c.d");
        assert_eq!(escape_url("https://x.io/a)b"), r"https://x.io/a\)b");
    }

    #[test]
    fn builder_separates_adjacent_italics() {
        let text = MarkdownV2::new().italic("a").italic("b");
        assert_eq!(text.as_str(), "_a_**_b_");
        let link = MarkdownV2::new().link("chart [1]", "https://x.io/(1)");
        assert_eq!(link.as_str(), r"[chart \[1\]](https://x.io/(1\))");
        let pre = MarkdownV2::new().pre("x = `1`", Some("py thon"));
        assert_eq!(pre.as_str(), "```python\nx = \\`1\\`\n```");
    }

    #[test]
    fn short_text_is_one_part_and_blank_is_none() {
        assert_eq!(split("hello", None, 4096), vec!["hello"]);
        assert!(split("  \n ", None, 4096).is_empty());
    }

    #[test]
    fn splits_on_line_breaks() {
        let text = (0..10)
            .map(|i| format!("line {i} \\."))
            .collect::<Vec<_>>()
            .join("\n");
        let parts = split(&text, Some(ParseMode::MarkdownV2), 30);
        assert!(parts.len() > 1);
        for part in &parts {
            assert!(utf16_len(part) <= 30, "{part}");
            assert!(!part.starts_with('\n') && !part.ends_with('\n'));
        }
        assert_eq!(parts.join("\n"), text);
    }

    #[test]
    fn never_cuts_an_escape() {
        let text = r"\.".repeat(100);
        for part in split(&text, Some(ParseMode::MarkdownV2), 31) {
            assert!(utf16_len(&part) <= 31);
            assert!(!part.ends_with('\\') || part.ends_with(r"\\"));
            assert_eq!(part.len() % 2, 0, "{part}");
        }
    }

    #[test]
    fn long_entities_are_closed_and_reopened() {
        let text = format!("*{}*", "b".repeat(100));
        let parts = split(&text, Some(ParseMode::MarkdownV2), 40);
        assert!(parts.len() >= 3);
        for part in &parts {
            assert!(part.starts_with('*') && part.ends_with('*'), "{part}");
            assert!(utf16_len(part) <= 40);
        }
        let pre = format!("```rust\n{}\n```", "let x = 1;\n".repeat(20));
        for part in split(&pre, Some(ParseMode::MarkdownV2), 60) {
            assert!(
                part.starts_with("```rust\n") && part.ends_with("```"),
                "{part}"
            );
        }
    }

    #[test]
    fn counts_utf16_units() {
        let text = "🚀".repeat(30);
        let parts = split(&text, None, 20);
        assert!(parts.iter().all(|p| utf16_len(p) <= 20));
        assert_eq!(parts.concat(), text);
    }

    #[test]
    fn html_tags_stay_whole() {
        let text = "<b>x</b> &amp; ".repeat(10);
        for part in split(&text, Some(ParseMode::Html), 20) {
            assert_eq!(
                part.matches('<').count(),
                part.matches('>').count(),
                "{part}"
            );
        }
    }
}
