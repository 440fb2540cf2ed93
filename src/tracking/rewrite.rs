//! Rewriting rendered email for tracking: links through the click tracker, the
//! open pixel, and a text part derived from the HTML when a template has none.
//!
//! HTML is handled by lol_html (a streaming rewriter that understands tags,
//! attributes, quoting and entities) rather than patterns over the source.

use lol_html::html_content::ContentType;
use lol_html::html_content::Element;
use lol_html::{
    element, rewrite_str, ElementContentHandlers, HandlerResult, RewriteStrSettings, Selector,
};
use std::borrow::Cow;
use std::sync::LazyLock;

/// The attribute that keeps one link untracked: `<a data-tayori-notrack href=…>`.
pub const NO_TRACK_ATTR: &str = "data-tayori-notrack";

/// The selectors of [`rewrite_html`], parsed once: `element!` parses its
/// selector on every call, about 2 % of the daemon's CPU per tracked email
/// (perf, issue 19).
static A_HREF: LazyLock<Selector> = LazyLock::new(|| parse_selector("a[href]"));
static BODY: LazyLock<Selector> = LazyLock::new(|| parse_selector("body"));

fn parse_selector(s: &str) -> Selector {
    s.parse()
        .unwrap_or_else(|e| unreachable!("the constant selector {s:?} parses: {e}"))
}

/// `element!` with a selector parsed beforehand.
fn on<'h>(
    selector: &'static Selector,
    handler: impl FnMut(&mut Element<'_, '_>) -> HandlerResult + 'h,
) -> (Cow<'static, Selector>, ElementContentHandlers<'h>) {
    (
        Cow::Borrowed(selector),
        ElementContentHandlers::default().element(handler),
    )
}

/// Whether a link may go through the click tracker: only web links (never
/// `mailto:`, `tel:` or in-page anchors, which a redirect would break).
pub fn trackable(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("https://") || lower.starts_with("http://")
}

/// Replaces the `href` of each `<a>` with what `link` returns for it (the original
/// URL, entities decoded), appends `pixel` (HTML) at the end of the body, and drops
/// the opt-out attribute.
pub fn rewrite_html(
    html: &str,
    pixel: Option<&str>,
    mut link: impl FnMut(&str) -> Option<String>,
) -> Result<String, String> {
    let mut saw_body = false;
    let out = rewrite_str(
        html,
        RewriteStrSettings {
            element_content_handlers: vec![
                on(&A_HREF, |el| {
                    if el.has_attribute(NO_TRACK_ATTR) {
                        el.remove_attribute(NO_TRACK_ATTR);
                        return Ok(());
                    }
                    let Some(raw) = el.get_attribute("href") else {
                        return Ok(());
                    };
                    let url = html_escape::decode_html_entities(raw.trim());
                    if let Some(new) = link(&url) {
                        el.set_attribute(
                            "href",
                            &html_escape::encode_double_quoted_attribute(&new),
                        )?;
                    }
                    Ok(())
                }),
                on(&BODY, |el| {
                    saw_body = true;
                    if let Some(p) = pixel {
                        el.append(p, ContentType::Html);
                    }
                    Ok(())
                }),
            ],
            ..RewriteStrSettings::new()
        },
    )
    .map_err(|e| format!("html part: {e}"))?;
    Ok(match pixel {
        Some(p) if !saw_body => out + p,
        _ => out,
    })
}

/// Replaces each web URL in plain text with what `link` returns for it.
pub fn rewrite_text(text: &str, mut link: impl FnMut(&str) -> Option<String>) -> String {
    let mut finder = linkify::LinkFinder::new();
    finder.kinds(&[linkify::LinkKind::Url]);
    let mut out = String::with_capacity(text.len() + 64);
    let mut last = 0;
    for l in finder.links(text) {
        out.push_str(&text[last..l.start()]);
        match link(l.as_str()) {
            Some(new) => out.push_str(&new),
            None => out.push_str(l.as_str()),
        }
        last = l.end();
    }
    out.push_str(&text[last..]);
    out
}

/// Marks a line break while the source's own whitespace is collapsed.
const BREAK: char = '\u{1}';

/// A plain-text rendering of an HTML part: block elements on their own lines,
/// links as `text (url)`, scripts, styles and the head left out.
pub fn html_to_text(html: &str) -> Result<String, String> {
    let brk = BREAK.to_string();
    let brk2 = format!("{BREAK}{BREAK}");
    let flat = rewrite_str(
        html,
        RewriteStrSettings {
            // One handler deciding by tag: each selector costs a parse per call.
            element_content_handlers: vec![element!("*", |el| {
                match el.tag_name().as_str() {
                    "head" | "script" | "style" | "template" => {
                        el.remove();
                        return Ok(());
                    }
                    "br" => el.before(&brk, ContentType::Html),
                    "p" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "ul" | "ol"
                    | "blockquote" => {
                        el.before(&brk2, ContentType::Html);
                        el.after(&brk2, ContentType::Html);
                    }
                    "div" | "li" | "tr" | "hr" => {
                        el.before(&brk, ContentType::Html);
                        el.after(&brk, ContentType::Html);
                    }
                    "td" | "th" => el.after(" ", ContentType::Html),
                    "a" => {
                        if let Some(href) = el.get_attribute("href") {
                            let url = html_escape::decode_html_entities(href.trim()).into_owned();
                            if trackable(&url) {
                                // Escaped again: this goes back through the entity decoder below.
                                let shown = format!(" ({})", html_escape::encode_text(&url));
                                el.after(&shown, ContentType::Html);
                            }
                        }
                    }
                    "img" => {
                        if let Some(alt) = el.get_attribute("alt") {
                            el.after(&alt, ContentType::Html);
                        }
                    }
                    _ => {}
                }
                el.remove_and_keep_content();
                Ok(())
            })],
            document_content_handlers: vec![lol_html::doc_comments!(|c| {
                c.remove();
                Ok(())
            })],
            ..RewriteStrSettings::new()
        },
    )
    .map_err(|e| format!("html part: {e}"))?;
    let decoded = html_escape::decode_html_entities(&flat);
    // Collapse the source's whitespace as a browser would, then turn the marks into
    // line breaks: at most one blank line in a row, no trailing spaces.
    let mut collapsed = String::with_capacity(decoded.len());
    let mut space = false;
    for c in decoded.chars() {
        if c == BREAK {
            collapsed.push(BREAK);
            space = false;
        } else if c.is_whitespace() && c != '\u{a0}' {
            space = true;
        } else {
            if space && !collapsed.is_empty() && !collapsed.ends_with(BREAK) {
                collapsed.push(' ');
            }
            space = false;
            collapsed.push(if c == '\u{a0}' { ' ' } else { c });
        }
    }
    let mut out = String::with_capacity(collapsed.len());
    let mut blank_run = 0;
    for line in collapsed.split(BREAK) {
        let line = line.trim();
        if line.is_empty() {
            blank_run += 1;
            if blank_run == 1 && !out.is_empty() {
                out.push('\n');
            }
            continue;
        }
        blank_run = 0;
        out.push_str(line);
        out.push('\n');
    }
    Ok(out.trim_end().to_owned() + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_rewritten_except_opted_out_and_non_web_ones() {
        let html = r#"<html><body><p><a href="https://shop.example.com/a?x=1&amp;y=2">Sale</a>
<a data-tayori-notrack href="https://example.com/raw">raw</a>
<a href="mailto:info@example.com">mail</a> <a href='#top'>top</a></p></body></html>"#;
        let mut seen = Vec::new();
        let out = rewrite_html(html, Some("<img src=\"P\">"), |u| {
            seen.push(u.to_owned());
            trackable(u).then(|| format!("https://t.example/c/{}", seen.len()))
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                "https://shop.example.com/a?x=1&y=2",
                "mailto:info@example.com",
                "#top"
            ]
        );
        assert!(out.contains(r#"href="https://t.example/c/1""#), "{out}");
        assert!(
            out.contains(r#"<a href="https://example.com/raw">"#),
            "{out}"
        );
        assert!(out.contains(r#"href="mailto:info@example.com""#), "{out}");
        assert!(out.contains("<img src=\"P\"></body>"), "{out}");
    }

    #[test]
    fn the_pixel_goes_at_the_end_without_a_body() {
        let out = rewrite_html("<p>hi</p>", Some("<img>"), |_| None).unwrap();
        assert_eq!(out, "<p>hi</p><img>");
    }

    #[test]
    fn text_links_are_rewritten_without_trailing_punctuation() {
        let out = rewrite_text(
            "Sale: https://shop.example.com/s?a=1. Bye (http://x.example/)",
            |u| Some(format!("<{u}>")),
        );
        assert_eq!(
            out,
            "Sale: <https://shop.example.com/s?a=1>. Bye (<http://x.example/>)"
        );
    }

    #[test]
    fn html_becomes_readable_text() {
        let html = "<html><head><title>T</title><style>p{}</style></head><body>\
            <h1>春の&nbsp;セール</h1><p>山田様、\n   こんにちは。<br>20%&amp;OFF</p>\
            <p><a href=\"https://shop.example.com/?a=1&amp;b=2\">見る</a></p><!-- c --></body></html>";
        let text = html_to_text(html).unwrap();
        assert_eq!(
            text,
            "春の セール\n\n山田様、 こんにちは。\n20%&OFF\n\n見る (https://shop.example.com/?a=1&b=2)\n"
        );
    }
}
