//! Multi-pattern matcher of the rule engine: one database per rule group, one scan per value.
//!
//! All regexes and phrases of one (phase, target, transform chain) group are
//! compiled into one immutable database, and each value is scanned once
//! whatever the number of rules.
//!
//! # Shape
//!
//! The BurntSushi model: [`compile`] turns a list of [`PatternSpec`]s into a
//! [`MatcherSet`] (immutable, `Send + Sync`, shared by every worker through
//! the rule-set snapshot), and each worker thread scans with its own mutable
//! [`Scratch`]. [`MatcherSet::scan`] reports the id of every pattern that
//! matches somewhere in the value, each id once, in the order of the specs.
//! [`MatcherSet::first_match_span`] gives the span of one pattern for `rules
//! explain`. With Hyperscan, [`MatcherSet::batch_scan`] scans many values
//! joined by `\n` in one call (a second database with value anchors as line
//! anchors); the rule engine then scans value by value only the values a
//! match ended in, so a request's clean values cost one pass per database
//! instead of one engine call each.
//!
//! Two backends sit behind [`Backend`]: Hyperscan (Debian's Vectorscan,
//! block-mode database, the default with the `hyperscan` cargo feature) and a
//! pure-Rust one (one `regex-automata` meta regex for the regexes plus one
//! `aho-corasick` automaton for the phrases). A backend that fails to compile
//! a set is an error; nothing ever falls back to the other engine.
//!
//! # Semantics (the same in both backends)
//!
//! - Byte mode: values are arbitrary bytes, never decoded as UTF-8. `.`
//!   matches any one byte, newline included (dot-all is always on). A
//!   non-ASCII character written in a pattern or a phrase matches its UTF-8
//!   byte sequence; `\xHH` matches the byte `HH`. Classes may hold only ASCII
//!   characters and `\xHH` bytes (a non-ASCII character inside `[...]` is
//!   rejected, since "one character" and "one byte" would disagree; write
//!   the alternation `(?:é|è)` instead).
//! - `caseless` folds ASCII letters only; `\w`, `\d`, `\s` and `\b` are ASCII.
//! - `^` and `$` are the start and end of the value; `$` does *not* also
//!   match before a final `\n` (Hyperscan's PCRE default does; we align
//!   Hyperscan to the `regex` crate). `(?m)` gives line anchors.
//! - Greediness never changes which patterns match; `a++` is `(a+)+` as in
//!   the `regex` crate (PCRE's possessive reading does not exist here).
//! - Rejected at compile time, in both backends: backreferences,
//!   look-around, patterns that can match the empty string (this includes
//!   bare zero-width patterns such as `^` or `\b`, which Hyperscan alone would
//!   accept), patterns containing a class that matches nothing, `\b{start}` /
//!   `\<`-style half word boundaries, Unicode classes (`\p{..}`), PCRE-only
//!   escapes (`\Z`, `\e`, ...), repetition counts above [`MAX_REPEAT`] (nested
//!   counts multiplied), and anything over the other limits below.
//!
//! # How the backends are kept aligned
//!
//! There is one front-end. Every pattern (a phrase is first escaped into a
//! regex of `\xHH` bytes) is parsed by `regex-syntax` (through
//! `regex_automata::util::syntax`) with the configuration above, checked, and
//! printed back from its HIR as a *canonical* pattern: classes spelled out as
//! ranges, case folding expanded into classes, anchors as `\A`/`\z`, groups
//! made explicit. The canonical pattern is re-parsed and must give the same
//! HIR (greediness aside): the `regex-syntax` printer is ambiguous for some
//! nested repetitions, see `canonical_form`. The pure backend compiles the
//! canonical pattern; Hyperscan compiles a mechanical translation of it
//! (`to_hyperscan_syntax`) that respells the few `regex-syntax`-only forms
//! and reads it by `regex-syntax`'s rules. Hyperscan therefore never
//! interprets the rule author's syntax, so PCRE-isms (`$` before a final
//! newline, possessive `a++`, inline-flag scoping, what `\s` contains) cannot
//! make the engines disagree. The translation runs in the pure-only build
//! too, so which patterns are accepted does not depend on the cargo feature.
//! The confirm regex behind [`MatcherSet::first_match_span`] is built from
//! the pattern as written, with the same flags, so its spans keep the
//! author's greediness.
//!
//! Differences that remain, and are not hidden (each is a [`CompileError`]
//! naming a pattern, never a silent fallback):
//! - each engine has its own resource limits; Hyperscan reports "Resource
//!   limit exceeded" for some large sets that the pure NFA limit accepts,
//!   and the reverse;
//! - Hyperscan refuses some patterns that can never match because their
//!   assertions contradict each other (`\Bx\b\B`: "Pattern can never
//!   match"); the pure backend compiles them, and they never match.

use std::fmt;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use aho_corasick::AhoCorasick;

use crate::rules::dbcache::DbCache;
use regex_automata::{Input, MatchKind, PatternSet, meta, util::syntax};

/// At most this many patterns in one set. A rule group holds tens to a few
/// hundred patterns; the bound keeps compile time and memory of one group
/// finite when a rule pack or phrase file is hostile or broken.
pub const MAX_PATTERNS_PER_SET: usize = 10_000;

/// At most this many bytes of pattern source (regex text, or phrase bytes)
/// per pattern. Leaves room for long assembled regexes of the CRS style.
pub const MAX_PATTERN_LEN: usize = 16 * 1024;

/// At most this many bytes of pattern source per set, summed over patterns.
/// This bounds what the phrase automaton and Hyperscan are asked to build.
pub const MAX_SET_SOURCE_LEN: usize = 4 * 1024 * 1024;

/// Maximum nesting depth (groups, classes, repetitions) accepted by the
/// parser, so that a pathological pattern cannot exhaust the stack.
pub const MAX_NESTING: u32 = 64;

/// Largest repetition count allowed in `{m}`, `{m,}` or `{m,n}`, nested
/// counts multiplied (`(?:a{10}){100}` counts 1000).
/// Measured (release build, this 2-core VM, one pattern per Hyperscan
/// database, `Instant` around the compile): `x[a-z]{0,1000}y` ~60 ms,
/// `(?:[a-z]{100}){100}` ~170 ms, `x[a-z]{0,5000}y` 1.5 s,
/// `(?:[a-z]{1000}){100}` 9.3 s, `(?:(?:x{1000}){1000}){1000}` 39 s before
/// "Resource limit exceeded"; `a{32767}` is refused. So counts are bounded
/// here, for both backends, instead of discovering this per engine.
pub const MAX_REPEAT: u32 = 1000;

/// Size limit, in bytes, of the pure backend's Thompson NFA for the whole
/// set. Exceeding it is a [`CompileError`].
pub const PURE_NFA_SIZE_LIMIT: usize = 32 * 1024 * 1024;

/// Size limit, in bytes, of a fully compiled DFA the pure backend may build
/// ahead of time (only ever tried for small sets; larger ones use the lazy
/// DFA, which is bounded by [`PURE_LAZY_DFA_CACHE`] instead).
pub const PURE_DFA_SIZE_LIMIT: usize = 4 * 1024 * 1024;

/// Capacity, in bytes, of the pure backend's lazy-DFA cache, per [`Scratch`].
/// When a hostile value thrashes the cache, the meta regex falls back to its
/// PikeVM: slower, still linear time.
pub const PURE_LAZY_DFA_CACHE: usize = 2 * 1024 * 1024;

/// Size limit, in bytes, of each confirm regex (the `regex` crate's default).
pub const CONFIRM_SIZE_LIMIT: usize = 10 * 1024 * 1024;

/// Longest value a scan accepts. Hyperscan's block scan takes a `u32` length
/// (the crate would truncate silently), so the same bound applies to both
/// backends; a longer value is a [`ScanError`], never a partial scan.
pub const MAX_INPUT_LEN: usize = u32::MAX as usize;

/// One pattern of a group, as the rule compiler hands it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternSpec {
    /// Reported by [`MatcherSet::scan`] when the pattern matches; must be
    /// unique within a set.
    pub id: u32,
    /// What to match.
    pub kind: PatternKind,
    /// ASCII case-insensitive matching.
    pub caseless: bool,
}

/// A regex, or a literal phrase (from `phrases` / `phrases_file` rules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternKind {
    /// A regex in `regex`-crate syntax, byte mode (see the module docs).
    Regex(String),
    /// Bytes matched as they are (no metacharacters).
    Literal(Vec<u8>),
}

/// Which engine runs a [`MatcherSet`].
///
/// One measurement, to set expectations (throwaway release-mode test, not
/// committed; this 2-core VM): 300 patterns (150 `\bword\s*[(=]\s*word`
/// regexes, half caseless, and 150 caseless phrases), 4 KiB random value,
/// 5000 scans after warm-up: Hyperscan ~2.2 us per scan, pure ~27 us;
/// compile ~190 ms and ~75 ms (confirm regexes included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// Hyperscan (Vectorscan) block-mode database.
    #[cfg(feature = "hyperscan")]
    Hyperscan,
    /// `regex-automata` meta regex (regexes) + `aho-corasick` (phrases).
    Pure,
}

impl Default for Backend {
    /// Hyperscan when the `hyperscan` feature is on, else the pure backend.
    fn default() -> Self {
        #[cfg(feature = "hyperscan")]
        {
            Backend::Hyperscan
        }
        #[cfg(not(feature = "hyperscan"))]
        {
            Backend::Pure
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            #[cfg(feature = "hyperscan")]
            Backend::Hyperscan => "hyperscan",
            Backend::Pure => "pure",
        })
    }
}

/// A pattern (named by its id) that cannot be compiled, and why.
///
/// Errors about the set as a whole (too many patterns, a size limit reached
/// only by the sum of patterns) name the first pattern at which the set goes
/// over, found by compiling growing prefixes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {id}: {message}")]
pub struct CompileError {
    /// The offending pattern's [`PatternSpec::id`].
    pub id: u32,
    /// Human-readable reason (parser errors include the pattern and a caret).
    pub message: String,
}

/// A scan that could not run to completion. Callers must not treat it as
/// "no match" (fail-open); the value was not inspected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// The value is longer than [`MAX_INPUT_LEN`].
    #[error("value of {len} bytes exceeds the matcher limit of {max} bytes")]
    InputTooLarge {
        /// Length of the value.
        len: usize,
        /// [`MAX_INPUT_LEN`].
        max: usize,
    },
    /// The engine failed (scratch allocation, or an error reported by
    /// Hyperscan's scan).
    #[error("matcher engine error: {0}")]
    Engine(String),
}

/// The compiled patterns of one group. Immutable and `Send + Sync`: build it
/// once (off the request path) and share it behind an `Arc`.
pub struct MatcherSet {
    /// Identity of this set, so a [`Scratch`] can tell which set it fits.
    uid: u64,
    backend: Backend,
    /// Spec position → spec id. Engines report positions.
    ids: Box<[u32]>,
    /// (id, position), sorted by id, for [`MatcherSet::first_match_span`].
    by_id: Box<[(u32, u32)]>,
    /// One `regex` crate regex per spec, compiled eagerly from the pattern as
    /// written, with the front-end's flags. Eager, so that a pattern that
    /// cannot be explained is found at load time, not when an operator runs
    /// `rules explain`. Costs one extra compile per pattern at load; the
    /// request path never touches these.
    confirm: Box<[regex::bytes::Regex]>,
    engine: Engine,
    /// The same patterns for [`MatcherSet::batch_scan`]: value anchors
    /// turned into line anchors, every match end reported (no
    /// SINGLEMATCH). `None` for the pure backend, or when Hyperscan would
    /// not build it (the per-value scan is then the only path).
    #[cfg(feature = "hyperscan")]
    batch: Option<hyperscan::BlockDatabase>,
    /// The patterns left out of `batch` because they match the separator on
    /// its own (a negated class): in a batch they would report an end at
    /// every value. [`MatcherSet::unbatched_matches`] checks them value by
    /// value.
    #[cfg(feature = "hyperscan")]
    unbatched: Unbatched,
}

/// The patterns a batch leaves out, as checked on one value: those that
/// match exactly one byte of a class (the usual case, a negated class) by
/// a byte table each, the others with their confirm regex; by position.
#[cfg(feature = "hyperscan")]
struct Unbatched {
    bytes: Box<[(u32, Box<[bool; 256]>)]>,
    regexes: Box<[u32]>,
}

/// The bytes a pattern matches when it matches exactly one byte of a class
/// (or one literal byte), else `None`.
#[cfg(feature = "hyperscan")]
fn single_byte_class(canonical: &str) -> Option<[bool; 256]> {
    use regex_syntax::hir::{Class, HirKind};
    let hir = syntax::parse_with(canonical, &canonical_syntax()).ok()?;
    let mut set = [false; 256];
    match hir.kind() {
        HirKind::Literal(lit) if lit.0.len() == 1 => set[usize::from(lit.0[0])] = true,
        HirKind::Class(Class::Bytes(c)) => {
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set[usize::from(b)] = true;
                }
            }
        }
        HirKind::Class(Class::Unicode(c)) if c.ranges().iter().all(|r| r.end().is_ascii()) => {
            for r in c.ranges() {
                for b in r.start() as u8..=r.end() as u8 {
                    set[usize::from(b)] = true;
                }
            }
        }
        _ => return None,
    }
    Some(set)
}

enum Engine {
    /// No patterns: scans report nothing.
    Empty,
    #[cfg(feature = "hyperscan")]
    Hyperscan(hyperscan::BlockDatabase),
    Pure(PureEngine),
}

struct PureEngine {
    /// The regex patterns in one meta regex and, for each of its pattern
    /// ids, the spec position.
    regex: Option<(meta::Regex, Box<[u32]>)>,
    /// The phrases in one automaton; see [`PurePhrases`].
    phrases: Option<PurePhrases>,
}

/// All phrases of a set in one Aho-Corasick automaton, so the value is
/// walked once for phrases whatever their case mode. When any phrase is
/// caseless the automaton folds ASCII case for all of them, and a hit on a
/// case-sensitive phrase is confirmed by comparing the matched bytes.
struct PurePhrases {
    ac: AhoCorasick,
    /// Indexed by the automaton's pattern id.
    info: Box<[PhraseInfo]>,
}

struct PhraseInfo {
    /// Spec position.
    pos: u32,
    /// Whether a hit must be confirmed byte-for-byte (a case-sensitive
    /// phrase in a case-folding automaton).
    exact: bool,
    phrase: Box<[u8]>,
}

/// Per-thread mutable state for scanning one [`MatcherSet`].
///
/// Create it with [`MatcherSet::scratch`] or [`Scratch::default`]. A scratch
/// that was made for another set (for example, the set that a reload just
/// replaced) is rebuilt on the next scan, which allocates once; so a
/// `thread_local!` `RefCell<Scratch>` per rule group can simply be reused
/// across reloads. Keep one scratch per set per thread: alternating one
/// scratch between two sets would rebuild it on every scan.
pub struct Scratch {
    /// The [`MatcherSet::uid`] this scratch fits; 0 for none.
    set_uid: u64,
    hits: Hits,
    engine: EngineScratch,
    /// For the batch database, allocated on first use.
    #[cfg(feature = "hyperscan")]
    batch: Option<hyperscan::Scratch>,
}

enum EngineScratch {
    None,
    /// `None` until allocated (allocation is retried on scan, where an
    /// error can be reported).
    #[cfg(feature = "hyperscan")]
    Hyperscan(Option<hyperscan::Scratch>),
    /// Boxed: the meta cache is large, and most sets are Hyperscan ones.
    Pure(Option<Box<(meta::Cache, PatternSet)>>),
}

/// Reusable dedupe set: a bitset over spec positions plus the list of
/// positions set in this scan (so reset costs the number of hits, not the
/// number of patterns). Capacities are fixed at creation, so inserting never
/// allocates.
struct Hits {
    bits: Vec<u64>,
    order: Vec<u32>,
}

impl Hits {
    fn new(len: usize) -> Self {
        Hits {
            bits: vec![0; len.div_ceil(64)],
            order: Vec::with_capacity(len),
        }
    }

    /// Forget the previous scan. Done at the start of a scan rather than at
    /// the end, so a caller's panic in `on_match` cannot leave stale hits.
    fn reset(&mut self) {
        for &pos in &self.order {
            if let Some(word) = self.bits.get_mut(pos as usize / 64) {
                *word = 0;
            }
        }
        self.order.clear();
    }

    #[inline]
    fn insert(&mut self, pos: u32) {
        let bit = 1u64 << (pos % 64);
        if let Some(word) = self.bits.get_mut(pos as usize / 64)
            && *word & bit == 0
        {
            *word |= bit;
            self.order.push(pos);
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.order.len()
    }
}

impl Default for Scratch {
    /// A scratch bound to no set; the first scan fits it to its set.
    fn default() -> Self {
        Scratch {
            set_uid: 0,
            hits: Hits::new(0),
            engine: EngineScratch::None,
            #[cfg(feature = "hyperscan")]
            batch: None,
        }
    }
}

impl fmt::Debug for Scratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scratch")
            .field("set_uid", &self.set_uid)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for MatcherSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatcherSet")
            .field("backend", &self.backend)
            .field("patterns", &self.ids.len())
            .finish_non_exhaustive()
    }
}

/// Source of [`MatcherSet::uid`]; starts at 1 so 0 means "no set".
static NEXT_SET_UID: AtomicU64 = AtomicU64::new(1);

/// Compiles `specs` into one set for `backend`.
///
/// Fails on the first pattern (in spec order) that the front-end rejects, or
/// on whatever the engine rejects; the error names the pattern id. Use
/// [`validate`] to get every front-end error at once.
pub fn compile(specs: &[PatternSpec], backend: Backend) -> Result<MatcherSet, CompileError> {
    compile_cached(specs, backend, None)
}

/// [`compile`], reading and storing the Hyperscan databases in `cache`
/// (see [`crate::rules::dbcache`]); the pure backend ignores it.
pub fn compile_cached(
    specs: &[PatternSpec],
    backend: Backend,
    cache: Option<&DbCache>,
) -> Result<MatcherSet, CompileError> {
    #[cfg(not(feature = "hyperscan"))]
    let _ = cache;
    let (prepared, errors) = prepare_all(specs);
    if let Some(first) = errors.into_iter().next() {
        return Err(first);
    }
    let ids: Box<[u32]> = specs.iter().map(|s| s.id).collect();
    let mut by_id: Vec<(u32, u32)> = ids
        .iter()
        .enumerate()
        .map(|(pos, &id)| (id, pos as u32))
        .collect();
    by_id.sort_unstable();

    let confirm = prepared
        .iter()
        .zip(specs)
        .map(|(p, spec)| {
            regex::bytes::RegexBuilder::new(&p.source)
                .unicode(false)
                .case_insensitive(spec.caseless)
                .dot_matches_new_line(true)
                .multi_line(false)
                .size_limit(CONFIRM_SIZE_LIMIT)
                .nest_limit(MAX_NESTING)
                .build()
                .map_err(|e| CompileError {
                    id: spec.id,
                    message: format!("confirm regex: {e}"),
                })
        })
        .collect::<Result<Box<[_]>, _>>()?;

    let engine = |prepared: &[Prepared]| -> Result<Engine, CompileError> {
        Ok(if specs.is_empty() {
            Engine::Empty
        } else {
            match backend {
                #[cfg(feature = "hyperscan")]
                Backend::Hyperscan => Engine::Hyperscan(compile_hyperscan(prepared, &ids, cache)?),
                Backend::Pure => Engine::Pure(compile_pure(specs, prepared, PURE_NFA_SIZE_LIMIT)?),
            }
        })
    };
    #[cfg(feature = "hyperscan")]
    let unbatched_pos: Box<[u32]> = confirm
        .iter()
        .enumerate()
        .filter(|(_, re)| re.is_match(&[BATCH_SEPARATOR]))
        .map(|(pos, _)| pos as u32)
        .collect();
    #[cfg(feature = "hyperscan")]
    let unbatched = {
        let mut bytes = Vec::new();
        let mut regexes = Vec::new();
        for &pos in &unbatched_pos {
            match prepared
                .get(pos as usize)
                .and_then(|p| single_byte_class(&p.canonical))
            {
                Some(set) => bytes.push((pos, Box::new(set))),
                None => regexes.push(pos),
            }
        }
        Unbatched {
            bytes: bytes.into(),
            regexes: regexes.into(),
        }
    };
    // With a second core, the batch database compiles on a second thread,
    // beside the exact one (each is a whole Hyperscan compile; on one core
    // that would only raise the memory peak).
    #[cfg(feature = "hyperscan")]
    let (engine, batch) = match backend {
        Backend::Hyperscan if !specs.is_empty() && !more_cores() => {
            let engine = engine(&prepared);
            (
                engine,
                compile_hyperscan_batch(&prepared, &unbatched_pos, cache),
            )
        }
        Backend::Hyperscan if !specs.is_empty() => std::thread::scope(|s| {
            let batch = s.spawn(|| compile_hyperscan_batch(&prepared, &unbatched_pos, cache));
            let engine = engine(&prepared);
            // A panicked batch compile only loses the shortcut.
            (engine, batch.join().ok().flatten())
        }),
        _ => (engine(&prepared), None),
    };
    #[cfg(not(feature = "hyperscan"))]
    let engine = engine(&prepared);
    let engine = engine?;
    Ok(MatcherSet {
        uid: NEXT_SET_UID.fetch_add(1, Ordering::Relaxed),
        backend,
        ids,
        by_id: by_id.into_boxed_slice(),
        confirm,
        engine,
        #[cfg(feature = "hyperscan")]
        batch,
        #[cfg(feature = "hyperscan")]
        unbatched,
    })
}

/// What every match of a pattern needs, so that work on a value that
/// cannot match may be skipped (the engine's chain guards).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternNeeds {
    /// No match is shorter than this many bytes.
    pub min_len: usize,
    /// Up to six byte sets, the four cheapest (rarest in text) first, then
    /// the cheapest of rarity 1 and 2 (`transform::set_rarity`) if not
    /// among them: a match holds a byte of each. Empty when none was found
    /// (a pattern that consumes a byte always has one, if only a large
    /// class).
    pub all: Vec<[bool; 256]>,
}

/// The [`PatternNeeds`] of a pattern, from its parsed form: a literal
/// needs each of its bytes, a byte class one of its bytes, a
/// concatenation what each of its parts needs, an alternation the union
/// of each branch's cheapest set, a repetition what its body needs unless
/// it may repeat zero times.
/// `None` when the pattern does not parse (compiling it fails anyway).
pub fn pattern_needs(spec: &PatternSpec) -> Option<PatternNeeds> {
    let source = match &spec.kind {
        PatternKind::Regex(s) => s.clone(),
        PatternKind::Literal(bytes) => escape_literal(bytes),
    };
    let hir = syntax::parse_with(&source, &source_syntax(spec.caseless)).ok()?;
    let mut all = needed_sets(&hir);
    all.sort_by_key(set_weight);
    all.dedup();
    // The four cheapest, and the cheapest of rarity 1 and 2 too (see
    // `transform::set_rarity`: what the engine gates databases on).
    let extra: Vec<[bool; 256]> = [1, 2]
        .into_iter()
        .filter_map(|level| {
            all.iter()
                .find(|s| crate::rules::transform::set_rarity(s) >= level)
                .copied()
        })
        .collect();
    all.truncate(4);
    for set in extra {
        if !all.contains(&set) {
            all.push(set);
        }
    }
    Some(PatternNeeds {
        min_len: hir.properties().minimum_len()?,
        all,
    })
}

/// How common a byte set is in ordinary text (letters, digits and spaces
/// weigh most): the set a concatenation keeps is the one least likely to
/// be present in a clean value.
fn set_weight(set: &[bool; 256]) -> u32 {
    (0..256usize)
        .filter(|&b| set[b])
        .map(|b| match b as u8 {
            b' ' => 8,
            b'a'..=b'z' | b'A'..=b'Z' => 4,
            b'0'..=b'9' => 3,
            _ => 1,
        })
        .sum()
}

/// Byte sets every match of `hir` holds a byte of (empty: none known).
fn needed_sets(hir: &regex_syntax::hir::Hir) -> Vec<[bool; 256]> {
    use regex_syntax::hir::{Class, HirKind};
    let one = |b: u8| {
        let mut set = [false; 256];
        set[usize::from(b)] = true;
        set
    };
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Vec::new(),
        HirKind::Literal(lit) => lit.0.iter().map(|&b| one(b)).collect(),
        HirKind::Class(Class::Bytes(c)) => {
            let mut set = [false; 256];
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    set[usize::from(b)] = true;
                }
            }
            vec![set]
        }
        HirKind::Class(Class::Unicode(c)) => {
            // A non-ASCII character is encoded with bytes >= 0x80 only.
            let mut set = [false; 256];
            for r in c.ranges() {
                let (lo, hi) = (u32::from(r.start()), u32::from(r.end()));
                for b in lo.min(0x80)..=hi.min(0x7F) {
                    set[b as usize] = true;
                }
                if hi >= 0x80 {
                    set[0x80..].fill(true);
                }
            }
            vec![set]
        }
        HirKind::Repetition(rep) if rep.min == 0 => Vec::new(),
        HirKind::Repetition(rep) => needed_sets(&rep.sub),
        HirKind::Capture(cap) => needed_sets(&cap.sub),
        HirKind::Concat(parts) => parts.iter().flat_map(needed_sets).collect(),
        HirKind::Alternation(branches) => {
            let needs: Vec<Vec<[bool; 256]>> = branches.iter().map(needed_sets).collect();
            if needs.iter().any(Vec::is_empty) {
                return Vec::new();
            }
            // The union of each branch's cheapest set.
            let mut set = [false; 256];
            for need in &needs {
                if let Some(cheapest) = need.iter().min_by_key(|s| set_weight(s)) {
                    for (s, n) in set.iter_mut().zip(cheapest) {
                        *s |= n;
                    }
                }
            }
            let mut sets = vec![set];
            // And, when each branch needs a set of rarity 1 (or 2), the
            // union of each branch's cheapest such set: what the engine's
            // gated databases look for (see `transform::set_rarity`).
            for level in [1, 2] {
                let mut union = [false; 256];
                let every = needs.iter().all(|need| {
                    match need
                        .iter()
                        .filter(|s| crate::rules::transform::set_rarity(s) >= level)
                        .min_by_key(|s| set_weight(s))
                    {
                        Some(cheapest) => {
                            for (u, n) in union.iter_mut().zip(cheapest) {
                                *u |= n;
                            }
                            true
                        }
                        None => false,
                    }
                });
                if every && !sets.contains(&union) {
                    sets.push(union);
                }
            }
            // And every set of a branch that each other branch needs a
            // subset of (`:` in `\$\{jndi:|\bjndi:` is needed whichever
            // branch matches, and is rarer than the union above).
            let subset = |a: &[bool; 256], b: &[bool; 256]| a.iter().zip(b).all(|(x, y)| !x || *y);
            for need in &needs {
                for candidate in need {
                    if needs
                        .iter()
                        .all(|other| other.iter().any(|s| subset(s, candidate)))
                        && !sets.contains(candidate)
                    {
                        sets.push(*candidate);
                    }
                }
            }
            sets
        }
    }
}

/// Runs the backend-independent checks on every spec and returns every error
/// (empty when all pass). What it accepts, [`compile`] accepts too, except
/// for what an engine refuses on its own (size limits; Hyperscan's "can
/// never match", see the module docs).
pub fn validate(specs: &[PatternSpec]) -> Vec<CompileError> {
    prepare_all(specs).1
}

impl MatcherSet {
    /// A scratch fitted to this set, for one thread.
    pub fn scratch(&self) -> Scratch {
        let engine =
            match &self.engine {
                Engine::Empty => EngineScratch::None,
                // An allocation failure here is retried (and reported) by scan.
                #[cfg(feature = "hyperscan")]
                Engine::Hyperscan(db) => EngineScratch::Hyperscan(db.alloc_scratch().ok()),
                Engine::Pure(pure) => EngineScratch::Pure(pure.regex.as_ref().map(|(re, _)| {
                    Box::new((re.create_cache(), PatternSet::new(re.pattern_len())))
                })),
            };
        Scratch {
            set_uid: self.uid,
            hits: Hits::new(self.ids.len()),
            engine,
            #[cfg(feature = "hyperscan")]
            batch: None,
        }
    }

    /// Scans `input` once and calls `on_match` with the id of every pattern
    /// that matches somewhere in it, each id once, in spec order.
    ///
    /// `on_match` runs after the engine has finished (never inside
    /// Hyperscan's C callback), so it may do anything, including panic.
    ///
    /// Allocation, by construction (not measured with a counting
    /// allocator): none on the Hyperscan path; on the pure path the lazy
    /// DFA cache grows while it learns states, up to
    /// [`PURE_LAZY_DFA_CACHE`], and is then reused. Both allocate once when
    /// `scratch` was made for another set.
    pub fn scan(
        &self,
        scratch: &mut Scratch,
        input: &[u8],
        mut on_match: impl FnMut(u32),
    ) -> Result<(), ScanError> {
        if input.len() > MAX_INPUT_LEN {
            return Err(ScanError::InputTooLarge {
                len: input.len(),
                max: MAX_INPUT_LEN,
            });
        }
        if scratch.set_uid != self.uid {
            *scratch = self.scratch();
        }
        scratch.hits.reset();
        let total = self.ids.len();
        match (&self.engine, &mut scratch.engine) {
            (Engine::Empty, _) => {}
            #[cfg(feature = "hyperscan")]
            (Engine::Hyperscan(db), EngineScratch::Hyperscan(slot)) => {
                let hs_scratch = match slot {
                    Some(s) => s,
                    None => slot.insert(
                        db.alloc_scratch()
                            .map_err(|e| ScanError::Engine(format!("hyperscan scratch: {e}")))?,
                    ),
                };
                let hits = &mut scratch.hits;
                // SINGLEMATCH already makes Hyperscan report each pattern
                // once; the bitset stays as the one dedupe shared with the
                // pure backend. Stop early once every pattern has matched.
                let result = db.scan(
                    input,
                    hs_scratch,
                    |pos: u32, _from: u64, _to: u64, _flags: u32| {
                        hits.insert(pos);
                        if hits.len() == total {
                            hyperscan::Matching::Terminate
                        } else {
                            hyperscan::Matching::Continue
                        }
                    },
                );
                match result {
                    Ok(()) => {}
                    Err(hyperscan::Error::Hyperscan(hyperscan::HsError::ScanTerminated)) => {}
                    Err(e) => return Err(ScanError::Engine(format!("hyperscan scan: {e}"))),
                }
            }
            (Engine::Pure(pure), EngineScratch::Pure(state)) => {
                if let (Some((re, positions)), Some(state)) = (&pure.regex, state) {
                    let (cache, patset) = &mut **state;
                    patset.clear();
                    re.which_overlapping_matches_with(cache, &Input::new(input), patset);
                    for pid in patset.iter() {
                        if let Some(&pos) = positions.get(pid.as_usize()) {
                            scratch.hits.insert(pos);
                        }
                    }
                }
                if let Some(phrases) = &pure.phrases {
                    scan_phrases(phrases, input, &mut scratch.hits, total)?;
                }
            }
            // Unreachable: the uid check above fits the scratch to the set.
            _ => return Err(ScanError::Engine("scratch does not fit this set".into())),
        }
        // Spec order, so both backends report in the same order.
        scratch.hits.order.sort_unstable();
        for &pos in &scratch.hits.order {
            if let Some(&id) = self.ids.get(pos as usize) {
                on_match(id);
            }
        }
        Ok(())
    }

    /// Whether [`batch_scan`](MatcherSet::batch_scan) can run (Hyperscan).
    pub fn can_batch(&self) -> bool {
        #[cfg(feature = "hyperscan")]
        {
            self.batch.is_some()
        }
        #[cfg(not(feature = "hyperscan"))]
        {
            false
        }
    }

    /// Whether the batch database leaves any pattern out (see
    /// [`unbatched_matches`](MatcherSet::unbatched_matches)); `false` without
    /// batching.
    pub fn has_unbatched(&self) -> bool {
        #[cfg(feature = "hyperscan")]
        {
            self.batch.is_some()
                && (!self.unbatched.bytes.is_empty() || !self.unbatched.regexes.is_empty())
        }
        #[cfg(not(feature = "hyperscan"))]
        {
            false
        }
    }

    /// Whether a pattern left out of the batch database (one that matches
    /// the separator on its own) matches `value`; always `false` without
    /// batching.
    #[cfg(all(test, feature = "hyperscan"))]
    fn unbatched_match(&self, value: &[u8]) -> bool {
        let mut any = false;
        self.unbatched_matches(value, |_| any = true);
        any
    }

    /// Calls `on_match` with the id of each pattern left out of the batch
    /// database (one that matches the separator on its own) that matches
    /// `value`: exactly what [`scan`](MatcherSet::scan) reports for those
    /// patterns. A caller of [`batch_scan`](MatcherSet::batch_scan) asks
    /// this of every value the batch reported no end in, and needs no
    /// per-value scan for it; nothing without batching.
    pub fn unbatched_matches(&self, value: &[u8], mut on_match: impl FnMut(u32)) {
        #[cfg(feature = "hyperscan")]
        {
            if self.batch.is_none() {
                return;
            }
            let u = &self.unbatched;
            for (pos, table) in u.bytes.iter() {
                if value.iter().any(|&b| table[usize::from(b)])
                    && let Some(&id) = self.ids.get(*pos as usize)
                {
                    on_match(id);
                }
            }
            for &pos in u.regexes.iter() {
                if self
                    .confirm
                    .get(pos as usize)
                    .is_some_and(|re| re.is_match(value))
                    && let Some(&id) = self.ids.get(pos as usize)
                {
                    on_match(id);
                }
            }
        }
        #[cfg(not(feature = "hyperscan"))]
        {
            let _ = (value, &mut on_match);
        }
    }

    /// Scans many values in one call: `joined` holds them separated by
    /// [`BATCH_SEPARATOR`] (`0xFF`), and `ends` receives the end offset of
    /// every match of every pattern, with the pattern's id (unsorted, not
    /// deduplicated). Each
    /// value's own matches (what [`scan`](MatcherSet::scan) reports for it)
    /// end inside it or on the separator after it, except those of the
    /// patterns that match the separator alone, which are not in the batch
    /// (ask [`unbatched_matches`](MatcherSet::unbatched_matches)); other
    /// reported ends can come from matches spanning separators, or seeing a
    /// `0xFF` inside a value as a separator or a `\n` as a line start, so a
    /// caller confirms with `scan` on the values where
    /// matches end. One call costs about what one per-value scan costs, so
    /// clean values are no longer paid per value.
    ///
    /// Returns `Ok(false)` without a complete answer when more than
    /// `max_ends` ends were reported (a value that matches everywhere) or
    /// when batching is unavailable: the caller then scans value by value.
    pub fn batch_scan(
        &self,
        scratch: &mut Scratch,
        joined: &[u8],
        ends: &mut Vec<(u32, u32)>,
        max_ends: usize,
    ) -> Result<bool, ScanError> {
        ends.clear();
        #[cfg(feature = "hyperscan")]
        if let Some(db) = &self.batch {
            if joined.len() > MAX_INPUT_LEN {
                return Ok(false);
            }
            if scratch.set_uid != self.uid {
                *scratch = self.scratch();
            }
            let hs_scratch = match &mut scratch.batch {
                Some(s) => s,
                None => scratch.batch.insert(
                    db.alloc_scratch()
                        .map_err(|e| ScanError::Engine(format!("hyperscan scratch: {e}")))?,
                ),
            };
            let mut overflow = false;
            let result = db.scan(
                joined,
                hs_scratch,
                |pos: u32, _from: u64, to: u64, _f: u32| {
                    if ends.len() >= max_ends {
                        overflow = true;
                        return hyperscan::Matching::Terminate;
                    }
                    let id = self.ids.get(pos as usize).copied().unwrap_or(u32::MAX);
                    ends.push((to as u32, id));
                    hyperscan::Matching::Continue
                },
            );
            return match result {
                Ok(()) => Ok(true),
                Err(hyperscan::Error::Hyperscan(hyperscan::HsError::ScanTerminated))
                    if overflow =>
                {
                    Ok(false)
                }
                Err(e) => Err(ScanError::Engine(format!("hyperscan scan: {e}"))),
            };
        }
        let _ = (scratch, joined, max_ends);
        Ok(false)
    }

    /// The leftmost-first match of pattern `id` in `input`, as `regex::bytes`
    /// finds it, or `None` when it does not match or `id` is not in the set.
    /// For diagnostics (`rules explain`); the request path uses [`scan`].
    /// Agrees with [`scan`] on whether the pattern matches: both parse to
    /// the same HIR up to greediness (checked at compile time).
    ///
    /// [`scan`]: MatcherSet::scan
    pub fn first_match_span(&self, id: u32, input: &[u8]) -> Option<(usize, usize)> {
        let at = self.by_id.binary_search_by_key(&id, |&(id, _)| id).ok()?;
        let &(_, pos) = self.by_id.get(at)?;
        self.confirm
            .get(pos as usize)?
            .find(input)
            .map(|m| (m.start(), m.end()))
    }

    /// The backend this set was compiled for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pattern ids, in spec order.
    pub fn ids(&self) -> &[u32] {
        &self.ids
    }

    /// Number of patterns.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether the set has no patterns (scans then report nothing).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

fn scan_phrases(
    phrases: &PurePhrases,
    input: &[u8],
    hits: &mut Hits,
    total: usize,
) -> Result<(), ScanError> {
    // Overlapping search reports every occurrence of every phrase, so a
    // phrase that is a prefix or suffix of another is still seen.
    let iter = phrases
        .ac
        .try_find_overlapping_iter(input)
        .map_err(|e| ScanError::Engine(format!("aho-corasick: {e}")))?;
    for m in iter {
        let Some(info) = phrases.info.get(m.pattern().as_usize()) else {
            continue;
        };
        if info.exact && input.get(m.range()) != Some(&info.phrase[..]) {
            continue;
        }
        hits.insert(info.pos);
        if hits.len() == total {
            break;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Front-end: parse, check, canonicalise (shared by both backends).

/// A spec that passed the front-end.
struct Prepared {
    /// The pattern as written (a phrase: escaped), for the confirm regex,
    /// which is built with the same flags as the front-end parse so its
    /// spans (greediness included) are exactly the author's.
    source: String,
    /// The HIR printed back: `regex-syntax` syntax, no flags needed, checked
    /// to re-parse to the same HIR up to greediness (see [`canonical_form`]).
    canonical: String,
    /// The canonical pattern in Hyperscan syntax. Computed in the pure-only
    /// build as well, so that acceptance does not depend on the feature.
    #[cfg_attr(not(feature = "hyperscan"), allow(dead_code))]
    hs_expr: String,
}

/// Nesting limit when re-parsing canonical patterns: the printer wraps every
/// concatenation, alternation and byte class in its own group, so the
/// canonical form nests deeper than the source that passed [`MAX_NESTING`].
const CANONICAL_NESTING: u32 = MAX_NESTING * 4;

/// Parser configuration for rule patterns (see the module docs).
fn source_syntax(caseless: bool) -> syntax::Config {
    syntax::Config::new()
        .unicode(false)
        .utf8(false)
        .case_insensitive(caseless)
        .dot_matches_new_line(true)
        .multi_line(false)
        .nest_limit(MAX_NESTING)
}

/// Parser configuration for canonical patterns. They carry no flags; Unicode
/// mode is on because the printer marks every byte-oriented construct with
/// `(?-u:...)` and writes the classes that `regex-syntax` built as Unicode
/// classes (see [`translate_class`]) without it, so this reads back exactly
/// what was printed.
fn canonical_syntax() -> syntax::Config {
    syntax::Config::new()
        .unicode(true)
        .utf8(false)
        .nest_limit(CANONICAL_NESTING)
}

/// Prepares every spec; returns the prepared specs and every error found.
fn prepare_all(specs: &[PatternSpec]) -> (Vec<Prepared>, Vec<CompileError>) {
    let mut errors = Vec::new();
    if let Some(extra) = specs.get(MAX_PATTERNS_PER_SET) {
        errors.push(CompileError {
            id: extra.id,
            message: format!(
                "the set has {} patterns; at most {MAX_PATTERNS_PER_SET} are allowed (this is the first one over)",
                specs.len()
            ),
        });
        return (Vec::new(), errors);
    }
    let mut seen = std::collections::HashSet::with_capacity(specs.len());
    let mut total_len = 0usize;
    let mut prepared = Vec::with_capacity(specs.len());
    for spec in specs {
        if !seen.insert(spec.id) {
            errors.push(CompileError {
                id: spec.id,
                message: "duplicate pattern id in the set".into(),
            });
            continue;
        }
        let len = match &spec.kind {
            PatternKind::Regex(s) => s.len(),
            PatternKind::Literal(b) => b.len(),
        };
        total_len = total_len.saturating_add(len);
        if total_len > MAX_SET_SOURCE_LEN {
            errors.push(CompileError {
                id: spec.id,
                message: format!(
                    "the set's patterns exceed {MAX_SET_SOURCE_LEN} bytes in total at this pattern"
                ),
            });
            break;
        }
        match prepare(spec) {
            Ok(p) => prepared.push(p),
            Err(message) => errors.push(CompileError {
                id: spec.id,
                message,
            }),
        }
    }
    (prepared, errors)
}

fn prepare(spec: &PatternSpec) -> Result<Prepared, String> {
    let source = match &spec.kind {
        PatternKind::Regex(s) => {
            if s.len() > MAX_PATTERN_LEN {
                return Err(format!(
                    "regex of {} bytes is longer than the limit of {MAX_PATTERN_LEN}",
                    s.len()
                ));
            }
            s.clone()
        }
        PatternKind::Literal(bytes) => {
            if bytes.len() > MAX_PATTERN_LEN {
                return Err(format!(
                    "phrase of {} bytes is longer than the limit of {MAX_PATTERN_LEN}",
                    bytes.len()
                ));
            }
            escape_literal(bytes)
        }
    };
    let hir =
        syntax::parse_with(&source, &source_syntax(spec.caseless)).map_err(|e| e.to_string())?;
    match hir.properties().minimum_len() {
        Some(0) => {
            return Err(
                "pattern can match the empty string (e.g. `a*`, `^`, `\\b`); every pattern must consume at least one byte"
                    .into(),
            );
        }
        None => return Err("pattern contains a class that matches nothing".into()),
        Some(_) => {}
    }
    let canonical = canonical_form(&source, spec.caseless, &hir)?;
    let hs_expr = to_hyperscan_syntax(&canonical)?;
    Ok(Prepared {
        source,
        canonical,
        hs_expr,
    })
}

/// Prints `hir` (parsed from `source`) back as a canonical pattern, and
/// checks that the canonical pattern parses to the same HIR, greediness
/// aside.
///
/// Why the check: the `regex-syntax` 0.8 printer is not injective for nested
/// repetitions. `b(?:a+)?` prints as `(?:ba+?)`, which reads back as the
/// *lazy* `a+` and no longer matches `b` (found while writing this module;
/// `b(?:a{2})?` → `ba{2}?` likewise). Greediness never changes *whether* a
/// pattern matches, so when the direct print is ambiguous we print the
/// pattern parsed with greediness swapped (`(?U)`): its quantifiers then
/// carry an explicit lazy `?`, and an outer `?` can no longer be mistaken
/// for one. A pattern that is ambiguous both ways (it needs both explicit
/// lazy and greedy nested optionals) is rejected rather than guessed at.
fn canonical_form(
    source: &str,
    caseless: bool,
    hir: &(impl fmt::Debug + fmt::Display),
) -> Result<String, String> {
    let want = greedless(hir);
    let reparses = |printed: &str| {
        syntax::parse_with(printed, &canonical_syntax()).is_ok_and(|h| greedless(&h) == want)
    };
    let printed = hir.to_string();
    if reparses(&printed) {
        return Ok(printed);
    }
    let swapped = syntax::parse_with(source, &source_syntax(caseless).swap_greed(true))
        .map_err(|e| e.to_string())?;
    let printed = swapped.to_string();
    if reparses(&printed) {
        return Ok(printed);
    }
    Err(
        "pattern has no canonical form that every backend reads the same way; this happens \
         with nested repetitions mixing lazy and greedy optional groups (e.g. `(?:a+)?` \
         together with `(?:b+?)??`): drop the laziness, which does not change what matches"
            .into(),
    )
}

/// The HIR's structure with greediness erased, for comparing two HIRs by
/// what they match. `regex-syntax` is reached only through
/// `regex-automata`'s re-exported parser, so its types cannot be named
/// here; its derived `Debug` output is compared instead (both sides come
/// from the same crate version, and the replacement is applied to both).
fn greedless(hir: &impl fmt::Debug) -> String {
    format!("{hir:?}").replace("greedy: false", "greedy: true")
}

/// A phrase as a regex: ASCII alphanumerics as they are, every other byte as
/// `\xHH` (so no byte can act as a metacharacter, and none needs UTF-8).
fn escape_literal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        if b.is_ascii_alphanumeric() {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{b:02X}");
        }
    }
    out
}

/// Translates a canonical pattern (the `regex-syntax` HIR printer's output)
/// into Hyperscan syntax, byte mode, reading it by `regex-syntax`'s rules.
///
/// The printer emits a small, regular language: literal characters (meta
/// characters escaped with `\`), `\xHH`, byte classes `[...]` whose members
/// are escaped punctuation, printable ASCII or `\xHH`, the anchors `\A`, `\z`,
/// `(?m:^)`, `(?m:$)`, word boundaries `\b`/`\B` inside `(?-u:...)`, groups
/// `(?:`, `(`, `(?P<name>`, and repetition suffixes. Everything outside that
/// language is refused rather than guessed at. Respellings:
/// - `(?-u:` → `(?:` (Hyperscan has no `u` flag; byte mode is its default);
/// - capture groups → `(?:` (nothing here reports captures);
/// - raw control bytes, spaces and non-ASCII characters → `\xHH`, a
///   multi-byte character wrapped in `(?:...)` so that a following
///   repetition applies to the whole character, as it does in `regex-syntax`;
/// - lazy markers are dropped (greediness does not change whether a pattern
///   matches), and a repetition of a repetition (`a{2}{3}`, or `a++`, which
///   `regex-syntax` reads as `(a+)+` but PCRE as possessive) gets an explicit
///   group: `(?:a{2}){3}`;
/// - the empty class (`[a&&b]`), `\b{start}`-style assertions and repetition
///   counts above [`MAX_REPEAT`] are errors.
fn to_hyperscan_syntax(canonical: &str) -> Result<String, String> {
    /// Where the last repetition operand stands.
    #[derive(PartialEq)]
    enum Quant {
        /// The operand is not repeated yet.
        None,
        /// Repeated; a `?` now would be `regex-syntax`'s lazy marker.
        Repeated,
        /// Repeated and its lazy marker seen.
        RepeatedLazy,
    }
    let unsupported =
        |what: &str| format!("unsupported in canonical pattern {canonical:?}: {what}");
    let mut out = String::with_capacity(canonical.len() + canonical.len() / 4);
    let mut rest = canonical;
    // The open groups: their start in `out` and the largest repetition
    // product inside them so far. The last complete operand a repetition
    // would apply to: its start in `out` and its repetition product (how many
    // copies of its innermost repeated part it stands for).
    let mut groups: Vec<(usize, u64)> = Vec::new();
    let mut operand: Option<(usize, u64)> = None;
    let mut quant = Quant::None;
    while let Some(c) = rest.chars().next() {
        let mut step = c.len_utf8();
        let here = out.len();
        match c {
            '*' | '+' | '?' | '{' => {
                let mut op = c.to_string();
                // Copies the engines expand: `{m,n}` → n, `{m}` and `{m,}`
                // → m; `*`, `+`, `?` are loops or options, not copies.
                let mut copies = 1u64;
                if c == '{' {
                    let close = rest
                        .find('}')
                        .ok_or_else(|| unsupported("unterminated `{`"))?;
                    for count in rest[1..close].split(',').filter(|n| !n.is_empty()) {
                        let n: u64 = count.parse().map_err(|_| unsupported("repetition count"))?;
                        copies = n.max(1);
                    }
                    op = rest[..=close].to_string();
                    step = close + 1;
                }
                let (start, product) =
                    operand.ok_or_else(|| unsupported("repetition without operand"))?;
                let product = product.saturating_mul(copies);
                if product > u64::from(MAX_REPEAT) {
                    return Err(format!(
                        "repetition count {product} (nested counts multiplied) is above the limit of {MAX_REPEAT}"
                    ));
                }
                operand = Some((start, product));
                if let Some(group) = groups.last_mut() {
                    group.1 = group.1.max(product);
                }
                match quant {
                    Quant::Repeated if c == '?' => quant = Quant::RepeatedLazy,
                    Quant::None => {
                        out.push_str(&op);
                        quant = Quant::Repeated;
                    }
                    Quant::Repeated | Quant::RepeatedLazy => {
                        out.insert_str(start, "(?:");
                        out.push(')');
                        out.push_str(&op);
                        quant = Quant::Repeated;
                    }
                }
            }
            '\\' => {
                let esc = rest[1..]
                    .chars()
                    .next()
                    .ok_or_else(|| unsupported("dangling `\\`"))?;
                step = 1 + esc.len_utf8();
                match esc {
                    'x' => {
                        let hex = rest
                            .get(2..4)
                            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                            .ok_or_else(|| unsupported("`\\x` without two hex digits"))?;
                        out.push_str("\\x");
                        out.push_str(hex);
                        step = 4;
                    }
                    'A' | 'z' | 'b' | 'B' => {
                        if rest[2..].starts_with('{') {
                            return Err(
                                "half word-boundary assertions (`\\b{start}`, `\\<`, ...) are not supported"
                                    .into(),
                            );
                        }
                        out.push('\\');
                        out.push(esc);
                    }
                    e if e.is_ascii_punctuation() => {
                        out.push('\\');
                        out.push(e);
                    }
                    e => return Err(unsupported(&format!("escape `\\{e}`"))),
                }
                operand = Some((here, 1));
                quant = Quant::None;
            }
            '[' => {
                let (class, len) = translate_class(rest).map_err(|e| unsupported(&e))?;
                if class.is_empty() {
                    return Err("pattern contains a class that matches nothing".into());
                }
                out.push_str(&class);
                step = len;
                operand = Some((here, 1));
                quant = Quant::None;
            }
            '(' => {
                groups.push((here, 1));
                if rest.starts_with("(?-u:") {
                    out.push_str("(?:");
                    step = 5;
                } else if rest.starts_with("(?:") {
                    out.push_str("(?:");
                    step = 3;
                } else if rest.starts_with("(?m:") {
                    out.push_str("(?m:");
                    step = 4;
                } else if let Some(after) = rest.strip_prefix("(?P<") {
                    let close = after
                        .find('>')
                        .ok_or_else(|| unsupported("unterminated group name"))?;
                    out.push_str("(?:");
                    step = 4 + close + 1;
                } else if rest.starts_with("(?") {
                    return Err(unsupported("group flags"));
                } else {
                    out.push_str("(?:");
                }
                operand = None;
                quant = Quant::None;
            }
            ')' => {
                let (start, inner) = groups.pop().ok_or_else(|| unsupported("unbalanced `)`"))?;
                if let Some(group) = groups.last_mut() {
                    group.1 = group.1.max(inner);
                }
                operand = Some((start, inner));
                quant = Quant::None;
                out.push(')');
            }
            '|' => {
                operand = None;
                quant = Quant::None;
                out.push('|');
            }
            c => {
                if c.is_ascii_graphic() {
                    out.push(c);
                } else {
                    // Controls, space, and the bytes of a non-ASCII
                    // character, grouped so a repetition covers them all.
                    let mut buf = [0u8; 4];
                    let bytes = c.encode_utf8(&mut buf).as_bytes();
                    if bytes.len() > 1 {
                        out.push_str("(?:");
                    }
                    for b in bytes {
                        // Writing to a String cannot fail.
                        let _ = write!(out, "\\x{b:02X}");
                    }
                    if bytes.len() > 1 {
                        out.push(')');
                    }
                }
                operand = Some((here, 1));
                quant = Quant::None;
            }
        }
        rest = rest
            .get(step..)
            .ok_or_else(|| unsupported("truncated escape"))?;
    }
    if !groups.is_empty() {
        return Err(unsupported("unbalanced group"));
    }
    Ok(out)
}

/// Most non-ASCII characters a class may list (each becomes one branch of
/// an alternation in Hyperscan syntax).
const MAX_CLASS_CHARS: u32 = 4096;

/// Translates the canonical class at the start of `rest` (which begins with
/// `[`); returns the Hyperscan text (empty for the empty class) and the
/// number of bytes of `rest` consumed.
///
/// The printer writes two kinds of class. Byte classes (inside `(?-u:...)`)
/// hold printable ASCII, escaped punctuation and `\xHH` bytes. Unicode
/// classes hold characters written as they are; `regex-syntax` builds them
/// even with Unicode off, by merging an alternation of single characters
/// (`é|è|a` becomes `[aèé]`). Hyperscan in byte mode has no character
/// classes above ASCII, so the non-ASCII characters of a class become an
/// alternation of their UTF-8 byte sequences. Such classes only list
/// characters written out in the pattern, so the enumeration is bounded by
/// the pattern's length (and by [`MAX_CLASS_CHARS`]).
fn translate_class(rest: &str) -> Result<(String, usize), String> {
    /// One class member: a byte (from `\xHH`) or a character.
    #[derive(Clone, Copy)]
    enum Val {
        Byte(u8),
        Char(char),
    }
    // Reads one member value at `at`; returns it and its length.
    let read = |at: &str| -> Result<(Val, usize), String> {
        let c = at.chars().next().ok_or("unterminated class")?;
        if c != '\\' {
            return Ok((Val::Char(c), c.len_utf8()));
        }
        if let Some(hex) = at.get(2..4).filter(|_| at[1..].starts_with('x'))
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            return Ok((Val::Byte(b), 4));
        }
        match at[1..].chars().next() {
            Some(e) if e.is_ascii_punctuation() => Ok((Val::Char(e), 2)),
            _ => Err("escape in a class".into()),
        }
    };
    let mut bytes: Vec<(u8, u8)> = Vec::new();
    let mut chars: Vec<(char, char)> = Vec::new();
    let mut add = |lo: Val, hi: Val| -> Result<(), String> {
        match (lo, hi) {
            (Val::Byte(a), Val::Byte(b)) => bytes.push((a, b)),
            (Val::Char(a), Val::Char(b)) => {
                // The ASCII part as bytes, the rest as characters.
                if a.is_ascii() {
                    bytes.push((a as u8, b.min('\x7F') as u8));
                }
                if !b.is_ascii() {
                    chars.push((a.max('\u{80}'), b));
                }
            }
            (Val::Byte(a), Val::Char(b)) | (Val::Char(b), Val::Byte(a)) => {
                // Mixed only if both are ASCII (e.g. `\x20-~`).
                if !b.is_ascii() {
                    return Err("class range mixing bytes and characters".into());
                }
                let (x, y) = (a.min(b as u8), a.max(b as u8));
                bytes.push((x, y));
            }
        }
        Ok(())
    };
    let mut at = 1;
    loop {
        let tail = rest.get(at..).ok_or("truncated class")?;
        if tail.starts_with(']') {
            at += 1;
            break;
        }
        if tail.starts_with("&&") {
            // The printer's spelling of the empty class: `[a&&b]`.
            let end = tail.find(']').ok_or("unterminated class")?;
            return Ok((String::new(), at + end + 1));
        }
        let (lo, n) = read(tail)?;
        at += n;
        let tail = rest.get(at..).ok_or("truncated class")?;
        if tail.starts_with('-') && !tail.starts_with("-]") {
            let (hi, m) = read(&tail[1..])?;
            at += 1 + m;
            add(lo, hi)?;
        } else {
            add(lo, lo)?;
        }
    }
    let mut out = String::new();
    if !bytes.is_empty() {
        out.push('[');
        for &(a, b) in &bytes {
            let _ = write!(out, "\\x{a:02X}");
            if b != a {
                let _ = write!(out, "-\\x{b:02X}");
            }
        }
        out.push(']');
    }
    if chars.is_empty() {
        return Ok((out, at));
    }
    let count: u32 = chars
        .iter()
        .map(|&(a, b)| u32::from(b) - u32::from(a) + 1)
        .sum();
    if count > MAX_CLASS_CHARS {
        return Err(format!(
            "class lists more than {MAX_CLASS_CHARS} non-ASCII characters"
        ));
    }
    let mut alt = String::from("(?:");
    if !out.is_empty() {
        alt.push_str(&out);
        alt.push('|');
    }
    let mut first = true;
    for c in chars.iter().flat_map(|&(a, b)| a..=b) {
        if !first {
            alt.push('|');
        }
        first = false;
        let mut buf = [0u8; 4];
        for b in c.encode_utf8(&mut buf).bytes() {
            let _ = write!(alt, "\\x{b:02X}");
        }
    }
    alt.push(')');
    Ok((alt, at))
}

/// The smallest `k` in `1..=n` such that `fails(k)` (compiling the first `k`
/// patterns fails), assuming failure is monotonic in `k` and `fails(n)`.
/// Used to name a pattern when an engine reports a set-level failure without
/// an expression index. Costs about log2(n) extra compiles, on errors only.
fn first_failing_prefix(n: usize, mut fails: impl FnMut(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (1, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if fails(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    hi
}

// ---------------------------------------------------------------------------
// Hyperscan backend.

#[cfg(feature = "hyperscan")]
fn compile_hyperscan(
    prepared: &[Prepared],
    ids: &[u32],
    cache: Option<&DbCache>,
) -> Result<hyperscan::BlockDatabase, CompileError> {
    use hyperscan::{Builder as _, PatternFlags};

    // DOTALL is implied by the canonical form (no bare `.` remains) and set
    // anyway; SINGLEMATCH makes Hyperscan report a pattern once instead of
    // at every end offset. Neither UTF8 (values are bytes), CASELESS (folding
    // is already expanded, so an inline `(?-i)` keeps its meaning) nor
    // ALLOWEMPTY (empty matches are rejected up front).
    // Phrases go into the same database as escaped regexes rather than
    // through `hs_compile_lit_multi`, which would need a second database and
    // a second scan. Measured (release, 1000 random 5-12 letter phrases, 1 MB
    // input, 20 scans, 3 runs on this VM): regex-escaped, literal API,
    // caseless flag and folded classes all scanned in 360-540 us, within run
    // to run noise of each other.
    let all: Vec<hyperscan::Pattern> = prepared
        .iter()
        .enumerate()
        .map(|(pos, p)| hyperscan::Pattern {
            expression: p.hs_expr.clone(),
            flags: PatternFlags::DOTALL | PatternFlags::SINGLEMATCH,
            id: Some(pos),
            ext: hyperscan::ExprExt::default(),
            som: None,
        })
        .collect();
    let build = |n: usize| hyperscan::Patterns(all[..n].to_vec()).build::<hyperscan::BlockMode>();
    let id_at = |pos: usize| ids.get(pos).copied().unwrap_or_default();
    let full = || build(all.len());
    let built = match cache {
        Some(c) => c.get_or_build(&all, full),
        None => full(),
    };
    match built {
        Ok(db) => Ok(db),
        Err(e) => {
            if let hyperscan::Error::Hyperscan(hyperscan::HsError::CompileError(ce)) = &e
                && let Some(pos) = ce.expression()
            {
                return Err(CompileError {
                    id: id_at(pos),
                    message: format!("rejected by Hyperscan: {}", ce.message()),
                });
            }
            let k = first_failing_prefix(prepared.len(), |k| build(k).is_err());
            Err(CompileError {
                id: id_at(k - 1),
                message: format!("Hyperscan failed on the set at this pattern: {e}"),
            })
        }
    }
}

/// Can this process run more than one thread at once?
#[cfg(feature = "hyperscan")]
fn more_cores() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
}

/// The batch database of a set (see [`MatcherSet::batch_scan`]): the same
/// Hyperscan expressions with anchors that also hold on a separator (see
/// [`value_anchors_to_separators`]), and without SINGLEMATCH, so a
/// pattern is reported in every value it matches. `None` if Hyperscan
/// refuses it: batching is only a shortcut, the per-value scan is exact.
#[cfg(feature = "hyperscan")]
fn compile_hyperscan_batch(
    prepared: &[Prepared],
    unbatched: &[u32],
    cache: Option<&DbCache>,
) -> Option<hyperscan::BlockDatabase> {
    use hyperscan::{Builder as _, PatternFlags};
    if unbatched.len() == prepared.len() {
        return None;
    }
    let all: Vec<hyperscan::Pattern> = prepared
        .iter()
        .enumerate()
        .filter(|(pos, _)| !unbatched.contains(&(*pos as u32)))
        .map(|(pos, p)| hyperscan::Pattern {
            expression: value_anchors_to_separators(
                &floated_from_rare_byte(&p.canonical).unwrap_or_else(|| p.hs_expr.clone()),
            ),
            flags: PatternFlags::DOTALL,
            id: Some(pos),
            ext: hyperscan::ExprExt::default(),
            som: None,
        })
        .collect();
    let build = || hyperscan::Patterns(all.clone()).build::<hyperscan::BlockMode>();
    match cache {
        Some(c) => c.get_or_build(&all, build),
        None => build(),
    }
    .ok()
}

/// Hands the heap that Hyperscan's compiler freed back to the OS.
///
/// Compiling the bundled packs peaks at tens of MB of short-lived compiler
/// state; glibc keeps freed heap pages mapped, so without this the
/// gateway's resident memory stays at that peak for its whole life
/// (measured: 64 MB after loading the packs, 39 MB after the trim). Called
/// once per compiled rule set (start and each reload), never on the request
/// path. A no-op where glibc's `malloc_trim` does not exist.
pub fn release_compiler_memory() {
    #[cfg(all(feature = "hyperscan", target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: `malloc_trim` takes no pointers, is thread-safe (it
        // locks each arena), and only returns free pages to the kernel.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// For the batch database: a pattern anchored at the value's start behind
/// an optional run of one class (`\A[^'"`]{0,40}['"`]…`, `\A[^;]{0,40};…`,
/// `\A\s*__proto__…`), whose next element needs a byte that is neither a
/// letter, a digit nor a space, as a Hyperscan expression that starts at
/// that element, unanchored. In the batch every value start is an anchor,
/// and so is every line start inside a value: the optional run is tried
/// from each of them (measured on the main argument database over 64 KB of
/// prose: two such patterns cost ~200 of 1,120 us); floating, the pattern
/// waits for its rare byte. The batch only flags values, and a flagged
/// value is scanned by the exact database, so a pattern that matches more
/// is safe: every match of the anchored pattern ends where a match of the
/// floating one does. `None` when the pattern is not of that shape, or its
/// floating form does not print back to itself (see [`canonical_form`]).
#[cfg(feature = "hyperscan")]
fn floated_from_rare_byte(canonical: &str) -> Option<String> {
    use regex_syntax::hir::{Hir, HirKind, Look};
    let hir = syntax::parse_with(canonical, &canonical_syntax()).ok()?;
    let HirKind::Concat(parts) = hir.kind() else {
        return None;
    };
    if !matches!(parts.first()?.kind(), HirKind::Look(Look::Start)) {
        return None;
    }
    let mut at = 1;
    while let Some(HirKind::Repetition(r)) = parts.get(at).map(Hir::kind) {
        if r.min != 0 || !matches!(r.sub.kind(), HirKind::Class(_)) {
            break;
        }
        at += 1;
    }
    // A single byte class or a literal: a rare byte the scan can wait for
    // (a repetition or an alternation there, e.g. `\)+`, floated measured
    // up to 2x slower on ordinary values).
    let next = parts.get(at)?;
    if !matches!(next.kind(), HirKind::Class(_) | HirKind::Literal(_)) {
        return None;
    }
    let text = |b: usize| b == usize::from(b' ') || (b as u8).is_ascii_alphanumeric();
    let rare = needed_sets(next)
        .iter()
        .any(|set| (0..256).all(|b| !set[b] || !text(b)) && set.iter().any(|&x| x));
    if at == 1 || !rare {
        return None;
    }
    let floated = Hir::concat(parts[at..].to_vec());
    if floated.properties().minimum_len().unwrap_or(0) == 0 {
        return None;
    }
    let printed = floated.to_string();
    let back = syntax::parse_with(&printed, &canonical_syntax()).ok()?;
    if greedless(&back) != greedless(&floated) {
        return None;
    }
    to_hyperscan_syntax(&printed).ok()
}

/// The separator [`MatcherSet::batch_scan`] expects between values: `0xFF`,
/// a byte that never occurs in UTF-8, is not whitespace or a word byte, and
/// that few patterns name. (A `\n` separator made every value a line start:
/// each of the ~50 anchors of the main argument database ran at every
/// value, and `[\r\n]`-led patterns started at every separator. Measured
/// on that database, Hyperscan alone: 4.8 -> 3.3 ns/B on the 32 KB form's
/// values, 12.7 -> 7.4 ns/B on a 10-argument query's.)
pub const BATCH_SEPARATOR: u8 = 0xFF;

/// Value anchors that also hold on a separator, in a Hyperscan expression:
/// `\A` and `(?m:^)` → `(?:(?m:^)|\xFF)`, `\z` and `(?m:$)` →
/// `(?:(?m:$)|\xFF)`. The
/// alternative consumes the separator, so a match anchored at a value's
/// start begins on the separator before it and still ends inside the
/// value, and one anchored at its end ends on the separator after it:
/// where [`MatcherSet::batch_scan`] says a value's matches end. Escapes are
/// walked in pairs, so `\\A`, a backslash then `A`, stays.
#[cfg(feature = "hyperscan")]
fn value_anchors_to_separators(expr: &str) -> String {
    // Line anchors rather than `\A`/`\z` in the alternation: they hold at
    // the buffer's edges and at `\n`s inside values too (a few more ends to
    // confirm), but Hyperscan scans `(?:\A|\xFF)` at about half the speed
    // (measured on the main argument database: 6.3 against 3.4 ns/B).
    const START: &str = "(?:(?m:^)|\\xFF)";
    const END: &str = "(?:(?m:$)|\\xFF)";
    let mut out = String::with_capacity(expr.len() + 16);
    let mut rest = expr;
    while let Some(c) = rest.chars().next() {
        let (emit, step) = if let Some(after) = rest.strip_prefix('\\') {
            match after.chars().next() {
                Some('A') => (START, 2),
                Some('z') => (END, 2),
                Some(e) => (&rest[..1 + e.len_utf8()], 1 + e.len_utf8()),
                None => ("\\", 1),
            }
        } else if rest.starts_with("(?m:^)") {
            (START, 6)
        } else if rest.starts_with("(?m:$)") {
            (END, 6)
        } else {
            (&rest[..c.len_utf8()], c.len_utf8())
        };
        out.push_str(emit);
        rest = &rest[step..];
    }
    out
}

// ---------------------------------------------------------------------------
// Pure backend.

/// `nfa_size_limit` is [`PURE_NFA_SIZE_LIMIT`] except in tests, which use a
/// small one to exercise the set-level error cheaply.
fn compile_pure(
    specs: &[PatternSpec],
    prepared: &[Prepared],
    nfa_size_limit: usize,
) -> Result<PureEngine, CompileError> {
    let mut regex_pos = Vec::new();
    let mut regex_src = Vec::new();
    let mut phrase_pos = Vec::new();
    for (pos, (spec, p)) in specs.iter().zip(prepared).enumerate() {
        match &spec.kind {
            PatternKind::Regex(_) => {
                regex_pos.push(pos as u32);
                regex_src.push(p.canonical.as_str());
            }
            PatternKind::Literal(bytes) => phrase_pos.push((pos as u32, spec.caseless, bytes)),
        }
    }
    let id_of = |pos: u32| specs.get(pos as usize).map(|s| s.id).unwrap_or_default();

    let regex = if regex_src.is_empty() {
        None
    } else {
        let build = |n: usize| {
            meta::Regex::builder()
                .configure(
                    meta::Regex::config()
                        // All match states, so overlapping search can report
                        // every pattern, not only the leftmost-first one.
                        .match_kind(MatchKind::All)
                        .utf8_empty(false)
                        .which_captures(regex_automata::nfa::thompson::WhichCaptures::Implicit)
                        .nfa_size_limit(Some(nfa_size_limit))
                        .dfa_size_limit(Some(PURE_DFA_SIZE_LIMIT))
                        .hybrid_cache_capacity(PURE_LAZY_DFA_CACHE),
                )
                .syntax(canonical_syntax())
                .build_many(&regex_src[..n])
                .map_err(Box::new)
        };
        match build(regex_src.len()) {
            Ok(re) => Some((re, regex_pos.clone().into_boxed_slice())),
            Err(e) => {
                let at = match e.pattern() {
                    Some(pid) => pid.as_usize(),
                    None => first_failing_prefix(regex_src.len(), |n| build(n).is_err()) - 1,
                };
                let pos = regex_pos.get(at).copied().unwrap_or_default();
                return Err(CompileError {
                    id: id_of(pos),
                    message: format!("pure backend: {e}"),
                });
            }
        }
    };

    let phrases = if phrase_pos.is_empty() {
        None
    } else {
        let any_caseless = phrase_pos.iter().any(|&(_, caseless, _)| caseless);
        let build = |n: usize| {
            AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::Standard)
                .ascii_case_insensitive(any_caseless)
                .build(phrase_pos.iter().take(n).map(|&(_, _, b)| b))
        };
        match build(phrase_pos.len()) {
            Ok(ac) => Some(PurePhrases {
                ac,
                info: phrase_pos
                    .iter()
                    .map(|&(pos, caseless, b)| PhraseInfo {
                        pos,
                        exact: any_caseless && !caseless,
                        phrase: b.clone().into_boxed_slice(),
                    })
                    .collect(),
            }),
            Err(e) => {
                let k = first_failing_prefix(phrase_pos.len(), |n| build(n).is_err());
                let pos = phrase_pos.get(k - 1).map(|p| p.0).unwrap_or_default();
                return Err(CompileError {
                    id: id_of(pos),
                    message: format!("pure backend (phrases): {e}"),
                });
            }
        }
    };
    Ok(PureEngine { regex, phrases })
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::sync::Arc;

    /// Which patterns the batch database scans floating: anchored behind an
    /// optional run of one class, then a rare byte (a class or literal).
    #[cfg(feature = "hyperscan")]
    #[test]
    fn batch_floats_anchored_patterns_from_their_rare_byte() {
        let floated = |src: &str| {
            let spec = PatternSpec {
                id: 0,
                kind: PatternKind::Regex(src.into()),
                caseless: false,
            };
            let p = prepare(&spec).expect("prepares");
            floated_from_rare_byte(&p.canonical)
        };
        for src in [
            r#"^[^'"`]{0,40}['"`]\s*or\b"#,
            r"^[^;]{0,40};\s*drop\s",
            r"^\s*__proto__\s*$",
            r"\A[ \t]*--!?>",
        ] {
            let f = floated(src).unwrap_or_else(|| panic!("{src} is floated"));
            assert!(!f.contains(r"\A"), "{src} -> {f}");
        }
        for src in [
            r"^\s*select\b",    // a word: common in text
            r"^[^()]*\)+\s*\(", // a repetition after the run
            r"^'x",             // no optional run to skip
            r"^\s*(?:a|;)",     // an alternation
            r"x^[^;]*;",        // not anchored first
            r"(?m)^\s*;",       // a line anchor
        ] {
            assert_eq!(floated(src), None, "{src}");
        }
    }

    #[cfg(feature = "hyperscan")]
    #[test]
    fn batch_scan_reports_an_end_in_every_value_that_matches() {
        let set = compile(
            &specs(&[
                R(1, r"\Aab"),
                R(2, r"cd\z"),
                R(3, r"(?m)^x"),
                R(4, r"\bword\b"),
                Li(5, b"LiT"),
                R(6, r"\A\d+\z"),
                R(7, r"a.*z"),
                R(8, r"(?m)q$"),
                R(9, r"[\r\n]"),
                R(10, r"(?m)^cd$"),
                R(11, r"\A(?:ab|q)"),
                R(12, r"(?-u:\xFF)ab"),
                // Floated in the batch (see `floated_from_rare_byte`).
                R(13, r"\A[^']{0,10}'\s*or\s+1"),
                Ri(14, r"\A\s*;\s*drop\b"),
            ]),
            Backend::Hyperscan,
        )
        .expect("compile");
        assert!(set.can_batch());
        assert_eq!(
            value_anchors_to_separators(r"\\A\A\x41\z(?m:^)é(?m:$)\(?m:"),
            r"\\A(?:(?m:^)|\xFF)\x41(?:(?m:$)|\xFF)(?:(?m:^)|\xFF)é(?:(?m:$)|\xFF)\(?m:"
        );
        let values: &[&[u8]] = &[
            b"abc",
            b"xab",
            b"cd",
            b"cdx",
            b"zzx",
            b"a\nx",
            b"word",
            b"swordfish",
            b"lit",
            b"123",
            b"12a",
            b"",
            b"a",
            b"z",
            b"q",
            b"q\n",
            b"ab\ncd",
            b"\n",
            b"xx word",
            b"x\xffab",
            b"\xff",
            b"ab\xff",
            b"q\xffcd",
            b"\xff\xffword\xff",
            b"x' or 1",
            b"' or 1",
            b"abcdefghijk' or 1",
            b" ; DROP table",
            b"a\n; drop x",
            b"it's or 1",
            b"q\xff' or 1",
        ];
        let (joined, starts) = join_values(values);
        let mut scratch = set.scratch();
        let mut ends = Vec::new();
        assert!(
            set.batch_scan(&mut scratch, &joined, &mut ends, 1000)
                .expect("scan")
        );
        let mut matched_any = 0;
        for (v, &start) in values.iter().zip(&starts) {
            let mut alone = Vec::new();
            set.scan(&mut scratch, v, |id| alone.push(id))
                .expect("scan");
            if !alone.is_empty() {
                matched_any += 1;
            }
            // Each pattern that matches the value alone reports an end in
            // it (or on its separator), under its own id.
            for id in alone {
                assert!(
                    ends.iter().any(|&(e, i)| i == id
                        && (start as u32) < e
                        && e as usize <= start + v.len() + 1)
                        || set.unbatched_match(v),
                    "{:?} matches {id} alone but no batch end of it falls in it",
                    String::from_utf8_lossy(v)
                );
            }
        }
        assert!(
            matched_any >= 10,
            "the values must exercise the patterns: {matched_any}"
        );
        // Too many ends: no answer, the caller scans value by value.
        assert!(
            !set.batch_scan(&mut scratch, &joined, &mut ends, 2)
                .expect("scan")
        );
    }

    /// `values` as a batch scan takes them, and where each starts.
    #[cfg(feature = "hyperscan")]
    fn join_values(values: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let mut joined = Vec::new();
        let mut starts = Vec::new();
        for v in values {
            starts.push(joined.len());
            joined.extend_from_slice(v);
            joined.push(BATCH_SEPARATOR);
        }
        (joined, starts)
    }

    /// A pattern that matches the separator alone would report an end at
    /// every value of a batch (and send each to a per-value scan): it is
    /// left out of the batch and checked value by value instead.
    #[cfg(feature = "hyperscan")]
    #[test]
    fn a_pattern_matching_the_separator_stays_out_of_the_batch() {
        let set = compile(
            &specs(&[R(1, r"[^a-z0-9]"), R(2, r"foo")]),
            Backend::Hyperscan,
        )
        .expect("compile");
        assert!(set.can_batch());
        let values: Vec<Vec<u8>> = (0..40).map(|i| format!("value{i}").into_bytes()).collect();
        let values: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let (joined, _) = join_values(&values);
        let mut scratch = set.scratch();
        let mut ends = Vec::new();
        assert!(
            set.batch_scan(&mut scratch, &joined, &mut ends, 8)
                .expect("scan")
        );
        assert!(ends.is_empty(), "separators reported: {ends:?}");
        assert!(set.has_unbatched());
        assert!(set.unbatched_match(b"a\rb"));
        assert!(set.unbatched_match(b"\xff"));
        assert!(!set.unbatched_match(b"foo"));
        // Which of them match, by id, as a scan reports them.
        let two = compile(
            &specs(&[R(4, r"[^a-z0-9]"), R(5, r"(?-u:\xFF)|zz"), R(6, r"foo")]),
            Backend::Hyperscan,
        )
        .expect("compile");
        for (value, want) in [
            (&b"a:b"[..], &[4u32][..]),
            (b"zz", &[5]),
            (b"a\xffb", &[4, 5]),
            (b"foo", &[]),
        ] {
            let mut got = Vec::new();
            two.unbatched_matches(value, |id| got.push(id));
            assert_eq!(got, want, "{value:?}");
        }
        let mut alone = Vec::new();
        set.scan(&mut scratch, b"a\rb", |id| alone.push(id))
            .expect("scan");
        assert_eq!(alone, [1]);
        // A set of nothing but such patterns has no batch at all.
        let only = compile(&specs(&[R(1, r"(?-u:\xFF)")]), Backend::Hyperscan).expect("compile");
        assert!(!only.can_batch());
        assert!(
            !only.unbatched_match(b"\xff"),
            "without a batch nothing is left out"
        );
        assert!(!only.has_unbatched());
    }

    fn backends() -> Vec<Backend> {
        vec![
            #[cfg(feature = "hyperscan")]
            Backend::Hyperscan,
            Backend::Pure,
        ]
    }

    /// A pattern in the tables: R = regex, L = phrase; `i` = caseless.
    #[derive(Clone, Copy, Debug)]
    enum P {
        R(u32, &'static str),
        Ri(u32, &'static str),
        L(u32, &'static [u8]),
        Li(u32, &'static [u8]),
    }

    fn spec(p: P) -> PatternSpec {
        let (id, kind, caseless) = match p {
            P::R(id, s) => (id, PatternKind::Regex(s.into()), false),
            P::Ri(id, s) => (id, PatternKind::Regex(s.into()), true),
            P::L(id, b) => (id, PatternKind::Literal(b.to_vec()), false),
            P::Li(id, b) => (id, PatternKind::Literal(b.to_vec()), true),
        };
        PatternSpec { id, kind, caseless }
    }

    fn specs(ps: &[P]) -> Vec<PatternSpec> {
        ps.iter().copied().map(spec).collect()
    }

    enum Hay {
        B(&'static [u8]),
        Gen(fn() -> Vec<u8>),
    }

    struct Case {
        name: &'static str,
        pats: &'static [P],
        hay: Hay,
        want: &'static [u32],
    }

    use Hay::{B, Gen};
    use P::{L, Li, R, Ri};

    /// 1 MB of `x` with `needle` at the very end.
    fn mb_needle_at_end() -> Vec<u8> {
        let mut v = vec![b'x'; 1 << 20];
        v.extend_from_slice(b"needle");
        v
    }

    /// 1 MB of pseudo-random bytes (all 256 values) with no `z` run.
    fn mb_noise() -> Vec<u8> {
        let mut s = 0x9E37_79B9_7F4A_7C15u64;
        (0..1 << 20)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                match (s >> 24) as u8 {
                    b'z' => b'y',
                    b => b,
                }
            })
            .collect()
    }

    /// The golden suite: the same table runs against every backend.
    #[rustfmt::skip]
    const CASES: &[Case] = &[
        Case { name: "start anchor", pats: &[R(1, "^admin")], hay: B(b"admin/x"), want: &[1] },
        Case { name: "start anchor, not at start", pats: &[R(1, "^admin")], hay: B(b"/admin"), want: &[] },
        Case { name: "end anchor", pats: &[R(1, r"\.php$")], hay: B(b"/index.php"), want: &[1] },
        // PCRE/Hyperscan `$` also matches before a final newline; ours does not.
        Case { name: "$ is end of value, not before final newline", pats: &[R(1, "a$")], hay: B(b"a\n"), want: &[] },
        Case { name: "\\A and \\z", pats: &[R(1, r"\Aabc\z")], hay: B(b"abc"), want: &[1] },
        Case { name: "multi-line anchors", pats: &[R(1, "(?m)^b$"), R(2, "^b$")], hay: B(b"a\nb\nc"), want: &[1] },
        Case { name: "caseless regex", pats: &[Ri(1, r"select\s+from")], hay: B(b"SeLeCt \t FROM t"), want: &[1] },
        Case { name: "case-sensitive regex", pats: &[R(1, "select")], hay: B(b"SELECT"), want: &[] },
        Case { name: "inline (?i)", pats: &[R(1, "(?i)union")], hay: B(b"UNION"), want: &[1] },
        Case { name: "inline (?-i) inside caseless, mismatch", pats: &[Ri(1, "a(?-i:b)")], hay: B(b"AB"), want: &[] },
        Case { name: "inline (?-i) inside caseless, match", pats: &[Ri(1, "a(?-i:b)")], hay: B(b"Ab"), want: &[1] },
        Case { name: "caseless is ASCII only", pats: &[Ri(1, "é")], hay: B("É".as_bytes()), want: &[] },
        Case { name: "alternation", pats: &[R(1, "cat|dog|bird")], hay: B(b"hotdog"), want: &[1] },
        Case { name: "alternation across patterns", pats: &[R(1, "cat|dog"), R(2, "bird"), R(3, "fish")], hay: B(b"dog and bird"), want: &[1, 2] },
        Case { name: "class and bounded repeat", pats: &[R(1, "[0-9]{3}-[0-9]{4}")], hay: B(b"call 555-1234"), want: &[1] },
        Case { name: "negated class, no match", pats: &[R(1, "[^a-z]")], hay: B(b"abc"), want: &[] },
        Case { name: "negated class matches a high byte", pats: &[R(1, "[^a-z]")], hay: B(b"ab\xFF"), want: &[1] },
        Case { name: "\\s includes vertical tab", pats: &[R(1, r"a\sb")], hay: B(b"a\x0Bb"), want: &[1] },
        Case { name: "posix class", pats: &[R(1, "[[:alpha:]]+[[:digit:]]")], hay: B(b"--abc1"), want: &[1] },
        Case { name: "\\b word boundary", pats: &[R(1, r"\bor\b")], hay: B(b"1 or 1"), want: &[1] },
        Case { name: "\\b inside a word", pats: &[R(1, r"\bor\b")], hay: B(b"word"), want: &[] },
        Case { name: "\\b is ASCII: a high byte is a non-word byte", pats: &[R(1, r"\bx")], hay: B(b"\xE9x"), want: &[1] },
        Case { name: "\\B", pats: &[R(1, r"\Bor")], hay: B(b"word"), want: &[1] },
        Case { name: "{2,5} below", pats: &[R(1, "^a{2,5}$")], hay: B(b"a"), want: &[] },
        Case { name: "{2,5} low bound", pats: &[R(1, "^a{2,5}$")], hay: B(b"aa"), want: &[1] },
        Case { name: "{2,5} high bound", pats: &[R(1, "^a{2,5}$")], hay: B(b"aaaaa"), want: &[1] },
        Case { name: "{2,5} above", pats: &[R(1, "^a{2,5}$")], hay: B(b"aaaaaa"), want: &[] },
        Case { name: "phrase with metacharacters", pats: &[L(1, b"a.b*c(d)$^[x]{1}|\\")], hay: B(b"..a.b*c(d)$^[x]{1}|\\.."), want: &[1] },
        Case { name: "phrase metacharacters are not regex", pats: &[L(1, b"a.b*c")], hay: B(b"axbbc"), want: &[] },
        Case { name: "escaped metacharacters in a regex", pats: &[R(1, r"\$\{jndi:"), R(2, r"a\-b\&c\~d\#e")], hay: B(b"${jndi:ldap://x} a-b&c~d#e"), want: &[1, 2] },
        Case { name: "caseless phrase", pats: &[Li(1, b"<script")], hay: B(b"x<ScRiPt>"), want: &[1] },
        Case { name: "case-sensitive phrase", pats: &[L(1, b"<script")], hay: B(b"<SCRIPT>"), want: &[] },
        Case { name: "mixed-case phrases, upper", pats: &[L(1, b"Admin"), Li(2, b"admin")], hay: B(b"ADMIN"), want: &[2] },
        Case { name: "mixed-case phrases, exact", pats: &[L(1, b"Admin"), Li(2, b"admin")], hay: B(b"Admin"), want: &[1, 2] },
        Case { name: "overlapping phrases", pats: &[L(1, b"abc"), L(2, b"bcd"), L(3, b"cd"), L(4, b"ab")], hay: B(b"abcd"), want: &[1, 2, 3, 4] },
        Case { name: "non-ASCII phrase is UTF-8 bytes", pats: &[L(1, "café".as_bytes())], hay: B(b"caf\xC3\xA9"), want: &[1] },
        Case { name: "non-ASCII phrase vs Latin-1 value", pats: &[L(1, "café".as_bytes())], hay: B(b"caf\xE9"), want: &[] },
        Case { name: "repetition applies to a whole non-ASCII char", pats: &[R(1, "^é+$")], hay: B(b"\xC3\xA9\xA9"), want: &[] },
        Case { name: "non-ASCII char repeated", pats: &[R(1, "^é+$")], hay: B(b"\xC3\xA9\xC3\xA9"), want: &[1] },
        // `regex-syntax` merges single-character alternatives into a
        // Unicode class even with Unicode off; see translate_class.
        Case { name: "alternation of non-ASCII chars", pats: &[R(1, "^(é|è|a)$"), R(2, r"\xEF\xBC\x9C|\xEF\xBC\x9E")], hay: B("è ＞".as_bytes()), want: &[2] },
        Case { name: "alternation of non-ASCII chars, whole value", pats: &[R(1, "^(é|è|a)$")], hay: B("è".as_bytes()), want: &[1] },
        Case { name: "alternation of non-ASCII chars, one byte only", pats: &[R(1, "(é|è)")], hay: B(b"\xC3 \xA8"), want: &[] },
        Case { name: "alternation of control chars", pats: &[R(1, "(\n|\t|\x00)x")], hay: B(b"a\0x"), want: &[1] },
        Case { name: "non-UTF-8 value, \\x escapes", pats: &[R(1, r"\xFF\xFE"), R(2, r"\x41")], hay: B(b"\x00\xFF\xFEA"), want: &[1, 2] },
        Case { name: "dot matches newline", pats: &[R(1, "a.c")], hay: B(b"a\nc"), want: &[1] },
        Case { name: "dot is one byte, not one char", pats: &[R(1, "^.$")], hay: B("é".as_bytes()), want: &[] },
        Case { name: "dot matches a high byte", pats: &[R(1, "^.$")], hay: B(b"\xFF"), want: &[1] },
        Case { name: "NUL bytes", pats: &[R(1, r"a\x00b"), L(2, b"\0\0")], hay: B(b"a\0b\0\0"), want: &[1, 2] },
        Case { name: "whitespace in patterns", pats: &[R(1, "a #b"), L(2, b"x\ty z")], hay: B(b"a #b x\ty z"), want: &[1, 2] },
        Case { name: "empty value", pats: &[R(1, "a"), L(2, b"x"), R(3, "[^a]")], hay: B(b""), want: &[] },
        Case { name: "many patterns, one value", pats: &[R(1, "union"), Ri(2, "SELECT"), R(3, r"union\s+select"), L(4, b"from"), Li(5, b"UNION")], hay: B(b"1 union select x from t"), want: &[1, 2, 3, 4, 5] },
        Case { name: "repeated matches reported once", pats: &[R(1, "a"), L(2, b"b")], hay: B(b"abababababab"), want: &[1, 2] },
        Case { name: "lazy quantifier", pats: &[R(1, "a.*?b")], hay: B(b"axxb"), want: &[1] },
        Case { name: "capture and named groups", pats: &[R(1, "(?P<k>ab)+c"), R(2, "(x|y)z")], hay: B(b"ababc yz"), want: &[1, 2] },
        // The regex-syntax printer writes `b(?:a+)?c` as `ba+?c` (lazy); see canonical_form.
        Case { name: "optional repeated group", pats: &[R(1, "b(?:a+)?c"), R(2, r"or(?:\s+)?1")], hay: B(b"bc or1"), want: &[1, 2] },
        Case { name: "optional exact repetition, absent", pats: &[R(1, "b(?:a{2})?c")], hay: B(b"bc"), want: &[1] },
        Case { name: "optional exact repetition, wrong count", pats: &[R(1, "b(?:a{2})?c")], hay: B(b"bac"), want: &[] },
        Case { name: "lazy inside lazy optional", pats: &[R(1, "x(?:a+?)??y"), R(2, "x(?:a+)??y")], hay: B(b"xy"), want: &[1, 2] },
        Case { name: "nested exact repetitions", pats: &[R(1, "^(?:a{2}){3}$")], hay: B(b"aaaaaa"), want: &[1] },
        Case { name: "nested exact repetitions, short", pats: &[R(1, "^(?:a{2}){3}$")], hay: B(b"aaaa"), want: &[] },
        // regex-crate syntax: `a++` is `(a+)+`, not PCRE's possessive `a++`
        // (which could never match here).
        Case { name: "a++ is nested, not possessive", pats: &[R(1, "^a++a$")], hay: B(b"aaa"), want: &[1] },
        Case { name: "empty alternative, non-empty pattern", pats: &[R(1, "(a|)b")], hay: B(b"b"), want: &[1] },
        Case { name: "ids are the spec ids, in spec order", pats: &[R(942100, "b"), R(7, "a"), L(0, b"c")], hay: B(b"abc"), want: &[942100, 7, 0] },
        Case { name: "1 MB, needle at the end", pats: &[R(1, "needle$"), R(2, "^x+needle"), L(3, b"needle"), R(4, "zzz"), R(5, "^needle")], hay: Gen(mb_needle_at_end), want: &[1, 2, 3] },
        Case { name: "1 MB of noise", pats: &[R(1, "zzz"), L(2, b"zz"), Ri(3, r"[\x00-\xFF]{4}")], hay: Gen(mb_noise), want: &[3] },
    ];

    struct Bad {
        name: &'static str,
        pats: &'static [P],
        id: u32,
        msg: &'static str,
    }

    /// Patterns every backend must reject, naming the right id.
    #[rustfmt::skip]
    const BAD: &[Bad] = &[
        Bad { name: "backreference", pats: &[R(1, "ok"), R(42, r"(a)\1"), R(3, "fine")], id: 42, msg: "backreference" },
        Bad { name: "lookahead", pats: &[R(1, "ok"), R(43, "a(?=x)")], id: 43, msg: "look-around" },
        Bad { name: "lookbehind", pats: &[R(44, "(?<=x)a")], id: 44, msg: "look-around" },
        Bad { name: "empty match a*", pats: &[R(1, "ok"), R(45, "a*"), R(3, "fine")], id: 45, msg: "empty string" },
        Bad { name: "bare anchor (Hyperscan alone would accept)", pats: &[R(46, "^")], id: 46, msg: "empty string" },
        Bad { name: "bare \\b (Hyperscan alone would accept)", pats: &[R(47, r"\b")], id: 47, msg: "empty string" },
        Bad { name: "empty phrase", pats: &[L(1, b"x"), Li(48, b"")], id: 48, msg: "empty string" },
        Bad { name: "class that matches nothing", pats: &[R(49, r"[^\x00-\xFF]")], id: 49, msg: "matches nothing" },
        Bad { name: "half word boundary", pats: &[R(50, r"\b{start}x")], id: 50, msg: "half word-boundary" },
        Bad { name: "syntax error", pats: &[R(1, "ok"), R(51, "(abc")], id: 51, msg: "unclosed group" },
        Bad { name: "Unicode class", pats: &[R(52, r"\p{Greek}")], id: 52, msg: "unicode" },
        Bad { name: "non-ASCII char in a class", pats: &[R(53, "[é]")], id: 53, msg: "unicode" },
        Bad { name: "PCRE-only escape \\Z", pats: &[R(54, r"a\Z")], id: 54, msg: "escape" },
        Bad { name: "nested optionals ambiguous both ways", pats: &[R(1, "ok"), R(55, "(?:a+)?x(?:b+?)??")], id: 55, msg: "nested repetitions" },
        Bad { name: "repetition count above MAX_REPEAT", pats: &[R(1, "a{1000}"), R(56, "x[a-z]{0,5000}y")], id: 56, msg: "repetition count" },
        Bad { name: "nested repetition counts multiply", pats: &[R(1, "(?:a{10}){100}"), R(58, "(?:[a-z]{100}){100}")], id: 58, msg: "nested counts multiplied" },
        Bad { name: "nested repetition counts multiply across groups", pats: &[R(59, "(?:x(?:a{2}b){40}){20}")], id: 59, msg: "nested counts multiplied" },
        Bad { name: "duplicate id", pats: &[R(57, "a"), L(57, b"b")], id: 57, msg: "duplicate" },
    ];

    fn scan_all(set: &MatcherSet, scratch: &mut Scratch, hay: &[u8]) -> Vec<u32> {
        let mut got = Vec::new();
        set.scan(scratch, hay, |id| got.push(id)).expect("scan");
        got
    }

    #[test]
    fn golden_cases_every_backend() {
        for backend in backends() {
            for case in CASES {
                let specs = specs(case.pats);
                let set = compile(&specs, backend)
                    .unwrap_or_else(|e| panic!("[{backend}] {}: compile: {e}", case.name));
                let hay = match &case.hay {
                    B(b) => b.to_vec(),
                    Gen(f) => f(),
                };
                let mut scratch = set.scratch();
                let got = scan_all(&set, &mut scratch, &hay);
                assert_eq!(got, case.want, "[{backend}] {}", case.name);
                // Same scratch, second scan: dedupe state was reset.
                assert_eq!(
                    scan_all(&set, &mut scratch, &hay),
                    case.want,
                    "[{backend}] {} (rescan)",
                    case.name
                );
                // The confirm regexes agree with the scan on every pattern.
                for s in &specs {
                    assert_eq!(
                        set.first_match_span(s.id, &hay).is_some(),
                        case.want.contains(&s.id),
                        "[{backend}] {}: first_match_span({}) disagrees with scan",
                        case.name,
                        s.id
                    );
                }
            }
        }
    }

    #[test]
    fn pattern_needs_hold_for_every_matching_value() {
        let extra = [
            P::R(1, r"!!\[\]|\(!\[\]\+?\[\]\)|\[\+?!\+?\[\]"),
            P::Ri(
                2,
                r"-moz-binding:|\bbehavior:url\(|\bexpression\(|<style[^>]{0,100}>",
            ),
            P::R(3, r"a(?:bc)?d|x+y*"),
            P::R(4, r"\w+@\w+|(?:foo)*bar"),
            P::Ri(5, r"^\s*(?:select|union)\b"),
            P::R(6, r"(?-u:[\x80-\xff])a|(?u:\x{212A})"),
            P::R(7, r"[^a]{2}|\d{3,}"),
            P::Li(8, b"OnLoad="),
            P::Ri(9, r"\$\s*\{\s*jndi\s*:|\bjndi\s*:\s*(?:ldaps?|rmi)\s*:"),
        ];
        let all = CASES
            .iter()
            .flat_map(|c| c.pats.iter().copied())
            .chain(extra);
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut checked = 0;
        for p in all {
            let spec = spec(p);
            let needs = pattern_needs(&spec).expect("parses");
            let source = match &spec.kind {
                PatternKind::Regex(s) => s.clone(),
                PatternKind::Literal(b) => escape_literal(b),
            };
            let re = meta::Regex::builder()
                .syntax(source_syntax(spec.caseless))
                .build(&source)
                .expect("builds");
            // Values from the pattern's own bytes (both cases), so that
            // many match, plus arbitrary bytes.
            let mut alphabet: Vec<u8> = source.bytes().collect();
            alphabet.extend(source.bytes().map(|b| b.to_ascii_uppercase()));
            alphabet.extend_from_slice(b" \n0123456789");
            for round in 0..4000 {
                let len = (next() % 24) as usize;
                let value: Vec<u8> = (0..len)
                    .map(|_| {
                        let r = next();
                        if round % 3 == 0 && r % 5 == 0 {
                            (r >> 8) as u8
                        } else {
                            alphabet[(r >> 8) as usize % alphabet.len()]
                        }
                    })
                    .collect();
                if !re.is_match(value.as_slice()) {
                    continue;
                }
                checked += 1;
                assert!(value.len() >= needs.min_len, "{p:?} on {value:?}");
                // A pattern that consumes a byte always needs one of a set,
                // and a match holds a byte of every set listed.
                assert!(!needs.all.is_empty(), "{p:?}: no needed set");
                for set in &needs.all {
                    assert!(
                        value.iter().any(|&b| set[usize::from(b)]),
                        "{p:?} matches {:?} without a needed byte",
                        String::from_utf8_lossy(&value)
                    );
                }
            }
        }
        assert!(checked > 20_000, "only {checked} matching values");
        // What the guards rely on, on two of the patterns above.
        let needs = |p| pattern_needs(&spec(p)).expect("parses");
        let set_of = |p| {
            let set = needs(p).all[0];
            (0..=255u8)
                .filter(|&b| set[usize::from(b)])
                .collect::<Vec<u8>>()
        };
        // Every branch needs `!`: that beats the union of their cheapest.
        assert_eq!(set_of(extra[0]), b"!".to_vec());
        assert_eq!(set_of(extra[1]), b"(-:<".to_vec());
        assert_eq!(set_of(extra[3]), b"@b".to_vec());
        assert_eq!(needs(extra[7]).min_len, 7);
        // A set every branch of an alternation needs.
        assert_eq!(set_of(extra[8]), b":".to_vec());
        // Header injection: both the line break and the colon.
        let crlf = needs(P::R(9, r"[\r\n][\t ]*[0-9A-Za-z-]+[\t\r\n ]*:[\t ]*[!-~]"));
        let sets: Vec<Vec<u8>> = crlf
            .all
            .iter()
            .map(|s| (0..=255u8).filter(|&b| s[usize::from(b)]).collect())
            .collect();
        assert!(
            sets.contains(&b":".to_vec()) && sets.contains(&b"\n\r".to_vec()),
            "{sets:?}"
        );
    }

    #[test]
    fn compile_failures_name_the_pattern_every_backend() {
        for backend in backends() {
            for bad in BAD {
                let err = compile(&specs(bad.pats), backend)
                    .err()
                    .unwrap_or_else(|| panic!("[{backend}] {}: compiled", bad.name));
                assert_eq!(err.id, bad.id, "[{backend}] {}: {err}", bad.name);
                assert!(
                    err.message.to_lowercase().contains(&bad.msg.to_lowercase()),
                    "[{backend}] {}: message {:?} lacks {:?}",
                    bad.name,
                    err.message,
                    bad.msg
                );
            }
        }
    }

    #[test]
    fn validate_reports_every_error_at_once() {
        let errs = validate(&specs(&[R(1, "a*"), R(2, "ok"), R(3, r"(a)\1"), L(4, b"")]));
        assert_eq!(errs.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 3, 4]);
        assert!(validate(&specs(&[R(1, "ok"), L(2, b"fine")])).is_empty());
    }

    #[test]
    fn limits_are_compile_errors() {
        for backend in backends() {
            let long = "a".repeat(MAX_PATTERN_LEN + 1);
            let err = compile(
                &[PatternSpec {
                    id: 9,
                    kind: PatternKind::Regex(long),
                    caseless: false,
                }],
                backend,
            )
            .expect_err("too long");
            assert_eq!(err.id, 9);

            let many: Vec<PatternSpec> = (0..=MAX_PATTERNS_PER_SET as u32)
                .map(|id| PatternSpec {
                    id,
                    kind: PatternKind::Literal(b"x".to_vec()),
                    caseless: false,
                })
                .collect();
            let err = compile(&many, backend).expect_err("too many");
            assert_eq!(err.id, MAX_PATTERNS_PER_SET as u32);

            let deep = format!("{}a{}", "(".repeat(100), ")".repeat(100));
            let err = compile(
                &specs(&[R(1, "ok")])
                    .into_iter()
                    .chain([PatternSpec {
                        id: 2,
                        kind: PatternKind::Regex(deep),
                        caseless: false,
                    }])
                    .collect::<Vec<_>>(),
                backend,
            )
            .expect_err("too deep");
            assert_eq!(err.id, 2);
            assert!(err.message.contains("nest"), "{err}");
        }
    }

    #[test]
    fn pure_set_size_limit_names_the_pattern_that_tips_it_over() {
        // Each pattern fits the limit alone; the set does not. The error
        // names the first pattern at which the prefix no longer compiles.
        let specs: Vec<PatternSpec> = (0..20)
            .map(|id| spec(P::R(100 + id, "[a-z]{40}[0-9]{40}")))
            .collect();
        let (prepared, errors) = prepare_all(&specs);
        assert!(errors.is_empty());
        let limit = 64 * 1024;
        let one = compile_pure(&specs[..1], &prepared[..1], limit);
        assert!(one.is_ok(), "one pattern must fit the test limit");
        let Err(err) = compile_pure(&specs, &prepared, limit) else {
            panic!("the set must exceed the test limit");
        };
        assert!((101..120).contains(&err.id), "{err}");
        assert!(err.message.contains("pure backend"), "{err}");
        let k = (err.id - 100) as usize;
        assert!(compile_pure(&specs[..k], &prepared[..k], limit).is_ok());
    }

    #[test]
    fn first_failing_prefix_finds_the_tipping_pattern() {
        for n in 1..20 {
            for k in 1..=n {
                assert_eq!(first_failing_prefix(n, |m| m >= k), k);
            }
        }
    }

    /// A difference that remains: Hyperscan refuses some patterns that can
    /// never match (contradictory assertions); the pure backend compiles
    /// them and they never match. Loud either way, never fail-open.
    #[cfg(feature = "hyperscan")]
    #[test]
    fn hyperscan_rejections_name_the_pattern() {
        let specs = specs(&[R(1, "ok"), R(2, "fine"), R(77, r"\Bx\b\B"), L(4, b"also")]);
        let err = compile(&specs, Backend::Hyperscan).expect_err("never matches");
        assert_eq!(err.id, 77, "{err}");
        assert!(err.message.contains("never match"), "{err}");
        let set = compile(&specs, Backend::Pure).expect("pure");
        assert_eq!(
            scan_all(&set, &mut set.scratch(), b"ok x fine axb also"),
            [1, 2, 4]
        );
    }

    #[test]
    fn input_length_limit_is_an_error() {
        // A 4 GiB value cannot be allocated in a test; check the bound itself.
        assert_eq!(MAX_INPUT_LEN as u64, u64::from(u32::MAX));
    }

    #[test]
    fn first_match_span_gives_leftmost_first_spans() {
        for backend in backends() {
            let set = compile(&specs(&[R(1, r"b+"), Li(2, b"CD"), R(3, "zz")]), backend)
                .expect("compile");
            assert_eq!(set.first_match_span(1, b"abbbcd"), Some((1, 4)));
            assert_eq!(set.first_match_span(2, b"abbbcd"), Some((4, 6)));
            assert_eq!(set.first_match_span(3, b"abbbcd"), None);
            assert_eq!(set.first_match_span(99, b"abbbcd"), None);
            // Spans keep the author's greediness even when the canonical
            // form had to swap it.
            let set = compile(&specs(&[R(1, "a+?"), R(2, "b(?:a+)?")]), backend).expect("compile");
            assert_eq!(set.first_match_span(1, b"aaa"), Some((0, 1)));
            assert_eq!(set.first_match_span(2, b"baaa"), Some((0, 4)));
        }
    }

    #[test]
    fn empty_set_matches_nothing() {
        for backend in backends() {
            let set = compile(&[], backend).expect("compile");
            assert!(set.is_empty());
            assert_eq!(
                scan_all(&set, &mut set.scratch(), b"anything"),
                Vec::<u32>::new()
            );
        }
    }

    #[test]
    fn default_backend_follows_the_feature() {
        #[cfg(feature = "hyperscan")]
        assert_eq!(Backend::default(), Backend::Hyperscan);
        #[cfg(not(feature = "hyperscan"))]
        assert_eq!(Backend::default(), Backend::Pure);
    }

    #[test]
    fn set_is_send_sync_and_scratch_is_send() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<MatcherSet>();
        send::<Scratch>();
    }

    #[test]
    fn two_threads_with_their_own_scratch() {
        for backend in backends() {
            let set = Arc::new(
                compile(
                    &specs(&[R(1, r"union\s+select"), Li(2, b"<script"), R(3, "^GET ")]),
                    backend,
                )
                .expect("compile"),
            );
            let workers: Vec<_> = (0..2)
                .map(|t| {
                    let set = Arc::clone(&set);
                    std::thread::spawn(move || {
                        let mut scratch = set.scratch();
                        for i in 0..500 {
                            let (hay, want): (&[u8], &[u32]) = if (i + t) % 2 == 0 {
                                (b"GET /?q=1 union  select <SCRIPT>", &[1, 2, 3])
                            } else {
                                (b"POST / harmless", &[])
                            };
                            assert_eq!(scan_all(&set, &mut scratch, hay), want);
                        }
                    })
                })
                .collect();
            for w in workers {
                w.join().expect("worker");
            }
        }
    }

    #[test]
    fn thread_local_scratch_survives_a_reload() {
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
        }
        for backend in backends() {
            let old = compile(&specs(&[R(1, "old")]), backend).expect("compile");
            let new = compile(&specs(&[L(2, b"new"), R(3, "old|new")]), backend).expect("compile");
            SCRATCH.with(|s| {
                let mut s = s.borrow_mut();
                assert_eq!(scan_all(&old, &mut s, b"old new"), [1]);
                // A scratch made for `old` is refitted to `new` on first use.
                assert_eq!(scan_all(&new, &mut s, b"old new"), [2, 3]);
                assert_eq!(scan_all(&new, &mut s, b"old"), [3]);
            });
        }
    }

    /// Three-way differential check on generated values: both backends and
    /// the `regex` crate (on the *original* pattern and flags, not the
    /// canonical one, so a printer mistake would show) must agree.
    #[test]
    fn backends_agree_with_the_regex_crate_on_generated_values() {
        let pats: &[P] = &[
            R(1, "ab+c"),
            Ri(2, "x[yz]{2,3}"),
            R(3, r"\bq\w"),
            R(4, "^[abc]{3}"),
            R(5, "[^abc]c$"),
            R(6, r"(?m)^z"),
            R(7, r"a.?b\sq"),
            L(8, b"bca"),
            Li(9, b"XyZ"),
            R(10, r"[\x80-\xFF]a"),
            Ri(11, r"(?-i:Q)z|zzz"),
            R(12, r"\B[xy]\b"),
            R(13, "b(?:a+)?c"),
            R(14, "(?:ab){2}"),
            R(15, "(é|z)q"),
            R(16, "q$"),
            R(17, "(?m)q$"),
            R(18, "[^a-z\n]{2}"),
            Ri(19, "(?:Xy)+?z"),
            R(20, "^(?:a|bc?)+$"),
            L(21, "é".as_bytes()),
        ];
        let specs = specs(pats);
        let sets: Vec<MatcherSet> = backends()
            .into_iter()
            .map(|b| compile(&specs, b).expect("compile"))
            .collect();
        let oracle: Vec<(u32, regex::bytes::Regex)> = specs
            .iter()
            .map(|s| {
                let (src, caseless) = match &s.kind {
                    PatternKind::Regex(r) => (r.clone(), s.caseless),
                    PatternKind::Literal(b) => (
                        regex::escape(std::str::from_utf8(b).expect("utf-8")),
                        s.caseless,
                    ),
                };
                let re = regex::bytes::RegexBuilder::new(&src)
                    .unicode(false)
                    .case_insensitive(caseless)
                    .dot_matches_new_line(true)
                    .build()
                    .expect("oracle");
                (s.id, re)
            })
            .collect();
        // Values are 0-7 tokens: single bytes, plus fragments that make the
        // longer patterns match now and then.
        let tokens: &[&[u8]] = &[
            b"a",
            b"b",
            b"c",
            b"q",
            b"x",
            b"y",
            b"z",
            b"X",
            b"Y",
            b"Z",
            b"Q",
            b" ",
            b"\n",
            b"\x80",
            b"\xFF",
            b"\xC3",
            b"\xA9",
            b"ab",
            "é".as_bytes(),
            b"Xy",
            b"bc",
            b"q\n",
        ];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut scratches: Vec<Scratch> = sets.iter().map(|s| s.scratch()).collect();
        let mut hits = std::collections::HashMap::<u32, usize>::new();
        let rounds = 5000;
        for _ in 0..rounds {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let hay: Vec<u8> = (0..(seed % 8) as usize)
                .flat_map(|i| {
                    tokens[((seed >> (3 + i * 5)) % tokens.len() as u64) as usize]
                        .iter()
                        .copied()
                })
                .collect();
            let want: Vec<u32> = oracle
                .iter()
                .filter(|(_, re)| re.is_match(&hay))
                .map(|(id, _)| *id)
                .collect();
            for id in &want {
                *hits.entry(*id).or_default() += 1;
            }
            for (set, scratch) in sets.iter().zip(scratches.iter_mut()) {
                assert_eq!(
                    scan_all(set, scratch, &hay),
                    want,
                    "[{}] value {:?}",
                    set.backend(),
                    hay
                );
            }
        }
        // The run means something only if every pattern matched sometimes
        // and none matched always.
        for s in &specs {
            let n = hits.get(&s.id).copied().unwrap_or(0);
            assert!(
                n > 0 && n < rounds,
                "pattern {} matched {n} of {rounds} values",
                s.id
            );
        }
    }

    #[test]
    fn hyperscan_translation_of_canonical_forms() {
        let hs = |p: &str, caseless| {
            let hir = syntax::parse_with(p, &source_syntax(caseless)).expect("parse");
            let canonical = canonical_form(p, caseless, &hir).expect("canonical");
            to_hyperscan_syntax(&canonical).expect("translate")
        };
        assert_eq!(hs("a$", false), r"(?:a\z)");
        assert_eq!(hs("é+", false), r"(?:\xC3\xA9)+");
        assert_eq!(hs("ab", true), r"(?:(?:[\x41\x61])(?:[\x42\x62]))");
        assert_eq!(hs(r"\bx", false), r"(?:(?:\b)x)");
        assert_eq!(hs("(?P<n>a)b", false), "(?:(?:a)b)");
        assert_eq!(hs("a b", false), r"(?:a\x20b)");
        assert_eq!(hs("b(?:a+)?", false), "(?:b(?:a+)?)");
        assert_eq!(hs("(?:a{2}){3}", false), "(?:a{2}){3}");
        assert_eq!(hs("a++", false), "(?:a+)+");
        assert_eq!(hs("a*?b", false), "(?:a*b)");
        assert_eq!(hs("[a-c]+?", false), r"(?:[\x61-\x63])+");
        assert_eq!(hs("(é|è|a)", false), r"(?:(?:[\x61]|\xC3\xA8|\xC3\xA9))");
        assert_eq!(hs(r"[^\x01-\x7F]", false), r"(?:[\x00\x80-\xFF])");
        assert_eq!(escape_literal(b"a.b\xFF"), r"a\x2Eb\xFF");
    }
}
