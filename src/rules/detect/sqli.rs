//! SQL injection detector behind `match: {sqli: true}`: lexes a value as SQL
//! where an application would splice it and reports when it breaks out into
//! SQL structure.
//!
//! # Why a lexer rather than more regexes
//! Regexes over SQL words either fire on prose ("union of select committees",
//! "O'Reilly") or miss re-spelled payloads (`union/**/select`,
//! `/*!50000union*/`). Lexing the value the way the database would, in each
//! place it could have been spliced, lets the rules ask the real question:
//! *once the value has closed the application's literal, do the next tokens
//! form SQL?* Prose almost never puts `OR`, `UNION`, `;` or a comment right
//! after an apostrophe, and almost never leaves the statement parseable.
//!
//! This is our own design in the spirit of libinjection (tokenize, classify,
//! judge the shape); it uses none of libinjection's code or fingerprint tables.
//!
//! # Pipeline
//! 1. **Pre-filter** (`worth_lexing`): one pass over the bytes; a value with
//!    no quote, `;`, `(`, `@`, `*`, no leading number and no `union` cannot
//!    satisfy any rule below, so it is not lexed at all.
//! 2. **Lexer** (`Lexer`): bytes → tokens with a class letter (table on
//!    `Class`), a keyword identity (`Kw`) and flags. At most
//!    [`MAX_TOKENS`] tokens of the first [`MAX_SCAN_BYTES`] bytes, kept in a
//!    fixed array: no allocation unless something is found.
//! 3. **Contexts**: the value is lexed three times, as the database would
//!    see it after `… = '<v>'` (`sql:single-quote`), `… = "<v>"`
//!    (`sql:double-quote`) and `… = <v>` (`sql:numeric`, raw). In a quoted
//!    context the stream starts inside the application's literal; the value
//!    *breaks out* if that first string token closes inside the value. A
//!    value holding a backtick is also lexed inside a `` `…` `` identifier
//!    (`sql:backtick`: sort columns and table names taken from the request),
//!    where only the grammar right after the break-out is judged.
//! 4. **Rules**: a small grammar over the tokens after the break-out (see
//!    `after_breakout`, `anywhere`, `value_position`). Strong shapes (UNION
//!    SELECT, stacked statements, an operator followed by a subquery or a
//!    time/error function, WAITFOR DELAY, INTO OUTFILE, `@@sysvar`, a
//!    delay function in operand position) fire as soon as they appear. Weak shapes (boolean tautologies, bare comparisons,
//!    concatenations, ORDER BY probes) fire only if the rest of the value
//!    also parses as an expression (`walk`) and leaves the statement whole:
//!    in a quoted context the value must end inside a string the
//!    application's closing quote completes, or in a comment that swallows
//!    it. That syntactic check is what keeps names, prose and code quiet.
//!    An operator-led expression after the quote that ends the statement
//!    with a wordless comment or `;` (`x'|name--`, `id'not like id--`) is
//!    judged the same way (`terminated_expression`). Also: the tail of a
//!    select list after the break-out (`) AS n FROM`, `1 AS "x" FROM t`,
//!    `` ` AS `x` FROM ``), a whole value that parses and casts to a
//!    PostgreSQL type (`password::int`), a leading `HAVING` with a
//!    comparison, and a SQL built-in's name with its `(` as the whole value.
//! 5. **Paths** (`detect_path`, `match: {sqli_path: true}`): the whole
//!    value, then each `/`-separated segment alone, so that a REST route
//!    segment gets the numeric context a query parameter gets.
//!
//! # Known gaps (deliberate trade-offs, also listed in the tests)
//! - Only the first [`MAX_SCAN_BYTES`] bytes are examined; a payload padded
//!   past that (e.g. a 5 KiB string before the quote) is not seen. Weak rules
//!   also refuse to judge a stream cut by a limit. Regex rules are the
//!   backstop there.
//! - Backslash escapes are MySQL's (`\'` does not close a string); a value
//!   holding `\'` or `\"` is lexed a second time without them, as standard
//!   SQL, MSSQL and SQLite read it (`\' or 1=1--` matches).
//! - Typographic quotes (`’`, `‘`, `´`, `“`, `”`, fullwidth) are folded to
//!   ASCII before lexing, as best-fit code-page conversion does; so are a
//!   lone byte 0xA0 (MySQL's Latin-1 blank) and Unicode spaces (NFKC's).
//! - A value that is itself unquoted SQL (`a UNION SELECT b FROM c`,
//!   `x; DROP TABLE t`) matches in `sql:numeric`, so SQL pasted into a
//!   free-text field is reported; exclusions per target are the remedy.
//! - A value starting with a number followed by a boolean comparison
//!   (`2 or 3 = 5`) is indistinguishable from `1 or 1=1` and matches.
//! - A quoted symbol alone (`'-'`, `'*'`) does not match; after a word
//!   (`admin'-'`) or after `OR ''` (`' or ''-'`) it does: `name = ''-''`
//!   is the empty-string authentication bypass.
//! - After a quote, an operator, an operand and `--`/`#` with no words in
//!   the comment match (`Jones' - Smith--`); ended by a bare `;` they
//!   need a literal or a boolean operator (`Jones' / Smith;` does not).
//! - Comment truncation (`admin'--`) only fires when the comment body holds
//!   no letters or digits, so `admin'-- x` is missed; the reason is plural
//!   possessives such as `the players' #1 pick`. Conversely a value that is
//!   only a quote and a comment marker (`'#'`, `"--"`) matches.
//! - Weak shapes need a parseable statement, so probes that leave the
//!   application's quote dangling with a column comparison
//!   (`' or name = 'x'`) are missed. A boolean operator followed by a
//!   literal and a symbolic comparison (`' or 'a'='a'`, `or 1=1`,
//!   `id=AND 2>1`) is a strong shape and matches anywhere after a quote,
//!   punctuation or at the start, even in prose ("and 2 > 1 is true").
//! - A single word closed by the quote and followed only by `)`, `;` or the
//!   other quote (`1')`, `x';`, `5'"`) matches as a dangling-quote probe; a
//!   lone trailing quote (`1'`, `James'`) does not.
//! - A tight delay-function call as the whole value or after an operator
//!   (`sleep(5);`, `x = sleep(5)`) matches, even in a code snippet;
//!   `time.sleep(5)` and "add sleep(5) here" do not.
//! - `order by date` alone does not match: with nothing before it there is
//!   no break-out, and in numeric context only a column number counts
//!   (`1 ORDER BY 3`).
//! - A SQL built-in's name and an open parenthesis as the whole value
//!   (`count(`, `cast (`) matches, as a search box typing code would; with
//!   anything after the `(` it is judged as any other call.
//! - A `::` cast counts only to a lower-case type name (`::int`, `::text`);
//!   `Pod::Text` and `std::string` are namespaces, and `::INT` is missed.
//! - `AS alias FROM` needs a quoted alias unless a `)` closed the
//!   expression, and after `FROM` only a table name and the end or a
//!   clause: "5 as usual from Monday" is prose.
//!
//! # Cost
//! Linear in the value: each context lexes at most [`MAX_SCAN_BYTES`] bytes
//! into at most [`MAX_TOKENS`] tokens in a stack array, and every rule looks
//! a bounded distance ahead of each token. Measured with the
//! `timing_report` test (`cargo test --release --lib rules::detect::sqli --
//! --nocapture`, release without LTO, one core of the dev VM): about 250 ns
//! per attack value, 150 ns per benign corpus value, 2–4 µs for a 4 KiB
//! value of prose.

use super::Detection;

/// Bytes of the value examined. Longer values are judged on this prefix
/// only (see the known gaps above): parameters worth attacking are short,
/// and the bound keeps the worst case for a request with many large fields
/// predictable.
pub const MAX_SCAN_BYTES: usize = 4096;

/// Tokens kept per context. Every rule looks at the first few tokens after
/// the break-out; 64 leaves room for long UNION column lists.
pub const MAX_TOKENS: usize = 64;

/// Token classes shown in `Detection::detail`.
pub const FINGERPRINT_LEN: usize = 8;

const CTX_NUMERIC: &str = "sql:numeric";
const CTX_SINGLE: &str = "sql:single-quote";
const CTX_DOUBLE: &str = "sql:double-quote";
const CTX_BACKTICK: &str = "sql:backtick";
/// Not tied to one splice context.
const CTX_ANY: &str = "sql:any";

// Rule names, as reported in `Detection::detail`.
const R_UNION: &str = "union-select";
const R_STACKED: &str = "stacked-query";
const R_WAITFOR: &str = "waitfor-delay";
const R_OP_PAYLOAD: &str = "operator-then-subquery-or-delay-function";
const R_COMMENT: &str = "comment-truncation";
const R_BOOLEAN: &str = "boolean-expression";
const R_COMPARE: &str = "comparison";
const R_CONCAT: &str = "concatenated-sql-function";
const R_CLAUSE: &str = "clause-after-breakout";
const R_OUTFILE: &str = "into-outfile";
const R_SYSVAR: &str = "system-variable";
const R_VALUE_FN: &str = "delay-function-as-value";
const R_VALUE_SUBQUERY: &str = "subquery-as-value";
const R_DANGER: &str = "delay-function-in-expression";
const R_TAUTOLOGY: &str = "boolean-literal-comparison";
const R_TIGHT_LOGIC: &str = "boolean-glued-to-quote";
const R_DANGLING: &str = "dangling-quote-probe";
const R_TERMINATED: &str = "terminated-expression";
const R_EMPTY_OPERAND: &str = "empty-string-operand";
const R_LITERAL_COMMENT: &str = "boolean-literal-then-comment";
const R_SYNTAX_PROBE: &str = "syntax-error-probe";
const R_ALIAS: &str = "alias-then-from";
const R_CAST: &str = "postgres-cast";
const R_OPEN_CALL: &str = "unclosed-sql-call";

/// Does `input`, spliced into a SQL statement, form injected SQL structure?
///
/// The caller decodes first (URL, HTML entities); case does not matter here.
/// Returns the first context that shows structure, in the order single
/// quote, double quote, numeric.
pub fn detect(input: &[u8]) -> Option<Detection> {
    let cut = input.len() > MAX_SCAN_BYTES;
    let input = &input[..input.len().min(MAX_SCAN_BYTES)];
    // Typographic quotes and Unicode spaces are folded first: databases and
    // drivers that convert Unicode to a legacy code page ("best fit") turn
    // the quotes into ASCII ones, MySQL reads a Latin-1 no-break space as a
    // blank, and both are known ways around filters. Only values holding
    // one pay for the copy.
    if let Some(folded) = fold_lookalikes(input) {
        return detect_ascii(&folded, cut);
    }
    detect_ascii(input, cut)
}

/// [`detect`] for a URL path: the whole value, then each `/`-separated
/// segment on its own. A REST route splices a segment where a query would
/// splice a parameter (`/items/1 AND 1=1/view`), and the numeric context
/// only anchors on a value that starts with a number.
pub fn detect_path(input: &[u8]) -> Option<Detection> {
    if let Some(hit) = detect(input) {
        return Some(hit);
    }
    let input = &input[..input.len().min(MAX_SCAN_BYTES)];
    let mut segments = input.split(|&b| b == b'/').filter(|s| !s.is_empty());
    let first = segments.next()?;
    // One segment (no `/` inside) is the value already judged.
    let mut rest = segments.peekable();
    if rest.peek().is_none() && first.len() == input.len() {
        return None;
    }
    std::iter::once(first).chain(rest).find_map(detect)
}

fn detect_ascii(input: &[u8], cut: bool) -> Option<Detection> {
    if !worth_lexing(input) {
        return None;
    }
    if !cut && syntax_probe(input) {
        return Some(Detection {
            context: CTX_ANY,
            detail: R_SYNTAX_PROBE.to_string(),
        });
    }
    for (quote, context) in [(b'\'', CTX_SINGLE), (b'"', CTX_DOUBLE)] {
        // Without the quote byte the value cannot close the literal; after
        // a sentence it is prose quoting SQL (see `prose_before`).
        if input.contains(&quote) && !prose_before(input, quote) {
            let stream = Stream::lex(input, Some(quote), cut);
            if let Some(hit) = judge_quoted(&stream) {
                return Some(hit.detection(context, &stream));
            }
            // `\'` closes the literal on backends where a backslash is an
            // ordinary character (standard SQL strings, MSSQL, SQLite,
            // Oracle) and defeats filters that escape quotes by prefixing
            // a backslash: lex again without backslash escapes.
            if input.windows(2).any(|w| w[0] == b'\\' && w[1] == quote) {
                let stream = Stream::lex_with(input, Some(quote), cut, false);
                if let Some(hit) = judge_quoted(&stream) {
                    return Some(hit.detection(context, &stream));
                }
            }
        }
    }
    // `… ORDER BY `<v>``, `SELECT `<v>` FROM …`: column and table names
    // taken from the request land in a backtick-quoted identifier. Only the
    // grammar right after the break-out is judged there: Markdown code
    // spans also hold backticks.
    if input.contains(&b'`') && !prose_before(input, b'`') {
        let stream = Stream::lex(input, Some(b'`'), cut);
        if stream.toks().first().is_some_and(|x| !x.has(OPEN))
            && let Some(rule) = after_breakout(stream.toks(), 1, stream.end, true)
        {
            return Some(Hit { rule, from: 0 }.detection(CTX_BACKTICK, &stream));
        }
    }
    let stream = Stream::lex(input, None, cut);
    judge_numeric(&stream).map(|hit| hit.detection(CTX_NUMERIC, &stream))
}

/// Whether the value runs a sentence of at least [`PROSE_WORDS`] words
/// before its first `quote`: an injection closes the application's literal
/// right after the expected value (`1'`, `admin'`, `John Smith'`), while a
/// comment or a question that quotes a payload ("…where typing ' or 1=1
/// makes…", "…named him Robert'); DROP TABLE…") reaches it mid-sentence.
fn prose_before(input: &[u8], quote: u8) -> bool {
    let end = input.iter().position(|&b| b == quote).unwrap_or(0);
    let words = input[..end]
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| {
            let w = w
                .strip_suffix(b",")
                .or_else(|| w.strip_suffix(b"?"))
                .or_else(|| w.strip_suffix(b"."))
                .unwrap_or(w);
            w.len() >= 2 && w.iter().all(u8::is_ascii_alphabetic)
        })
        .take(PROSE_WORDS)
        .count();
    words >= PROSE_WORDS
}

/// A value ending in a run of at least [`PROBE_RUN`] characters drawn from
/// `'"().,` that holds both quote characters and a parenthesis: appended
/// to a parameter, it breaks every splice context at once to see whether
/// the application answers with a database error (sqlmap's heuristic
/// check appends ten such characters). Text does not end in such a run,
/// and the runs code ends with (`("'")`, `print("('.')")`) are shorter.
fn syntax_probe(input: &[u8]) -> bool {
    let run = input
        .iter()
        .rev()
        .take_while(|&&c| matches!(c, b'\'' | b'"' | b'(' | b')' | b'.' | b','))
        .count();
    if run < PROBE_RUN {
        return false;
    }
    let tail = &input[input.len() - run..];
    tail.contains(&b'\'') && tail.contains(&b'"') && tail.iter().any(|&c| c == b'(' || c == b')')
}

/// Length of the punctuation run [`syntax_probe`] looks for.
const PROBE_RUN: usize = 10;

/// Words of prose before a quote that make the quote part of the text.
const PROSE_WORDS: usize = 8;

/// Typographic quotes that legacy code-page conversions map to ASCII
/// quotes: U+2018, U+2019, U+201B, U+2032, U+00B4, U+02BC, U+FF07 (to `'`)
/// and U+201C, U+201D, U+2033, U+FF02 (to `"`); and spaces a database or
/// the application's normalisation reads as a blank: a lone byte 0xA0
/// (MySQL counts Latin-1's no-break space as whitespace, `1%A0UNION%A0SELECT`),
/// U+00A0, U+2000–U+200A, U+202F, U+205F and U+3000 (NFKC makes them
/// spaces). `None` when the value holds none (the common case, decided by
/// one pass over the bytes).
fn fold_lookalikes(b: &[u8]) -> Option<Vec<u8>> {
    /// What the character at `i` folds to, and its length; `None` for one
    /// that stays.
    fn fold_at(b: &[u8], i: usize) -> Option<(u8, usize)> {
        match (b[i], b.get(i + 1), b.get(i + 2)) {
            (0xe2, Some(0x80), Some(0x98 | 0x99 | 0x9b | 0xb2)) => Some((b'\'', 3)),
            (0xe2, Some(0x80), Some(0x9c | 0x9d | 0xb3)) => Some((b'"', 3)),
            (0xc2, Some(0xb4), _) | (0xca, Some(0xbc), _) => Some((b'\'', 2)),
            (0xef, Some(0xbc), Some(0x87)) => Some((b'\'', 3)),
            (0xef, Some(0xbc), Some(0x82)) => Some((b'"', 3)),
            (0xc2, Some(0xa0), _) => Some((b' ', 2)),
            (0xe2, Some(0x80), Some(0x80..=0x8a | 0xaf))
            | (0xe2, Some(0x81), Some(0x9f))
            | (0xe3, Some(0x80), Some(0x80)) => Some((b' ', 3)),
            (0xa0, _, _) => Some((b' ', 1)),
            _ => None,
        }
    }
    /// The length of the UTF-8 character at `i` (1 for an ASCII byte or a
    /// byte that starts no valid sequence).
    fn char_len(b: &[u8], i: usize) -> usize {
        let n = match b[i] {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => return 1,
        };
        let whole = b
            .get(i + 1..i + n)
            .is_some_and(|rest| rest.iter().all(|&c| c & 0xc0 == 0x80));
        if whole { n } else { 1 }
    }
    if b.is_ascii() {
        return None;
    }
    // Walk character by character, so that 0xA0 inside a valid sequence
    // (`à` is C3 A0) is never taken for a lone no-break space.
    let mut out: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < b.len() {
        let len = char_len(b, i);
        let folded = if b[i] < 0x80 || (len == 1 && b[i] != 0xa0) {
            None
        } else {
            fold_at(b, i).filter(|&(_, n)| n == len)
        };
        match (folded, out.as_mut()) {
            (Some((c, _)), Some(o)) => o.push(c),
            (Some((c, _)), None) => {
                let mut o = Vec::with_capacity(b.len());
                o.extend_from_slice(&b[..i]);
                o.push(c);
                out = Some(o);
            }
            (None, Some(o)) => o.extend_from_slice(&b[i..i + len]),
            (None, None) => {}
        }
        i += len;
    }
    out
}

/// Cheap reject for the common case (plain words, numbers, dates, e-mail
/// addresses). Every rule needs one of: a quote (quoted contexts, INTO
/// OUTFILE '…'), `;` (stacked), `(` (calls, subqueries), `@` (`@@version`),
/// `*` (a `/*` comment hiding a leading number), a leading number (numeric
/// break-out), a leading boolean operator or the word `union` (unquoted
/// UNION SELECT), a leading `ORDER`/`GROUP`/`HAVING` (`ORDER BY 1--`), a
/// backtick (identifier context), `::` (a cast) or `) AS`.
fn worth_lexing(b: &[u8]) -> bool {
    let lead = b.iter().find(|&&c| !is_space(c) && c != b'-' && c != b'+');
    if lead.is_some_and(|&c| c.is_ascii_digit() || c == b'.') {
        return true;
    }
    // A leading boolean operator (`or 1=1`, `) AND 2>1`, `|| 1=1`).
    let start = b
        .iter()
        .position(|&c| !is_space(c) && c != b')')
        .unwrap_or(b.len());
    if boolean_op_at(b, start) {
        return true;
    }
    // A leading `ORDER BY` / `GROUP BY` clause probe.
    let rest = &b[start..];
    if rest.len() > 5
        && (rest[..5].eq_ignore_ascii_case(b"order") || rest[..5].eq_ignore_ascii_case(b"group"))
    {
        return true;
    }
    // A leading `HAVING` clause probe, or `) AS alias FROM`.
    if rest.len() > 6 && rest[..6].eq_ignore_ascii_case(b"having") {
        return true;
    }
    if rest.len() > 3
        && rest[..2].eq_ignore_ascii_case(b"as")
        && is_space(rest[2])
        && b[..start].contains(&b')')
    {
        return true;
    }
    // One pass with an early exit; the `union` test only runs at a `u`.
    const CANDIDATES: [bool; 256] = super::byte_set(b"'\";(@*`:=,uU");
    b.iter()
        .enumerate()
        .any(|(i, &c)| CANDIDATES[usize::from(c)] && worth_at(b, i, c))
}

/// [`worth_lexing`]'s test at a candidate byte `c` = `b[i]`.
fn worth_at(b: &[u8], i: usize, c: u8) -> bool {
    match c {
        b'\'' | b'"' | b';' | b'(' | b'@' | b'*' | b'`' => true,
        // A PostgreSQL cast (`password::int`).
        b':' => b.get(i + 1) == Some(&b':'),
        // `x=AND 1=1`, `a,OR 2>1`: a boolean operator after punctuation.
        b'=' | b',' => {
            let next = b[i + 1..]
                .iter()
                .position(|&c| !is_space(c))
                .map_or(b.len(), |p| i + 1 + p);
            boolean_op_at(b, next)
        }
        b'u' | b'U' => b
            .get(i + 1..i + 5)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"nion")),
        _ => false,
    }
}

/// Does a boolean operator (`or`, `and`, `xor` as whole words, `||`,
/// `&&`) start at `i`?
fn boolean_op_at(b: &[u8], i: usize) -> bool {
    let rest = b.get(i..).unwrap_or(&[]);
    let word_op = |w: &[u8]| {
        rest.len() > w.len()
            && rest[..w.len()].eq_ignore_ascii_case(w)
            && !is_word_byte(rest[w.len()])
    };
    rest.starts_with(b"||")
        || rest.starts_with(b"&&")
        || word_op(b"or")
        || word_op(b"and")
        || word_op(b"xor")
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// Token classes. The letter is what `Detection::detail` shows.
///
/// | letter | class | examples |
/// |---|---|---|
/// | `s` | string literal | `'a'`, `"a"` |
/// | `n` | number or literal keyword | `1`, `0x7e`, `1e5`, `.5`, `NULL`, `TRUE` |
/// | `v` | variable | `@x`, `@@version` |
/// | `b` | bare word: identifier, unknown word, `` `quoted` `` | `users`, `O` |
/// | `f` | function call: a word followed by `(` | `sleep(`, `concat (` |
/// | `k` | other keyword | `FROM`, `ORDER`, `BY`, `TABLE`, `INTO` |
/// | `U` | set operator | `UNION` |
/// | `E` | statement keyword | `SELECT`, `DROP`, `EXEC` |
/// | `&` | boolean operator | `AND`, `OR`, `XOR`, `&&`, `\|\|` |
/// | `=` | comparison | `=`, `<>`, `LIKE`, `RLIKE`, `IN`, `IS`, `:=` |
/// | `o` | arithmetic / bitwise | `+ - * / % ^ \| & << >> ::` `DIV` |
/// | `u` | unary / predicate | `NOT`, `!`, `~`, `EXISTS` |
/// | `( ) , ; .` | punctuation | |
/// | `c` | comment reaching the end of the value | `--`, `#`, open `/*` |
/// | `X` | anything else | `{`, `[`, `?`, `\`, `:` |
///
/// Comments that end inside the value (`/**/`, a line comment before a
/// newline) are whitespace, as they are to the database; MySQL's
/// `/*!NNNNN … */` is code, so its content is lexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Str,
    Num,
    Var,
    Word,
    Func,
    Keyword,
    Union,
    Command,
    Logic,
    Compare,
    Arith,
    Unary,
    LParen,
    RParen,
    Comma,
    Semi,
    Dot,
    Comment,
    Other,
}

impl Class {
    fn letter(self) -> char {
        match self {
            Class::Str => 's',
            Class::Num => 'n',
            Class::Var => 'v',
            Class::Word => 'b',
            Class::Func => 'f',
            Class::Keyword => 'k',
            Class::Union => 'U',
            Class::Command => 'E',
            Class::Logic => '&',
            Class::Compare => '=',
            Class::Arith => 'o',
            Class::Unary => 'u',
            Class::LParen => '(',
            Class::RParen => ')',
            Class::Comma => ',',
            Class::Semi => ';',
            Class::Dot => '.',
            Class::Comment => 'c',
            Class::Other => 'X',
        }
    }
}

/// Keyword identities the rules look at; every other keyword is `None`
/// and only its class matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kw {
    None,
    Select,
    All,
    Distinct,
    Top,
    Insert,
    Update,
    Delete,
    Drop,
    Create,
    Alter,
    Truncate,
    Exec,
    Declare,
    Shutdown,
    Set,
    Waitfor,
    /// `DELAY` / `TIME` after `WAITFOR`.
    Delay,
    From,
    Into,
    /// `OUTFILE` / `DUMPFILE`.
    Outfile,
    /// What `DROP`/`CREATE`/`ALTER` act on: `TABLE`, `DATABASE`, `USER`, ….
    Object,
    If,
    Exists,
    Not,
    Order,
    Group,
    By,
    Having,
    As,
    /// `END`, `ASC`, `DESC`: keywords that close an operand.
    Closer,
    /// `NOTNULL`: a postfix predicate (`x NOTNULL`), a comparison that
    /// closes its operand.
    Postfix,
    /// `COLLATE`, `ESCAPE`: a keyword that qualifies the operand before it
    /// with a name or string after it.
    Qualifier,
    /// `LIMIT`.
    Limit,
    /// `WHERE`.
    Where,
}

/// The string did not close inside the value (the application's quote, or
/// nothing, closes it).
const OPEN: u16 = 1;
/// A `0x…` number (used to build strings by concatenation).
const HEX: u16 = 1 << 1;
/// A `@@system` variable.
const SYSVAR: u16 = 1 << 2;
/// A word naming a common SQL function (only matters when it is a call).
const KNOWN_FN: u16 = 1 << 3;
/// A time-delay or error-based extraction function (`SLEEP`, `UPDATEXML`…).
const DANGER_FN: u16 = 1 << 4;
/// A comment whose body holds no letter or digit (`--`, `-- -`, `#`, `--+`).
const BLANK: u16 = 1 << 5;
/// A string literal containing whitespace.
const SPACED: u16 = 1 << 6;
/// A call whose `(` follows the name immediately, as MySQL requires for
/// built-in functions by default.
const TIGHT: u16 = 1 << 7;
/// Nothing (no whitespace, no comment) separates the token from the code
/// before it: `'or'`, `1'and`.
const GLUED: u16 = 1 << 8;
/// A string literal with an empty body (`''`, or a lone quote that the
/// application's quote closes).
const EMPTY: u16 = 1 << 9;
/// A pattern comparison word (`LIKE`, `RLIKE`, `REGEXP`, `GLOB`, `ILIKE`).
const LIKE: u16 = 1 << 10;
/// A lower-case PostgreSQL type name (`int`, `text`, `jsonb`…), the target
/// of a `::` cast. Capitalised words are namespaces (`Pod::Text`).
const SQL_TYPE: u16 = 1 << 11;
/// A `` `quoted` `` identifier.
const QUOTED_ID: u16 = 1 << 12;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tok {
    class: Class,
    kw: Kw,
    flags: u16,
    /// First byte of a symbolic operator (`=`, `|` for `||`, `-`…); 0 for
    /// word operators such as `LIKE` and for every other class.
    ch: u8,
}

impl Tok {
    const EMPTY: Tok = Tok::new(Class::Other);

    const fn new(class: Class) -> Tok {
        Tok {
            class,
            kw: Kw::None,
            flags: 0,
            ch: 0,
        }
    }

    const fn op(class: Class, ch: u8) -> Tok {
        Tok {
            class,
            kw: Kw::None,
            flags: 0,
            ch,
        }
    }

    fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Identifier bytes: MySQL allows `$`, and any non-ASCII byte is treated
/// as part of a (UTF-8) word so accented prose stays one token.
fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn is_word_start(c: u8) -> bool {
    is_word_byte(c) && !c.is_ascii_digit()
}

/// Keyword table (lookup on the ASCII-lowercased word).
fn lookup(word: &[u8]) -> Option<(Class, Kw, u16)> {
    use Class as C;
    let mut buf = [0u8; 24];
    if word.len() > buf.len() {
        return None;
    }
    for (d, s) in buf.iter_mut().zip(word) {
        *d = s.to_ascii_lowercase();
    }
    let found = match &buf[..word.len()] {
        b"select" => (C::Command, Kw::Select, 0),
        b"insert" => (C::Command, Kw::Insert, KNOWN_FN),
        b"update" => (C::Command, Kw::Update, 0),
        b"delete" => (C::Command, Kw::Delete, 0),
        b"drop" => (C::Command, Kw::Drop, 0),
        b"create" => (C::Command, Kw::Create, 0),
        b"alter" => (C::Command, Kw::Alter, 0),
        b"truncate" => (C::Command, Kw::Truncate, 0),
        b"exec" | b"execute" => (C::Command, Kw::Exec, 0),
        b"declare" => (C::Command, Kw::Declare, 0),
        b"shutdown" => (C::Command, Kw::Shutdown, 0),
        b"grant" | b"revoke" => (C::Command, Kw::None, 0),
        b"union" => (C::Union, Kw::None, 0),
        b"and" | b"or" | b"xor" => (C::Logic, Kw::None, 0),
        b"not" => (C::Unary, Kw::Not, 0),
        b"exists" => (C::Unary, Kw::Exists, 0),
        b"like" | b"rlike" | b"ilike" | b"regexp" | b"glob" => (C::Compare, Kw::None, LIKE),
        b"is" | b"in" | b"between" | b"sounds" => (C::Compare, Kw::None, 0),
        b"notnull" => (C::Keyword, Kw::Postfix, 0),
        b"div" | b"mod" => (C::Arith, Kw::None, KNOWN_FN),
        b"null" | b"true" | b"false" => (C::Num, Kw::None, 0),
        b"from" => (C::Keyword, Kw::From, 0),
        b"into" => (C::Keyword, Kw::Into, 0),
        b"outfile" | b"dumpfile" => (C::Keyword, Kw::Outfile, 0),
        b"all" => (C::Keyword, Kw::All, 0),
        b"distinct" => (C::Keyword, Kw::Distinct, 0),
        b"top" => (C::Keyword, Kw::Top, 0),
        b"set" => (C::Keyword, Kw::Set, 0),
        b"waitfor" => (C::Keyword, Kw::Waitfor, 0),
        b"delay" | b"time" => (C::Keyword, Kw::Delay, 0),
        b"if" => (C::Keyword, Kw::If, KNOWN_FN),
        b"order" => (C::Keyword, Kw::Order, 0),
        b"group" => (C::Keyword, Kw::Group, 0),
        b"by" => (C::Keyword, Kw::By, 0),
        b"having" => (C::Keyword, Kw::Having, 0),
        b"as" => (C::Keyword, Kw::As, 0),
        b"end" | b"asc" | b"desc" => (C::Keyword, Kw::Closer, 0),
        b"limit" => (C::Keyword, Kw::Limit, 0),
        b"escape" | b"collate" => (C::Keyword, Kw::Qualifier, 0),
        b"where" => (C::Keyword, Kw::Where, 0),
        b"offset" | b"case" | b"when" | b"then" | b"else" | b"values" | b"join"
        | b"on" | b"procedure" => (C::Keyword, Kw::None, 0),
        b"table" | b"view" | b"index" | b"trigger" | b"function" | b"login" => {
            (C::Keyword, Kw::Object, 0)
        }
        // Objects that are also ordinary column names and functions
        // (`user`, `database()`): operands, so `' or user like '%` parses.
        b"database" | b"schema" | b"user" => (C::Word, Kw::Object, KNOWN_FN),
        // Time-delay and error-based extraction functions.
        b"sleep" | b"benchmark" | b"pg_sleep" | b"updatexml" | b"extractvalue" | b"load_file"
        | b"gtid_subset" | b"name_const" | b"randomblob" | b"dbms_lock" => {
            (C::Word, Kw::None, DANGER_FN)
        }
        // Functions used to build strings, probe data or read metadata.
        b"char" | b"chr" | b"nchar" | b"concat" | b"concat_ws" | b"substring" | b"substr"
        | b"mid" | b"left" | b"right" | b"ascii" | b"ord" | b"hex" | b"unhex" | b"bin"
        | b"version" | b"current_user" | b"system_user" | b"session_user" | b"db_name"
        | b"host_name" | b"count" | b"floor" | b"rand" | b"group_concat" | b"length" | b"len"
        | b"cast" | b"convert" | b"coalesce" | b"ifnull" | b"isnull" | b"nullif" | b"iif"
        | b"md5" | b"sha1" | b"lower" | b"upper" | b"replace" | b"reverse" | b"instr"
        | b"locate" | b"char_length" | b"lpad" | b"rpad" | b"make_set" | b"elt" | b"exp"
        | b"sysdate" | b"now" | b"json_extract" | b"unicode"
        // SQLite, PostgreSQL, Oracle and MSSQL names seen in blind probes
        // (`' and unlikely(id)--`, `starts_with(password,'a')`).
        | b"likely" | b"unlikely" | b"likelihood" | b"starts_with" | b"abs" | b"typeof"
        | b"printf" | b"zeroblob" | b"sqlite_version" | b"last_insert_rowid" | b"strpos"
        | b"split_part" | b"current_database" | b"current_schema" | b"to_char" | b"nvl"
        | b"nvl2" | b"pg_read_file" | b"pg_ls_dir" | b"json_build_object" | b"jsonb_pretty"
        | b"string_agg" | b"array_agg" | b"greatest" | b"strcmp" | b"find_in_set"
        | b"soundex" | b"octet_length" | b"regexp_substr" | b"sys_context" | b"user_name"
        | b"suser_sname" | b"is_srvrolemember" | b"object_id" | b"db_id" | b"schema_name"
        | b"connection_id" | b"last_insert_id" | b"row_count" | b"found_rows" | b"ltrim"
        | b"rtrim" | b"trim" | b"round" | b"overlay"
        // Aggregates and math functions.
        | b"max" | b"min" | b"sum" | b"avg" | b"pi" | b"ln" | b"log" | b"sin" | b"cos"
        | b"compress" | b"uncompress" => (C::Word, Kw::None, KNOWN_FN),
        // Cast targets (`password::int`, `version()::text`).
        b"int" | b"int2" | b"int4" | b"int8" | b"integer" | b"bigint" | b"smallint" | b"text"
        | b"varchar" | b"numeric" | b"jsonb" | b"regclass" | b"oid" | b"bool" | b"boolean"
        | b"float4" | b"float8" | b"bytea" => (C::Word, Kw::None, SQL_TYPE),
        _ => return None,
    };
    Some(found)
}

// ---------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------

/// A single-pass lexer; every byte is looked at a bounded number of times
/// (a word's look-ahead for `(` is re-scanned once as whitespace).
struct Lexer<'a> {
    b: &'a [u8],
    i: usize,
    /// Inside MySQL's `/*! … */`, where `*/` is just the end of the comment.
    in_versioned: bool,
    /// Where the last token's code started (after whitespace and comments);
    /// equal to where the skipping started when nothing was skipped.
    glued_from: usize,
    /// Does `\` escape the next byte inside strings (MySQL) or is it an
    /// ordinary character (standard SQL, MSSQL, PostgreSQL, SQLite)?
    backslash: bool,
}

impl<'a> Lexer<'a> {
    fn new(b: &'a [u8]) -> Self {
        Lexer {
            b,
            i: 0,
            in_versioned: false,
            glued_from: usize::MAX,
            backslash: true,
        }
    }

    fn peek(&self, k: usize) -> Option<u8> {
        self.b.get(self.i + k).copied()
    }

    fn next_tok(&mut self) -> Option<Tok> {
        let start = self.i;
        let mut tok = self.next_tok_inner()?;
        if self.glued_from == start {
            tok.flags |= GLUED;
        }
        Some(tok)
    }

    fn next_tok_inner(&mut self) -> Option<Tok> {
        // Whitespace and comments first; a comment reaching the end of the
        // value is a token, because it swallows what the application appends.
        loop {
            let c = self.peek(0)?;
            let c1 = self.peek(1);
            match c {
                _ if is_space(c) => self.i += 1,
                b'/' if c1 == Some(b'*') => {
                    if self.peek(2) == Some(b'!') {
                        // MySQL runs `/*!50000 union */`: skip the optional
                        // version and lex the rest as code.
                        self.i += 3;
                        let mut digits = 0;
                        while digits < 6 && self.peek(0).is_some_and(|d| d.is_ascii_digit()) {
                            self.i += 1;
                            digits += 1;
                        }
                        self.in_versioned = true;
                    } else if let Some(close) = find_comment_close(self.b, self.i + 2) {
                        self.i = close;
                    } else {
                        return Some(self.terminal_comment(self.i + 2));
                    }
                }
                b'*' if self.in_versioned && c1 == Some(b'/') => {
                    self.i += 2;
                    self.in_versioned = false;
                }
                // `--` is a comment in every engine but MySQL, where it needs
                // a following space; the stricter reading would let
                // `admin'--x` through on the others.
                b'-' if c1 == Some(b'-') => {
                    if let Some(tok) = self.line_comment(self.i + 2) {
                        return Some(tok);
                    }
                }
                b'#' => {
                    if let Some(tok) = self.line_comment(self.i + 1) {
                        return Some(tok);
                    }
                }
                _ => break,
            }
        }
        self.glued_from = self.i;
        let c = self.peek(0)?;
        let c1 = self.peek(1);
        let tok = match c {
            b'\'' | b'"' => self.string_body(self.i + 1, c),
            b'`' => self.backtick(),
            b'0'..=b'9' => self.number(),
            b'.' if c1.is_some_and(|d| d.is_ascii_digit()) => self.number(),
            b'@' => self.variable(),
            _ if is_word_start(c) => self.word(),
            _ => self.symbol(c, c1),
        };
        Some(tok)
    }

    /// A line comment starting at `body`: whitespace if a newline ends it,
    /// otherwise the final token.
    fn line_comment(&mut self, body: usize) -> Option<Tok> {
        let rest = self.b.get(body..).unwrap_or(&[]);
        match rest.iter().position(|&c| c == b'\n') {
            Some(p) => {
                self.i = body + p + 1;
                None
            }
            None => Some(self.terminal_comment(body)),
        }
    }

    fn terminal_comment(&mut self, body: usize) -> Tok {
        let rest = self.b.get(body..).unwrap_or(&[]);
        let blank = !rest.iter().any(|c| c.is_ascii_alphanumeric());
        self.i = self.b.len();
        let mut tok = Tok::new(Class::Comment);
        if blank {
            tok.flags |= BLANK;
        }
        tok
    }

    /// A string literal whose body starts at `body` (the opening quote is
    /// before it, possibly the application's). `''` and `\'` are escapes.
    fn string_body(&mut self, body: usize, q: u8) -> Tok {
        let b = self.b;
        let mut tok = Tok::new(Class::Str);
        let mut j = body;
        while let Some(&c) = b.get(j) {
            if c == b'\\' && self.backslash {
                j += 2;
                continue;
            }
            if c == q {
                if b.get(j + 1) == Some(&q) {
                    j += 2;
                    continue;
                }
                if j == body {
                    tok.flags |= EMPTY;
                }
                self.i = j + 1;
                return tok;
            }
            if is_space(c) {
                tok.flags |= SPACED;
            }
            j += 1;
        }
        if body >= b.len() {
            tok.flags |= EMPTY;
        }
        self.i = b.len();
        tok.flags |= OPEN;
        tok
    }

    /// `` `name` `` is a quoted identifier (MySQL), hence a bare word.
    fn backtick(&mut self) -> Tok {
        let b = self.b;
        let mut j = self.i + 1;
        while let Some(&c) = b.get(j) {
            if c == b'`' {
                if b.get(j + 1) == Some(&b'`') {
                    j += 2;
                    continue;
                }
                self.i = j + 1;
                let mut tok = Tok::new(Class::Word);
                tok.flags |= QUOTED_ID;
                return tok;
            }
            j += 1;
        }
        self.i = b.len();
        Tok::new(Class::Word)
    }

    fn skip_word(&self, mut j: usize) -> usize {
        while self.b.get(j).is_some_and(|&c| is_word_byte(c)) {
            j += 1;
        }
        j
    }

    /// Numbers: `0x7e`, `0b1`, `12`, `1.5`, `.5`, `1e5`. An integer running
    /// into letters is an identifier (`5th`, `41d4`), as in MySQL; a float
    /// does not absorb them, so `1.union` is `1.` then `union`.
    fn number(&mut self) -> Tok {
        let b = self.b;
        let s = self.i;
        let mut tok = Tok::new(Class::Num);
        if b[s] == b'0' {
            let radix = b.get(s + 1).map(|c| c.to_ascii_lowercase());
            let digit: Option<fn(&u8) -> bool> = match radix {
                Some(b'x') => Some(u8::is_ascii_hexdigit),
                Some(b'b') => Some(|c: &u8| *c == b'0' || *c == b'1'),
                _ => None,
            };
            if let Some(digit) = digit
                && b.get(s + 2).is_some_and(digit)
            {
                let mut j = s + 2;
                while b.get(j).is_some_and(digit) {
                    j += 1;
                }
                if b.get(j).is_some_and(|&c| is_word_byte(c)) {
                    self.i = self.skip_word(j);
                    return Tok::new(Class::Word);
                }
                self.i = j;
                if radix == Some(b'x') {
                    tok.flags |= HEX;
                }
                return tok;
            }
        }
        let digits = |mut j: usize| {
            while b.get(j).is_some_and(u8::is_ascii_digit) {
                j += 1;
            }
            j
        };
        let mut j = digits(s);
        let mut float = false;
        if b.get(j) == Some(&b'.') {
            float = true;
            j = digits(j + 1);
        }
        if b.get(j).is_some_and(|c| c.eq_ignore_ascii_case(&b'e')) {
            let mut k = j + 1;
            if matches!(b.get(k), Some(b'+' | b'-')) {
                k += 1;
            }
            if b.get(k).is_some_and(u8::is_ascii_digit) {
                float = true;
                j = digits(k);
            }
        }
        if !float && b.get(j).is_some_and(|&c| is_word_byte(c)) {
            self.i = self.skip_word(j);
            return Tok::new(Class::Word);
        }
        self.i = j;
        tok
    }

    /// `@name`, `@@name` (system variable); a lone `@` is noise.
    fn variable(&mut self) -> Tok {
        let sys = self.peek(1) == Some(b'@');
        let name = self.i + if sys { 2 } else { 1 };
        let end = self.skip_word(name);
        if end == name {
            self.i = name;
            return Tok::new(Class::Other);
        }
        self.i = end;
        let mut tok = Tok::new(Class::Var);
        if sys {
            tok.flags |= SYSVAR;
        }
        tok
    }

    fn word(&mut self) -> Tok {
        let start = self.i;
        let end = self.skip_word(start);
        self.i = end;
        let (class, kw, flags) = lookup(&self.b[start..end]).unwrap_or((Class::Word, Kw::None, 0));
        // Two-word pattern operators: `SOUNDS LIKE` (MySQL), `SIMILAR TO`
        // (PostgreSQL) are one comparison.
        let word = &self.b[start..end];
        for (first, second) in [(&b"sounds"[..], &b"like"[..]), (b"similar", b"to")] {
            if word.eq_ignore_ascii_case(first) {
                let mut j = end;
                while self.b.get(j).is_some_and(|&c| is_space(c)) {
                    j += 1;
                }
                let k = self.skip_word(j);
                if k > end + 1 && j > end && self.b[j..k].eq_ignore_ascii_case(second) {
                    self.i = k;
                    return Tok {
                        class: Class::Compare,
                        kw: Kw::None,
                        flags: LIKE,
                        ch: 0,
                    };
                }
            }
        }
        let mut tok = Tok {
            class,
            kw,
            flags,
            ch: 0,
        };
        if self.b[start].is_ascii_uppercase() {
            tok.flags &= !SQL_TYPE;
        }
        let tight = self.b.get(end) == Some(&b'(');
        // Any identifier directly followed by `(` is a call; a known
        // function also when spaces or comments separate it from `(`
        // (MSSQL, IGNORE_SPACE). Requiring `(` to be tight for unknown
        // words keeps "Jerry (the mouse)" a word.
        let call = (class == Class::Word && tight)
            || (flags & (KNOWN_FN | DANGER_FN) != 0 && (tight || self.paren_follows(end)));
        if call {
            tok.class = Class::Func;
            if tight {
                tok.flags |= TIGHT;
            }
        }
        tok
    }

    /// Is the next code byte after `j` (skipping whitespace and closed
    /// comments) a `(`?
    fn paren_follows(&self, mut j: usize) -> bool {
        let b = self.b;
        loop {
            match b.get(j) {
                Some(&c) if is_space(c) => j += 1,
                Some(b'/') if b.get(j + 1) == Some(&b'*') && b.get(j + 2) != Some(&b'!') => {
                    match find_comment_close(b, j + 2) {
                        Some(close) => j = close,
                        None => return false,
                    }
                }
                Some(b'(') => return true,
                _ => return false,
            }
        }
    }

    fn symbol(&mut self, c: u8, c1: Option<u8>) -> Tok {
        use Class as C;
        let two = |class| (Tok::op(class, c), 2);
        let one = |class| (Tok::op(class, c), 1);
        let (tok, len) = match (c, c1) {
            (b'<', Some(b'=')) if self.peek(2) == Some(b'>') => (Tok::op(C::Compare, c), 3),
            (b'<', Some(b'=' | b'>')) | (b'>', Some(b'=')) => two(C::Compare),
            (b'<', Some(b'<')) | (b'>', Some(b'>')) => two(C::Arith),
            (b'<' | b'>', _) => one(C::Compare),
            (b'=', Some(b'=')) => two(C::Compare),
            (b'=', _) => one(C::Compare),
            (b'!', Some(b'=' | b'<' | b'>')) => two(C::Compare),
            (b'!' | b'~', _) => one(C::Unary),
            (b'|', Some(b'|')) | (b'&', Some(b'&')) => two(C::Logic),
            (b':', Some(b'=')) => two(C::Compare),
            (b':', Some(b':')) => two(C::Arith),
            (b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'|' | b'&', _) => one(C::Arith),
            (b'(', _) => one(C::LParen),
            (b')', _) => one(C::RParen),
            (b',', _) => one(C::Comma),
            (b';', _) => one(C::Semi),
            (b'.', _) => one(C::Dot),
            _ => (Tok::new(C::Other), 1),
        };
        self.i += len;
        tok
    }
}

/// Index just past the `*/` closing a comment whose body starts at `from`.
fn find_comment_close(b: &[u8], from: usize) -> Option<usize> {
    let rest = b.get(from..)?;
    rest.windows(2)
        .position(|w| w == b"*/")
        .map(|p| from + p + 2)
}

// ---------------------------------------------------------------------------
// Streams and contexts
// ---------------------------------------------------------------------------

/// How the value ends, which decides whether the statement stays whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Inside a string the application's closing quote will complete.
    Open,
    /// In a comment that swallows whatever the application appends.
    Comment,
    /// On a token outside any string.
    Plain,
    /// A limit cut the stream: the end is not known.
    Unknown,
}

struct Stream {
    toks: [Tok; MAX_TOKENS],
    len: usize,
    end: End,
}

impl Stream {
    /// Lexes `input`; with `quote`, the stream starts inside a literal the
    /// application opened with that quote.
    fn lex(input: &[u8], quote: Option<u8>, cut: bool) -> Stream {
        Stream::lex_with(input, quote, cut, true)
    }

    /// [`Stream::lex`], choosing whether backslash escapes inside strings.
    fn lex_with(input: &[u8], quote: Option<u8>, cut: bool, backslash: bool) -> Stream {
        let mut lexer = Lexer::new(input);
        lexer.backslash = backslash;
        let mut stream = Stream {
            toks: [Tok::EMPTY; MAX_TOKENS],
            len: 0,
            end: End::Plain,
        };
        if let Some(q) = quote {
            let first = lexer.string_body(0, q);
            stream.push(first);
            if first.has(OPEN) {
                // Never left the literal: nothing else to look at.
                return stream;
            }
        }
        while stream.len < MAX_TOKENS {
            match lexer.next_tok() {
                Some(tok) => stream.push(tok),
                None => break,
            }
        }
        let more = stream.len == MAX_TOKENS && lexer.next_tok().is_some();
        stream.end = match stream.toks().last() {
            _ if cut || more => End::Unknown,
            Some(t) if t.class == Class::Comment => End::Comment,
            Some(t) if t.class == Class::Str && t.has(OPEN) => End::Open,
            _ => End::Plain,
        };
        stream
    }

    fn push(&mut self, tok: Tok) {
        if let Some(slot) = self.toks.get_mut(self.len) {
            *slot = tok;
            self.len += 1;
        }
    }

    fn toks(&self) -> &[Tok] {
        &self.toks[..self.len]
    }
}

struct Hit {
    rule: &'static str,
    /// Where the fingerprint starts.
    from: usize,
}

impl Hit {
    fn detection(&self, context: &'static str, stream: &Stream) -> Detection {
        let fingerprint: String = stream
            .toks()
            .iter()
            .skip(self.from)
            .take(FINGERPRINT_LEN)
            .map(|t| t.class.letter())
            .collect();
        Detection {
            context,
            detail: format!("{} [{}]", self.rule, fingerprint),
        }
    }
}

fn class_at(t: &[Tok], i: usize) -> Option<Class> {
    t.get(i).map(|x| x.class)
}

fn kw_at(t: &[Tok], i: usize) -> Kw {
    t.get(i).map_or(Kw::None, |x| x.kw)
}

/// `… = '<v>'` / `… = "<v>"`: the value must close the literal first.
fn judge_quoted(stream: &Stream) -> Option<Hit> {
    let t = stream.toks();
    let first = t.first()?;
    if first.class != Class::Str || first.has(OPEN) {
        return None;
    }
    if let Some(rule) = after_breakout(t, 1, stream.end, true) {
        return Some(Hit { rule, from: 0 });
    }
    if dangling_probe(t) {
        return Some(Hit {
            rule: R_DANGLING,
            from: 0,
        });
    }
    if empty_operand_probe(t) {
        return Some(Hit {
            rule: R_EMPTY_OPERAND,
            from: 0,
        });
    }
    anywhere(t, 1)
}

/// `1')`, `x';`, `1'))`, `1'"`: a single word (no whitespace) closed by the
/// quote, then only closing parentheses, a statement terminator or the
/// other quote: a probe that breaks the statement to see whether the
/// application errors. A possessive is followed by words, not by `)` or `;`
/// alone, and a spaced phrase before the quote is left alone.
fn dangling_probe(t: &[Tok]) -> bool {
    use Class as C;
    let Some(first) = t.first() else {
        return false;
    };
    if first.has(SPACED) || t.len() < 2 {
        return false;
    }
    t[1..].iter().all(|x| match x.class {
        C::RParen | C::Semi => true,
        C::Comment => x.has(BLANK),
        C::Str => x.has(OPEN) && x.has(EMPTY),
        _ => false,
    }) && t[1..]
        .iter()
        .any(|x| matches!(x.class, C::RParen | C::Semi | C::Str))
}

/// `admin'-'`, `x'*'`, `x'LIKE'`, `' or ''-'`: a single word closed by the
/// quote (or nothing, before `OR ''`), then an arithmetic or comparison
/// operator and a lone quote that the application's quote turns into an
/// empty string. `name = ''-''` is true for every non-numeric name in
/// MySQL: the authentication bypass of the empty-string family. Text puts
/// words after the operator ("use '-' as separator").
fn empty_operand_probe(t: &[Tok]) -> bool {
    use Class as C;
    let Some(first) = t.first() else {
        return false;
    };
    if first.has(SPACED) {
        return false;
    }
    let mut j = 1;
    if class_at(t, j) == Some(C::Logic)
        && t.get(j + 1)
            .is_some_and(|x| x.class == C::Str && x.has(EMPTY) && !x.has(OPEN))
    {
        j += 2;
    } else if first.has(EMPTY) {
        // A quoted symbol alone (`'-'`, `'*'`) is how people write a
        // character in text; `admin'-'` and `' or ''-'` are not.
        return false;
    }
    let op = t.get(j).is_some_and(|x| match x.class {
        C::Arith => true,
        C::Compare => x.ch != 0 || x.has(LIKE),
        _ => false,
    });
    op && t.len() == j + 2 && {
        let last = t[j + 1];
        last.class == C::Str && last.has(OPEN) && last.has(EMPTY)
    }
}

/// How the value ends the statement, if it does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Terminator {
    /// A comment without words (`--`, `#`, `-- -`), or `;` and a comment.
    Comment,
    /// A bare `;`: SQLite and several drivers ignore what follows the
    /// first statement, but prose also ends with `;`.
    Semi,
}

fn terminator(t: &[Tok]) -> Option<Terminator> {
    match t.split_last() {
        Some((last, rest)) if last.class == Class::Comment => (last.has(BLANK)
            || rest.last().is_some_and(|x| x.class == Class::Semi))
        .then_some(Terminator::Comment),
        Some((last, _)) if last.class == Class::Semi => Some(Terminator::Semi),
        _ => None,
    }
}

/// After a quoted break-out at `i`, in a value that ends the statement
/// (see [`terminator`]): an operator-led expression that parses
/// (`x'|email--`, `id'is not-id--`, `id'not like id--`, `'sounds like
/// rowid--`, `user'collate nocase--`, `' notnull--`). A boolean operator
/// also needs a comparison, call or subquery, as in the boolean rule.
/// Ended by a bare `;`, an expression not led by a boolean operator must
/// also hold a literal, call or subquery (`'glob 1;`): "Students' =
/// happy;" and "Jones' / Smith;" are text, `x' and pass glob pass;` is not.
fn terminated_expression(t: &[Tok], i: usize) -> bool {
    use Class as C;
    let Some(first) = t.get(i) else {
        return false;
    };
    let Some(term) = terminator(t) else {
        return false;
    };
    let starts = match first.class {
        C::Arith | C::Compare | C::Logic => true,
        C::Unary => first.kw == Kw::Not,
        C::Keyword => matches!(first.kw, Kw::Postfix | Kw::Qualifier),
        _ => false,
    };
    if !starts {
        return false;
    }
    walk(t, i, false).is_some_and(|s| {
        (first.class != C::Logic || s.cmp || s.call || s.select)
            && (term == Terminator::Comment
                || first.class == C::Logic
                || s.literal
                || s.call
                || s.select)
    })
}

/// `… = <v>`: a value starting with a number is anchored there and judged
/// like a quoted break-out; any value is scanned for strong shapes.
fn judge_numeric(stream: &Stream) -> Option<Hit> {
    let t = stream.toks();
    // A value that starts (after comments) with a statement is a SQL
    // script pasted as text (`ALTER TABLE …; CREATE INDEX …`): `= ALTER`
    // does not parse wherever the application splices a value.
    if t.iter()
        .find(|x| x.class != Class::Comment)
        .is_some_and(|x| {
            x.class == Class::Command
                && matches!(
                    x.kw,
                    Kw::Select
                        | Kw::Insert
                        | Kw::Update
                        | Kw::Delete
                        | Kw::Drop
                        | Kw::Create
                        | Kw::Alter
                        | Kw::Truncate
                )
        })
    {
        // …unless it is one statement cut off by `;--`: scripts do not
        // end in an empty comment (`DELETE FROM users;--`).
        let n = t.len();
        let cut_off = n >= 3
            && t[n - 1].class == Class::Comment
            && t[n - 1].has(BLANK)
            && t[n - 2].class == Class::Semi
            && t[..n - 2].iter().filter(|x| x.class == Class::Semi).count() == 0;
        let at = t
            .iter()
            .position(|x| x.class != Class::Comment)
            .unwrap_or(0);
        if cut_off && stacked_ok(t, at) {
            return Some(Hit {
                rule: R_STACKED,
                from: at,
            });
        }
        return None;
    }
    let rule = match numeric_anchor(t) {
        Some(at) => after_breakout(t, at, stream.end, false),
        None => value_position(t, stream.end).or_else(|| {
            // `or 1=1`, `) AND 2>1`: a value spliced after a condition.
            let mut i = 0;
            while class_at(t, i) == Some(Class::RParen) {
                i += 1;
            }
            if logic_then_literal_comparison(t, i) {
                Some(R_TAUTOLOGY)
            } else if i > 0 && alias_then_from(t, i, true) {
                Some(R_ALIAS)
            } else if logic_literal_comment(t, i) {
                Some(R_LITERAL_COMMENT)
            } else {
                leading_clause_probe(t).then_some(R_CLAUSE)
            }
        }),
    };
    if let Some(rule) = rule {
        return Some(Hit { rule, from: 0 });
    }
    if pg_cast(t, stream.end) {
        return Some(Hit {
            rule: R_CAST,
            from: 0,
        });
    }
    if open_call_probe(t) {
        return Some(Hit {
            rule: R_OPEN_CALL,
            from: 0,
        });
    }
    anywhere(t, 0)
}

/// `cast(`, `SLEEP   (`, `count(`: the whole value is the name of a SQL
/// built-in and the parenthesis that opens its call, nothing else. Spliced
/// anywhere it breaks the statement exactly where the database names the
/// function in its error, which is what probes for which functions pass a
/// filter look like. Text does not end in an open call, and code closes it.
fn open_call_probe(t: &[Tok]) -> bool {
    t.len() == 2
        && t[0].class == Class::Func
        && t[0].has(KNOWN_FN | DANGER_FN)
        && t[1].class == Class::LParen
}

/// The whole value is one expression with a PostgreSQL cast of an operand
/// to a lower-case type name: `password::int`, `starts_with(password,'a')::int`,
/// `1+current_user::int`. Casting a text column to a number is how
/// error-based extraction makes PostgreSQL print the value; code that uses
/// `::` names a namespace (`std::string`, `Pod::Text`), which is not a
/// type, and prose does not parse.
fn pg_cast(t: &[Tok], end: End) -> bool {
    use Class as C;
    if !matches!(end, End::Plain | End::Comment) {
        return false;
    }
    let cast = t.windows(3).any(|w| {
        matches!(w[0].class, C::Word | C::RParen | C::Num | C::Str)
            && w[1].class == C::Arith
            && w[1].ch == b':'
            && w[2].class == C::Word
            && w[2].has(SQL_TYPE)
    });
    cast && walk(t, 0, true).is_some()
}

/// Index after a leading number (with optional signs) or a leading string
/// literal the value brings itself (`'hi' or 'x'='x'`, spliced unquoted),
/// where a numeric break-out starts. Values not starting with a literal
/// (prose, names) are only checked for strong shapes: that is what keeps
/// `rock and roll` and `a=1&b=2` quiet.
fn numeric_anchor(t: &[Tok]) -> Option<usize> {
    if t.first()
        .is_some_and(|x| x.class == Class::Str && !x.has(OPEN))
    {
        return Some(1);
    }
    let mut i = 0;
    while t
        .get(i)
        .is_some_and(|x| x.class == Class::Arith && matches!(x.ch, b'-' | b'+'))
    {
        i += 1;
    }
    (class_at(t, i)? == Class::Num).then_some(i + 1)
}

/// `ORDER BY 1--`, `GROUP BY 2#`: a column-number clause that comments out
/// the rest, as the whole value (the application put it after its own
/// expression). "order by 2" without the comment is text.
fn leading_clause_probe(t: &[Tok]) -> bool {
    // `HAVING COUNT(id) > 5`, `having 1=1`: a group filter that compares a
    // literal or an aggregate; "having fun" has no comparison.
    if kw_at(t, 0) == Kw::Having {
        return walk(t, 1, true).is_some_and(|s| s.cmp && (s.call || s.literal));
    }
    matches!(kw_at(t, 0), Kw::Order | Kw::Group)
        && kw_at(t, 1) == Kw::By
        && class_at(t, 2) == Some(Class::Num)
        && t.last().is_some_and(|x| x.class == Class::Comment)
        && walk(t, 2, true).is_some()
}

// ---------------------------------------------------------------------------
// Rules
// ---------------------------------------------------------------------------

/// The grammar of suspicious shapes right after a break-out at `at` (the
/// token after the closing quote, or after the leading number).
fn after_breakout(t: &[Tok], at: usize, end: End, quoted: bool) -> Option<&'static str> {
    use Class as C;
    // `')`, `1))`: closing the application's parentheses is part of the
    // break-out, not of the shape.
    let mut i = at;
    while class_at(t, i) == Some(C::RParen) {
        i += 1;
    }
    let first = *t.get(i)?;

    // Strong shapes: no prose reaches them, so they fire without the
    // statement having to parse (blind probes are often left unbalanced).
    if after_union_select(t, i).is_some() {
        return Some(R_UNION); // ' UNION [ALL] SELECT
    }
    if first.class == C::Semi && stacked_ok(t, i + 1) {
        return Some(R_STACKED); // '; DROP TABLE x
    }
    if is_waitfor(t, i) {
        return Some(R_WAITFOR); // ' WAITFOR DELAY '0:0:5'
    }
    if alias_then_from(t, i, i > at) {
        return Some(R_ALIAS); // ` AS `uid` FROM · 1234 AS "x" FROM t · ) AS n FROM
    }
    if operator_then_payload(t, i) {
        return Some(R_OP_PAYLOAD); // ' AND SLEEP(5), '||(SELECT …
    }
    if logic_then_literal_comparison(t, i) {
        return Some(R_TAUTOLOGY); // ' or 1=1 · 1' and 'a'='a' · 1 AND 5>3
    }
    if quoted && logic_glued_to_quote(t, i) {
        return Some(R_TIGHT_LOGIC); // a'or'a · \'and 1 · x'||'
    }
    if quoted && comment_truncation(t, i) {
        return Some(R_COMMENT); // admin'--
    }
    if quoted && end != End::Unknown && terminated_expression(t, i) {
        return Some(R_TERMINATED); // x'|email-- · id'not like id-- · x' or a like b;
    }

    // Weak shapes: only if the application's suffix still leaves a valid
    // statement. Quoted: the value ends in a string the closing quote
    // completes, or in a comment. Numeric: anywhere but inside a string.
    let end_ok = match end {
        End::Open => quoted,
        End::Comment => true,
        End::Plain => !quoted,
        End::Unknown => false,
    };
    if !end_ok {
        return None;
    }
    match first.class {
        C::Logic => {
            // ' OR '1'='1 · 1 or 1=1 · ' or 1-- · 1) OR (1=1
            if let Some(shape) = walk(t, i, false) {
                let literal_then_comment = end == End::Comment && {
                    let mut j = i + 1;
                    while class_at(t, j) == Some(C::Unary) {
                        j += 1;
                    }
                    matches!(class_at(t, j), Some(C::Num | C::Str | C::Var))
                        && class_at(t, j + 1) == Some(C::Comment)
                };
                if shape.cmp || shape.call || shape.select || literal_then_comment {
                    return Some(R_BOOLEAN);
                }
            }
            // '||0x41||' (|| concatenates in PostgreSQL and Oracle)
            (quoted && first.ch == b'|' && concat_payload(t, i)).then_some(R_CONCAT)
        }
        // '+char(39)+' · '-0x41-'
        C::Arith => (quoted && concat_payload(t, i)).then_some(R_CONCAT),
        // '=' · x'='x: a symbolic comparison straight after the quote. Word
        // comparisons (IS, IN, LIKE) are English words and are left to the
        // boolean rule; a compared string with spaces is prose (`'=' is the
        // equals sign`).
        C::Compare if quoted && first.ch != 0 => {
            let spaced = t.get(i + 1).is_some_and(|x| x.has(SPACED));
            (!spaced && walk(t, i, false).is_some()).then_some(R_COMPARE)
        }
        // ' ORDER BY 3-- · ' GROUP BY x HAVING 1=1--; numeric only with a
        // column number (`1 ORDER BY 3`), so `5 order by phone` stays prose.
        C::Keyword => match first.kw {
            Kw::Order | Kw::Group if kw_at(t, i + 1) == Kw::By => {
                let operand_ok = match class_at(t, i + 2) {
                    Some(C::Num) => true,
                    Some(C::Word | C::Func | C::Str) => quoted,
                    _ => false,
                };
                (operand_ok && walk(t, i + 2, true).is_some()).then_some(R_CLAUSE)
            }
            // ' HAVING 1=1-- · 1 HAVING 1=1
            Kw::Having => walk(t, i + 1, true)
                .is_some_and(|s| s.cmp)
                .then_some(R_CLAUSE),
            // ' LIMIT 1-- · 1 LIMIT 0,1#: only when a comment swallows the
            // rest ("5 limit 3 per day" is prose).
            Kw::Limit if end == End::Comment => (class_at(t, i + 1) == Some(C::Num)
                && walk(t, i + 1, true).is_some())
            .then_some(R_CLAUSE),
            _ => None,
        },
        _ => None,
    }
}

/// Strong shapes that may appear anywhere in the stream (after the
/// break-out in quoted contexts), each with enough of its own grammar to
/// keep prose out: `x; select name from t`, `a UNION SELECT 1`, `INTO
/// OUTFILE '…'`, `@@version` or `sleep(5)` as an operand.
fn anywhere(t: &[Tok], from: usize) -> Option<Hit> {
    for (k, x) in t.iter().enumerate().skip(from) {
        let rule = match x.class {
            Class::Union => after_union_select(t, k)
                .is_some_and(|j| select_list_ok(t, j, true))
                .then_some(R_UNION),
            Class::Semi => stacked_ok(t, k + 1).then_some(R_STACKED),
            Class::Keyword if x.kw == Kw::Into => (kw_at(t, k + 1) == Kw::Outfile
                && class_at(t, k + 2) == Some(Class::Str))
            .then_some(R_OUTFILE),
            Class::Var if x.has(SYSVAR) => sysvar_as_operand(t, k, from).then_some(R_SYSVAR),
            Class::Func if x.has(DANGER_FN) => {
                danger_call_as_operand(t, k, from).then_some(R_DANGER)
            }
            // `id=AND 1=1`, `x,OR 2>1`: a boolean probe after an operator or
            // punctuation (after a word it is prose: "rock and 2=2").
            Class::Logic => (k
                .checked_sub(1)
                .and_then(|p| class_at(t, p))
                .is_none_or(|c| !matches!(c, Class::Word | Class::Num | Class::Str | Class::Func))
                && logic_then_literal_comparison(t, k))
            .then_some(R_TAUTOLOGY),
            _ => None,
        };
        if let Some(rule) = rule {
            return Some(Hit { rule, from: k });
        }
    }
    None
}

/// A raw value that is itself a dangerous operand: `sleep(5)`,
/// `IF(1=1,SLEEP(5),0)`, `(SELECT * FROM (SELECT(SLEEP(5)))a)`. The call
/// must be tight against `(`, the value must parse as one expression and
/// hold a delay/error function, so "sleep (8 hours)" and
/// "benchmark (2023) results" stay prose.
fn value_position(t: &[Tok], end: End) -> Option<&'static str> {
    let first = t.first()?;
    if first.class == Class::Func && first.has(TIGHT) {
        let end_ok = matches!(end, End::Plain | End::Comment);
        let danger = end_ok && walk(t, 0, true).is_some_and(|s| s.danger);
        return danger.then_some(R_VALUE_FN);
    }
    let mut j = 0;
    while class_at(t, j) == Some(Class::LParen) {
        j += 1;
    }
    (j > 0 && kw_at(t, j) == Kw::Select && select_list_ok(t, j + 1, false))
        .then_some(R_VALUE_SUBQUERY)
}

/// `UNION [ALL|DISTINCT] [(] SELECT` at `k`: the index after `SELECT`.
fn after_union_select(t: &[Tok], k: usize) -> Option<usize> {
    if class_at(t, k)? != Class::Union {
        return None;
    }
    let mut j = k + 1;
    while t
        .get(j)
        .is_some_and(|x| matches!(x.kw, Kw::All | Kw::Distinct) || x.class == Class::LParen)
    {
        j += 1;
    }
    (kw_at(t, j) == Kw::Select).then_some(j + 1)
}

/// Does a select list start at `j`? A number, string, variable, `*`, call
/// or subquery always; a bare column name only if `bare` allows it and a
/// list separator, `FROM`, `INTO`, `AS`, `)` or the end of the statement
/// follows ("select the red one" has none of those).
fn select_list_ok(t: &[Tok], mut j: usize, bare: bool) -> bool {
    use Class as C;
    while let Some(x) = t.get(j) {
        if matches!(x.kw, Kw::All | Kw::Distinct) || x.class == C::LParen {
            j += 1;
        } else if x.kw == Kw::Top {
            j += 2;
        } else {
            break;
        }
    }
    let Some(item) = t.get(j) else {
        return false;
    };
    match item.class {
        // "; select 2 more": a literal followed by a word is prose (an alias
        // would be valid SQL, but injected lists do not use them).
        C::Num | C::Str | C::Var => class_at(t, j + 1).is_none_or(|c| {
            matches!(
                c,
                C::Comma
                    | C::Comment
                    | C::Semi
                    | C::RParen
                    | C::Union
                    | C::Arith
                    | C::Compare
                    | C::Logic
                    | C::Keyword
            )
        }),
        C::Func => true,
        C::Command => item.kw == Kw::Select,
        C::Arith => {
            item.ch == b'*'
                || (matches!(item.ch, b'-' | b'+') && class_at(t, j + 1) == Some(C::Num))
        }
        C::Word if bare => {
            let mut k = j + 1;
            while class_at(t, k) == Some(C::Dot) {
                k += 2;
            }
            t.get(k).is_some_and(|x| {
                matches!(
                    x.class,
                    C::Comma | C::Comment | C::Semi | C::RParen | C::Union
                ) || matches!(x.kw, Kw::From | Kw::Into | Kw::As)
            })
        }
        _ => false,
    }
}

/// A statement after `;` at `i`, with the shape each command needs: the
/// keyword alone is English ("; drop me a line", "; select the red one").
fn stacked_ok(t: &[Tok], i: usize) -> bool {
    let Some(cmd) = t.get(i) else {
        return false;
    };
    let next = kw_at(t, i + 1);
    match cmd.kw {
        Kw::Select => select_list_ok(t, i + 1, true),
        Kw::Drop | Kw::Truncate => {
            let mut j = i + 1;
            if next == Kw::Object {
                j += 1;
            } else if cmd.kw == Kw::Drop {
                return false;
            }
            if kw_at(t, j) == Kw::If && kw_at(t, j + 1) == Kw::Exists {
                j += 2;
            }
            name_end(t, j).is_some_and(|k| {
                t.get(k)
                    .is_none_or(|x| matches!(x.class, Class::Semi | Class::Comment | Class::Comma))
            })
        }
        Kw::Create | Kw::Alter => next == Kw::Object && name_end(t, i + 2).is_some(),
        Kw::Delete => next == Kw::From && name_end(t, i + 2).is_some(),
        // `; insert into` cut off where the application's text resumes.
        Kw::Insert => next == Kw::Into && (name_end(t, i + 2).is_some() || t.len() == i + 2),
        Kw::Update => name_end(t, i + 1).is_some_and(|k| kw_at(t, k) == Kw::Set),
        // EXEC proc [args]: a bare word after the name means prose.
        Kw::Exec => match class_at(t, i + 1) {
            Some(Class::Func) => true,
            Some(Class::Word) => {
                name_end(t, i + 1).is_some_and(|k| class_at(t, k) != Some(Class::Word))
            }
            _ => false,
        },
        Kw::Declare | Kw::Set => class_at(t, i + 1) == Some(Class::Var),
        Kw::Shutdown => {
            class_at(t, i + 1).is_none_or(|c| matches!(c, Class::Semi | Class::Comment))
        }
        Kw::Waitfor => next == Kw::Delay,
        _ => false,
    }
}

/// A (possibly qualified: `db..t`, `a.b`) name at `j`: the index after it.
fn name_end(t: &[Tok], j: usize) -> Option<usize> {
    if class_at(t, j)? != Class::Word {
        return None;
    }
    let mut k = j + 1;
    while class_at(t, k) == Some(Class::Dot) {
        k += 1;
        if class_at(t, k) == Some(Class::Word) {
            k += 1;
        }
    }
    Some(k)
}

/// `AS alias FROM [table]` at `i`, the end of a select-list item: the value
/// closed the application's expression (a quote, a number, `)`) and starts
/// the rest of a `SELECT` of its own. The alias must be quoted (`"x"`,
/// `` `x` ``, `'x'`) unless `paren` says a `)` closed the expression; after
/// `FROM` only a table name and the end of the statement or a clause may
/// follow, so "5 as usual from Monday on" is not SQL.
fn alias_then_from(t: &[Tok], i: usize, paren: bool) -> bool {
    use Class as C;
    if kw_at(t, i) != Kw::As {
        return false;
    }
    let alias_ok = t.get(i + 1).is_some_and(|x| match x.class {
        C::Str => !x.has(OPEN) && !x.has(SPACED) && !x.has(EMPTY),
        C::Word => paren || x.has(QUOTED_ID),
        _ => false,
    });
    if !alias_ok || kw_at(t, i + 2) != Kw::From {
        return false;
    }
    let j = i + 3;
    if t.len() == j {
        return true;
    }
    name_end(t, j).is_some_and(|k| {
        t.get(k).is_none_or(|x| {
            matches!(
                x.class,
                C::Semi | C::Comment | C::Comma | C::RParen | C::Union
            ) || matches!(
                x.kw,
                Kw::Where | Kw::Order | Kw::Group | Kw::Having | Kw::Limit
            )
        })
    })
}

/// `[;] WAITFOR DELAY|TIME` at `i` (MSSQL time-based blind).
fn is_waitfor(t: &[Tok], i: usize) -> bool {
    let j = if class_at(t, i) == Some(Class::Semi) {
        i + 1
    } else {
        i
    };
    kw_at(t, j) == Kw::Waitfor && kw_at(t, j + 1) == Kw::Delay
}

/// An operator, then (through `NOT`/`EXISTS`/parentheses) a subquery or a
/// time/error function: `' AND SLEEP(5)`, `'||(SELECT …`, `1 RLIKE (SELECT`,
/// `' AND EXISTS(SELECT`.
fn operator_then_payload(t: &[Tok], i: usize) -> bool {
    if !matches!(
        class_at(t, i),
        Some(Class::Logic | Class::Compare | Class::Arith)
    ) {
        return false;
    }
    let mut j = i + 1;
    while matches!(class_at(t, j), Some(Class::Unary | Class::LParen)) {
        j += 1;
    }
    t.get(j)
        .is_some_and(|x| x.kw == Kw::Select || (x.class == Class::Func && x.has(DANGER_FN)))
}

/// A boolean operator at `i`, then a literal compared by a symbolic
/// operator or a pattern match: `OR 1=1`, `AND 'a'='a`, `|| 2>1`,
/// `and 1 like 1`, `OR (1)=(1`. The tautologies and contradictions of
/// boolean probes; whatever follows does not matter (probes often leave
/// the statement broken). Word comparisons such as `IS` and `IN` are not
/// enough ("or 1 in 5 said"), nor is a word operand ("or 2 = two").
fn logic_then_literal_comparison(t: &[Tok], i: usize) -> bool {
    use Class as C;
    if class_at(t, i) != Some(C::Logic) {
        return false;
    }
    let mut j = i + 1;
    while matches!(class_at(t, j), Some(C::LParen | C::Unary)) {
        j += 1;
    }
    if t.get(j)
        .is_some_and(|x| x.class == C::Arith && matches!(x.ch, b'-' | b'+'))
    {
        j += 1;
    }
    if !matches!(class_at(t, j), Some(C::Num | C::Str)) {
        return false;
    }
    let mut k = j + 1;
    while class_at(t, k) == Some(C::RParen) {
        k += 1;
    }
    t.get(k)
        .is_some_and(|x| x.class == C::Compare && (x.ch != 0 || x.has(LIKE)))
}

/// `or true--`, `) OR 1#`: a value that starts with a boolean operator and
/// a lone literal and comments out the rest of the statement.
fn logic_literal_comment(t: &[Tok], i: usize) -> bool {
    use Class as C;
    if class_at(t, i) != Some(C::Logic) {
        return false;
    }
    let mut j = i + 1;
    while matches!(class_at(t, j), Some(C::Unary | C::LParen)) {
        j += 1;
    }
    matches!(class_at(t, j), Some(C::Num | C::Str))
        && t.len() == j + 2
        && t[j + 1].class == C::Comment
        && t[j + 1].has(BLANK)
}

/// `a'or'a`, `x'and 1`, `'||'`, `x'or(…`: a boolean operator written
/// against the closing quote with no space, followed by an operand that
/// is not prose (a literal without spaces, a number, `(`, a call, `NOT`).
/// Prose puts a space after a closing quote; a quoted word such as
/// "the word 'or' means" is followed by a spaced string.
fn logic_glued_to_quote(t: &[Tok], i: usize) -> bool {
    use Class as C;
    let Some(op) = t.get(i) else {
        return false;
    };
    if op.class != C::Logic || !op.has(GLUED) || i != 1 {
        return false;
    }
    t.get(i + 1).is_some_and(|x| match x.class {
        C::Num | C::LParen | C::Unary | C::Func | C::Var => true,
        C::Str => !x.has(SPACED),
        _ => false,
    })
}

/// `admin'--`, `admin' #`, `x');--`, `x'/*`: the value ends the literal
/// and comments out the rest of the statement. The comment body must hold
/// no letter or digit: possessives such as `the players' #1 pick` or
/// `James' -- the original` would otherwise match.
fn comment_truncation(t: &[Tok], i: usize) -> bool {
    let j = if class_at(t, i) == Some(Class::Semi) {
        i + 1
    } else {
        i
    };
    t.get(j)
        .is_some_and(|x| x.class == Class::Comment && x.has(BLANK))
}

/// `'+char(39)+'`, `'||0x41||'`: a concatenation operator and a string
/// building function or hex literal after the quote, in a parseable tail.
fn concat_payload(t: &[Tok], i: usize) -> bool {
    let mut j = i + 1;
    while class_at(t, j) == Some(Class::LParen) {
        j += 1;
    }
    let payload = t.get(j).is_some_and(|x| {
        (x.class == Class::Func && x.has(KNOWN_FN | DANGER_FN))
            || (x.class == Class::Num && x.has(HEX))
    });
    payload && walk(t, i, false).is_some()
}

/// `@@version` used as an operand: after an operator, `(`, `,` or a
/// keyword (or as the whole raw value) and before an operator, `)`, `,`,
/// a keyword, a comment or the end. `a@@b` in text does not qualify.
fn sysvar_as_operand(t: &[Tok], k: usize, from: usize) -> bool {
    use Class as C;
    let before = if k == from {
        from == 0
    } else {
        k.checked_sub(1)
            .and_then(|p| class_at(t, p))
            .is_some_and(|c| {
                matches!(
                    c,
                    C::Logic
                        | C::Compare
                        | C::Arith
                        | C::Unary
                        | C::LParen
                        | C::Comma
                        | C::Command
                        | C::Union
                        | C::Keyword
                )
            })
    };
    let after = class_at(t, k + 1).is_none_or(|c| {
        matches!(
            c,
            C::RParen
                | C::Comma
                | C::Logic
                | C::Compare
                | C::Arith
                | C::Comment
                | C::Semi
                | C::Keyword
                | C::Union
        )
    });
    before && after
}

/// `… PROCEDURE ANALYSE(EXTRACTVALUE(1,…` , `x=sleep(5)`: a delay/error
/// function called tight, in operand position (after an operator, `(`,
/// `,` or a keyword, not after a word or `.`: "time.sleep(5)" and "add
/// sleep(5) here" are code and prose), with a first argument that is a
/// literal, call or subquery followed by `,`, `)` or an operator.
fn danger_call_as_operand(t: &[Tok], k: usize, from: usize) -> bool {
    use Class as C;
    let before = k > from
        && k.checked_sub(1)
            .and_then(|p| class_at(t, p))
            .is_some_and(|c| {
                matches!(
                    c,
                    C::Logic
                        | C::Compare
                        | C::Arith
                        | C::Unary
                        | C::LParen
                        | C::Comma
                        | C::Command
                        | C::Keyword
                )
            });
    let tight = t.get(k).is_some_and(|x| x.has(TIGHT));
    let arg = t.get(k + 2).is_some_and(|x| match x.class {
        C::Num | C::Str | C::Var => matches!(
            class_at(t, k + 3),
            Some(C::Comma | C::RParen | C::Arith | C::Compare | C::Logic)
        ),
        C::Func | C::LParen => true,
        _ => x.kw == Kw::Select,
    });
    before && tight && class_at(t, k + 1) == Some(C::LParen) && arg
}

/// What [`walk`] saw in a parseable expression.
#[derive(Default)]
struct Shape {
    /// A comparison (`=`, `LIKE`, `IN`, …).
    cmp: bool,
    /// A call to a known SQL function.
    call: bool,
    /// A call to a time-delay or error-based function.
    danger: bool,
    /// A subquery or `UNION SELECT` (the walk stops there).
    select: bool,
    /// A number, string or variable operand.
    literal: bool,
}

/// Does `t[start..]` parse as the continuation of a SQL expression, up to
/// a `;`, a comment, a subquery or the end? `want` says whether an operand
/// is expected first (after an operator) or an operator (after the value
/// that closed the literal).
///
/// This is a loose operand/operator alternation, not a SQL grammar: it
/// rejects what prose produces (two operands in a row, stray punctuation,
/// a dangling operator) and accepts what injected expressions look like.
fn walk(t: &[Tok], start: usize, mut want: bool) -> Option<Shape> {
    use Class as C;
    let mut shape = Shape::default();
    let mut prev: Option<C> = None;
    for x in t.get(start..)? {
        match x.class {
            C::Comment | C::Semi => break,
            C::Other => return None,
            C::Command => {
                if x.kw == Kw::Select && want {
                    shape.select = true;
                    return Some(shape);
                }
                return None;
            }
            C::Union => {
                if want {
                    return None;
                }
                shape.select = true;
                return Some(shape);
            }
            C::Str | C::Num | C::Var | C::Word => {
                if !want {
                    return None; // "1 or 2 people", "6' or 7'"
                }
                shape.literal |= x.class != C::Word;
                want = false;
            }
            C::Func => {
                if !want {
                    return None;
                }
                shape.call |= x.has(KNOWN_FN | DANGER_FN);
                shape.danger |= x.has(DANGER_FN);
                // The `(` that follows keeps `want`.
            }
            C::LParen => {
                if !want {
                    return None;
                }
            }
            C::RParen => {
                if want && prev != Some(C::LParen) {
                    return None;
                }
                want = false;
            }
            C::Comma => {
                if want {
                    return None;
                }
                want = true;
            }
            C::Dot => {
                if !matches!(prev, Some(C::Word | C::Dot | C::RParen)) {
                    return None;
                }
                want = true;
            }
            C::Logic | C::Compare => {
                if want {
                    return None;
                }
                shape.cmp |= x.class == C::Compare;
                want = true;
            }
            C::Arith => {
                if want {
                    match x.ch {
                        // count(*), t.*
                        b'*' if matches!(prev, Some(C::LParen | C::Dot)) => want = false,
                        b'-' | b'+' => {} // unary sign
                        _ => return None,
                    }
                } else {
                    want = true;
                }
            }
            C::Unary => {
                // NOT after an operand: `x NOT LIKE y`, `x NOT IN (…)`.
                if !want && x.kw != Kw::Not {
                    return None;
                }
            }
            C::Keyword => match x.kw {
                // `x NOTNULL`: a comparison that closes its operand.
                Kw::Postfix => {
                    if want {
                        return None;
                    }
                    shape.cmp = true;
                }
                Kw::Closer => want = false,
                _ => want = true,
            },
        }
        prev = Some(x.class);
    }
    // A dangling operator ("1 or 1=") does not parse.
    (!want).then_some(shape)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_that_quote_sql_are_not_injections() {
        for doc in [
            "Did you see the comic about little Bobby Tables? His mom named him Robert'); DROP TABLE Students;-- and the school lost its records.",
            "The classic example in every security course is typing ' or 1=1 in a form",
            "-- add index\nALTER TABLE orders ADD COLUMN shipped_at timestamptz;\nCREATE INDEX i ON orders (shipped_at);",
        ] {
            assert!(detect(doc.as_bytes()).is_none(), "{doc}");
        }
        for attack in [
            "Robert'); DROP TABLE Students;--",
            "x' or 1=1--",
            "1; DROP TABLE users--",
        ] {
            assert!(detect(attack.as_bytes()).is_some(), "{attack}");
        }
    }

    /// One case per line, verbatim (trailing spaces matter: `-- `); blank
    /// lines and lines starting with `%%` are skipped.
    fn corpus(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| !l.is_empty() && !l.starts_with("%%"))
            .collect()
    }

    const ATTACKS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sqli/attacks.txt"
    ));
    const BENIGN: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sqli/benign.txt"
    ));

    fn fingerprint(input: &str, quote: Option<u8>) -> String {
        Stream::lex(input.as_bytes(), quote, false)
            .toks()
            .iter()
            .map(|t| t.class.letter())
            .collect()
    }

    /// A Latin-1 no-break space byte and Unicode spaces separate tokens as
    /// a blank does; a 0xA0 inside a UTF-8 character (`à`) does not.
    #[test]
    fn lookalike_spaces_are_blanks() {
        for hit in [
            &b"1\xa0union\xa0select\xa01,2"[..],
            "1\u{a0}UNION\u{a0}SELECT\u{a0}password\u{a0}FROM\u{a0}users".as_bytes(),
            "1\u{2003}union\u{2003}select\u{2003}1,2".as_bytes(),
            "1'\u{3000}or\u{3000}'1'='1".as_bytes(),
        ] {
            assert!(detect(hit).is_some(), "{}", String::from_utf8_lossy(hit));
        }
        for benign in [
            "voilà union sélect 1 à 2".as_bytes(),
            "Prix\u{a0}: 10\u{a0}€".as_bytes(),
            &b"caf\xe9\xa0au lait"[..],
        ] {
            assert!(
                detect(benign).is_none(),
                "{}",
                String::from_utf8_lossy(benign)
            );
        }
        assert_eq!(fold_lookalikes("à".as_bytes()), None);
        assert_eq!(fold_lookalikes(b"a\xa0b").as_deref(), Some(&b"a b"[..]));
        assert_eq!(
            fold_lookalikes("x\u{2019}\u{202f}y".as_bytes()).as_deref(),
            Some(&b"x' y"[..])
        );
    }

    #[test]
    fn every_attack_in_the_corpus_is_detected() {
        let cases = corpus(ATTACKS);
        assert!(cases.len() >= 60, "only {} attack cases", cases.len());
        let missed: Vec<&str> = cases
            .iter()
            .copied()
            .filter(|c| detect(c.as_bytes()).is_none())
            .collect();
        assert!(
            missed.is_empty(),
            "{} of {} attacks missed:\n{}",
            missed.len(),
            cases.len(),
            missed.join("\n")
        );
    }

    #[test]
    fn no_benign_case_in_the_corpus_is_detected() {
        let cases = corpus(BENIGN);
        assert!(cases.len() >= 80, "only {} benign cases", cases.len());
        let flagged: Vec<String> = cases
            .iter()
            .filter_map(|c| detect(c.as_bytes()).map(|d| format!("{c}  =>  {d:?}")))
            .collect();
        assert!(
            flagged.is_empty(),
            "{} of {} benign values flagged:\n{}",
            flagged.len(),
            cases.len(),
            flagged.join("\n")
        );
    }

    #[test]
    fn select_tails_casts_having_and_identifier_context() {
        for (input, rule) in [
            (") AS total FROM", R_ALIAS),
            (")      AS schlagwoerter      FROM", R_ALIAS),
            (") as col_0_0_ from", R_ALIAS),
            (") AS `carrier_id` from", R_ALIAS),
            (") AS 'avg_time' FROM", R_ALIAS),
            ("1234 AS \"foobar\" FROM tablevar2", R_ALIAS),
            ("` AS `edit_user_id` from", R_ALIAS),
            ("x' AS \"n\" FROM users--", R_ALIAS),
            ("password::int", R_CAST),
            ("starts_with(password,'a')::int", R_CAST),
            ("1+current_user::int", R_CAST),
            ("version()::text", R_CAST),
            (" HAVING COUNT(CustomerID) > 5", R_CLAUSE),
            ("having 1=1", R_CLAUSE),
            ("; insert into", R_STACKED),
            ("cast(", R_OPEN_CALL),
            ("SLEEP   (", R_OPEN_CALL),
            ("Compress (", R_OPEN_CALL),
        ] {
            let hit = detect(input.as_bytes()).unwrap_or_else(|| panic!("missed {input:?}"));
            assert!(hit.detail.starts_with(rule), "{input:?} => {hit:?}");
        }
        for input in [
            "5 as usual from Monday on",
            "(see above) as well from",
            ") as seen from the bridge",
            "2 AS well FROM here",
            "std::string",
            "Pod::Text",
            "Mojo::JSON",
            "a::b::c",
            "Foo::Int",
            "having fun",
            "having 2 kids",
            "Use `git commit` as the last step from now on",
            "The `id` column as a key from the users table",
            "`code` spans",
            "x`; echo",
            "count(x)",
            "the count (",
            "Jerry (",
        ] {
            assert_eq!(detect(input.as_bytes()), None, "{input:?}");
        }
    }

    #[test]
    fn contexts_and_rules_are_reported() {
        let d = detect(b"1' OR '1'='1").unwrap();
        assert_eq!(d.context, "sql:single-quote");
        assert_eq!(d.detail, "boolean-literal-comparison [s&s=s]");

        let d = detect(b"1' OR x='1").unwrap();
        assert_eq!(d.detail, "boolean-expression [s&b=s]");

        let d = detect(br#"" or ""=""#).unwrap();
        assert_eq!(d.context, "sql:double-quote");

        let d = detect(b"1 or 1=1").unwrap();
        assert_eq!(d.context, "sql:numeric");
        assert_eq!(d.detail, "boolean-literal-comparison [n&n=n]");

        let d = detect(b"or 1=1").unwrap();
        assert_eq!(d.context, "sql:numeric");

        let d = detect(b"x')").unwrap();
        assert_eq!(d.detail, "dangling-quote-probe [s)]");

        let d = detect(b"a'or'a").unwrap();
        assert_eq!(d.detail, "boolean-glued-to-quote [s&s]");

        let d = detect(b"admin'--").unwrap();
        assert_eq!(d.detail, "comment-truncation [sc]");

        let d = detect(b"1; DROP TABLE users").unwrap();
        assert_eq!(d.context, "sql:numeric");
        assert!(d.detail.starts_with("stacked-query"), "{}", d.detail);

        let d = detect(b"' UNION SELECT username, password FROM users--").unwrap();
        assert!(
            d.detail.starts_with("union-select [sUEb,bkb]"),
            "{}",
            d.detail
        );
    }

    #[test]
    fn terminated_expressions_empty_operands_and_clauses() {
        let rule = |v: &str| detect(v.as_bytes()).map(|d| d.detail);
        assert_eq!(
            rule("x'|passwd--").as_deref(),
            Some("terminated-expression [sobc]")
        );
        assert_eq!(
            rule("k'is not -k--").as_deref(),
            Some("terminated-expression [s=uobc]")
        );
        // Two-word operators are one comparison; NOTNULL is postfix.
        assert_eq!(fingerprint("a sounds like b similar to c", None), "b=b=b");
        assert_eq!(
            rule("m' notnull --").as_deref(),
            Some("terminated-expression [skc]")
        );
        assert_eq!(
            rule("c'collate binary--").as_deref(),
            Some("terminated-expression [skbc]")
        );
        // `;` alone needs a literal or a boolean operator.
        assert!(rule("v'glob 7;").is_some());
        assert!(rule("e' and pass glob pass;").is_some());
        assert!(rule("Students' = happy;").is_none());
        assert!(rule("Jones' / Smith;").is_none());
        // A comment with words after an operator is not a terminator.
        assert!(rule("James' - the best -- really").is_none());

        assert_eq!(
            rule("admin'-'").as_deref(),
            Some("empty-string-operand [sos]")
        );
        assert_eq!(
            rule("' or ''^'").as_deref(),
            Some("empty-string-operand [s&sos]")
        );
        assert!(rule("'-'").is_none());
        assert!(rule("use '-' as a separator").is_none());

        let d = detect(b"or false--").unwrap();
        assert_eq!(d.context, "sql:numeric");
        assert_eq!(d.detail, "boolean-literal-then-comment [&nc]");
        assert!(rule("or two --").is_none());

        let d = detect(b"'ab' or 'q'='q';").unwrap();
        assert_eq!(d.context, "sql:numeric");
        assert!(rule("'Yes' or 'No'").is_none());
        assert!(rule("ORDER BY 4-- -").is_some());
        assert!(rule("order by 2").is_none());
        assert!(rule("order by date --").is_none());

        assert!(rule("4 HAVING 2=2").is_some());
        assert!(rule("3' LIMIT 1#").is_some());
        assert!(rule("5 limit 3 per day").is_none());

        // A statement-led value is a pasted script unless `;--` cuts it.
        assert!(rule("UPDATE members SET role=1;--").is_some());
        assert!(rule("DELETE FROM sessions; -- nightly cleanup").is_none());
        assert!(rule("DELETE FROM a;--\nDELETE FROM b;--").is_none());
    }

    #[test]
    fn syntax_error_probes() {
        for probe in ["1,\"(.,),),'", "7(,,.'\"..)(", "abc)')\")(.(,)"] {
            let d = detect(probe.as_bytes()).unwrap();
            assert_eq!(d.detail, "syntax-error-probe", "{probe}");
        }
        // Too short, one quote kind, no parenthesis, or not at the end.
        for text in [
            "print(\"('.')\")",
            "x(''...''),(,.)",
            "said \"'...,,,.'\"",
            "1,\"(.,),),' more",
        ] {
            assert!(
                detect(text.as_bytes()).is_none_or(|d| d.detail != "syntax-error-probe"),
                "{text}"
            );
        }
    }

    #[test]
    fn path_segments_are_judged_alone() {
        let d = detect_path(b"/api/orders/7 AND 31=31/lines").unwrap();
        assert_eq!(d.context, "sql:numeric");
        // The whole path does not start with a number.
        assert!(detect(b"/api/orders/7 AND 31=31/lines").is_none());
        assert!(detect_path(b"/shop/9 or 2>1").is_some());
        assert!(detect_path(b"/item/24'union all select 1,2").is_some());
        for ok in [
            &b"/api/v1/users/42/orders"[..],
            b"/blog/2024/05/o'reilly-interview",
            b"/docs/2-or-3-things/index.html",
            b"/photos/1 and 2/edit",
            b"/",
            b"",
            b"//",
            b"plain",
        ] {
            assert!(detect_path(ok).is_none(), "{}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn lexer_classes() {
        assert_eq!(fingerprint("1' OR '1'='1", Some(b'\'')), "s&s=s");
        assert_eq!(fingerprint("O'Reilly", Some(b'\'')), "sb");
        assert_eq!(fingerprint("O'Reilly", None), "bs");
        // Hex, exponent, leading-dot and digit-led identifiers.
        assert_eq!(fingerprint("0x7e 1e5 .5 3.14 5th 41d4", None), "nnnnbb");
        // `/**/` is whitespace; `/*!…*/` is code.
        assert_eq!(fingerprint("union/**/select", None), "UE");
        assert_eq!(fingerprint("/*!50000union*/select", None), "UE");
        // Comments reaching the end are a token; before a newline they are
        // whitespace.
        assert_eq!(fingerprint("1 -- x", None), "nc");
        assert_eq!(fingerprint("1 # x\nor 1", None), "n&n");
        assert_eq!(fingerprint("1 /* open", None), "nc");
        // Calls: tight for any word, loose only for known functions.
        assert_eq!(
            fingerprint("foo(1) sleep (1) jerry (1)", None),
            "f(n)f(n)b(n)"
        );
        assert_eq!(fingerprint("@@version @x a@b", None), "vvbv");
        assert_eq!(
            fingerprint("<=> <> != || && := :: << ~ !", None),
            "===&&=oouu"
        );
        // Doubled and backslash escapes stay inside the string.
        assert_eq!(fingerprint("'a''b' 'c\\'d'", None), "ss");
        assert_eq!(fingerprint("`select` x", None), "bb");
    }

    #[test]
    fn open_string_means_no_breakout() {
        let s = Stream::lex(b"no quote closes here", Some(b'\''), false);
        assert_eq!(s.len, 1);
        assert!(judge_quoted(&s).is_none());
        // `''` right after the application's quote is an escaped quote…
        let s = Stream::lex(b"'' or 1=1--", Some(b'\''), false);
        assert!(judge_quoted(&s).is_none());
        // …while spliced unquoted it is an empty string and a tautology.
        assert_eq!(detect(b"'' or 1=1--").unwrap().context, "sql:numeric");
    }

    #[test]
    fn bounds_are_documented_behaviour() {
        // The payload sits past MAX_SCAN_BYTES: not seen (regex rules are
        // the backstop).
        let mut long = "a".repeat(MAX_SCAN_BYTES + 10).into_bytes();
        long.extend_from_slice(b"' OR '1'='1");
        assert!(detect(&long).is_none());
        // Within the bound it is.
        let mut short = "a".repeat(MAX_SCAN_BYTES - 20).into_bytes();
        short.extend_from_slice(b"' OR '1'='1");
        assert!(detect(&short).is_some());
        // Token cap: a weak shape cut by the cap is not judged…
        let many = format!("1 or a=b {}", "+1".repeat(MAX_TOKENS));
        assert!(detect(many.as_bytes()).is_none());
        // …a strong one still is.
        let union = format!("1 UNION SELECT {}", "1,".repeat(MAX_TOKENS));
        assert!(detect(union.as_bytes()).is_some());
    }

    #[test]
    fn arbitrary_bytes_do_not_panic() {
        // xorshift: deterministic pseudo-random inputs over a SQL-heavy
        // alphabet plus raw bytes.
        let alphabet = b"'\"`;()=<>|&-#/*!@.,0123456789xeE abcorundselctORUNIO\\\n\x00\xff";
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut buf = Vec::with_capacity(64);
        for _ in 0..20_000 {
            buf.clear();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 48) as usize;
            for _ in 0..len {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                buf.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let _ = detect(&buf);
            let _ = detect_path(&buf);
        }
        // Edges: lone quotes, escapes and comment openers at the very end.
        for edge in [
            &b""[..],
            b"'",
            b"\"",
            b"\\",
            b"'\\",
            b"/*",
            b"/*!",
            b"/*!5",
            b"--",
            b"#",
            b"@",
            b"@@",
            b"0x",
            b"1e",
            b".",
            b"`",
            b"*/",
        ] {
            let _ = detect(edge);
        }
    }

    /// The trade-offs listed in the module docs, pinned so that a change
    /// in behaviour is a conscious one.
    #[test]
    fn known_gaps_are_as_documented() {
        // False negatives.
        for missed in [
            // A comment body with words after the break-out.
            "admin'-- x",
            // Column comparisons left dangling need the statement to parse.
            "' or name = 'unusual'",
            // A lone quote after a word: possessives look the same.
            "1'",
            "James'",
            // A newline ends the comment, so the application's quote is not
            // swallowed.
            "admin'--\n",
        ] {
            assert!(detect(missed.as_bytes()).is_none(), "{missed}");
        }
        // False positives.
        for flagged in [
            "2 or 3 = 5",
            // A boolean operator, a literal and a symbolic comparison are
            // enough, wherever they are.
            "or 1=1",
            "and 2 > 1 is what I wrote",
            // A single word closed by a quote and a parenthesis.
            "(parents')",
            // Backslash-quote is lexed both ways.
            "\\' or 1=1--",
            "'#'",
            "\"--\"",
            "sleep(5);",
            "x = sleep(5)",
            "SQL: SELECT a FROM b UNION SELECT c FROM d",
        ] {
            assert!(detect(flagged.as_bytes()).is_some(), "{flagged}");
        }
        // Newlines are whitespace and end line comments.
        assert!(detect(b"1\nor 1=1").is_some());
        assert!(detect(b"1 # note\nor 1=1").is_some());
    }

    /// Not an assertion: prints the cost per value so changes can be
    /// compared (`cargo test --lib rules::detect::sqli -- --nocapture`;
    /// numbers are from whatever profile the tests were built with).
    #[test]
    fn timing_report() {
        use std::time::Instant;
        let attacks = corpus(ATTACKS);
        let benign = corpus(BENIGN);
        let prose = "The quick brown fox jumps over the lazy dog near the river bank. ".repeat(64);
        let quoted_prose = "It's John's and Mary's 'favourite' place, isn't it? ".repeat(80);
        let rounds = 200;
        let time = |cases: &[&str]| {
            let start = Instant::now();
            let mut hits = 0usize;
            for _ in 0..rounds {
                for c in cases {
                    hits += usize::from(detect(std::hint::black_box(c.as_bytes())).is_some());
                }
            }
            let per = start.elapsed().as_nanos() / (rounds * cases.len()) as u128;
            (per, hits / rounds)
        };
        let (a, ah) = time(&attacks);
        let (b, bh) = time(&benign);
        let (p, _) = time(&[prose.as_str()]);
        let (q, _) = time(&[quoted_prose.as_str()]);
        println!(
            "sqli timing ({} build): attacks {a} ns/value ({ah}/{} hit), benign {b} ns/value \
             ({bh}/{} hit), {} B plain prose {p} ns (pre-filter), {} B quoted prose {q} ns",
            if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            attacks.len(),
            benign.len(),
            prose.len(),
            quoted_prose.len().min(MAX_SCAN_BYTES),
        );
    }
}
