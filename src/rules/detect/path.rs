//! Path traversal / local file inclusion detector: decides whether an input,
//! used by an application as (part of) a file path, climbs out of the
//! directory it is meant for, names a sensitive system file, truncates the
//! path with a NUL byte, or selects a stream wrapper — by splitting path
//! tokens into segments and resolving them, not by a keyword list.
//!
//! Findings (the first one wins):
//! - `path:nul-byte` — a NUL after a path-like token (`shell.php\0.jpg`,
//!   `../../etc/passwd\0`): C-level APIs stop there;
//! - `path:wrapper` — `php://`, `file://`, `zip://`, `phar://`, `expect://`,
//!   `data://`, `glob://`, `compress.*://`, `jar:file:` … at a token start;
//! - `path:traversal` — segments that climb above where the token starts:
//!   `..`, `..;` (Tomcat path parameters), and runs of three or more dots
//!   followed by a separator (`.../.../` on old Windows, `....//` left over
//!   when a filter deletes `../` once; a single leading `.../` is a shortened
//!   path in tool output, not a climb). A token that climbs and comes back
//!   (`a/b/../c`) stays inside; a lone `..` counts only as the whole input;
//! - `path:sensitive-file` — resolved segments naming a system file:
//!   `etc/passwd`, `etc/shadow`, `proc/self/…`, `windows/win.ini`,
//!   `.ssh/id_rsa`, `WEB-INF/…`, `.git/…`, `var/log/…`, the main server
//!   configuration files, any file under an absolute `/proc`, `/sys` or
//!   `/root`, or a file such as `boot.ini`, `.htaccess`, `web.config`,
//!   `.env` after a separator (or as the whole input: "edit your .htaccess"
//!   is prose). Segments may be globs (`/etc/pa*wd`, `/e[t]c/passwd`).
//!
//! A path followed by a plain word (`cd ../.. and then`, `cat /etc/hosts
//! meaning`) is a mention in text, not a path the application opens: the
//! token is skipped (wrappers and NUL bytes still count).
//!
//! Decision: any climb counts, including the one-level `../lib` of a code
//! snippet or a relative Markdown link; a file parameter has no business
//! climbing, and fields that carry code need a rule exclusion.
//!
//! Before that, `\` becomes `/`, ASCII is lower-cased, and what is left of a
//! second layer of encoding after the caller's decoding is undone: `%2e`,
//! `%2f`, `%5c`, `%00`, `%uXXXX` slashes and dots, overlong UTF-8 (`%c0%af`,
//! raw `C0 AF`) and fullwidth `．`/`／`/`＼`.
//!
//! Tokens are split at whitespace, quotes, `<>|&=,(){}#` and a `?` that
//! starts a query (`?name=`); other `?` stay, as glob characters.
//! `..` in prose (`wait...`, `and so on..`), ranges (`1..5`), URLs and file
//! names form no climbing token.
//!
//! Bounds: only the first [`MAX_SCAN`] bytes are read; normalization and
//! tokenization are single passes; each token's segments are compared with
//! a fixed pattern list, and glob comparisons are capped.

use super::Detection;
use super::cmdi::glob_match;

/// How much of an input is scanned (8 KiB). A path past this point is not
/// seen: the bound keeps the cost per target fixed whatever the body size.
pub const MAX_SCAN: usize = 8 * 1024;

/// Resolved segments kept per token; deeper paths keep their first ones.
const MAX_SEGMENTS: usize = 64;
/// Glob comparisons per input (each is O(segment²) at most).
const MAX_GLOBS: usize = 256;
/// NUL bytes examined per input.
const MAX_NULS: usize = 16;

/// Sensitive files as consecutive resolved segments. `*` stands for any
/// segment (or, inside a name, any run), `#` for a number (a process id);
/// a leading `/` anchors the
/// pattern at the root of an absolute path (`/proc/net/tcp`, but not
/// `src/proc/mod.rs`).
const SENSITIVE: &[&[&[u8]]] = &[
    &[b"/", b"proc", b"*"],
    &[b"/", b"sys", b"*"],
    &[b"/", b"root", b"*"],
    &[b"etc", b"passwd"],
    &[b"etc", b"shadow"],
    &[b"etc", b"gshadow"],
    &[b"etc", b"group"],
    &[b"etc", b"hosts"],
    &[b"etc", b"issue"],
    &[b"etc", b"master.passwd"],
    &[b"etc", b"sudoers"],
    &[b"etc", b"crontab"],
    &[b"etc", b"subuid"],
    &[b"etc", b"subgid"],
    &[b"etc", b"security", b"passwd"],
    &[b"etc", b"ssh", b"sshd_config"],
    &[b"etc", b"ssh", b"ssh_host_*"],
    &[b"etc", b"mysql", b"my.cnf"],
    &[b"etc", b"nginx", b"nginx.conf"],
    &[b"etc", b"apache2", b"apache2.conf"],
    &[b"etc", b"httpd", b"conf", b"httpd.conf"],
    &[b"proc", b"self"],
    &[b"proc", b"thread-self"],
    &[b"proc", b"version"],
    &[b"proc", b"#", b"environ"],
    &[b"proc", b"#", b"cmdline"],
    &[b"proc", b"#", b"fd"],
    &[b"proc", b"#", b"maps"],
    &[b"proc", b"#", b"mem"],
    &[b"windows", b"win.ini"],
    &[b"windows", b"system.ini"],
    &[b"winnt", b"win.ini"],
    &[b"windows", b"repair", b"sam"],
    &[b"windows", b"system32", b"config", b"sam"],
    &[b"system32", b"drivers", b"etc", b"hosts"],
    &[b".ssh", b"id_rsa"],
    &[b".ssh", b"id_dsa"],
    &[b".ssh", b"id_ecdsa"],
    &[b".ssh", b"id_ed25519"],
    &[b".ssh", b"authorized_keys"],
    &[b".aws", b"credentials"],
    &[b".docker", b"config.json"],
    &[b".kube", b"config"],
    &[b"web-inf", b"*"],
    &[b"meta-inf", b"*"],
    &[b".git", b"*"],
    &[b".svn", b"*"],
    &[b"var", b"log", b"*"],
];

/// Sensitive file names, flagged after a separator (`../web.config`,
/// `/.htaccess`) or as the whole input.
const SENSITIVE_NAMES: &[&[u8]] = &[
    b"boot.ini",
    b"win.ini",
    b"system.ini",
    b".htaccess",
    b".htpasswd",
    b"web.config",
    b"id_rsa",
    b"id_dsa",
    b".bash_history",
    b".zsh_history",
    b".mysql_history",
    b".git-credentials",
    b".netrc",
    b".pgpass",
    b".npmrc",
    b".env",
    b"wp-config.php",
];

/// The first two bytes of every name a segment can be compared with first
/// (the first name of each [`SENSITIVE`] pattern, root marker skipped, and
/// each of [`SENSITIVE_NAMES`]), one bit per byte pair: a segment whose
/// first two bytes (or whose glob's literal head's) are none of these
/// equals or starts no name, and is not compared with the lists at all.
static NAME_PREFIXES: [u64; 1024] = {
    const fn set(t: &mut [u64; 1024], name: &[u8]) {
        if name.len() >= 2 {
            let k = (name[0] as usize) << 8 | name[1] as usize;
            t[k / 64] |= 1 << (k % 64);
        }
    }
    let mut t = [0u64; 1024];
    let mut i = 0;
    while i < SENSITIVE.len() {
        let p = SENSITIVE[i];
        let first = if p.len() > 1 && p[0].len() == 1 && p[0][0] == b'/' {
            p[1]
        } else {
            p[0]
        };
        set(&mut t, first);
        i += 1;
    }
    let mut i = 0;
    while i < SENSITIVE_NAMES.len() {
        set(&mut t, SENSITIVE_NAMES[i]);
        i += 1;
    }
    t
};

/// Whether a name of the lists can start with `prefix` (see
/// [`NAME_PREFIXES`]); `true` when `prefix` is too short to tell.
fn may_name(prefix: &[u8]) -> bool {
    match prefix {
        [a, b, ..] => {
            let k = usize::from(*a) << 8 | usize::from(*b);
            NAME_PREFIXES[k / 64] & 1 << (k % 64) != 0
        }
        _ => true,
    }
}

/// Pre-filter for the common clean case: every finding of [`detect`] needs a
/// dot, a separator, a scheme colon or a NUL (or an encoded or wide form of
/// one); the engine skips it on a value without one (see
/// `transform::class::PATH_BYTES`).
pub(crate) const PREFILTER: [bool; 256] =
    super::byte_set(&[b'.', b'/', b'\\', b':', 0, b'%', 0xc0, 0xc1, 0xe2, 0xef]);

/// Decides whether `input` is a traversal, a sensitive path, a NUL
/// truncation or a wrapper, as described in the module documentation.
pub fn detect(input: &[u8]) -> Option<Detection> {
    let raw = &input[..input.len().min(MAX_SCAN)];
    if !super::has_any(raw, &PREFILTER) {
        return None;
    }
    if plain(raw) && (delimited(raw) || starts_no_name(raw)) {
        return None;
    }
    judge(raw)
}

/// Whether `raw` holds dots at most: no separator, colon, NUL, encoded or
/// wide form, and no `..`. Such a value neither climbs nor names a wrapper
/// or several segments; only a lone name (`.env`, `boot.ini`) that is the
/// whole input could be found in it (see [`delimited`], [`starts_no_name`]).
fn plain(raw: &[u8]) -> bool {
    raw.iter().all(|&b| {
        !matches!(
            b,
            b'/' | b'\\' | b':' | 0 | b'%' | 0xc0 | 0xc1 | 0xe2 | 0xef
        )
    }) && !raw.windows(2).any(|w| w == b"..")
}

/// A delimiter inside a [`plain`] value: no token is the whole input, so
/// nothing can be found. The common case of prose and numbers.
fn delimited(raw: &[u8]) -> bool {
    trim(raw).iter().any(|&b| always_delimits(b))
}

/// A [`plain`] value whose first two bytes start no sensitive name (JSON
/// key paths such as `items[0].price`, e-mail addresses, dotted numbers):
/// its lone token cannot be one. The bytes as `normalize` and `judge` would
/// see them; a glob or path-parameter byte there: no shortcut.
fn starts_no_name(raw: &[u8]) -> bool {
    match trim(raw) {
        [a, b, ..]
            if ![*a, *b]
                .iter()
                .any(|c| matches!(c, b'*' | b'?' | b'[' | b';')) =>
        {
            !may_name(&[a.to_ascii_lowercase(), b.to_ascii_lowercase()])
        }
        _ => false,
    }
}

/// [`detect`] past its pre-filters.
fn judge(raw: &[u8]) -> Option<Detection> {
    let s = normalize(raw);
    if let Some(d) = nul_byte(&s) {
        return found("path:nul-byte", d);
    }
    let whole = trim(&s);
    if whole == b".." {
        return found("path:traversal", "climbs=1 via=..".to_string());
    }
    let mut globs = 0;
    let mut start = 0;
    while start < s.len() {
        let end = token_end(&s, start);
        let tok = &s[start..end];
        if !tok.is_empty()
            && let Some((context, detail)) = judge_token(tok, tok == whole, &mut globs)
            && !(context != "path:wrapper" && word_follows(&s, end))
        {
            return found(context, detail);
        }
        start = end + 1;
    }
    None
}

/// A path that a plain word follows in the same value ("cd ../.. and
/// then", "/etc/passwd while the hashes…", "cat /etc/hosts meaning") is
/// mentioned in text: a value used as a path would name a file ending in
/// that word. What follows an injected path is the end of the value, a NUL,
/// a quote, an operator or another path.
fn word_follows(s: &[u8], end: usize) -> bool {
    let mut i = end;
    if s.get(i) == Some(&b',') {
        i += 1;
    }
    let blank = s[i.min(s.len())..]
        .iter()
        .take_while(|&&b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    if blank == 0 {
        return false;
    }
    let rest = &s[i + blank..];
    let letters = rest.iter().take_while(|b| b.is_ascii_alphabetic()).count();
    letters >= 2
        && rest.get(letters).is_none_or(|&b| {
            matches!(
                b,
                b' ' | b'\t' | b'\n' | b'\r' | b',' | b'.' | b'?' | b'!' | b';' | b':'
            )
        })
}

fn found(context: &'static str, detail: String) -> Option<Detection> {
    Some(Detection { context, detail })
}

/// Printable rendering of input bytes for `detail`, capped.
fn show(b: &[u8]) -> String {
    b.iter()
        .take(48)
        .map(|&c| if c.is_ascii_graphic() { c as char } else { '?' })
        .collect()
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn hex2(b: Option<&[u8]>) -> Option<u8> {
    let b = b?;
    let hi = (*b.first()? as char).to_digit(16)?;
    let lo = (*b.get(1)? as char).to_digit(16)?;
    Some((hi * 16 + lo) as u8)
}

/// `\` → `/`, ASCII lower-cased, and the separators and dots that survive
/// one decoding in a doubly encoded or wide form turned back into ASCII.
fn normalize(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let (b, used) = decode_one(raw, i);
        out.push(match b {
            b'\\' => b'/',
            _ => b.to_ascii_lowercase(),
        });
        i += used;
    }
    out
}

/// One normalized byte at `raw[i]` and how many input bytes it used.
fn decode_one(raw: &[u8], i: usize) -> (u8, usize) {
    let b = raw[i];
    let path_byte = |c: u32| match c {
        0x2e | 0xff0e => Some(b'.'),
        0x2f | 0x5c | 0x2215 | 0x2216 | 0xff0f | 0xff3c => Some(b'/'),
        0 => Some(0),
        _ => None,
    };
    // Overlong UTF-8 for `.`, `/`, `\` (`C0 AE`, `C0 AF`, `C1 9C`).
    let overlong = |lead: u8, cont: u8| {
        (matches!(lead, 0xc0 | 0xc1) && cont & 0xc0 == 0x80)
            .then(|| (u32::from(lead & 1) << 6) | u32::from(cont & 0x3f))
            .and_then(path_byte)
    };
    match b {
        b'%' => {
            if let Some(h) = hex2(raw.get(i + 1..i + 3)) {
                if raw.get(i + 3) == Some(&b'%')
                    && let Some(c) = hex2(raw.get(i + 4..i + 6)).and_then(|c| overlong(h, c))
                {
                    return (c, 6);
                }
                if let Some(c) = path_byte(u32::from(h)) {
                    return (c, 3);
                }
            } else if matches!(raw.get(i + 1), Some(b'u' | b'U'))
                && let (Some(hi), Some(lo)) =
                    (hex2(raw.get(i + 2..i + 4)), hex2(raw.get(i + 4..i + 6)))
                && let Some(c) = path_byte((u32::from(hi) << 8) | u32::from(lo))
            {
                return (c, 6);
            }
            (b, 1)
        }
        0xc0 | 0xc1 => match raw.get(i + 1).and_then(|&c| overlong(b, c)) {
            Some(c) => (c, 2),
            None => (b, 1),
        },
        // Division slash `∕` and set minus `∖` (E2 88 95 / 96), which IIS
        // maps to `/` and `\` (`%u2216` once decoded).
        0xe2 if raw.get(i + 1) == Some(&0x88) && matches!(raw.get(i + 2), Some(0x95 | 0x96)) => {
            (b'/', 3)
        }
        // Fullwidth `．` `／` `＼` (EF BC 8E / 8F / BC).
        0xef if raw.get(i + 1) == Some(&0xbc) => match raw.get(i + 2) {
            Some(0x8e) => (b'.', 3),
            Some(0x8f | 0xbc) => (b'/', 3),
            _ => (b, 1),
        },
        _ => (b, 1),
    }
}

/// A NUL byte after a path-like token (one with a `.` or `/`), or before an
/// extension (`file\0.jpg`).
fn nul_byte(s: &[u8]) -> Option<String> {
    for (n, p) in s
        .iter()
        .enumerate()
        .filter(|&(_, &b)| b == 0)
        .map(|(p, _)| p)
        .enumerate()
    {
        if n == MAX_NULS {
            break;
        }
        let from = (0..p)
            .rev()
            .take(256)
            .take_while(|&k| !is_delimiter(s, k))
            .last()
            .unwrap_or(p);
        let before = &s[from..p];
        if before.iter().any(|&b| b == b'.' || b == b'/') || s.get(p + 1) == Some(&b'.') {
            return Some(format!("nul-byte after={}", show(before)));
        }
    }
    None
}

/// Whether `s[k]` ends a path token. A `?` does only when a query follows
/// (`?name=`); otherwise it may be a glob character.
fn is_delimiter(s: &[u8], k: usize) -> bool {
    match s[k] {
        b'?' => {
            s[k + 1..]
                .iter()
                .take(64)
                .find(|&&b| matches!(b, b'=' | b'/' | b'?' | b'&') || b.is_ascii_whitespace())
                == Some(&b'=')
        }
        b => always_delimits(b),
    }
}

/// The bytes that end a token wherever they stand (`?` depends on what
/// follows it, see [`is_delimiter`]).
fn always_delimits(b: u8) -> bool {
    matches!(
        b,
        0 | b' '
            | b'\t'
            | b'\n'
            | b'\r'
            | 0x0b
            | 0x0c
            | b'"'
            | b'\''
            | b'`'
            | b'<'
            | b'>'
            | b'|'
            | b'&'
            | b'='
            | b','
            | b'('
            | b')'
            | b'{'
            | b'}'
            | b'#'
    )
}

fn token_end(s: &[u8], start: usize) -> usize {
    (start..s.len())
        .find(|&k| is_delimiter(s, k))
        .unwrap_or(s.len())
}

/// How a segment moves through the directory tree.
#[derive(PartialEq)]
enum Step {
    Stay,
    Up,
    Down,
}

fn step(seg: &[u8], last: bool) -> Step {
    if seg.is_empty() || seg == b"." {
        Step::Stay
    } else if seg == b".." || (seg.len() >= 3 && !last && seg.iter().all(|&b| b == b'.')) {
        // `...` and `....` climb only before a separator: "wait..." is prose.
        Step::Up
    } else {
        Step::Down
    }
}

fn judge_token(tok: &[u8], whole: bool, globs: &mut usize) -> Option<(&'static str, String)> {
    if !token_may_find(tok, whole) {
        return None;
    }
    judge_token_full(tok, whole, globs)
}

/// Whether [`judge_token_full`] can find anything in `tok`: a wrapper needs
/// a colon, a climb needs `..`, and a sensitive file two segments (a `/`)
/// or, for a lone name, the whole input. Most tokens of a JSON document or
/// of prose have none of these and cost one pass.
fn token_may_find(tok: &[u8], whole: bool) -> bool {
    whole || tok.iter().any(|&b| b == b'/' || b == b':') || tok.windows(2).any(|w| w == b"..")
}

fn judge_token_full(tok: &[u8], whole: bool, globs: &mut usize) -> Option<(&'static str, String)> {
    if let Some(w) = wrapper(tok) {
        return Some(("path:wrapper", format!("wrapper={w}")));
    }
    let count = tok.iter().filter(|&&b| b == b'/').count() + 1;
    let mut depth = 0isize;
    let mut lowest = 0isize;
    let mut via: &[u8] = b"";
    // Climbing segments: `...` ones, and the others.
    let (mut ellipses, mut ups) = (0, 0);
    // Resolved segments, each with whether a separator came before it.
    let mut stack: Vec<(&[u8], bool)> = Vec::new();
    for (k, seg) in tok.split(|&b| b == b'/').enumerate() {
        // Path parameters (`..;jsessionid=x`) do not change the segment.
        let seg = seg.split(|&b| b == b';').next().unwrap_or(seg);
        match step(seg, k + 1 == count) {
            Step::Stay => {}
            Step::Up => {
                if seg == b"..." {
                    ellipses += 1;
                } else {
                    ups += 1;
                }
                depth -= 1;
                if depth < lowest {
                    lowest = depth;
                    via = seg;
                }
                stack.pop();
            }
            Step::Down => {
                depth += 1;
                if stack.len() < MAX_SEGMENTS {
                    stack.push((seg, k > 0));
                }
            }
        }
    }
    // A single leading `.../` is how tools shorten a long path
    // (`.../fonts/x.otf | Bin`); `.../.../` is the old Windows climb.
    let abbreviation = ups == 0 && ellipses == 1;
    if lowest < 0 && (count > 1 || whole) && !abbreviation {
        return Some((
            "path:traversal",
            format!("climbs={} via={}", -lowest, show(via)),
        ));
    }
    // `//host/…` is a network path (a protocol-relative URL, a UNC share),
    // not the local root.
    let absolute = tok.first() == Some(&b'/') && tok.get(1) != Some(&b'/');
    sensitive(&stack, absolute, whole, globs).map(|d| ("path:sensitive-file", d))
}

/// A stream wrapper at the start of a token (`php://filter/…`).
fn wrapper(tok: &[u8]) -> Option<&'static str> {
    let colon = tok.iter().take(16).position(|&b| b == b':')?;
    let rest = &tok[colon + 1..];
    let name = match &tok[..colon] {
        b"php" => "php://",
        b"file" => "file://",
        b"zip" => "zip://",
        b"phar" => "phar://",
        b"expect" => "expect://",
        b"data" => "data://",
        b"glob" => "glob://",
        b"zlib" => "zlib://",
        b"compress.zlib" => "compress.zlib://",
        b"compress.bzip2" => "compress.bzip2://",
        b"rar" => "rar://",
        b"ogg" => "ogg://",
        b"ssh2.shell" => "ssh2.shell://",
        b"ssh2.exec" => "ssh2.exec://",
        // Java: `jar:file:…!/`, `jar:http://…!/`, `netdoc:/etc/passwd`.
        b"jar" if rest.starts_with(b"file:") || rest.starts_with(b"http") => return Some("jar:"),
        b"netdoc" if rest.starts_with(b"/") => return Some("netdoc:"),
        _ => return None,
    };
    rest.starts_with(b"//").then_some(name)
}

/// Segment `have` (possibly a glob) against pattern segment `want`. A glob
/// must keep two letters or digits of the name (`p??s??`, `pa*wd`): `*`
/// alone is a C comment (`/* … */`) more often than an attack.
fn seg_matches(have: &[u8], glob: Option<&[u8]>, want: &[u8], globs: &mut usize) -> bool {
    match want {
        b"*" => !have.is_empty(),
        b"#" => !have.is_empty() && have.iter().all(u8::is_ascii_digit),
        _ if have == want => true,
        // A pattern of our own with a wildcard (`ssh_host_*`).
        _ if want.contains(&b'*') => glob_match(want, have),
        // An attacker's glob can only match a name that starts with its
        // literal head (`items[0]` is no name of ours).
        _ => match glob {
            Some(head) if want.starts_with(head) && *globs < MAX_GLOBS => {
                *globs += 1;
                glob_match(have, want)
            }
            _ => false,
        },
    }
}

/// A segment that is an attacker's glob worth expanding against the
/// sensitive names (a wildcard and at least two letters or digits): its
/// literal head, before the first wildcard. Computed once per segment, not
/// once per name it is compared with.
fn glob_head(seg: &[u8]) -> Option<&[u8]> {
    let at = seg.iter().position(|b| matches!(b, b'*' | b'?' | b'['))?;
    (seg.iter().filter(|b| b.is_ascii_alphanumeric()).count() >= 2).then(|| &seg[..at])
}

/// Resolved segments naming a sensitive file: the matched path.
fn sensitive(
    stack: &[(&[u8], bool)],
    absolute: bool,
    whole: bool,
    globs: &mut usize,
) -> Option<String> {
    let heads: Vec<Option<&[u8]>> = stack.iter().map(|&(seg, _)| glob_head(seg)).collect();
    for (i, &(seg, sep_before)) in stack.iter().enumerate() {
        let head = heads[i];
        if !may_name(head.unwrap_or(seg)) {
            continue;
        }
        // Every pattern starts with a plain name and every name is plain
        // (checked by a test): a segment can only match one it equals, or,
        // as a glob, one that starts with its literal head.
        // (First bytes compared before the slices: most names differ there,
        // and a slice comparison is a call.)
        let fits = |name: &[u8]| match head {
            None => name.len() == seg.len() && name.first() == seg.first() && name == seg,
            Some(h) => h.is_empty() || (name.first() == h.first() && name.starts_with(h)),
        };
        for pattern in SENSITIVE {
            let pattern = match pattern.split_first() {
                Some((&b"/", rest)) if absolute && i == 0 => rest,
                Some((&b"/", _)) => continue,
                _ => pattern,
            };
            if !pattern.first().is_some_and(|f| fits(f)) {
                continue;
            }
            let Some(run) = stack.get(i..i + pattern.len()) else {
                continue;
            };
            if run
                .iter()
                .zip(&heads[i..])
                .zip(pattern.iter())
                .all(|((&(have, _), &g), want)| seg_matches(have, g, want, globs))
            {
                let path: Vec<String> = run.iter().map(|(s, _)| show(s)).collect();
                return Some(format!("file={}", path.join("/")));
            }
        }
        if (sep_before || whole)
            && SENSITIVE_NAMES
                .iter()
                .any(|name| fits(name) && seg_matches(seg, head, name, globs))
        {
            return Some(format!("file={}", show(seg)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_lists_start_with_plain_names() {
        // `sensitive` compares a segment that is no glob with the first
        // name of each pattern (and with each name) by equality alone.
        let plain = |n: &[u8]| !n.is_empty() && !n.iter().any(|b| b"*#?[".contains(b));
        for p in SENSITIVE {
            let first = match p.split_first() {
                Some((&b"/", rest)) => rest.first(),
                _ => p.first(),
            };
            assert!(first.is_some_and(|n| plain(n)), "{p:?}");
        }
        assert!(SENSITIVE_NAMES.iter().all(|n| plain(n)));
        // Globs still reach the names and the patterns; bracketed keys
        // that cannot be a name of ours do not.
        assert!(detect(b"/etc/pass[w]d").is_some());
        assert!(detect(b"../.ht*").is_some());
        assert!(detect(b"../w?b.config").is_some());
        assert!(detect(b"/pr[o]c/self/environ").is_some());
        assert!(detect(b"items[0].price").is_none());
        // The two-byte pre-check admits every name and first name, and
        // globs whose head is a prefix of one.
        for p in SENSITIVE {
            let first = match p.split_first() {
                Some((&b"/", rest)) => rest[0],
                _ => p[0],
            };
            assert!(may_name(first), "{first:?}");
        }
        assert!(SENSITIVE_NAMES.iter().all(|n| may_name(n)));
        assert!(may_name(b"et") && may_name(b".h") && may_name(b"e"));
        assert!(!may_name(b"pa"), "passwd is never a first name");
        assert!(!may_name(b"items") && !may_name(b"ada@example.com"));
        assert!(detect(b"12.28").is_none());
    }

    #[test]
    fn dots_only_inputs_are_never_findings() {
        // Generated values over an alphabet of dots, delimiters and letters
        // (sensitive names included): whenever the pre-filter skips one,
        // the full detector finds nothing in it either.
        let pieces: &[&[u8]] = &[
            b".",
            b"..",
            b" ",
            b",",
            b"=",
            b"?",
            b"#",
            b"env",
            b".env",
            b"htaccess",
            b"web",
            b"config",
            b"git",
            b"etc",
            b"passwd",
            b"a",
            b"*",
            b"id_rsa",
            b"\t",
            b"'",
            b"(",
            b"boot.ini",
            b"wp-config.php",
            b"36",
            b"@",
            b"E",
        ];
        let skipped = never_hides(0x2545_F491_4F6C_DD1D, pieces, 6, |v| {
            plain(v) && delimited(v)
        });
        assert!(skipped > 10_000, "{skipped}");
    }

    #[test]
    fn plain_tokens_that_start_no_name_are_never_findings() {
        let pieces: &[&[u8]] = &[
            b".",
            b"..",
            b" ",
            b"?",
            b"*",
            b"[",
            b";",
            b"env",
            b".env",
            b".ENV",
            b"htaccess",
            b"web",
            b"config",
            b"Boot.INI",
            b"items",
            b"0]",
            b"id_rsa",
            b"wp-config.php",
            b"@",
            b"e",
            b"x",
        ];
        let skipped = never_hides(0x9E37_79B9_7F4A_7C15, pieces, 5, |v| {
            plain(v) && starts_no_name(v)
        });
        assert!(skipped > 10_000, "{skipped}");
        let skips = |v: &[u8]| plain(v) && starts_no_name(v);
        assert!(skips(b"items[0].price") && skips(b"ada@example.com"));
        assert!(!skips(b".env") && !skips(b"WEB.config") && !skips(b"../items"));
        assert!(detect(b"Boot.ini").is_some() && detect(b".ht*").is_some());
    }

    /// Asserts that the full detector finds nothing in any generated value
    /// a pre-filter `skips`; returns how many it skipped.
    fn never_hides(seed: u64, pieces: &[&[u8]], max: u64, skips: impl Fn(&[u8]) -> bool) -> usize {
        each_generated(seed, pieces, max, |_, v| {
            if !skips(v) {
                return false;
            }
            assert!(judge(v).is_none(), "{:?}", String::from_utf8_lossy(v));
            true
        })
    }

    /// Runs `check` on 200,000 values of one to `max` pieces (xorshift from
    /// `seed`), with the round number; returns how many it said it checked.
    fn each_generated(
        seed: u64,
        pieces: &[&[u8]],
        max: u64,
        mut check: impl FnMut(usize, &[u8]) -> bool,
    ) -> usize {
        let mut x = seed;
        let mut checked = 0;
        for round in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let n = 1 + x % max;
            let mut y = x >> 3;
            let mut v = Vec::new();
            for _ in 0..n {
                v.extend_from_slice(pieces[(y % pieces.len() as u64) as usize]);
                y /= pieces.len() as u64;
            }
            if check(round, &v) {
                checked += 1;
            }
        }
        checked
    }

    #[test]
    fn skipped_tokens_are_never_findings() {
        // Generated tokens (no delimiter inside, as the tokenizer cuts
        // them): whenever the token pre-filter skips one, the full token
        // judge finds nothing in it and spends no glob budget on it.
        let pieces: &[&[u8]] = &[
            b".",
            b"..",
            b"/",
            b":",
            b";",
            b"*",
            b"?",
            b"[",
            b"etc",
            b"passwd",
            b"proc",
            b"1",
            b"self",
            b".env",
            b"env",
            b"web.config",
            b"php",
            b"file",
            b"jar",
            b"netdoc",
            b"id_rsa",
            b".ssh",
            b"web-inf",
            b"x",
            b"...",
            b"win.ini",
            b"p??s??",
            b"pa*wd",
        ];
        let skipped = each_generated(0x9E37_79B9_7F4A_7C15, pieces, 5, |round, tok| {
            let whole = round % 7 == 0;
            if token_may_find(tok, whole) {
                return false;
            }
            let mut globs = 0;
            assert!(
                judge_token_full(tok, whole, &mut globs).is_none(),
                "{:?}",
                String::from_utf8_lossy(tok)
            );
            assert_eq!(globs, 0);
            true
        });
        assert!(skipped > 10_000, "{skipped}");
    }

    fn flagged(s: &[u8]) -> Option<Detection> {
        detect(s)
    }

    /// Attacks: each must be flagged.
    const ATTACKS: &[&[u8]] = &[
        // Climbing.
        b"../../../etc/passwd",
        b"..\\..\\..\\windows\\win.ini",
        b"../x",
        b"..",
        b"foo/../../bar",
        b"/var/www/../../../tmp/x",
        b"./../config",
        b"..;/..;/admin",
        b"/app/..;/..;/WEB-INF/web.xml",
        b"....//....//etc/hosts",
        b"..././..././etc/hosts",
        b".../.../WINDOWS/win.ini",
        b"images/../../../../etc/shadow",
        b"/static/../..",
        b"file=../../../../etc/passwd",
        b"/index.php?page=../../../etc/passwd",
        b"..%2f..%2fetc%2fpasswd",
        b"..%5c..%5cboot.ini",
        b"%2e%2e/%2e%2e/etc/passwd",
        b"..%c0%af..%c0%afetc/passwd",
        b"..\xc0\xaf..\xc0\xafetc",
        b"..%u2216..%u2216windows",
        "..\u{2216}..\u{2216}etc\u{2216}passwd".as_bytes(),
        b"\xef\xbc\x8e\xef\xbc\x8e\xef\xbc\x8fsecret",
        b"C:\\inetpub\\wwwroot\\..\\..\\..\\Windows\\win.ini",
        // Sensitive files.
        b"/etc/passwd",
        b"/ETC/PASSWD",
        b"/etc//./passwd",
        b"/etc/x/../shadow",
        b"etc/passwd",
        b"/proc/self/environ",
        b"/proc/1/cmdline",
        b"c:\\windows\\win.ini",
        b"C:/boot.ini",
        b"c:\\boot.ini",
        b"/home/user/.ssh/id_rsa",
        b"/.htaccess",
        b".htaccess",
        b"/web.config",
        b"WEB-INF/web.xml",
        b"/.git/config",
        b"/.env",
        b"/var/log/apache2/access.log",
        b"/proc/net/tcp",
        b"/sys/class/net",
        b"/root/.aws/credentials",
        b"/etc/nginx/nginx.conf",
        b"/etc/ssh/ssh_host_rsa_key",
        b"/etc/pa*wd",
        b"/e[t]c/passwd",
        b"/etc/pass??",
        // NUL truncation.
        b"shell.php\x00.jpg",
        b"../../etc/passwd\x00",
        b"file\x00.png",
        b"..%00/etc/passwd",
        // Wrappers.
        b"php://filter/convert.base64-encode/resource=index.php",
        b"PHP://input",
        b"file:///etc/passwd",
        b"zip://shell.jpg#payload.php",
        b"phar://uploads/x.phar/shell",
        b"expect://id",
        b"data://text/plain;base64,PD9waHAgcGhwaW5mbygpOyA/Pg==",
        b"compress.zlib://file.gz",
        b"jar:file:/tmp/x.jar!/",
        b"?page=php://filter/resource=config",
    ];

    /// Benign inputs: none may be flagged.
    const BENIGN: &[&[u8]] = &[
        b"",
        b"hello world",
        b"wait...",
        b"and so on..",
        b"hmm... ok",
        b"...",
        b"1..5",
        b"range 1..10 step 2",
        b"a/b/../c",
        b"docs/guide/../intro.md",
        b"./images/logo.png",
        b"images/logo.png",
        b"/images/logo.png",
        b"/static/css/app.css",
        b"report.pdf",
        b"archive.tar.gz",
        b"my.file.name.txt",
        b"https://example.com/path/to/page?x=1&y=2",
        b"https://example.com/a/b/../c",
        b"http://example.com/etc/passwords-guide",
        b"mailto:john@example.com",
        b"C:\\Users\\me\\Documents\\report.docx",
        b"D:/data/export.csv",
        b"Edit your .htaccess file to enable rewrites",
        b"the web.config file",
        b"We moved to /etc and then left",
        b"my password is in the passwd manual",
        b"data:image/png;base64,iVBORw0KGgo=",
        b"file name: notes.txt",
        b"time: 12:30",
        b"ratio 16:9",
        b"Version 2.0.1",
        b"v1.2.3..v1.2.4",
        b"git diff main...feature",
        b"Q&A / FAQ",
        b"and/or",
        b"50% off",
        b"100%",
        b"%2e is a dot",
        b"see section 3.2/4.1",
        b"1/2 cup",
        b"/api/v1/users/42",
        b"/proc is a filesystem",
        b"john.doe@example.com",
        b"readme.md",
        b".gitignore",
        b"/var/www/html/index.html",
        b"What? Really?",
        b"https://example.com/search?q=etc",
        b"src/rules/detect/path.rs",
        b"/* a C comment */",
        b"src/proc/mod.rs",
        b"https://docs.rs/regex/*/regex/struct.Regex.html",
        b"**bold/italic**",
        b".../fonts/x.otf | Bin 0 -> 5524 bytes",
        b"replace /etc/pam.conf with the new one",
    ];

    #[test]
    fn attacks_are_flagged() {
        let missed: Vec<String> = ATTACKS
            .iter()
            .filter(|a| flagged(a).is_none())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        assert!(missed.is_empty(), "missed attacks: {missed:#?}");
        assert!(ATTACKS.len() >= 40);
    }

    #[test]
    fn benign_inputs_pass() {
        let wrong: Vec<(String, Detection)> = BENIGN
            .iter()
            .filter_map(|b| flagged(b).map(|d| (String::from_utf8_lossy(b).into_owned(), d)))
            .collect();
        assert!(wrong.is_empty(), "false positives: {wrong:#?}");
        assert!(BENIGN.len() >= 40);
    }

    #[test]
    fn details_say_what_fired() {
        let d = flagged(b"../../../etc/passwd").expect("flagged");
        assert_eq!(d.context, "path:traversal");
        assert_eq!(d.detail, "climbs=3 via=..");
        let d = flagged(b"....//....//x").expect("flagged");
        assert_eq!(d.detail, "climbs=2 via=....");
        let d = flagged(b"/etc/passwd").expect("flagged");
        assert_eq!(d.context, "path:sensitive-file");
        assert_eq!(d.detail, "file=etc/passwd");
        let d = flagged(b"c:\\boot.ini").expect("flagged");
        assert_eq!(d.detail, "file=boot.ini");
        let d = flagged(b"php://filter/resource=x").expect("flagged");
        assert_eq!(d.context, "path:wrapper");
        assert_eq!(d.detail, "wrapper=php://");
        let d = flagged(b"shell.php\x00.jpg").expect("flagged");
        assert_eq!(d.context, "path:nul-byte");
        assert_eq!(d.detail, "nul-byte after=shell.php");
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize(b"A\\%2E%2f%5C%00%c0%AF%u002E"), b"a/.//\x00/.");
        assert_eq!(normalize(b"%zz%"), b"%zz%");
    }

    #[test]
    fn scan_is_capped() {
        let mut long = vec![b'a'; MAX_SCAN];
        long.extend_from_slice(b" ../../etc/passwd");
        assert!(detect(&long).is_none(), "bytes past MAX_SCAN are not read");
        long.drain(..100);
        assert!(detect(&long).is_some());
    }

    /// Arbitrary bytes never panic (xorshift, no crates), with an alphabet
    /// biased towards the bytes the tokenizer branches on.
    #[test]
    fn random_bytes_do_not_panic() {
        const ALPHABET: &[u8] = b"./\\%;:?*[]=& \x00\xc0\xc1\xaf\xef\xbc\x8euetcpaswd2e5f0";
        super::super::random_inputs(ALPHABET, 0xD1B5_4A32_D192_ED03, |buf| {
            let _ = detect(buf);
        });
    }
}
