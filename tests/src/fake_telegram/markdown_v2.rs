//! A strict MarkdownV2 parser, modelled on Telegram's own (tdlib `parse_markdown_v2`), so the
//! fake rejects what Telegram rejects: a reserved character outside an entity that is not
//! escaped, an entity that is never closed, a link whose URL never ends.
//!
//! It is stricter than Telegram in one place: a backslash that escapes nothing (at the very
//! end, or before a non-ASCII character) is rejected. Telegram shows such a backslash as
//! is, which in practice means the producer forgot to escape a `\`.

/// The characters that must be escaped outside entities.
pub const RESERVED: &str = "_*[]()~`>#+-=|{}.!";

/// A formatting entity found in the text, with offsets in UTF-16 code units (as Telegram
/// reports them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entity {
    pub kind: EntityKind,
    pub offset: usize,
    pub length: usize,
    /// The URL of a link, the language of a code block.
    pub argument: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    Code,
    Pre,
    TextUrl,
    CustomEmoji,
}

impl EntityKind {
    /// Telegram's name, as used in its error messages and in the `type` of an entity.
    pub fn name(self) -> &'static str {
        match self {
            EntityKind::Bold => "Bold",
            EntityKind::Italic => "Italic",
            EntityKind::Underline => "Underline",
            EntityKind::Strikethrough => "Strikethrough",
            EntityKind::Spoiler => "Spoiler",
            EntityKind::Code => "Code",
            EntityKind::Pre => "Pre",
            EntityKind::TextUrl => "TextUrl",
            EntityKind::CustomEmoji => "CustomEmoji",
        }
    }

    /// The `type` of a `MessageEntity` in the Bot API.
    pub fn api_type(self) -> &'static str {
        match self {
            EntityKind::Bold => "bold",
            EntityKind::Italic => "italic",
            EntityKind::Underline => "underline",
            EntityKind::Strikethrough => "strikethrough",
            EntityKind::Spoiler => "spoiler",
            EntityKind::Code => "code",
            EntityKind::Pre => "pre",
            EntityKind::TextUrl => "text_link",
            EntityKind::CustomEmoji => "custom_emoji",
        }
    }
}

/// The text a user sees and its entities.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub text: String,
    pub entities: Vec<Entity>,
}

struct Open {
    kind: EntityKind,
    argument: Option<String>,
    /// Where the entity's text starts in the output, in bytes.
    begin: usize,
    /// Where its opening marker is in the input, in bytes (for the error message).
    byte_offset: usize,
}

/// Parses `text` as MarkdownV2. The error is Telegram's description after
/// "Bad Request: can't parse entities: ".
pub fn parse(text: &str) -> Result<Parsed, String> {
    let bytes = text.as_bytes();
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut stack: Vec<Open> = Vec::new();
    let mut found: Vec<(EntityKind, usize, usize, Option<String>)> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let in_code = matches!(
            stack.last().map(|o| o.kind),
            Some(EntityKind::Code | EntityKind::Pre)
        );
        if c == b'\\' {
            let next = at(i + 1);
            if (1..=126).contains(&next) {
                out.push(next);
                i += 2;
                continue;
            }
            return Err(format!(
                "Character '\\' at byte offset {i} escapes nothing and must itself be escaped"
            ));
        }
        let reserved = if in_code { "`" } else { RESERVED };
        if !reserved.as_bytes().contains(&c) {
            out.push(c);
            i += 1;
            continue;
        }
        // A '>' opening a line is a block quote marker, not a character.
        if c == b'>' && !in_code && (i == 0 || bytes[i - 1] == b'\n') {
            i += 1;
            continue;
        }
        let closes = stack.last().is_some_and(|open| match open.kind {
            EntityKind::Bold => c == b'*',
            EntityKind::Italic => c == b'_' && at(i + 1) != b'_',
            EntityKind::Code => c == b'`',
            EntityKind::Pre => c == b'`' && at(i + 1) == b'`' && at(i + 2) == b'`',
            EntityKind::TextUrl | EntityKind::CustomEmoji => c == b']',
            EntityKind::Underline => c == b'_' && at(i + 1) == b'_',
            EntityKind::Strikethrough => c == b'~',
            EntityKind::Spoiler => c == b'|' && at(i + 1) == b'|',
        });
        if !closes {
            let byte_offset = i;
            let mut argument = None;
            let kind = match c {
                b'_' if at(i + 1) == b'_' => {
                    i += 1;
                    EntityKind::Underline
                }
                b'_' => EntityKind::Italic,
                b'*' => EntityKind::Bold,
                b'~' => EntityKind::Strikethrough,
                b'|' if at(i + 1) == b'|' => {
                    i += 1;
                    EntityKind::Spoiler
                }
                b'[' => EntityKind::TextUrl,
                b'`' if at(i + 1) == b'`' && at(i + 2) == b'`' => {
                    i += 3;
                    let mut end = i;
                    while end < bytes.len()
                        && !bytes[end].is_ascii_whitespace()
                        && bytes[end] != b'`'
                    {
                        end += 1;
                    }
                    if end != i && end < bytes.len() && bytes[end] != b'`' {
                        argument = Some(String::from_utf8_lossy(&bytes[i..end]).into_owned());
                        i = end;
                    }
                    // One line break right after the opening marker is not content.
                    if at(i) == b'\n' || at(i) == b'\r' {
                        if (at(i + 1) == b'\n' || at(i + 1) == b'\r') && at(i) != at(i + 1) {
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                    i -= 1;
                    EntityKind::Pre
                }
                b'`' => EntityKind::Code,
                b'!' if at(i + 1) == b'[' => {
                    i += 1;
                    EntityKind::CustomEmoji
                }
                other => {
                    return Err(format!(
                        "Character '{}' is reserved and must be escaped with the preceding '\\'",
                        other as char
                    ));
                }
            };
            stack.push(Open {
                kind,
                argument,
                begin: out.len(),
                byte_offset,
            });
            i += 1;
            continue;
        }
        let Some(open) = stack.pop() else {
            // `closes` is only true with an open entity.
            i += 1;
            continue;
        };
        let mut argument = open.argument;
        match open.kind {
            EntityKind::Underline | EntityKind::Spoiler => i += 1,
            EntityKind::Pre => i += 2,
            EntityKind::TextUrl | EntityKind::CustomEmoji => {
                if at(i + 1) == b'(' {
                    i += 2;
                    let url_begin = i;
                    let mut url = Vec::new();
                    while i < bytes.len() && bytes[i] != b')' {
                        if bytes[i] == b'\\' && (1..=126).contains(&at(i + 1)) {
                            url.push(at(i + 1));
                            i += 2;
                        } else {
                            url.push(bytes[i]);
                            i += 1;
                        }
                    }
                    if at(i) != b')' {
                        return Err(format!(
                            "Can't find end of a URL at byte offset {url_begin}"
                        ));
                    }
                    argument = Some(String::from_utf8_lossy(&url).into_owned());
                } else {
                    argument = Some(String::from_utf8_lossy(&out[open.begin..]).into_owned());
                }
            }
            _ => {}
        }
        if out.len() > open.begin {
            found.push((open.kind, open.begin, out.len(), argument));
        }
        i += 1;
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "Can't find end of {} entity at byte offset {}",
            open.kind.name(),
            open.byte_offset
        ));
    }
    let text = String::from_utf8(out).map_err(|_| "Text must be encoded in UTF-8".to_string())?;
    let utf16_at = |byte: usize| text.get(..byte).map_or(0, |s| s.encode_utf16().count());
    let mut entities: Vec<Entity> = found
        .into_iter()
        .map(|(kind, begin, end, argument)| {
            let offset = utf16_at(begin);
            Entity {
                kind,
                offset,
                length: utf16_at(end) - offset,
                argument,
            }
        })
        .collect();
    entities.sort_by_key(|e| (e.offset, std::cmp::Reverse(e.length)));
    Ok(Parsed { text, entities })
}

/// The length Telegram limits (4,096): UTF-16 code units of the visible text.
pub fn visible_len(parsed: &Parsed) -> usize {
    parsed.text.encode_utf16().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text).expect_err("the text is invalid MarkdownV2")
    }

    #[test]
    fn plain_escaped_text_passes() {
        let parsed = parse(r"BRK\.B at 412\.50 \(\-1\.2%\)\!").expect("valid");
        assert_eq!(parsed.text, "BRK.B at 412.50 (-1.2%)!");
        assert!(parsed.entities.is_empty());
    }

    #[test]
    fn every_reserved_character_unescaped_is_rejected() {
        for c in ['.', '-', '!', '(', ')', '#', '+', '=', '{', '}', '>', '|'] {
            let text = format!("a{c}b");
            // '>' at a line start is a quote; here it is mid-line.
            assert!(
                err(&text).contains(&format!("Character '{c}' is reserved")),
                "{text}"
            );
        }
    }

    #[test]
    fn entities_must_close() {
        assert_eq!(
            err("*bold"),
            "Can't find end of Bold entity at byte offset 0"
        );
        assert_eq!(
            err("x _it"),
            "Can't find end of Italic entity at byte offset 2"
        );
        assert!(err("`code").contains("Code entity"));
        assert!(err("[link](http://x").contains("Can't find end of a URL"));
        assert!(err("||spoiler").contains("Spoiler"));
        assert!(err("||spoiler|").contains("Character '|' is reserved"));
    }

    #[test]
    fn entities_parse_with_offsets() {
        let parsed = parse(r"*BTC* crossed `65000\.5` [chart](https://x.io/a\)b) __u__ ~s~ ||p||")
            .expect("valid");
        assert_eq!(parsed.text, "BTC crossed 65000.5 chart u s p");
        let kinds: Vec<_> = parsed.entities.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EntityKind::Bold,
                EntityKind::Code,
                EntityKind::TextUrl,
                EntityKind::Underline,
                EntityKind::Strikethrough,
                EntityKind::Spoiler
            ]
        );
        assert_eq!(
            parsed.entities[2].argument.as_deref(),
            Some("https://x.io/a)b")
        );
        assert_eq!(
            (parsed.entities[1].offset, parsed.entities[1].length),
            (12, 7)
        );
    }

    #[test]
    fn code_only_reserves_backtick() {
        let parsed = parse("`a.b-c!(x)` ```rust\nfn main() {}\n```").expect("valid");
        assert_eq!(parsed.text, "a.b-c!(x) fn main() {}\n");
        assert_eq!(parsed.entities[1].argument.as_deref(), Some("rust"));
    }

    #[test]
    fn lone_backslash_is_rejected() {
        assert!(err("ends with \\").contains("escapes nothing"));
        assert!(err("\\é").contains("escapes nothing"));
        assert_eq!(parse(r"a\\b").expect("valid").text, r"a\b");
    }

    #[test]
    fn quote_marker_at_line_start_is_accepted() {
        assert_eq!(parse(">quoted\n>more").expect("valid").text, "quoted\nmore");
    }

    #[test]
    fn utf16_offsets_count_surrogate_pairs() {
        let parsed = parse("🚀 *up*").expect("valid");
        assert_eq!(parsed.entities[0].offset, 3);
        assert_eq!(visible_len(&parsed), 5);
    }
}
