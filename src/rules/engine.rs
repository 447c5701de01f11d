//! The compiled rule set and its evaluation against one request.
//!
//! Compile: rules (after paranoia filtering) are grouped by transform chain
//! (a *pass*) and, within a pass, by target (a *group*). Every pattern-type
//! operator of a group (regex, phrases, contains, equals, starts_with) goes
//! into one `MatcherSet`, so a value is transformed once per chain and
//! scanned once per group whatever the number of rules; native detectors
//! (sqli, xss, cmdi, path_traversal) and the small operators (ip_in,
//! length_gt) run on the same transformed value.
//!
//! Evaluate: the caller hands over the request's fields; the result lists
//! every hit with its rule, target and an excerpt, the anomaly score of the
//! rules in `block` mode, and the verdict. A scan error is a hit of its own
//! kind (`inspection_error`), never a silent "no match".

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::{ConfigError, ConfigErrors};
use crate::rules::dbcache::{CacheStats, DbCache};
use crate::rules::detect::{self, Detection};
use crate::rules::matcher::{self, Backend, MatcherSet, PatternKind, PatternSpec, Scratch};
use crate::rules::schema::{Exclusion, Mode, Operator, Pack, Rule, Target, TargetKind};
use crate::rules::transform::{Chain, Classes, Transform, classes};

/// Longest excerpt of a matched value kept in a hit (bytes).
pub const EXCERPT_BYTES: usize = 96;

/// Engine-wide settings (from the `waf` config section).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub paranoia: u8,
    pub inbound_threshold: u32,
    /// The anomaly score of response-phase hits that blocks a response.
    pub outbound_threshold: u32,
    /// The global mode; packs and rules may narrow it (block → detect → shadow).
    pub mode: Mode,
    pub backend: Backend,
    /// Exclusions from the config (packs may carry their own).
    pub exclusions: Vec<Exclusion>,
    /// Where compiled Hyperscan databases are kept between loads
    /// (`waf.compile_cache`); `None`: always compile.
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            paranoia: 1,
            inbound_threshold: 5,
            outbound_threshold: 4,
            mode: Mode::Block,
            backend: Backend::default(),
            exclusions: Vec::new(),
            cache_dir: None,
        }
    }
}

/// One request field as the engine sees it.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub kind: TargetKind,
    pub name: &'a [u8],
    pub value: &'a [u8],
    /// The value recurs across requests by nature though its kind's values
    /// do not (a JSON object key): it may be remembered as clean (see
    /// [`CleanFields`]) like the fields of the recurring kinds.
    pub recurs: bool,
}

/// Request facts exclusions are matched against.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestFacts<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    /// The raw body was parsed into fields (a urlencoded form or a JSON
    /// document): each of its bytes is also in an `args_post` value, an
    /// `args_names` name or a `json` key or leaf. A rule that looks at all
    /// of those and at `body` then does not look at the body: the same
    /// evidence would score twice, and the body would be scanned for
    /// nothing new.
    pub body_as_args: bool,
}

/// The rule-target kind of a view field's kind (`None`: no rule can name
/// it, e.g. multipart part headers).
fn rule_kind(k: crate::request_view::TargetKind) -> Option<TargetKind> {
    use crate::request_view::TargetKind as V;
    Some(match k {
        V::Args => TargetKind::Args,
        V::ArgsGet => TargetKind::ArgsGet,
        V::ArgsPost => TargetKind::ArgsPost,
        V::ArgsNames => TargetKind::ArgsNames,
        V::Path => TargetKind::Path,
        V::Query => TargetKind::Query,
        V::Uri => TargetKind::Uri,
        V::Method => TargetKind::Method,
        V::Headers => TargetKind::Headers,
        V::HeaderNames => TargetKind::HeaderNames,
        V::Cookies => TargetKind::Cookies,
        V::CookieNames => TargetKind::CookieNames,
        V::Body => TargetKind::Body,
        V::Json => TargetKind::Json,
        V::Xml => TargetKind::Xml,
        V::Files => TargetKind::Files,
        V::FilesContent => TargetKind::FilesContent,
        V::MultipartHeaders => return None,
    })
}

/// The engine's fields of a request view (every field a rule target can name).
pub fn view_fields(view: &crate::request_view::RequestView) -> Vec<Field<'_>> {
    view.fields()
        .iter()
        .filter_map(|f| {
            Some(Field {
                kind: rule_kind(f.kind)?,
                name: &f.name,
                value: &f.value,
                recurs: f.role == crate::request_view::FieldRole::Key,
            })
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Native {
    Sqli,
    Xss,
    Cmdi,
    Path,
    SqliPath,
    CmdiPath,
    Base64,
}

impl Native {
    /// Can the detector find anything in a value of classes `c`? `false`
    /// when the value holds no byte of its pre-filter (see
    /// `transform::class::XSS_BYTES`): the call is skipped, not its answer.
    fn may_find(self, c: Classes) -> bool {
        use crate::rules::transform::class::{
            CMDI_BYTES, EMPTY, NOT_BASE64, PATH_BYTES, PERCENT_PLUS, XSS_BYTES,
        };
        match self {
            Native::Xss => c & XSS_BYTES != 0,
            Native::Cmdi | Native::CmdiPath => c & CMDI_BYTES != 0,
            Native::Path => c & PATH_BYTES != 0,
            Native::Sqli | Native::SqliPath => true,
            // Base64 (a URL path of base64 segments is all base64 bytes
            // too), perhaps with `%2B`-style escapes.
            Native::Base64 => c & EMPTY == 0 && (c & NOT_BASE64 == 0 || c & PERCENT_PLUS != 0),
        }
    }
}

#[derive(Debug, Clone)]
enum Check {
    Native(Native),
    IpIn(Vec<ipnet::IpNet>),
    LengthGt(u64),
}

/// The transforms one or more rules apply before matching, with every
/// target any of those rules looks at (a field outside all of them is not
/// transformed for this chain).
struct Db {
    matcher: MatcherSet,
    /// Pattern id (index) → rule index.
    pattern_rule: Vec<usize>,
    /// Per chain: does a rule of this database use it?
    chains: Vec<bool>,
    /// Bit per `TargetKind`: kinds a rule of this database can look at.
    kinds: u32,
    /// Per pattern id: what a value must have for the pattern to match it
    /// alone (see `Db::could_match`).
    filters: Vec<PatternFilter>,
}

/// What a batch match of a pattern is checked against before its value is
/// scanned alone: a batch match can span the separator (with a newline
/// separator, the header-injection pattern `[\r\n][\t ]*token:` matched
/// `127.0.0.1:18502` after the newline that joined it to the value before;
/// any pattern whose classes take `0xFF` still can), and a shared database
/// serves several kinds of field.
struct PatternFilter {
    /// Kinds its rule looks at.
    kinds: u32,
    /// Its shortest match.
    min_len: usize,
    /// Byte sets (bit sets) a match holds a byte of each of.
    sets: Box<[[u64; 4]]>,
}

impl Db {
    /// Could pattern `id` match `value` (needed by fields of `kinds`)?
    /// `false` is a promise; `true` may be wrong.
    fn could_match(&self, id: u32, value: &[u8], kinds: u32) -> bool {
        let Some(f) = self.filters.get(id as usize) else {
            return true;
        };
        f.kinds & kinds != 0
            && value.len() >= f.min_len
            && f.sets.iter().all(|set| {
                value
                    .iter()
                    .any(|&b| set[usize::from(b >> 6)] >> (b & 63) & 1 != 0)
            })
    }
}

struct ChainInfo {
    chain: Chain,
    targets: Vec<Target>,
    /// The transform-trie node whose value is this chain's output.
    node: usize,
    /// What a value must have for a rule of this chain to match it.
    guard: Option<Guard>,
}

/// A chain's guard (see `chain_guard`): a field whose value cannot give
/// any of the chain's patterns a match is not run through the chain.
struct Guard {
    /// The shortest match of any of the chain's patterns.
    min_len: usize,
    /// A trie node and bytes: when the value at that node holds none of
    /// them, the chain's output holds none of the bytes its patterns need.
    bytes: Option<(usize, Box<[bool; 256]>)>,
}

impl ChainInfo {
    /// Can the chain's output for a raw value of `len` bytes be long
    /// enough for its guard?
    fn long_enough(&self, guard: &Guard, len: usize) -> bool {
        self.chain
            .transforms()
            .iter()
            .fold(len, |n, t| t.max_output_len(n))
            >= guard.min_len
    }
}

/// A node of the trie of chain prefixes: chains sharing a prefix
/// (`url_decode_uni` → `url_decode_uni, lowercase` → …) compute it once.
struct Node {
    /// `NONE` for the root (the raw value).
    parent: usize,
    transform: Option<crate::rules::transform::Transform>,
}

/// What the rule set does with a field of one kind (precomputed, so a
/// field only visits the chains and rules that can look at it).
#[derive(Default)]
struct KindPlan {
    /// Chains with a target of this kind, with those targets.
    chains: Vec<(usize, Vec<Target>)>,
    /// Indices into `RuleSet::checks`.
    checks: Vec<usize>,
    /// Negated pattern rules.
    negated: Vec<usize>,
    /// Bit per database that serves this kind.
    dbs: u64,
    /// Per plan position: does the chain look at every field of this kind
    /// (a target of it names none)? Otherwise it looks only at the fields
    /// its targets name.
    whole: Vec<bool>,
    /// Per chain (`RuleSet::chains` index): its position in `chains`, or
    /// `NOT_IN_PLAN`.
    pos: Vec<u32>,
}

const NOT_IN_PLAN: u32 = u32::MAX;

/// `RuleSet::rule_kinds` bits of a rule that sees a parsed body (see
/// [`RequestFacts::body_as_args`]) through its other fields: it looks at the
/// whole body, every body value, every argument name and every JSON key and
/// leaf. (A JSON key whose value is an empty object is a `json` field only.)
const ARGS_COVER: u32 = 1 << TargetKind::Body as usize
    | 1 << TargetKind::ArgsPost as usize
    | 1 << TargetKind::ArgsNames as usize
    | 1 << TargetKind::Json as usize;

/// In `field_dyn`: the chain's guard ruled the field out (no rule of the
/// chain can match it), so the chain did not run.
const SKIPPED: u32 = u32::MAX;

/// How a plan's chains treat a field, given its byte classes: the chains
/// none of whose transforms can change such a value (they all see the raw
/// value), and the others, which are run. Memoised per thread by (kind,
/// classes), so a field costs work in proportion to the chains that can
/// change it, not to all of them.
struct Shape {
    /// The chains that see the raw value are in the plan but not here.
    dynamic: Vec<u32>,
    /// Chains that leave the value unchanged but look only at the fields
    /// their targets name (plan positions).
    named_raw: Vec<u32>,
    /// Does a chain that looks at every field see the raw value unchanged?
    has_raw: bool,
    /// Databases the raw value is scanned with for those chains.
    raw_dbs: u64,
}

/// Where pass 1 left a field's values.
struct FieldSpan {
    /// Its distinct values (in `field_values`).
    values: std::ops::Range<usize>,
    /// Its changed chains' values (in `field_dyn`).
    dyns: std::ops::Range<usize>,
    /// Its raw value's entry, when a chain sees it.
    raw: usize,
    /// Not skipped by an exclusion or as clean, and its kind has a plan.
    active: bool,
    /// Its [`CleanFields`] key, when it may be kept as clean.
    clean_key: Option<u64>,
}

/// The memo key of a field's shape (mixed: the map trusts its keys' bits).
fn shape_key(kind: TargetKind, c: Classes) -> u64 {
    // The detectors' bits and `PUNCT` do not change a shape.
    use crate::rules::transform::class::{DETECTOR_BYTES, PUNCT, RARE_PUNCT};
    let c = c & !(DETECTOR_BYTES | PUNCT | RARE_PUNCT);
    ((kind as u64) << 32 | u64::from(c)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Shapes memoised per thread at most (a bound, not a working size: a
/// shape depends on a field's kind and which of ~17 byte classes it has).
const MAX_SHAPES: usize = 4096;

const KINDS: usize = TargetKind::ALL.len();
// `RuleSet::rule_kinds` holds a bit per kind.
const _: () = assert!(KINDS <= 32);

/// Does the chain change ordinary clean text (so its output is almost
/// always a value of its own)?
fn rewrites_clean_text(chain: &Chain) -> bool {
    use crate::rules::transform::Transform as T;
    chain.transforms().iter().any(|t| {
        matches!(
            t,
            T::Lowercase | T::RemoveWhitespace | T::Cmdline | T::Base64Decode | T::HexDecode
        )
    })
}

/// Can a target of kind `t` select a field of kind `f`?
fn kind_selects(t: TargetKind, f: TargetKind) -> bool {
    t == f || (t == TargetKind::Args && matches!(f, TargetKind::ArgsGet | TargetKind::ArgsPost))
}

/// A compiled, immutable rule set (`Send + Sync`), swapped whole on reload.
pub struct RuleSet {
    uid: u64,
    rules: Vec<Rule>,
    /// Effective mode per rule (global ∧ pack ∧ rule).
    modes: Vec<Mode>,
    /// Per rule: what a hit reports about it, built once (a hit shares
    /// these instead of formatting and copying them).
    labels: Vec<RuleLabels>,
    /// Distinct transform chains; `rule_chain[rule]` indexes it.
    chains: Vec<ChainInfo>,
    rule_chain: Vec<usize>,
    /// The pattern-type operators, in databases (see `compile`); a value is
    /// scanned once per database its chains use, and a pattern's hit counts
    /// only when its own chain produced the value.
    db_of_rule: Vec<usize>,
    dbs: Vec<Option<Db>>,
    /// Per chain: bit per database one of its rules is compiled into.
    chain_dbs: Vec<u64>,
    nodes: Vec<Node>,
    /// Indexed by `TargetKind as usize`.
    plans: Vec<KindPlan>,
    /// Native detectors and small operators, per rule.
    checks: Vec<(usize, Check)>,
    /// Per rule: bit per kind one of its targets selects whole (no name).
    rule_kinds: Vec<u32>,
    /// Bit per database whose rules all see a parsed body through its
    /// arguments ([`RequestFacts::body_as_args`]); such a body skips them.
    args_cover_dbs: u64,
    /// Bit per database each of whose patterns needs a byte that is not
    /// plain text (`transform::is_plain`): a value without one (most
    /// names, numbers and prose) is not scanned with it.
    gated_dbs: u64,
    /// Bit per database each of whose patterns needs a byte of rare
    /// punctuation (`transform::set_rarity` 2): a value without one
    /// (most prose, dates, ids, URLs) is not scanned with it. A subset of
    /// `gated_dbs`.
    rare_dbs: u64,
    /// Per chain: every rule of it that looks at `body` sees a parsed body
    /// through its arguments, so such a body is not run through it.
    args_cover_chain: Vec<bool>,
    exclusions: Vec<Exclusion>,
    threshold: u32,
    outbound_threshold: u32,
    hash: String,
    backend: Backend,
    /// What the load did with `waf.compile_cache` (`None`: no cache).
    cache_stats: Option<CacheStats>,
}

/// Per-thread scratch for evaluating a `RuleSet`; rebuilt when the set changes.
#[derive(Default)]
pub struct EngineScratch {
    uid: u64,
    /// One per database.
    scratch: Vec<Scratch>,
    /// Shapes (see [`Shape`]) by `shape_key`.
    shapes: Vec<Shape>,
    shape_of: std::collections::HashMap<u64, u32, std::hash::BuildHasherDefault<PassThrough>>,
    /// Batch scans: the joined values and the match ends reported.
    joined: Vec<u8>,
    ends: Vec<(u32, u32)>,
    /// A request's working lists, kept (empty) between requests so that
    /// a request does not allocate them again.
    bufs: Buffers,
    /// What earlier requests' recurring values were found to match.
    memo: Memo,
    /// Recurring fields found clean by earlier requests.
    clean: CleanFields,
}

/// Fields of the recurring kinds ([`MEMO_KINDS`]: header names and values,
/// argument and cookie names, the method and path) and JSON object keys
/// ([`Field::recurs`]) that an earlier request
/// of this thread found clean: no pattern matched any of the values its
/// chains produced, no detector found anything and no negated rule fired.
/// What a field scores is a function of its kind, name and value alone
/// (exclusions only take hits away), so such a field is skipped, not
/// evaluated again: a browser's dozen headers and a form's field names cost
/// a lookup. Slots are direct-mapped by the thread's keyed hash and hold
/// the bytes, which are compared (a hash match alone never skips a field);
/// a field with any hit, even one an exclusion or a shadow mode silenced,
/// is never kept. Emptied when the rule set changes.
#[derive(Default)]
struct CleanFields {
    /// Per slot, its key (0: empty): a dense array, so that a miss costs
    /// one read of it, not of the slot.
    keys: Vec<u64>,
    slots: Vec<CleanSlot>,
    /// Per slot, the bytes of a field longer than [`CLEAN_INLINE`].
    long: Vec<Vec<u8>>,
    hits: u64,
}

/// One cache line: a hit on a short field (a header or argument name, a
/// JSON key) reads it and nothing else.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct CleanSlot {
    kind: u8,
    name_len: u16,
    len: u16,
    /// Name then value, when they fit.
    inline: [u8; CLEAN_INLINE],
}

impl Default for CleanSlot {
    fn default() -> Self {
        CleanSlot {
            kind: 0,
            name_len: 0,
            len: 0,
            inline: [0; CLEAN_INLINE],
        }
    }
}

/// A name plus value this long or shorter is kept in its slot.
const CLEAN_INLINE: usize = 59;
const _: () = assert!(std::mem::size_of::<CleanSlot>() == 64);

/// A URI (`is_uri`) with a query string: per-request data, kept neither
/// in the [`Memo`] nor as a clean field (without one it is the path).
fn per_request_uri(is_uri: bool, value: &[u8]) -> bool {
    is_uri && value.contains(&b'?')
}

const CLEAN_SLOTS: usize = 4096;
/// A longer name plus value is not kept (a `User-Agent` or `Accept` fits).
const CLEAN_MAX: usize = 320;
const _: () = assert!(CLEAN_MAX <= u16::MAX as usize);

impl CleanFields {
    /// The key of `f`, when a field of its kind and size may be kept.
    fn key(f: &Field<'_>) -> Option<u64> {
        ((f.recurs || MEMO_KINDS & 1 << f.kind as usize != 0)
            && f.name.len() + f.value.len() <= CLEAN_MAX
            && !per_request_uri(f.kind == TargetKind::Uri, f.value))
        .then(|| {
            let n = value_hash(f.name);
            // A name field (`args_names`, `header_names`) is its own name.
            let v = if std::ptr::eq(f.name, f.value) {
                n
            } else {
                value_hash(f.value)
            };
            (n.rotate_left(17) ^ v).wrapping_add(f.kind as u64)
        })
    }

    /// Was `f` (whose key is `key`) found clean?
    fn has(&mut self, key: u64, f: &Field<'_>) -> bool {
        let i = key as usize % CLEAN_SLOTS;
        if self.keys.get(i) != Some(&key) {
            return false;
        }
        let found = self.slots.get(i).is_some_and(|s| {
            let (n, len) = (usize::from(s.name_len), usize::from(s.len));
            if s.kind != f.kind as u8 || n != f.name.len() || len != n + f.value.len() {
                return false;
            }
            let bytes = if len <= CLEAN_INLINE {
                &s.inline[..len]
            } else {
                match self.long.get(i) {
                    Some(b) if b.len() == len => &b[..],
                    _ => return false,
                }
            };
            bytes[..n] == *f.name && bytes[n..] == *f.value
        });
        self.hits += u64::from(found);
        found
    }

    fn keep(&mut self, key: u64, f: &Field<'_>) {
        if self.slots.is_empty() {
            self.slots = vec![CleanSlot::default(); CLEAN_SLOTS];
            self.keys = vec![0; CLEAN_SLOTS];
            self.long = vec![Vec::new(); CLEAN_SLOTS];
        }
        let i = key as usize % CLEAN_SLOTS;
        let (n, len) = (f.name.len(), f.name.len() + f.value.len());
        let (Some(k), Some(s), Some(long), Ok(name_len), Ok(total)) = (
            self.keys.get_mut(i),
            self.slots.get_mut(i),
            self.long.get_mut(i),
            u16::try_from(n),
            u16::try_from(len),
        ) else {
            return;
        };
        *k = key;
        s.kind = f.kind as u8;
        s.name_len = name_len;
        s.len = total;
        long.clear();
        if len <= CLEAN_INLINE {
            s.inline[..n].copy_from_slice(f.name);
            s.inline[n..len].copy_from_slice(f.value);
        } else {
            long.extend_from_slice(f.name);
            long.extend_from_slice(f.value);
        }
    }
}

/// Scan and detector results of short values that recur across requests
/// by nature (the method, the path, header names and values, argument and
/// cookie names), kept per thread: a site's `Host` or a browser's
/// `User-Agent` is scanned once, not on every request. Argument and cookie
/// values, query strings and bodies are not kept; they are scanned every
/// time. What a value matches is a function of its bytes, the databases
/// it is scanned with and the kinds of field it came in (the batch filter
/// looks at them), so a slot answers only for the same three; the memo is
/// emptied when the rule set changes. A value is admitted on its second
/// sighting (a one-off value does not evict a recurring one), and slots are
/// direct-mapped by the thread's keyed hash (crafted values cannot aim at
/// a slot), so a lookup or a miss costs a compare.
#[derive(Default)]
struct Memo {
    slots: Vec<MemoSlot>,
    /// Hashes of values seen once (by `MEMO_SEEN` slot).
    seen: Vec<u64>,
    /// Entries served from the memo (tests look at it).
    hits: u64,
}

#[derive(Default)]
struct MemoSlot {
    used: bool,
    hash: u64,
    needs: u64,
    kinds: u32,
    value: Vec<u8>,
    matched: Vec<usize>,
    natives_run: u8,
    natives_found: Vec<(Native, Detection)>,
}

const MEMO_SLOTS: usize = 1024;
const MEMO_SEEN: usize = 4096;
/// Longer values are not kept (a `User-Agent` or `Accept` fits).
const MEMO_MAX_VALUE: usize = 256;
/// Kinds of field whose values recur across requests.
const MEMO_KINDS: u32 = {
    use TargetKind::*;
    let kinds = [
        Path,
        Uri,
        Method,
        Headers,
        HeaderNames,
        CookieNames,
        ArgsNames,
        ResponseStatus,
        ResponseHeaders,
    ];
    let mut m = 0u32;
    let mut i = 0;
    while i < kinds.len() {
        m |= 1 << kinds[i] as usize;
        i += 1;
    }
    m
};

impl Memo {
    /// Can `entry`'s results be kept? Only a value some field needed (a
    /// transform's intermediate output is not one); a URI only without a
    /// query string (then it is the path).
    fn keeps(entry: &CachedValue<'_>) -> bool {
        !entry.error
            && entry.kinds != 0
            && entry.kinds & !MEMO_KINDS == 0
            && entry.value.len() <= MEMO_MAX_VALUE
            && !per_request_uri(
                entry.kinds & 1 << TargetKind::Uri as usize != 0,
                entry.value.as_ref(),
            )
    }

    fn slot(&mut self, entry: &CachedValue<'_>) -> Option<&mut MemoSlot> {
        let slot = self.slots.get_mut(entry.hash as usize % MEMO_SLOTS)?;
        (slot.used
            && slot.hash == entry.hash
            && slot.needs == entry.needs
            && slot.kinds == entry.kinds
            && slot.value[..] == entry.value[..])
            .then_some(slot)
    }

    /// Fills `entry` from its slot, if it has one.
    fn recall(&mut self, entry: &mut CachedValue<'_>) -> bool {
        let Some(slot) = self.slot(entry) else {
            return false;
        };
        entry.matched.clone_from(&slot.matched);
        entry.natives_run = slot.natives_run;
        entry.natives_found.clone_from(&slot.natives_found);
        entry.recalled = true;
        self.hits += 1;
        true
    }

    /// Keeps what was found in `entry` (see [`Memo`] for which values).
    fn keep(&mut self, entry: &CachedValue<'_>) {
        if self.slots.is_empty() {
            self.slots.resize_with(MEMO_SLOTS, MemoSlot::default);
            self.seen = vec![0; MEMO_SEEN];
        }
        if entry.recalled {
            // Detectors run since it was kept are kept too.
            if let Some(slot) = self.slot(entry)
                && entry.natives_run & !slot.natives_run != 0
            {
                slot.natives_run = entry.natives_run;
                slot.natives_found.clone_from(&entry.natives_found);
            }
            return;
        }
        let i = entry.hash as usize % MEMO_SLOTS;
        let s = (entry.hash >> 32) as usize % MEMO_SEEN;
        let (Some(seen), Some(slot)) = (self.seen.get_mut(s), self.slots.get_mut(i)) else {
            return;
        };
        if *seen != entry.hash {
            *seen = entry.hash;
            return;
        }
        *seen = 0;
        slot.used = true;
        slot.hash = entry.hash;
        slot.needs = entry.needs;
        slot.kinds = entry.kinds;
        slot.value.clear();
        slot.value.extend_from_slice(&entry.value);
        slot.matched.clone_from(&entry.matched);
        slot.natives_run = entry.natives_run;
        slot.natives_found.clone_from(&entry.natives_found);
    }
}

/// See [`EngineScratch::bufs`]. The value cache's entries borrow the
/// request, so its list is kept as an empty list of another lifetime
/// (turned back in place, without copying or allocating).
#[derive(Default)]
struct Buffers {
    entries: Vec<CachedValue<'static>>,
    index: std::collections::HashMap<u64, usize, std::hash::BuildHasherDefault<PassThrough>>,
    field_values: Vec<u32>,
    field_dyn: Vec<(u32, u32)>,
    spans: Vec<FieldSpan>,
    node_val: Vec<NodeVal>,
    applied: Vec<(usize, Transform, usize)>,
    /// Per database, the entries it is to scan (see `ValueCache::members`).
    members: Vec<Vec<usize>>,
    starts: Vec<usize>,
    candidate: Vec<bool>,
}

/// Lists longer than this are not kept between requests (a rare huge
/// request should not pin its memory in every worker thread).
const KEEP_BUFFER: usize = 8192;

/// An empty `Vec` of another element type, reusing `v`'s allocation when
/// the layouts agree (std collects a vector's own iterator in place).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

const NONE: usize = usize::MAX;

/// One rule that fired on one field.
/// A rule's name, pack, tags and transform chain as hits report them.
struct RuleLabels {
    name: Arc<str>,
    pack: Arc<str>,
    tags: Arc<[String]>,
    transforms: Arc<str>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub rule_id: u32,
    pub rule_name: Arc<str>,
    /// The pack's file stem, e.g. `sqli`.
    pub pack: Arc<str>,
    pub severity: &'static str,
    pub score: u32,
    pub mode: Mode,
    pub tags: Arc<[String]>,
    /// `kind` or `kind:name`, e.g. `args:q`.
    pub target: String,
    pub transforms: Arc<str>,
    /// The transformed value (first `EXCERPT_BYTES` bytes, lossy UTF-8).
    pub excerpt: String,
    /// What a native detector found, if one fired.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Block,
}

#[derive(Debug, Clone)]
pub struct Evaluation {
    pub hits: Vec<Hit>,
    /// Sum of the scores of hits in `block` mode.
    pub score: u32,
    /// Sum of the scores of hits in `detect` mode (what would have blocked).
    pub detect_score: u32,
    pub verdict: Verdict,
    /// Values that could not be inspected (a matcher error): the caller must
    /// treat the request as not inspected (`fail closed` by default).
    pub errors: Vec<String>,
}

impl Evaluation {
    pub fn blocking_rule_ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self
            .hits
            .iter()
            .filter(|h| h.mode == Mode::Block)
            .map(|h| h.rule_id)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }
}

/// A trie node's value for the current field.
enum NodeVal {
    Unset,
    /// Equal to the value of that node (the root's is the input).
    Same(usize),
    /// A new value, interned in the request's value cache.
    Entry(usize),
}

/// The distinct transformed values of one request.
#[derive(Default)]
struct ValueCache<'a> {
    entries: Vec<CachedValue<'a>>,
    /// Content hash → first entry with that hash (the rest are linked
    /// through `CachedValue::next`).
    index: std::collections::HashMap<u64, usize, std::hash::BuildHasherDefault<PassThrough>>,
    /// Per database, the entries that need it, in the order they came to
    /// (so the scan pass does not walk every entry once per database).
    members: Vec<Vec<usize>>,
    /// [`RuleSet::gated_dbs`].
    gated: u64,
    /// [`RuleSet::rare_dbs`].
    rare: u64,
}

struct CachedValue<'a> {
    value: Cow<'a, [u8]>,
    /// `value_hash(value)`.
    hash: u64,
    /// Its results came from the memo (see [`Memo`]): not scanned again.
    recalled: bool,
    /// The next entry with the same hash, or `NONE`.
    next: usize,
    /// Bit per database: to be scanned with it (a chain of a field that
    /// produced this value uses it).
    needs: u64,
    /// The first field that needs it scanned (to label a scan error).
    field: usize,
    /// Rules whose pattern matched (sorted, deduplicated).
    matched: Vec<usize>,
    /// Byte classes of `value` (which transforms can change it).
    classes: Classes,
    /// Bit per kind of the fields that need it scanned.
    kinds: u32,
    error: bool,
    /// Per native detector, once run.
    /// Bit per native detector: run yet?
    natives_run: u8,
    /// What the detectors that ran found (rarely any).
    natives_found: Vec<(Native, Detection)>,
    /// Transforms already applied to this value, with the entry each
    /// produced (its own index: unchanged), so a value that recurs in
    /// another field (a JSON leaf is also an `args_post` field) is not
    /// transformed again. The first `n_derived` are set.
    derived: [(u32, Transform); DERIVED],
    n_derived: u8,
}

/// Transforms remembered per value (see `CachedValue::derived`); a value
/// rewritten by more is transformed again for a later field, as before.
const DERIVED: usize = 6;

impl CachedValue<'_> {
    fn derived(&self, t: Transform) -> Option<usize> {
        self.derived[..usize::from(self.n_derived)]
            .iter()
            .find(|(_, u)| *u == t)
            .map(|&(r, _)| r as usize)
    }

    fn remember(&mut self, t: Transform, result: usize) {
        if let Some(slot) = self.derived.get_mut(usize::from(self.n_derived)) {
            *slot = (result as u32, t);
            self.n_derived += 1;
        }
    }
}

/// The map's keys are already hashes (keyed per thread, see `value_hash`,
/// so crafted values cannot pile up in one chain).
#[derive(Default)]
struct PassThrough(u64);

impl std::hash::Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

thread_local! {
    /// Random per thread: value hashes cannot be predicted from outside.
    static VALUE_KEYS: (u64, u64) = {
        use std::hash::BuildHasher;
        let s = std::hash::RandomState::new();
        (s.hash_one(1u8) | 1, s.hash_one(2u8))
    };
}

/// A keyed hash of a value (folded 64×64→128 multiplies over 16-byte
/// blocks, as foldhash and ahash do): several times faster than SipHash on
/// the short values a request is made of, and still keyed per thread.
fn value_hash(v: &[u8]) -> u64 {
    #[inline]
    fn fold(a: u64, b: u64) -> u64 {
        let p = u128::from(a).wrapping_mul(u128::from(b));
        (p as u64) ^ ((p >> 64) as u64)
    }
    let (k0, k1) = VALUE_KEYS.with(|k| *k);
    let mut h = k0 ^ (v.len() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut blocks = v.chunks_exact(16);
    for b in &mut blocks {
        let (x, y) = b.split_at(8);
        let x = u64::from_le_bytes(x.try_into().unwrap_or_default());
        let y = u64::from_le_bytes(y.try_into().unwrap_or_default());
        h = fold(x ^ k1, y ^ h);
    }
    let rest = blocks.remainder();
    if !rest.is_empty() {
        let mut tail = [0u8; 16];
        tail[..rest.len()].copy_from_slice(rest);
        let x = u64::from_le_bytes([
            tail[0], tail[1], tail[2], tail[3], tail[4], tail[5], tail[6], tail[7],
        ]);
        let y = u64::from_le_bytes([
            tail[8], tail[9], tail[10], tail[11], tail[12], tail[13], tail[14], tail[15],
        ]);
        h = fold(x ^ k1, y ^ h);
    }
    fold(h, k0)
}

impl<'a> ValueCache<'a> {
    /// Entry `e` is to be scanned with databases `dbs`, for field `fi`
    /// (the first such field labels a scan error).
    fn need(&mut self, e: usize, dbs: u64, fi: usize, kind: TargetKind) {
        let entry = &mut self.entries[e];
        // A plain value cannot match a pattern that needs a byte it lacks,
        // nor a value without rare punctuation one that needs such a byte.
        use crate::rules::transform::class::{PUNCT, RARE_PUNCT};
        let dbs = if entry.classes & PUNCT == 0 {
            dbs & !self.gated
        } else if entry.classes & RARE_PUNCT == 0 {
            dbs & !self.rare
        } else {
            dbs
        };
        let mut new = dbs & !entry.needs;
        entry.needs |= dbs;
        entry.kinds |= 1 << kind as usize;
        if entry.field == NONE {
            entry.field = fi;
        }
        while new != 0 {
            let d = new.trailing_zeros() as usize;
            new &= new - 1;
            if let Some(list) = self.members.get_mut(d) {
                list.push(e);
            }
        }
    }

    /// A field's raw value's entry: `known` when the field before had the
    /// same bytes (`NONE` otherwise), else looked up or added.
    fn intern_raw(&mut self, known: usize, value: &'a [u8], cls: Classes) -> usize {
        if known == NONE {
            self.intern(Cow::Borrowed(value), cls)
        } else {
            known
        }
    }

    /// The entry of `value` (whose byte classes are `cls`), added if new.
    fn intern(&mut self, value: Cow<'a, [u8]>, cls: Classes) -> usize {
        let key = value_hash(&value);
        let head = self.index.get(&key).copied().unwrap_or(NONE);
        let mut e = head;
        while e != NONE {
            if self.entries[e].value == value {
                return e;
            }
            e = self.entries[e].next;
        }
        self.entries.push(CachedValue {
            classes: cls,
            value,
            hash: key,
            recalled: false,
            next: head,
            needs: 0,
            field: NONE,
            matched: Vec::new(),
            error: false,
            natives_run: 0,
            kinds: 0,
            natives_found: Vec::new(),
            derived: [(0, Transform::Trim); DERIVED],
            n_derived: 0,
        });
        let id = self.entries.len() - 1;
        self.index.insert(key, id);
        id
    }
}

impl EngineScratch {
    /// Values whose results came from earlier requests (see [`Memo`]).
    pub fn memo_hits(&self) -> u64 {
        self.memo.hits
    }

    /// Fields skipped because an earlier request found them clean (see
    /// [`CleanFields`]).
    pub fn clean_hits(&self) -> u64 {
        self.clean.hits
    }

    /// Fits the scratch to `set` (once per thread per rule set).
    fn fit(&mut self, set: &RuleSet) {
        if self.uid != set.uid {
            self.uid = set.uid;
            self.scratch = set.dbs.iter().map(|_| Scratch::default()).collect();
            self.shapes.clear();
            self.shape_of.clear();
            self.memo = Memo::default();
            self.clean = CleanFields::default();
        }
    }
}

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

impl RuleSet {
    /// Compiles packs into a rule set. Every problem is returned at once,
    /// located at the rule that caused it.
    pub fn compile(packs: &[Pack], settings: &EngineSettings) -> Result<RuleSet, ConfigErrors> {
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut modes: Vec<Mode> = Vec::new();
        let mut seen: BTreeMap<u32, (String, usize)> = BTreeMap::new();
        let mut exclusions = settings.exclusions.clone();
        let mut hasher = Fnv::default();
        for p in packs {
            hasher.write(p.name.as_bytes());
            exclusions.extend(p.exclusions.iter().cloned());
            for r in &p.rules {
                if let Some((f, l)) = seen.get(&r.id) {
                    errors.push(err_at(
                        r,
                        format!("rule id {} is also defined at {f}:{l}", r.id),
                    ));
                    continue;
                }
                seen.insert(r.id, (r.file.display().to_string(), r.line));
                hasher.write(format!("{r:?}").as_bytes());
                if r.paranoia > settings.paranoia {
                    continue;
                }
                modes.push(narrow(narrow(settings.mode, p.mode), r.mode));
                rules.push(r.clone());
            }
        }

        // Response-phase rules are compiled too (their targets never select
        // request fields): a broken response pattern is a load error, and
        // their inline tests run like any other.
        let mut chain_index: BTreeMap<Chain, usize> = BTreeMap::new();
        let mut chains: Vec<ChainInfo> = Vec::new();
        let mut rule_chain = Vec::with_capacity(rules.len());
        for r in &rules {
            let chain = Chain::new(r.transforms.clone());
            let ci = *chain_index.entry(chain.clone()).or_insert_with(|| {
                chains.push(ChainInfo {
                    chain,
                    targets: Vec::new(),
                    node: 0,
                    guard: None,
                });
                chains.len() - 1
            });
            chains[ci].targets.extend(r.targets.iter().cloned());
            rule_chain.push(ci);
        }
        for c in &mut chains {
            c.targets.sort();
            c.targets.dedup();
        }
        // Which rules share a database. Hyperscan: every rule that looks at
        // argument-like fields (values, JSON, XML, cookies, bodies) in one,
        // whatever its chain, so such a value is scanned once; rules that
        // look only at narrow fields (the path, one header, names) in small
        // databases per kind set, so their patterns cost nothing on the
        // other fields. Pure backend: one database per chain, whose lazy
        // DFA thrashes on a union of every pattern (measured: 100x slower).
        // At most 64 databases: a value records the ones it needs in a
        // u64 (`CachedValue::needs`, also a memo key).
        let kind_mask = |r: &Rule| {
            TargetKind::ALL
                .iter()
                .enumerate()
                .filter(|(_, k)| r.targets.iter().any(|t| kind_selects(t.kind, **k)))
                .fold(0u32, |m, (i, _)| m | 1 << i)
        };
        let broad = [
            TargetKind::ArgsGet,
            TargetKind::ArgsPost,
            TargetKind::Json,
            TargetKind::Xml,
            TargetKind::Cookies,
            TargetKind::Body,
            TargetKind::FilesContent,
        ]
        .iter()
        .fold(0u32, |m, k| m | 1 << (*k as usize));
        // Database keys: (kind mask of a narrow rule, or 1 = arguments,
        // 2 = bodies; chain, or MAX for the shared ones; gate level). Key 0
        // is the main argument database.
        let mut groups: Vec<(u32, usize, u8)> = vec![(1, usize::MAX, 0)];
        // A rule each of whose patterns needs a byte that plain text does
        // not have (a quote, a bracket, an operator: most injection
        // patterns) goes to a gated database, apart from the others:
        // a plain value is not scanned with it. Measured on the 32 KB form
        // (plain values): the main argument database's scan fell from ~105
        // to ~36 us, since the patterns that cost most there (`or`/`and`
        // in prose starting SQL patterns that then need a quote, a bracket
        // or an operator; control-byte and `$var` classes that change how
        // Hyperscan builds the whole database) all need such a byte.
        // Counting `-` and `.` as plain too brought the slow build back.
        // Level 2 (a database of its own) when each pattern needs a byte of
        // rare punctuation (`transform::set_rarity`): prose with commas and
        // full stops, dates, ids and URLs skip it too. Measured on a 32 KB form of prose with a
        // comma per value: the level-1 database took ~340 us (`more` or
        // `less` in prose starting the shell-escape pattern of 932185,
        // which then needs `!`); now such values skip it.
        let gated: Vec<u8> = rules
            .iter()
            .map(|r| {
                let kinds = pattern_kinds(&r.operator);
                if settings.backend == Backend::Pure || kinds.is_empty() {
                    return 0;
                }
                kinds
                    .into_iter()
                    .map(|kind| {
                        let spec = PatternSpec {
                            id: 0,
                            kind,
                            caseless: r.caseless,
                        };
                        matcher::pattern_needs(&spec)
                            .and_then(|n| {
                                n.all.iter().map(crate::rules::transform::set_rarity).max()
                            })
                            .unwrap_or(0)
                    })
                    .min()
                    .unwrap_or(0)
            })
            .collect();
        // A broad rule that also looks at bodies (`body`, `files_content`)
        // is compiled twice: into the argument database for its argument
        // kinds and into a body database for the body kinds, so a raw body
        // is scanned by the few patterns that want it, not by all of them.
        let body_class =
            (1u32 << TargetKind::Body as usize) | (1 << TargetKind::FilesContent as usize);
        // Likewise the raw URI and query string (each also URL-decoded):
        // they repeat the arguments, which the argument database scans
        // anyway, so they are scanned by the few patterns that want them
        // (measured: ~600 of the 750 bytes the argument database scanned
        // for a 10-argument query).
        let uri_class = (1u32 << TargetKind::Uri as usize) | (1 << TargetKind::Query as usize);
        // The body part of a rule that sees a parsed body through its
        // arguments goes to a database of its own (class 4), which such a
        // body skips (see `RequestFacts::body_as_args`); upload contents
        // (class 5) are apart from raw bodies, so neither is scanned by the
        // other's patterns.
        let body_bit = 1u32 << TargetKind::Body as usize;
        let files_bit = 1u32 << TargetKind::FilesContent as usize;
        // (database, kinds it serves for this rule), per rule.
        let rule_kinds: Vec<u32> = rules
            .iter()
            .map(|r| {
                TargetKind::ALL
                    .iter()
                    .filter(|&&kind| {
                        r.targets
                            .iter()
                            .any(|t| t.name.is_none() && kind_selects(t.kind, kind))
                    })
                    .fold(0u32, |m, &kind| m | 1 << kind as usize)
            })
            .collect();
        let covers = |ri: usize| rule_kinds[ri] & ARGS_COVER == ARGS_COVER;
        let memberships: Vec<Vec<(usize, u32)>> = rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let m = kind_mask(r);
                if settings.backend == Backend::Pure {
                    return vec![(rule_chain[i] % 64, m)];
                }
                // Broad rules whose chain leaves clean text as it is share
                // the main databases; the rules of chains that rewrite
                // almost every value (lowercase, whitespace removal,
                // command-line folding, base64/hex) share a second one, so
                // those outputs are not scanned by every pattern of the main
                // one. (Values are scanned in batches, so a database costs
                // a pass over the request's values: few databases, each
                // with the patterns that belong together.)
                let chain = if rewrites_clean_text(&chains[rule_chain[i]].chain) {
                    usize::MAX - 1
                } else {
                    usize::MAX
                };
                let parts: Vec<((u32, usize, u8), u32)> = if m & broad == 0 {
                    vec![((m, usize::MAX, 0), m)]
                } else {
                    let body = if covers(i) { 4u32 } else { 2 };
                    [
                        (m & !body_class & !uri_class, 1u32),
                        (m & body_bit, body),
                        (m & files_bit, 5),
                        (m & uri_class, 3u32),
                    ]
                    .into_iter()
                    .filter(|(k, _)| *k != 0)
                    .map(|(k, class)| {
                        // Only the big databases are split: a split costs
                        // a value that has such a byte one more scan call,
                        // and a URI always has one.
                        let gate = if chain == usize::MAX && class != 3 {
                            gated[i]
                        } else {
                            0
                        };
                        ((class, chain, gate), k)
                    })
                    .collect()
                };
                parts
                    .into_iter()
                    .map(|(key, kinds)| {
                        let d = match groups.iter().position(|g| *g == key) {
                            Some(d) => d,
                            None if groups.len() < 64 => {
                                groups.push(key);
                                groups.len() - 1
                            }
                            None => 0,
                        };
                        (d, kinds)
                    })
                    .collect()
            })
            .collect();
        let args_cover_dbs = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.0 == 4 && settings.backend != Backend::Pure)
            .fold(0u64, |m, (d, _)| m | 1 << d);
        let gated_dbs = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.2 >= 1)
            .fold(0u64, |m, (d, _)| m | 1 << d);
        let rare_dbs = groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.2 >= 2)
            .fold(0u64, |m, (d, _)| m | 1 << d);
        let n_dbs = memberships
            .iter()
            .flatten()
            .map(|(d, _)| d + 1)
            .max()
            .unwrap_or(0);
        let mut specs: Vec<Vec<PatternSpec>> = vec![Vec::new(); n_dbs];
        let mut db_rules: Vec<Vec<usize>> = vec![Vec::new(); n_dbs];
        let mut db_kinds: Vec<u32> = vec![0; n_dbs];
        for &(d, k) in memberships.iter().flatten() {
            db_kinds[d] |= k;
        }
        let mut negated = Vec::new();
        let mut checks = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            let mut push = |kind: PatternKind| {
                for &(d, _) in &memberships[i] {
                    specs[d].push(PatternSpec {
                        id: db_rules[d].len() as u32,
                        kind: kind.clone(),
                        caseless: r.caseless,
                    });
                    db_rules[d].push(i);
                }
            };
            for kind in pattern_kinds(&r.operator) {
                push(kind);
            }
            match &r.operator {
                Operator::Regex(_)
                | Operator::Phrases(_)
                | Operator::Contains(_)
                | Operator::StartsWith(_)
                | Operator::Equals(_) => {}
                Operator::Sqli => checks.push((i, Check::Native(Native::Sqli))),
                Operator::SqliPath => checks.push((i, Check::Native(Native::SqliPath))),
                Operator::Xss => checks.push((i, Check::Native(Native::Xss))),
                Operator::Cmdi => checks.push((i, Check::Native(Native::Cmdi))),
                Operator::CmdiPath => checks.push((i, Check::Native(Native::CmdiPath))),
                Operator::Base64Payload => checks.push((i, Check::Native(Native::Base64))),
                Operator::PathTraversal => checks.push((i, Check::Native(Native::Path))),
                Operator::IpIn(n) => checks.push((i, Check::IpIn(n.clone()))),
                Operator::LengthGt(n) => checks.push((i, Check::LengthGt(*n))),
            }
            if r.negate && is_pattern(&r.operator) {
                negated.push(i);
            }
        }
        let mut dbs = Vec::new();
        // Only Hyperscan databases are cached: a pure-backend load neither
        // reads nor prunes the directory.
        let cache = match settings.backend {
            #[cfg(feature = "hyperscan")]
            Backend::Hyperscan => settings.cache_dir.as_ref().map(DbCache::new),
            _ => None,
        };
        let compiled = compile_all(&specs, settings.backend, cache.as_ref());
        for (((compiled, pattern_rule), kinds_in), db_specs) in
            compiled.into_iter().zip(db_rules).zip(db_kinds).zip(&specs)
        {
            let Some(compiled) = compiled else {
                dbs.push(None);
                continue;
            };
            let mut chains_in = vec![false; chains.len()];
            for &ri in &pattern_rule {
                chains_in[rule_chain[ri]] = true;
            }
            match compiled {
                Ok(matcher) => dbs.push(Some(Db {
                    matcher,
                    filters: db_specs
                        .iter()
                        .zip(&pattern_rule)
                        .map(|(spec, &ri)| pattern_filter(spec, kind_mask(&rules[ri])))
                        .collect(),
                    pattern_rule,
                    chains: chains_in,
                    kinds: kinds_in,
                })),
                Err(e) => {
                    let r = &rules[pattern_rule.get(e.id as usize).copied().unwrap_or(0)];
                    errors.push(err_at(
                        r,
                        format!(
                            "pattern cannot be compiled by the {} matcher: {}",
                            settings.backend, e.message
                        ),
                    ));
                    dbs.push(None);
                }
            }
        }
        // The trie of chain prefixes; node 0 is the raw value.
        let mut nodes = vec![Node {
            parent: NONE,
            transform: None,
        }];
        let mut node_of: BTreeMap<Vec<crate::rules::transform::Transform>, usize> = BTreeMap::new();
        for c in &mut chains {
            let mut at = 0;
            let ts = c.chain.transforms();
            for k in 0..ts.len() {
                at = *node_of.entry(ts[..=k].to_vec()).or_insert_with(|| {
                    nodes.push(Node {
                        parent: at,
                        transform: Some(ts[k]),
                    });
                    nodes.len() - 1
                });
            }
            c.node = at;
        }
        for (ci, c) in chains.iter_mut().enumerate() {
            let of_chain: Vec<&Rule> = (0..rules.len())
                .filter(|&ri| rule_chain[ri] == ci)
                .map(|ri| &rules[ri])
                .collect();
            c.guard = chain_guard(c, &of_chain, &nodes);
        }
        let mut plans: Vec<KindPlan> = (0..KINDS).map(|_| KindPlan::default()).collect();
        for kind in TargetKind::ALL {
            let plan = &mut plans[kind as usize];
            for (ci, c) in chains.iter().enumerate() {
                let ts: Vec<Target> = c
                    .targets
                    .iter()
                    .filter(|t| kind_selects(t.kind, kind))
                    .cloned()
                    .collect();
                if !ts.is_empty() {
                    plan.chains.push((ci, ts));
                }
            }
            let looks = |ri: usize| rules[ri].targets.iter().any(|t| kind_selects(t.kind, kind));
            plan.checks = (0..checks.len()).filter(|&k| looks(checks[k].0)).collect();
            plan.negated = negated.iter().copied().filter(|&ri| looks(ri)).collect();
            plan.dbs = dbs
                .iter()
                .enumerate()
                .filter(|(_, db)| {
                    db.as_ref()
                        .is_some_and(|db| db.kinds & 1 << kind as usize != 0)
                })
                .fold(0u64, |m, (d, _)| m | 1 << d);
            plan.whole = plan
                .chains
                .iter()
                .map(|(_, ts)| ts.iter().any(|t| t.name.is_none()))
                .collect();
            plan.pos = vec![NOT_IN_PLAN; chains.len()];
            for (k, (ci, _)) in plan.chains.iter().enumerate() {
                plan.pos[*ci] = k as u32;
            }
        }
        let args_cover_chain: Vec<bool> = (0..chains.len())
            .map(|ci| {
                (0..rules.len())
                    .filter(|&ri| rule_chain[ri] == ci)
                    .filter(|&ri| rules[ri].targets.iter().any(|t| t.kind == TargetKind::Body))
                    .all(covers)
            })
            .collect();
        let chain_dbs: Vec<u64> = (0..chains.len())
            .map(|ci| {
                dbs.iter()
                    .enumerate()
                    .filter(|(_, db)| db.as_ref().is_some_and(|db| db.chains[ci]))
                    .fold(0u64, |m, (d, _)| m | 1 << d)
            })
            .collect();
        if !errors.is_empty() {
            errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
            return Err(ConfigErrors(errors));
        }
        hasher.write(&settings.paranoia.to_le_bytes());
        // The databases of packs or settings no longer loaded go; a set
        // that failed to load leaves the cache as it was.
        let cache_stats = cache.map(|c| {
            c.prune();
            c.stats()
        });
        let labels = rules
            .iter()
            .zip(&rule_chain)
            .map(|(r, &ci)| RuleLabels {
                name: r.name.as_str().into(),
                pack: r
                    .file
                    .file_stem()
                    .map_or_else(String::new, |s| s.to_string_lossy().into_owned())
                    .into(),
                tags: r.tags.clone().into(),
                transforms: chains[ci].chain.to_string().into(),
            })
            .collect();
        Ok(RuleSet {
            uid: NEXT_UID.fetch_add(1, Ordering::Relaxed),
            rules,
            modes,
            labels,
            chains,
            rule_chain,
            db_of_rule: memberships
                .iter()
                .map(|m| m.first().map_or(0, |(d, _)| *d))
                .collect(),
            dbs,
            chain_dbs,
            nodes,
            plans,
            checks,
            rule_kinds,
            args_cover_dbs,
            gated_dbs,
            rare_dbs,
            args_cover_chain,
            exclusions,
            threshold: settings.inbound_threshold,
            outbound_threshold: settings.outbound_threshold,
            hash: format!("{:016x}", hasher.0),
            backend: settings.backend,
            cache_stats,
        })
    }

    /// Number of rules compiled in (after paranoia filtering).
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// A stable hash of the packs and settings (for `portcullis_ruleset_info`).
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// What this set's load did with the compiled-rules cache (`None`
    /// when none is configured).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache_stats
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The inbound anomaly threshold.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The outbound (response-phase) anomaly threshold.
    pub fn outbound_threshold(&self) -> u32 {
        self.outbound_threshold
    }

    /// Does any rule look at fields of this kind (e.g. `ResponseBody`)?
    pub fn looks_at(&self, kind: TargetKind) -> bool {
        self.plans
            .get(kind as usize)
            .is_some_and(|p| !p.chains.is_empty())
    }

    /// Evaluates the request-phase rules against `fields` (the verdict
    /// against the inbound threshold).
    pub fn evaluate(
        &self,
        fields: &[Field<'_>],
        facts: &RequestFacts<'_>,
        scratch: &mut EngineScratch,
    ) -> Evaluation {
        self.evaluate_against(fields, facts, scratch, self.threshold)
    }

    /// Evaluates the response-phase rules against response fields
    /// (`response_status`, `response_headers`, `response_body`); the
    /// verdict is against the outbound threshold.
    pub fn evaluate_response(
        &self,
        fields: &[Field<'_>],
        facts: &RequestFacts<'_>,
        scratch: &mut EngineScratch,
    ) -> Evaluation {
        self.evaluate_against(fields, facts, scratch, self.outbound_threshold)
    }

    fn evaluate_against(
        &self,
        fields: &[Field<'_>],
        facts: &RequestFacts<'_>,
        scratch: &mut EngineScratch,
        threshold: u32,
    ) -> Evaluation {
        scratch.fit(self);
        let excl = self.active_exclusions(facts);
        let mut hits = Vec::new();
        let mut errors = Vec::new();
        let Buffers {
            entries,
            mut index,
            mut field_values,
            mut field_dyn,
            mut spans,
            mut node_val,
            mut applied,
            mut members,
            mut starts,
            mut candidate,
        } = std::mem::take(&mut scratch.bufs);
        index.clear();
        field_values.clear();
        field_dyn.clear();
        spans.clear();
        members.resize_with(self.dbs.len(), Vec::new);
        for list in &mut members {
            list.clear();
        }
        let EngineScratch {
            scratch: ms,
            shapes,
            shape_of,
            ends,
            joined,
            memo,
            clean,
            ..
        } = scratch;
        let body_as_args = facts.body_as_args;
        let wants = |ri: usize, f: &Field<'_>| {
            if body_as_args
                && f.kind == TargetKind::Body
                && self.rule_kinds[ri] & ARGS_COVER == ARGS_COVER
            {
                return false;
            }
            self.rule_kinds[ri] & 1 << f.kind as usize != 0
                || self.rules[ri].targets.iter().any(|t| selects(t, f))
        };
        // Every distinct transformed value of the request, with what the
        // databases and detectors found in it: a JSON leaf is also an
        // `args_post` field, a header value often repeats, and most chains
        // leave a clean value unchanged, so each is scanned once.
        let mut cache = ValueCache {
            entries: recycle(entries),
            index,
            members,
            gated: self.gated_dbs,
            rare: self.rare_dbs,
        };
        // Pass 1: each field's chain outputs: its distinct values, and the
        // value of each chain that a transform could change or that looks
        // only at named fields (`field_dyn`, by plan position); the other
        // chains see the raw value.
        let mut spare_shape = None;
        // The last field's value, its classes and raw entry: a JSON leaf's
        // `args_post` copy follows it with the same bytes.
        let mut prev: Option<(&[u8], Classes, usize)> = None;
        for (fi, f) in fields.iter().enumerate() {
            let mut span = FieldSpan {
                values: field_values.len()..field_values.len(),
                dyns: field_dyn.len()..field_dyn.len(),
                raw: NONE,
                active: false,
                clean_key: None,
            };
            let plan = match self.plans.get(f.kind as usize) {
                Some(plan) if !excl.skips_target(f) => plan,
                _ => {
                    spans.push(span);
                    continue;
                }
            };
            span.clean_key = CleanFields::key(f);
            if let Some(key) = span.clean_key
                && clean.has(key, f)
            {
                span.clean_key = None;
                spans.push(span);
                continue;
            }
            // A parsed body is not scanned for the rules that see it
            // through its arguments.
            let (db_mask, covered) = if body_as_args && f.kind == TargetKind::Body {
                (!self.args_cover_dbs, &self.args_cover_chain[..])
            } else {
                (u64::MAX, &[][..])
            };
            let (raw_classes, known_raw) = match prev {
                Some((v, c, e)) if std::ptr::eq(v, f.value) => (c, e),
                _ => (classes(f.value), NONE),
            };
            let key = shape_key(f.kind, raw_classes);
            let shape = match shape_of.get(&key) {
                Some(&i) => &shapes[i as usize],
                None if shapes.len() < MAX_SHAPES => {
                    shape_of.insert(key, shapes.len() as u32);
                    shapes.push(self.shape(plan, raw_classes));
                    &shapes[shapes.len() - 1]
                }
                None => spare_shape.insert(self.shape(plan, raw_classes)),
            };
            let mut raw_entry = NONE;
            if shape.has_raw {
                raw_entry = cache.intern_raw(known_raw, f.value, raw_classes);
                cache.need(raw_entry, shape.raw_dbs & db_mask, fi, f.kind);
                field_values.push(raw_entry as u32);
            }
            for &k in &shape.named_raw {
                let (ci, ts) = &plan.chains[k as usize];
                if !ts.iter().any(|t| selects(t, f)) || covered.get(*ci) == Some(&true) {
                    continue;
                }
                if raw_entry == NONE {
                    raw_entry = cache.intern_raw(known_raw, f.value, raw_classes);
                    field_values.push(raw_entry as u32);
                }
                field_dyn.push((k, raw_entry as u32));
                cache.need(
                    raw_entry,
                    self.chain_dbs[*ci] & plan.dbs & db_mask,
                    fi,
                    f.kind,
                );
            }
            if !shape.dynamic.is_empty() {
                applied.clear();
                node_val.clear();
                node_val.resize_with(self.nodes.len(), || NodeVal::Unset);
            }
            for &k in &shape.dynamic {
                let (ci, ts) = &plan.chains[k as usize];
                if !plan.whole[k as usize] && !ts.iter().any(|t| selects(t, f)) {
                    continue;
                }
                if covered.get(*ci) == Some(&true) {
                    field_dyn.push((k, SKIPPED));
                    continue;
                }
                let info = &self.chains[*ci];
                if let Some(g) = &info.guard {
                    let mut cannot_match = !info.long_enough(g, f.value.len());
                    if let (false, Some((node, set))) = (cannot_match, &g.bytes) {
                        let at = self.node_value(
                            *node,
                            f.value,
                            raw_classes,
                            raw_entry,
                            &mut node_val,
                            &mut applied,
                            &mut cache,
                        );
                        let bytes = match node_val[at] {
                            NodeVal::Entry(e) => &cache.entries[e].value[..],
                            _ => f.value,
                        };
                        cannot_match = !detect::has_any(bytes, set);
                    }
                    if cannot_match {
                        field_dyn.push((k, SKIPPED));
                        continue;
                    }
                }
                let at = self.node_value(
                    self.chains[*ci].node,
                    f.value,
                    raw_classes,
                    raw_entry,
                    &mut node_val,
                    &mut applied,
                    &mut cache,
                );
                let e = match node_val[at] {
                    NodeVal::Entry(e) => e,
                    _ => {
                        if raw_entry == NONE {
                            raw_entry = cache.intern_raw(known_raw, f.value, raw_classes);
                        }
                        raw_entry
                    }
                };
                field_dyn.push((k, e as u32));
                // The databases this value is scanned with: those of its
                // chains, among the ones that serve this kind of field.
                cache.need(e, self.chain_dbs[*ci] & plan.dbs & db_mask, fi, f.kind);
                if !field_values[span.values.start..].contains(&(e as u32)) {
                    field_values.push(e as u32);
                }
            }
            span.values.end = field_values.len();
            span.dyns.end = field_dyn.len();
            span.raw = raw_entry;
            prev = Some((f.value, raw_classes, raw_entry));
            span.active = true;
            spans.push(span);
        }
        // Values an earlier request of this thread was scanned for are
        // not scanned again.
        if !memo.slots.is_empty() {
            let mut recalled = false;
            for entry in &mut cache.entries {
                if Memo::keeps(entry) {
                    recalled |= memo.recall(entry);
                }
            }
            if recalled {
                let entries = &cache.entries;
                for list in &mut cache.members {
                    list.retain(|&e| !entries[e].recalled);
                }
            }
        }
        // Pass 2: scan. Each value once per database it needs; with
        // Hyperscan, all the values a database needs in one call, and
        // value by value only where a match ended.
        // One member list and one scratch per database (`fit` and the
        // resize above), so the zip leaves no database out.
        debug_assert!(cache.members.len() == self.dbs.len() && ms.len() == self.dbs.len());
        for ((members, db), sc) in cache.members.iter().zip(&self.dbs).zip(ms.iter_mut()) {
            let Some(db) = db else {
                continue;
            };
            if members.is_empty() {
                continue;
            }
            candidate.clear();
            candidate.resize(members.len(), true);
            if members.len() > 1 && db.matcher.can_batch() {
                joined.clear();
                starts.clear();
                for &e in members {
                    starts.push(joined.len());
                    joined.extend_from_slice(&cache.entries[e].value);
                    joined.push(matcher::BATCH_SEPARATOR);
                }
                // Past this many reported ends, value by value is cheaper.
                let max_ends = members.len() * 4 + 64;
                if let Ok(true) = db.matcher.batch_scan(sc, joined, ends, max_ends) {
                    candidate.fill(false);
                    for &(end, id) in ends.iter() {
                        // The value the match ends in (or on whose
                        // separator it ends), if the pattern could match
                        // it alone.
                        let k = starts.partition_point(|&st| st < end as usize);
                        if let Some(k) = k.checked_sub(1)
                            && !candidate[k]
                        {
                            let entry = &cache.entries[members[k]];
                            candidate[k] = db.could_match(id, &entry.value, entry.kinds);
                        }
                    }
                    // The patterns left out of the batch are checked on
                    // each value the batch cleared, and what they match is
                    // taken as is: no per-value scan for it.
                    if db.matcher.has_unbatched() {
                        for (k, &e) in members.iter().enumerate() {
                            if candidate[k] {
                                continue;
                            }
                            let entry = &mut cache.entries[e];
                            let before = entry.matched.len();
                            let matched = &mut entry.matched;
                            db.matcher.unbatched_matches(&entry.value, |id| {
                                if let Some(&ri) = db.pattern_rule.get(id as usize) {
                                    matched.push(ri);
                                }
                            });
                            if matched.len() > before {
                                matched.sort_unstable();
                                matched.dedup();
                            }
                        }
                    }
                }
            }
            for (k, &e) in members.iter().enumerate() {
                let entry = &mut cache.entries[e];
                if !candidate[k] {
                    continue;
                }
                let matched = &mut entry.matched;
                if let Err(err) = db.matcher.scan(sc, &entry.value, |id| {
                    if let Some(&ri) = db.pattern_rule.get(id as usize) {
                        matched.push(ri);
                    }
                }) {
                    entry.error = true;
                    let label = fields
                        .get(entry.field)
                        .map(target_label)
                        .unwrap_or_default();
                    errors.push(format!("{label}: {err}"));
                }
                matched.sort_unstable();
                matched.dedup();
            }
        }
        // Pass 3: rules and detectors, field by field.
        // A rule scores once per (field name, value): a JSON leaf is both a
        // `json` and an `args_post` field, and must not count twice.
        let mut scored: HashSet<(usize, usize, &[u8])> = HashSet::new();
        for (f, span) in fields.iter().zip(&spans) {
            if !span.active {
                continue;
            }
            let Some(plan) = self.plans.get(f.kind as usize) else {
                continue;
            };
            let dyns = &field_dyn[span.dyns.clone()];
            // The value chain `ci` produced for this field (`NONE`: the
            // chain does not look at it).
            let value_of = |ci: usize| -> usize {
                let k = plan.pos.get(ci).copied().unwrap_or(NOT_IN_PLAN);
                if k == NOT_IN_PLAN {
                    return NONE;
                }
                match dyns.iter().find(|(dk, _)| *dk == k) {
                    Some(&(_, SKIPPED)) => NONE,
                    Some(&(_, e)) => e as usize,
                    None if plan.whole[k as usize] => span.raw,
                    None => NONE,
                }
            };
            // Did any rule match the field (whether or not it scored: an
            // exclusion or another field may have taken the hit), or a
            // scan fail? Then it is not kept as clean.
            let mut touched = false;
            // Pattern rules: only values a database matched in.
            for &e in &field_values[span.values.clone()] {
                let e = e as usize;
                let entry = &cache.entries[e];
                touched |= entry.error;
                if entry.error || entry.matched.is_empty() {
                    continue;
                }
                for &ri in &entry.matched {
                    if !self.rules[ri].negate && value_of(self.rule_chain[ri]) == e && wants(ri, f)
                    {
                        touched = true;
                        if !scored.contains(&(ri, e, f.name))
                            && self.push_hit(&mut hits, &excl, ri, f, &entry.value, None)
                        {
                            scored.insert((ri, e, f.name));
                        }
                    }
                }
            }
            // Negated pattern rules and detectors: each looks at the one
            // value its chain produced for this field.
            for &ri in &plan.negated {
                let e = value_of(self.rule_chain[ri]);
                let Some(entry) = cache.entries.get(e) else {
                    continue;
                };
                if !entry.error && entry.matched.binary_search(&ri).is_err() && wants(ri, f) {
                    touched = true;
                    if !scored.contains(&(ri, e, f.name))
                        && self.push_hit(&mut hits, &excl, ri, f, &entry.value, None)
                    {
                        scored.insert((ri, e, f.name));
                    }
                }
            }
            for &k in &plan.checks {
                let (ri, check) = &self.checks[k];
                let e = value_of(self.rule_chain[*ri]);
                let Some(entry) = cache.entries.get_mut(e) else {
                    continue;
                };
                if entry.error || !wants(*ri, f) {
                    continue;
                }
                // A detector runs once per distinct value, whatever the
                // number of rules, chains and fields that use it.
                let found = match check {
                    Check::Native(n) => {
                        if entry.natives_run & 1 << *n as u8 == 0 {
                            entry.natives_run |= 1 << *n as u8;
                            if let Some(d) = n
                                .may_find(entry.classes)
                                .then(|| run_check(check, &entry.value))
                                .flatten()
                            {
                                entry.natives_found.push((*n, d));
                            }
                        }
                        entry
                            .natives_found
                            .iter()
                            .find(|(k, _)| k == n)
                            .map(|(_, d)| d.clone())
                    }
                    _ => run_check(check, &entry.value),
                };
                if found.is_some() != self.rules[*ri].negate {
                    touched = true;
                    if !scored.contains(&(*ri, e, f.name)) {
                        let detail = found.map(|d| format!("{}: {}", d.context, d.detail));
                        if self.push_hit(&mut hits, &excl, *ri, f, &entry.value, detail) {
                            scored.insert((*ri, e, f.name));
                        }
                    }
                }
            }
            if let (false, Some(key)) = (touched, span.clean_key) {
                clean.keep(key, f);
            }
        }
        drop(scored);
        for entry in &cache.entries {
            if Memo::keeps(entry) {
                memo.keep(entry);
            }
        }
        fn keep<T>(v: Vec<T>) -> Vec<T> {
            if v.capacity() <= KEEP_BUFFER {
                v
            } else {
                Vec::new()
            }
        }
        scratch.bufs = Buffers {
            entries: keep(recycle(cache.entries)),
            index: if cache.index.capacity() <= KEEP_BUFFER {
                cache.index
            } else {
                Default::default()
            },
            field_values: keep(field_values),
            field_dyn: keep(field_dyn),
            spans: keep(spans),
            node_val: keep(node_val),
            applied: keep(applied),
            members: cache.members.into_iter().map(keep).collect(),
            starts: keep(starts),
            candidate: keep(candidate),
        };
        // One hit per (rule, target): the same rule firing on two fields counts twice,
        // the same rule on one field through two transform paths once.
        hits.dedup_by(|a, b| a.rule_id == b.rule_id && a.target == b.target);
        let score = hits
            .iter()
            .filter(|h| h.mode == Mode::Block)
            .map(|h| h.score)
            .sum();
        let detect_score = hits
            .iter()
            .filter(|h| h.mode == Mode::Detect)
            .map(|h| h.score)
            .sum();
        let verdict = if score >= threshold && threshold > 0 {
            Verdict::Block
        } else {
            Verdict::Allow
        };
        Evaluation {
            hits,
            score,
            detect_score,
            verdict,
            errors,
        }
    }

    /// The shape of a field of `plan`'s kind whose bytes have classes `c`.
    fn shape(&self, plan: &KindPlan, c: Classes) -> Shape {
        let mut shape = Shape {
            dynamic: Vec::new(),
            named_raw: Vec::new(),
            has_raw: false,
            raw_dbs: 0,
        };
        for (k, (ci, _)) in plan.chains.iter().enumerate() {
            let stays = self.chains[*ci]
                .chain
                .transforms()
                .iter()
                .all(|t| !t.may_change(c));
            if !stays {
                shape.dynamic.push(k as u32);
            } else if plan.whole[k] {
                shape.has_raw = true;
                shape.raw_dbs |= self.chain_dbs[*ci] & plan.dbs;
            } else {
                shape.named_raw.push(k as u32);
            }
        }
        shape
    }

    /// The value of trie node `at` for `input`, computing (and keeping)
    /// its ancestors first; returns the node that holds the bytes (a node
    /// whose transform changed nothing defers to its parent). `applied`
    /// lists the (node holding the bytes, transform, result node) steps
    /// already taken for this input: two chains that differ only by steps
    /// that changed nothing (`[…, css_decode, remove_whitespace]` and
    /// `[…, remove_whitespace]` on clean text) reach the same step.
    #[allow(clippy::too_many_arguments)]
    fn node_value<'a>(
        &self,
        at: usize,
        input: &'a [u8],
        input_classes: Classes,
        raw_entry: usize,
        vals: &mut [NodeVal],
        applied: &mut Vec<(usize, Transform, usize)>,
        cache: &mut ValueCache<'a>,
    ) -> usize {
        match vals[at] {
            NodeVal::Entry(_) => return at,
            NodeVal::Same(k) => return k,
            NodeVal::Unset => {}
        }
        let node = &self.nodes[at];
        let (Some(t), true) = (node.transform, node.parent != NONE) else {
            vals[at] = NodeVal::Same(at);
            return at;
        };
        let p = self.node_value(
            node.parent,
            input,
            input_classes,
            raw_entry,
            vals,
            applied,
            cache,
        );
        // The bytes and their entry (`NONE`: the raw input, not interned).
        let (bytes, cls, from): (&[u8], Classes, usize) = match vals[p] {
            NodeVal::Entry(e) => (&cache.entries[e].value, cache.entries[e].classes, e),
            _ => (input, input_classes, raw_entry),
        };
        if !t.may_change(cls) {
            vals[at] = NodeVal::Same(p);
            return p;
        }
        if let Some(&(_, _, q)) = applied.iter().find(|&&(f, u, _)| f == p && u == t) {
            vals[at] = NodeVal::Same(q);
            return q;
        }
        // Another field with this value took the step already.
        if let Some(r) = cache.entries.get(from).and_then(|x| x.derived(t)) {
            if r == from {
                vals[at] = NodeVal::Same(p);
                applied.push((p, t, p));
                return p;
            }
            vals[at] = NodeVal::Entry(r);
            applied.push((p, t, at));
            return at;
        }
        let out = match t.apply(bytes) {
            Cow::Borrowed(s) if s.len() == bytes.len() => {
                vals[at] = NodeVal::Same(p);
                applied.push((p, t, p));
                if let Some(x) = cache.entries.get_mut(from) {
                    x.remember(t, from);
                }
                return p;
            }
            Cow::Borrowed(s) => s.to_vec(),
            Cow::Owned(v) => v,
        };
        let cls = classes(&out);
        let r = cache.intern(Cow::Owned(out), cls);
        if let Some(x) = cache.entries.get_mut(from) {
            x.remember(t, r);
        }
        vals[at] = NodeVal::Entry(r);
        applied.push((p, t, at));
        at
    }

    #[allow(clippy::too_many_arguments)]
    fn push_hit(
        &self,
        hits: &mut Vec<Hit>,
        excl: &Active<'_>,
        ri: usize,
        f: &Field<'_>,
        value: &[u8],
        detail: Option<String>,
    ) -> bool {
        let r = &self.rules[ri];
        if excl.disables(r, f) {
            return false;
        }
        let Some(labels) = self.labels.get(ri) else {
            return false;
        };
        let cut = value.len().min(EXCERPT_BYTES);
        hits.push(Hit {
            rule_id: r.id,
            rule_name: labels.name.clone(),
            pack: labels.pack.clone(),
            severity: r.severity.as_str(),
            score: r.score,
            mode: self.modes[ri],
            tags: labels.tags.clone(),
            target: target_label(f),
            transforms: labels.transforms.clone(),
            excerpt: String::from_utf8_lossy(&value[..cut]).into_owned(),
            detail,
        });
        true
    }

    fn active_exclusions<'a>(&'a self, facts: &RequestFacts<'_>) -> Active<'a> {
        let mut a = Active::default();
        for x in &self.exclusions {
            let w = &x.when;
            let applies = w.path.as_deref().is_none_or(|p| p == facts.path)
                && w.path_prefix
                    .as_deref()
                    .is_none_or(|p| facts.path.starts_with(p))
                && w.method
                    .as_deref()
                    .is_none_or(|m| m.eq_ignore_ascii_case(facts.method))
                && w.host
                    .as_deref()
                    .is_none_or(|h| h.eq_ignore_ascii_case(facts.host));
            if applies {
                a.ids.extend(x.ids.iter().copied());
                a.tags.extend(x.tags.iter().map(String::as_str));
                a.targets.extend(x.targets.iter());
                if x.ids.is_empty() && x.tags.is_empty() && !x.targets.is_empty() {
                    a.whole_targets.extend(x.targets.iter());
                }
            }
        }
        a
    }

    /// Runs one rule alone on one value (inline `tests:`), through the same
    /// transforms and the same compiled matcher the request path uses.
    pub fn test_rule(&self, rule_id: u32, input: &[u8]) -> Option<bool> {
        self.test_rule_with(rule_id, input, &mut EngineScratch::default())
    }

    /// `test_rule` with a reusable scratch (allocating one per call costs a
    /// DFA cache or a Hyperscan scratch each time).
    pub fn test_rule_with(
        &self,
        rule_id: u32,
        input: &[u8],
        scratch: &mut EngineScratch,
    ) -> Option<bool> {
        scratch.fit(self);
        let ri = self.rules.iter().position(|r| r.id == rule_id)?;
        let r = &self.rules[ri];
        let value = self.chains[self.rule_chain[ri]].chain.apply(input);
        let mut fired = false;
        if let Some(check) = self.checks.iter().find(|(i, _)| *i == ri).map(|(_, c)| c) {
            fired = run_check(check, &value).is_some();
        } else if let Some(db) = &self.dbs[self.db_of_rule[ri]] {
            let d = self.db_of_rule[ri];
            let _ = db.matcher.scan(&mut scratch.scratch[d], &value, |id| {
                if db.pattern_rule.get(id as usize) == Some(&ri) {
                    fired = true;
                }
            });
        }
        Some(fired != r.negate)
    }
}

/// Compiles every non-empty pattern list (`None` for an empty one), on as
/// many threads as the machine has cores, largest list first: the Hyperscan
/// compiler is the bulk of loading a rule set, and each database compiles
/// on its own. Off the request path (start, check, reload).
fn compile_all(
    specs: &[Vec<PatternSpec>],
    backend: Backend,
    cache: Option<&DbCache>,
) -> Vec<Option<Result<MatcherSet, matcher::CompileError>>> {
    let mut order: Vec<usize> = (0..specs.len()).filter(|&d| !specs[d].is_empty()).collect();
    order.sort_by_key(|&d| std::cmp::Reverse(specs[d].len()));
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(order.len())
        .max(1);
    let next = AtomicU64::new(0);
    let mut out: Vec<Option<Result<MatcherSet, matcher::CompileError>>> =
        specs.iter().map(|_| None).collect();
    let work = || {
        let mut done = Vec::new();
        while let Some(&d) = order.get(next.fetch_add(1, Ordering::Relaxed) as usize) {
            done.push((d, matcher::compile_cached(&specs[d], backend, cache)));
        }
        done
    };
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..workers).map(|_| s.spawn(work)).collect();
        let mut all = work();
        for h in helpers {
            // A compiler thread that panicked: its lists are compiled again
            // below (and the panic, if it repeats, surfaces on this thread).
            all.extend(h.join().unwrap_or_default());
        }
        for (d, r) in all {
            out[d] = Some(r);
        }
    });
    for (d, slot) in out.iter_mut().enumerate() {
        if slot.is_none() && !specs[d].is_empty() {
            *slot = Some(matcher::compile_cached(&specs[d], backend, cache));
        }
    }
    out
}

/// A pattern's [`PatternFilter`] (one that passes everything of its kinds
/// when the pattern does not parse: it then failed to compile anyway).
fn pattern_filter(spec: &PatternSpec, kinds: u32) -> PatternFilter {
    let needs = matcher::pattern_needs(spec);
    let sets = needs
        .as_ref()
        .map(|n| {
            n.all
                .iter()
                .map(|set| {
                    let mut bits = [0u64; 4];
                    for b in 0..256 {
                        if set[b] {
                            bits[b >> 6] |= 1 << (b & 63);
                        }
                    }
                    bits
                })
                .collect()
        })
        .unwrap_or_default();
    PatternFilter {
        kinds,
        min_len: needs.map_or(0, |n| n.min_len),
        sets,
    }
}

/// The patterns of a pattern-type operator (none for the others).
fn pattern_kinds(op: &Operator) -> Vec<PatternKind> {
    match op {
        Operator::Regex(re) => vec![PatternKind::Regex(re.clone())],
        Operator::Phrases(list) => list
            .iter()
            .map(|p| PatternKind::Literal(p.as_bytes().to_vec()))
            .collect(),
        Operator::Contains(s) => vec![PatternKind::Literal(s.as_bytes().to_vec())],
        Operator::StartsWith(s) => {
            vec![PatternKind::Regex(format!("^{}", regex_syntax::escape(s)))]
        }
        Operator::Equals(s) => vec![PatternKind::Regex(format!("^{}$", regex_syntax::escape(s)))],
        _ => Vec::new(),
    }
}

/// The guard of a chain whose rules are all (non-negated) pattern rules:
/// their shortest match, and the bytes one of which the value at some
/// node of the chain must hold (the node before its trailing transforms
/// that only delete or case-fold bytes; see
/// [`Transform::widen_to_source`]). `None` when a rule of the chain is
/// a detector, a small operator or negated (those must see every value).
fn chain_guard(chain: &ChainInfo, rules: &[&Rule], nodes: &[Node]) -> Option<Guard> {
    let mut min_len = usize::MAX;
    let mut set = [false; 256];
    for r in rules {
        let kinds = pattern_kinds(&r.operator);
        if r.negate || kinds.is_empty() {
            return None;
        }
        for kind in kinds {
            let needs = matcher::pattern_needs(&PatternSpec {
                id: 0,
                kind,
                caseless: r.caseless,
            })?;
            min_len = min_len.min(needs.min_len);
            // The set least likely in clean text: letters, digits and
            // spaces are in nearly every value, common punctuation in many.
            let cost = |set: &[bool; 256]| -> u32 {
                (0..=255u8)
                    .filter(|&b| set[usize::from(b)])
                    .map(|b| [16, 4, 1][usize::from(crate::rules::transform::rarity(b))])
                    .sum()
            };
            let best = needs.all.iter().min_by_key(|s| cost(s))?;
            for (s, n) in set.iter_mut().zip(best.iter()) {
                *s |= n;
            }
        }
    }
    if min_len == usize::MAX {
        return None;
    }
    let mut node = chain.node;
    let mut suffix = 0;
    for t in chain.chain.transforms().iter().rev() {
        if !t.widen_to_source(&mut set) {
            break;
        }
        node = nodes[node].parent;
        suffix += 1;
    }
    Some(Guard {
        min_len,
        // At the chain's own output the set would save nothing: that value
        // is computed by then.
        bytes: (suffix > 0 && set.iter().any(|&b| !b)).then(|| (node, Box::new(set))),
    })
}

fn is_pattern(op: &Operator) -> bool {
    matches!(
        op,
        Operator::Regex(_)
            | Operator::Phrases(_)
            | Operator::Contains(_)
            | Operator::Equals(_)
            | Operator::StartsWith(_)
    )
}

fn run_check(check: &Check, value: &[u8]) -> Option<Detection> {
    match check {
        Check::Native(Native::Sqli) => detect::sqli::detect(value),
        Check::Native(Native::SqliPath) => detect::sqli::detect_path(value),
        Check::Native(Native::Xss) => detect::xss::detect(value),
        Check::Native(Native::Cmdi) => detect::cmdi::detect(value),
        Check::Native(Native::CmdiPath) => detect::cmdi::detect_path(value),
        Check::Native(Native::Base64) => detect::encoded::detect(value),
        Check::Native(Native::Path) => detect::path::detect(value),
        Check::IpIn(nets) => {
            let s = std::str::from_utf8(value).ok()?;
            let ip: std::net::IpAddr = s.trim().parse().ok()?;
            nets.iter().any(|n| n.contains(&ip)).then(|| Detection {
                context: "ip",
                detail: s.trim().to_string(),
            })
        }
        Check::LengthGt(n) => (value.len() as u64 > *n).then(|| Detection {
            context: "length",
            detail: value.len().to_string(),
        }),
    }
}

/// Does a rule target select this field?
fn selects(t: &Target, f: &Field<'_>) -> bool {
    let kind_ok = t.kind == f.kind
        || (t.kind == TargetKind::Args
            && matches!(f.kind, TargetKind::ArgsGet | TargetKind::ArgsPost));
    if !kind_ok {
        return false;
    }
    match &t.name {
        None => true,
        Some(n) if matches!(t.kind, TargetKind::Headers | TargetKind::ResponseHeaders) => {
            n.as_bytes().eq_ignore_ascii_case(f.name)
        }
        Some(n) => n.as_bytes() == f.name,
    }
}

fn target_label(f: &Field<'_>) -> String {
    let kind = kind_name(f.kind);
    let name = String::from_utf8_lossy(f.name);
    let mut label = String::with_capacity(kind.len() + 1 + name.len());
    label.push_str(kind);
    if !name.is_empty() {
        label.push(':');
        label.push_str(&name);
    }
    label
}

pub fn kind_name(k: TargetKind) -> &'static str {
    use TargetKind::*;
    match k {
        Args => "args",
        ArgsGet => "args_get",
        ArgsPost => "args_post",
        ArgsNames => "args_names",
        Path => "path",
        Query => "query",
        Uri => "uri",
        Method => "method",
        Headers => "headers",
        HeaderNames => "header_names",
        Cookies => "cookies",
        CookieNames => "cookie_names",
        Body => "body",
        Json => "json",
        Xml => "xml",
        Files => "files",
        FilesContent => "files_content",
        ResponseStatus => "response_status",
        ResponseHeaders => "response_headers",
        ResponseBody => "response_body",
    }
}

/// The exclusions that apply to one request.
#[derive(Default)]
struct Active<'a> {
    ids: HashSet<u32>,
    tags: HashSet<&'a str>,
    /// Targets disabled for the excluded ids/tags only.
    targets: Vec<&'a Target>,
    /// Targets disabled for every rule (an exclusion naming only targets).
    whole_targets: Vec<&'a Target>,
}

impl Active<'_> {
    fn skips_target(&self, f: &Field<'_>) -> bool {
        self.whole_targets.iter().any(|t| selects(t, f))
    }

    fn disables(&self, r: &Rule, f: &Field<'_>) -> bool {
        let by_rule =
            self.ids.contains(&r.id) || r.tags.iter().any(|t| self.tags.contains(t.as_str()));
        if !by_rule {
            return false;
        }
        // With targets listed, the rule is disabled on those targets only.
        self.targets.is_empty() || self.targets.iter().any(|t| selects(t, f))
    }
}

/// block ∧ detect = detect, anything ∧ shadow = shadow.
fn narrow(a: Mode, b: Option<Mode>) -> Mode {
    match (a, b) {
        (Mode::Shadow, _) | (_, Some(Mode::Shadow)) => Mode::Shadow,
        (Mode::Detect, _) | (_, Some(Mode::Detect)) => Mode::Detect,
        _ => Mode::Block,
    }
}

fn err_at(r: &Rule, message: String) -> ConfigError {
    ConfigError {
        file: r.file.clone(),
        line: r.line,
        column: 5,
        key: format!("rules[{}]", r.id),
        message,
    }
}

/// FNV-1a 64: a stable content hash for the rule-set identity (not security).
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= u64::from(x);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Keeps `Cow` in the signature of helpers that may borrow.
#[allow(dead_code)]
fn _cow(v: &[u8]) -> Cow<'_, [u8]> {
    Cow::Borrowed(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::schema::parse_pack;
    use std::path::Path;

    fn set(yaml: &str, settings: &EngineSettings) -> RuleSet {
        let p = parse_pack(Path::new("rules/t.yaml"), yaml).unwrap();
        RuleSet::compile(&[p], settings).unwrap()
    }

    const PACK: &str = r#"pack: t
rules:
  - id: 100
    name: union select
    severity: critical
    targets: [args]
    transforms: [url_decode, lowercase]
    match: {regex: "union\\s+select"}
    tags: [attack-sqli]
  - id: 101
    name: bad agent
    severity: high
    targets: ["headers:user-agent"]
    match: {phrases: [sqlmap, nikto]}
    caseless: true
  - id: 102
    name: long arg
    severity: low
    targets: [args]
    match: {length_gt: 20}
  - id: 103
    name: paranoid
    severity: critical
    paranoia: 2
    targets: [args]
    match: {contains: "x"}
"#;

    /// The (rule id, target) of every hit, sorted.
    fn hit_ids(ev: &Evaluation) -> Vec<(u32, String)> {
        let mut v: Vec<(u32, String)> = ev
            .hits
            .iter()
            .map(|h| (h.rule_id, h.target.clone()))
            .collect();
        v.sort();
        v
    }

    /// Default settings on the pure backend and, when built in, Hyperscan.
    fn every_backend() -> Vec<(Backend, EngineSettings)> {
        let mut backends = vec![Backend::Pure];
        if Backend::default() != Backend::Pure {
            backends.push(Backend::default());
        }
        backends
            .into_iter()
            .map(|backend| {
                let settings = EngineSettings {
                    backend,
                    ..EngineSettings::default()
                };
                (backend, settings)
            })
            .collect()
    }

    fn fields<'a>(list: &'a [(TargetKind, &'a str, &'a str)]) -> Vec<Field<'a>> {
        list.iter()
            .map(|(k, n, v)| Field {
                recurs: false,
                kind: *k,
                name: n.as_bytes(),
                value: v.as_bytes(),
            })
            .collect()
    }

    #[test]
    fn a_parsed_body_is_seen_through_its_fields_by_rules_that_look_at_them() {
        const BODY_PACK: &str = r#"pack: b
rules:
  - id: 200
    name: everywhere
    severity: critical
    targets: [args, args_names, json, body]
    transforms: [url_decode]
    match: {regex: "jndi:"}
  - id: 201
    name: body only
    severity: critical
    targets: [body]
    transforms: [url_decode]
    match: {regex: "jndi:"}
  - id: 202
    name: values and body
    severity: critical
    targets: [args, body]
    transforms: [url_decode]
    match: {regex: "jndi:"}
  - id: 203
    name: detector everywhere
    severity: critical
    targets: [args, args_names, json, body]
    transforms: [url_decode]
    match: {sqli: true}
  - id: 204
    name: everywhere, lowercased
    severity: critical
    targets: [args, args_names, json, body]
    transforms: [url_decode, lowercase]
    match: {regex: "jndi:"}
"#;
        let body = "q=%24%7Bjndi%3Aldap%3A%2F%2Fx%7D&id=1%27+or+1%3D1--";
        let list = [
            (TargetKind::ArgsPost, "q", "${jndi:ldap://x}"),
            (TargetKind::ArgsNames, "q", "q"),
            (TargetKind::ArgsPost, "id", "1' or 1=1--"),
            (TargetKind::ArgsNames, "id", "id"),
            (TargetKind::Body, "", body),
        ];
        let f = fields(&list);
        for (backend, settings) in every_backend() {
            let rs = set(BODY_PACK, &settings);
            if backend != Backend::Pure {
                assert_ne!(rs.args_cover_dbs, 0, "{backend}: no database of its own");
            }
            let mut sc = EngineScratch::default();
            let unparsed = rs.evaluate(&f, &RequestFacts::default(), &mut sc);
            let ids = |ev: &Evaluation| -> Vec<(u32, String)> {
                hit_ids(ev)
                    .into_iter()
                    .map(|(id, t)| (id, t.to_string()))
                    .collect()
            };
            let pair = |id: u32, t: &str| (id, t.to_string());
            // An unparsed body is scored by every rule that looks at it.
            assert_eq!(
                ids(&unparsed),
                vec![
                    pair(200, "args_post:q"),
                    pair(200, "body"),
                    pair(201, "body"),
                    pair(202, "args_post:q"),
                    pair(202, "body"),
                    pair(203, "args_post:id"),
                    pair(203, "body"),
                    pair(204, "args_post:q"),
                    pair(204, "body"),
                ],
                "{backend}"
            );
            // A parsed one: not by the rules that see its fields.
            let facts = RequestFacts {
                body_as_args: true,
                ..RequestFacts::default()
            };
            for _ in 0..2 {
                let parsed = rs.evaluate(&f, &facts, &mut sc);
                assert_eq!(
                    ids(&parsed),
                    vec![
                        pair(200, "args_post:q"),
                        pair(201, "body"),
                        pair(202, "args_post:q"),
                        pair(202, "body"),
                        pair(203, "args_post:id"),
                        pair(204, "args_post:q"),
                    ],
                    "{backend}"
                );
            }
            // What a parsed body left unscanned is not recalled for an
            // unparsed one.
            let again = rs.evaluate(&f, &RequestFacts::default(), &mut sc);
            assert_eq!(ids(&again), ids(&unparsed), "{backend}");
            // And the body's own value, alone, still hits where it is
            // the only field.
            let alone = fields(&list[4..]);
            let ev = rs.evaluate(&alone, &RequestFacts::default(), &mut sc);
            assert_eq!(ev.hits.len(), 5, "{backend}: {:?}", ids(&ev));
        }
    }

    #[test]
    fn scores_and_blocks() {
        let rs = set(
            &PACK.replace("    caseless: true\n", ""),
            &EngineSettings::default(),
        );
        assert_eq!(rs.len(), 3, "paranoia 2 rule left out");
        let mut sc = EngineScratch::default();
        let f = fields(&[
            (TargetKind::ArgsGet, "q", "1%20UNION%20select%202"),
            (TargetKind::Headers, "user-agent", "sqlmap/1.0"),
        ]);
        let ev = rs.evaluate(&f, &RequestFacts::default(), &mut sc);
        let ids: Vec<u32> = ev.hits.iter().map(|h| h.rule_id).collect();
        assert!(ids.contains(&100) && ids.contains(&101), "{ids:?}");
        assert_eq!(ev.verdict, Verdict::Block);
        assert_eq!(ev.hits[0].target, "args_get:q");
        let clean = fields(&[(TargetKind::ArgsGet, "q", "hello")]);
        assert_eq!(
            rs.evaluate(&clean, &RequestFacts::default(), &mut sc)
                .verdict,
            Verdict::Allow
        );
    }

    /// Many values scanned in one batch give the hits a value-by-value scan
    /// gives: anchored patterns hold at each value, a match in one value
    /// does not hide the same pattern in another, nothing leaks across
    /// values, and negated rules still see each value.
    #[test]
    fn batched_values_hit_like_single_values() {
        const BATCH: &str = r#"pack: t
rules:
  - id: 200
    name: whole value
    severity: critical
    targets: [args]
    match: {equals: "admin"}
  - id: 201
    name: starts
    severity: critical
    targets: [args]
    transforms: [lowercase]
    match: {starts_with: "drop"}
  - id: 202
    name: floating
    severity: critical
    targets: [args, headers]
    transforms: [url_decode]
    match: {regex: "union\\s+select"}
  - id: 203
    name: ends
    severity: critical
    targets: [args]
    match: {regex: "--$"}
  - id: 204
    name: not numeric
    severity: low
    targets: ["args:id"]
    match: {regex: "^[0-9]+$", negate: true}
"#;
        let mut values: Vec<(TargetKind, String, String)> = (0..60)
            .map(|i| {
                (
                    TargetKind::ArgsPost,
                    format!("f{i}"),
                    format!("clean value {i}"),
                )
            })
            .collect();
        let planted = [
            (7, "admin"),
            (8, "xadmin"),
            (20, "DROP table"),
            (21, "x drop"),
            (30, "1 union%20select 2"),
            (31, "union"),
            (32, "select"),
            (40, "a--"),
            (41, "--a"),
            (55, "union select again"),
        ];
        for (i, v) in planted {
            values[i].2 = v.to_string();
        }
        values.push((TargetKind::ArgsGet, "id".into(), "12".into()));
        values.push((TargetKind::ArgsGet, "id".into(), "12a".into()));
        values.push((TargetKind::Headers, "x-a".into(), "union\nselect".into()));
        let list: Vec<(TargetKind, &str, &str)> = values
            .iter()
            .map(|(k, n, v)| (*k, n.as_str(), v.as_str()))
            .collect();
        let f = fields(&list);
        let mut want = vec![
            (200, "args_post:f7".to_string()),
            (201, "args_post:f20".into()),
            (202, "args_post:f30".into()),
            (203, "args_post:f40".into()),
            (202, "args_post:f55".into()),
            (204, "args_get:id".into()),
            (202, "headers:x-a".into()),
        ];
        want.sort();
        for (backend, settings) in every_backend() {
            let rs = set(BATCH, &settings);
            let mut sc = EngineScratch::default();
            for _ in 0..2 {
                let ev = rs.evaluate(&f, &RequestFacts::default(), &mut sc);
                let got = hit_ids(&ev);
                assert_eq!(got, want, "{backend}");
                assert!(ev.errors.is_empty());
            }
        }
    }

    /// A set loaded from the compiled-rules cache hits exactly like the set
    /// that compiled it; a set with other patterns compiles its own
    /// databases and leaves only those in the directory.
    #[cfg(feature = "hyperscan")]
    #[test]
    fn a_set_from_the_cache_hits_like_a_compiled_one() {
        let dir =
            std::env::temp_dir().join(format!("portcullis-engine-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let settings = EngineSettings {
            backend: Backend::Hyperscan,
            cache_dir: Some(dir.clone()),
            ..EngineSettings::default()
        };
        let pack = PACK.replace("    caseless: true\n", "");
        let first = set(&pack, &settings);
        let made = first.cache_stats().expect("cache configured");
        assert!(
            made.misses > 0 && made.hits == 0 && made.errors == 0,
            "{made:?}"
        );
        let second = set(&pack, &settings);
        let read = second.cache_stats().expect("cache configured");
        assert_eq!((read.hits, read.misses, read.errors), (made.misses, 0, 0));
        let f = fields(&[
            (TargetKind::ArgsGet, "q", "1%20UNION%20select%202"),
            (
                TargetKind::ArgsGet,
                "a",
                "a long value that is over twenty bytes",
            ),
            (TargetKind::Headers, "user-agent", "sqlmap/1.0"),
            (TargetKind::ArgsGet, "ok", "hello"),
        ]);
        let hits = |rs: &RuleSet| {
            let ev = rs.evaluate(&f, &RequestFacts::default(), &mut EngineScratch::default());
            assert!(ev.errors.is_empty(), "{:?}", ev.errors);
            hit_ids(&ev)
        };
        assert_eq!(hits(&first), hits(&second));
        assert_eq!(hits(&second).len(), 4, "{:?}", hits(&second));
        let count = || std::fs::read_dir(&dir).map_or(0, |d| d.count());
        let before = count();
        // The pure backend has nothing to cache and leaves the files alone.
        let pure = set(
            &pack,
            &EngineSettings {
                backend: Backend::Pure,
                ..settings.clone()
            },
        );
        assert_eq!(pure.cache_stats(), None);
        assert_eq!(count(), before);
        // Another pattern: its database is compiled, the old one pruned.
        let other = set(
            &pack.replace("union\\\\s+select", "union\\\\s+all"),
            &settings,
        );
        let st = other.cache_stats().expect("cache configured");
        assert!(st.misses >= 1, "{st:?}");
        assert_eq!(count(), before, "one database replaced another");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn exclusions_and_modes() {
        let mut s = EngineSettings {
            exclusions: parse_pack(
                Path::new("x.yaml"),
                "pack: x\nexclusions:\n  - when: {path: /api/comments, method: POST}\n    disable: {ids: [100], targets: [\"args:body\"]}\n",
            )
            .unwrap()
            .exclusions,
            ..EngineSettings::default()
        };
        let rs = set(&PACK.replace("    caseless: true\n", ""), &s);
        let mut sc = EngineScratch::default();
        let f = fields(&[
            (TargetKind::ArgsPost, "body", "union select"),
            (TargetKind::ArgsPost, "other", "union select"),
        ]);
        let facts = RequestFacts {
            method: "POST",
            path: "/api/comments",
            host: "",
            ..RequestFacts::default()
        };
        let ev = rs.evaluate(&f, &facts, &mut sc);
        let targets: Vec<&str> = ev
            .hits
            .iter()
            .filter(|h| h.rule_id == 100)
            .map(|h| h.target.as_str())
            .collect();
        assert_eq!(targets, ["args_post:other"]);

        s.mode = Mode::Detect;
        let rs = set(&PACK.replace("    caseless: true\n", ""), &s);
        let ev = rs.evaluate(&f, &RequestFacts::default(), &mut sc);
        assert_eq!(ev.verdict, Verdict::Allow);
        assert!(ev.detect_score >= 5);
    }

    /// The raw URI is scanned only by the patterns of rules that look at
    /// it, not by the argument database (it repeats the arguments).
    #[test]
    fn the_uri_is_scanned_apart_from_the_arguments() {
        const SPLIT: &str = r#"pack: t
rules:
  - id: 300
    name: both
    severity: critical
    targets: [args, uri]
    match: {regex: "evil"}
  - id: 301
    name: args only
    severity: critical
    targets: [args, json]
    match: {regex: "bad"}
"#;
        for (backend, settings) in every_backend() {
            let rs = set(SPLIT, &settings);
            let f = fields(&[
                (TargetKind::Uri, "", "/x?q=bad&r=evil"),
                (TargetKind::ArgsGet, "q", "bad"),
                (TargetKind::ArgsGet, "r", "evil"),
            ]);
            let ev = rs.evaluate(&f, &RequestFacts::default(), &mut EngineScratch::default());
            assert_eq!(
                hit_ids(&ev),
                vec![
                    (300, "args_get:r".to_string()),
                    (300, "uri".to_string()),
                    (301, "args_get:q".to_string())
                ],
                "[{backend}]"
            );
            if backend != Backend::Pure {
                let args_only = rs.rules.iter().position(|r| r.id == 301).expect("rule");
                let uri_dbs = rs.plans[TargetKind::Uri as usize].dbs;
                for (d, db) in rs.dbs.iter().enumerate() {
                    if db
                        .as_ref()
                        .is_some_and(|db| db.pattern_rule.contains(&args_only))
                    {
                        assert_eq!(uri_dbs & 1 << d, 0, "the uri is scanned by database {d}");
                    }
                }
            }
        }
    }

    /// A pattern left out of the batch (it matches the separator alone) is
    /// checked on each value the batch cleared and its hit taken without a
    /// per-value scan: the hits are those of the pure backend, which scans
    /// every value alone.
    #[test]
    fn unbatched_patterns_hit_without_a_rescan() {
        const PACK: &str = r#"pack: t
rules:
  - id: 310
    name: odd byte
    severity: critical
    targets: [args]
    match: {regex: "[^a-z0-9 ]"}
  - id: 311
    name: separator or word
    severity: critical
    targets: [args]
    match: {regex: "[^a-z0-9 :]|zz"}
  - id: 312
    name: batched
    severity: critical
    targets: [args]
    match: {regex: "evil"}
"#;
        let list = [
            (TargetKind::ArgsGet, "a", "plain words"),
            (TargetKind::ArgsGet, "b", "host:8080"),
            (TargetKind::ArgsGet, "c", "buzz zz"),
            (TargetKind::ArgsGet, "d", "evil one"),
            (TargetKind::ArgsGet, "e", "more words"),
        ];
        let mut results = Vec::new();
        for (backend, settings) in every_backend() {
            let rs = set(PACK, &settings);
            if backend != Backend::Pure {
                let db = rs.dbs.iter().flatten().next().expect("a database");
                assert!(
                    db.matcher.has_unbatched(),
                    "the test needs unbatched patterns"
                );
            }
            let ev = rs.evaluate(
                &fields(&list),
                &RequestFacts::default(),
                &mut EngineScratch::default(),
            );
            results.push((backend, hit_ids(&ev)));
        }
        let want = vec![
            (310, "args_get:b".to_string()),
            (311, "args_get:c".to_string()),
            (312, "args_get:d".to_string()),
        ];
        for (backend, got) in results {
            assert_eq!(got, want, "[{backend}]");
        }
    }

    /// The direct kind mapping agrees with the names both enums use.
    #[test]
    fn view_kinds_map_by_name() {
        for k in crate::request_view::TargetKind::ALL {
            assert_eq!(rule_kind(k), TargetKind::parse(k.as_str()), "{k:?}");
        }
    }

    #[test]
    fn every_kind_indexes_its_own_plan() {
        for (i, k) in TargetKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i, "{k:?}");
        }
    }

    #[test]
    fn an_aliased_value_scores_once() {
        let pack = r#"pack: t
rules:
  - id: 300
    name: loopback url
    severity: high
    targets: [args, json]
    match: {contains: "http://127.0.0.1"}
"#;
        let rs = set(pack, &EngineSettings::default());
        let mut sc = EngineScratch::default();
        let url = "proxy_pass http://127.0.0.1:3000;";
        // A JSON leaf is also an args_post field: one finding, score 4 < 5.
        let list = [
            (TargetKind::Json, "body", url),
            (TargetKind::ArgsPost, "body", url),
        ];
        let aliased = fields(&list);
        let ev = rs.evaluate(&aliased, &RequestFacts::default(), &mut sc);
        assert_eq!((ev.score, ev.verdict), (4, Verdict::Allow));
        // Two different fields are two findings.
        let list = [
            (TargetKind::Json, "a", url),
            (TargetKind::ArgsPost, "b", url),
        ];
        let two = fields(&list);
        let ev = rs.evaluate(&two, &RequestFacts::default(), &mut sc);
        assert_eq!((ev.score, ev.verdict), (8, Verdict::Block));
    }

    /// Values that recur across requests (method, path, header names and
    /// values, argument names) are scanned once per thread: from their
    /// third sighting on (kept on the second) their results come from the
    /// memo, and every request still gets the hits a fresh scratch gives.
    #[test]
    fn recurring_values_are_recalled_with_the_same_hits() {
        let pack = r#"pack: t
rules:
  - id: 400
    name: bad agent
    severity: high
    targets: [headers]
    transforms: [lowercase]
    match: {regex: "sqlmap/\\d"}
  - id: 401
    name: bad name
    severity: high
    targets: [args_names]
    match: {contains: "evil"}
  - id: 402
    name: sqli
    severity: critical
    targets: [args, headers, args_names]
    match: {sqli: true}
  - id: 403
    name: traversal in path
    severity: critical
    targets: [path]
    match: {contains: "../"}
"#;
        for (backend, settings) in every_backend() {
            let rs = set(pack, &settings);
            let requests: [&[(TargetKind, &str, &str)]; 4] = [
                &[
                    (TargetKind::Method, "", "GET"),
                    (TargetKind::Path, "", "/a/../etc"),
                    (TargetKind::Uri, "", "/a/../etc"),
                    (TargetKind::HeaderNames, "", "user-agent"),
                    (TargetKind::Headers, "user-agent", "SQLMap/1.7"),
                    (TargetKind::ArgsNames, "", "evil"),
                    (TargetKind::ArgsGet, "evil", "1' or '1'='1"),
                ],
                &[
                    (TargetKind::Method, "", "GET"),
                    (TargetKind::Path, "", "/"),
                    (TargetKind::Headers, "x-q", "1' or '1'='1"),
                    (TargetKind::ArgsNames, "", "q"),
                    (TargetKind::ArgsGet, "q", "evil"),
                ],
                // The same bytes in a kind of field they were not kept for.
                &[
                    (TargetKind::Headers, "x-n", "evil"),
                    (TargetKind::ArgsNames, "", "SQLMap/1.7"),
                    (TargetKind::ArgsNames, "", "1' or '1'='1"),
                ],
                &[(TargetKind::ArgsNames, "", "evil")],
            ];
            let mut sc = EngineScratch::default();
            for round in 0..4 {
                for (i, list) in requests.iter().enumerate() {
                    let fs = fields(list);
                    let fresh =
                        rs.evaluate(&fs, &RequestFacts::default(), &mut EngineScratch::default());
                    // Served from memory: values from the memo, clean
                    // fields skipped whole.
                    let before = sc.memo_hits() + sc.clean_hits();
                    let ev = rs.evaluate(&fs, &RequestFacts::default(), &mut sc);
                    assert_eq!(
                        hit_ids(&ev),
                        hit_ids(&fresh),
                        "{backend} round {round} request {i}"
                    );
                    assert_eq!(ev.score, fresh.score);
                    assert!(!ev.hits.is_empty(), "{backend} request {i}");
                    if round >= 2 && i < 2 {
                        assert!(
                            sc.memo_hits() + sc.clean_hits() > before,
                            "{backend} round {round} request {i}"
                        );
                    }
                }
            }
            // Argument values are never kept.
            let list = [(TargetKind::ArgsGet, "q", "value")];
            let mut sc = EngineScratch::default();
            for _ in 0..4 {
                rs.evaluate(&fields(&list), &RequestFacts::default(), &mut sc);
            }
            assert_eq!(sc.memo_hits(), 0);
        }
    }

    /// A recurring field found clean is skipped on later requests; a field
    /// with any hit (even one an exclusion silenced) is evaluated every
    /// time, and a field is known clean only by its kind, name and value.
    #[test]
    fn clean_recurring_fields_are_skipped_and_nothing_else() {
        let pack = r#"pack: t
exclusions:
  - when: {path: /quiet}
    disable: {ids: [420]}
rules:
  - id: 420
    name: evil header
    severity: critical
    targets: [headers, args_names]
    match: {contains: "evil"}
  - id: 421
    name: bad agent
    severity: critical
    targets: ["headers:user-agent"]
    match: {contains: "sqlmap"}
  - id: 422
    name: sqli
    severity: critical
    targets: [headers]
    match: {sqli: true}
  - id: 423
    name: method allowed
    severity: critical
    targets: [method]
    match: {regex: "^(?:GET|POST)$", negate: true}
"#;
        for (backend, settings) in every_backend() {
            let rs = set(pack, &settings);
            let quiet = RequestFacts {
                method: "GET",
                path: "/quiet",
                ..RequestFacts::default()
            };
            let loud = RequestFacts {
                method: "GET",
                path: "/",
                ..RequestFacts::default()
            };
            let mut sc = EngineScratch::default();
            type Step<'a> = (
                &'a RequestFacts<'a>,
                &'a [(TargetKind, &'a str, &'a str)],
                &'a [u32],
            );
            let steps: &[Step<'_>] = &[
                // Clean: kept, then skipped.
                (
                    &loud,
                    &[(TargetKind::Headers, "x-note", "sqlmap fine")],
                    &[],
                ),
                (
                    &loud,
                    &[(TargetKind::Headers, "x-note", "sqlmap fine")],
                    &[],
                ),
                // The same bytes under the name a rule names.
                (
                    &loud,
                    &[(TargetKind::Headers, "user-agent", "sqlmap fine")],
                    &[421],
                ),
                (
                    &loud,
                    &[(TargetKind::Headers, "user-agent", "sqlmap fine")],
                    &[421],
                ),
                // Silenced by an exclusion: never kept as clean.
                (&quiet, &[(TargetKind::Headers, "x-a", "evil")], &[]),
                (&quiet, &[(TargetKind::Headers, "x-a", "evil")], &[]),
                (&loud, &[(TargetKind::Headers, "x-a", "evil")], &[420]),
                // A URI with a query string is never kept.
                (&loud, &[(TargetKind::Uri, "", "/a?b=c")], &[]),
                (&loud, &[(TargetKind::Uri, "", "/a?b=c")], &[]),
                // The same bytes in another kind of field.
                (&loud, &[(TargetKind::HeaderNames, "", "evil")], &[]),
                (&loud, &[(TargetKind::HeaderNames, "", "evil")], &[]),
                (&loud, &[(TargetKind::ArgsNames, "", "evil")], &[420]),
                // Detectors and negated rules count as hits too.
                (
                    &loud,
                    &[(TargetKind::Headers, "x-q", "1' or '1'='1")],
                    &[422],
                ),
                (
                    &loud,
                    &[(TargetKind::Headers, "x-q", "1' or '1'='1")],
                    &[422],
                ),
                (&loud, &[(TargetKind::Method, "", "TRACE")], &[423]),
                (&loud, &[(TargetKind::Method, "", "TRACE")], &[423]),
                (&loud, &[(TargetKind::Method, "", "GET")], &[]),
                (&loud, &[(TargetKind::Method, "", "GET")], &[]),
            ];
            let mut skipped = Vec::new();
            for (i, (facts, list, want)) in steps.iter().enumerate() {
                let before = sc.clean_hits();
                let ev = rs.evaluate(&fields(list), facts, &mut sc);
                let got: Vec<u32> = ev.hits.iter().map(|h| h.rule_id).collect();
                assert_eq!(got, *want, "{backend} step {i}");
                if sc.clean_hits() > before {
                    skipped.push(i);
                }
            }
            assert_eq!(skipped, [1, 10, 17], "{backend}");
            // A JSON key recurs; a JSON leaf of the same bytes is not kept.
            for (recurs, kept) in [(false, false), (true, true)] {
                let f = [Field {
                    kind: TargetKind::Json,
                    name: b"user.name",
                    value: b"name",
                    recurs,
                }];
                let before = sc.clean_hits();
                for _ in 0..2 {
                    let ev = rs.evaluate(&f, &loud, &mut sc);
                    assert!(ev.hits.is_empty(), "{backend}");
                }
                assert_eq!(sc.clean_hits() > before, kept, "{backend} {recurs}");
            }
            // A new rule set starts with nothing known clean.
            let other = set(&pack.replace("\"evil\"", "\"fine\""), &settings);
            let ev = other.evaluate(
                &fields(&[(TargetKind::Headers, "x-note", "sqlmap fine")]),
                &loud,
                &mut sc,
            );
            assert_eq!(ev.hits.len(), 1, "{backend}");
        }
    }

    /// The memo belongs to one rule set: a new set scans again.
    #[test]
    fn a_new_rule_set_does_not_recall_the_old_one() {
        let old = set(
            r#"pack: t
rules:
  - id: 410
    name: a
    severity: critical
    targets: [headers]
    match: {contains: "abc"}
"#,
            &EngineSettings::default(),
        );
        let new = set(
            r#"pack: t
rules:
  - id: 411
    name: b
    severity: critical
    targets: [headers]
    match: {contains: "xyz"}
"#,
            &EngineSettings::default(),
        );
        let list = [(TargetKind::Headers, "x", "abc")];
        let fs = fields(&list);
        let mut sc = EngineScratch::default();
        for _ in 0..3 {
            let ev = old.evaluate(&fs, &RequestFacts::default(), &mut sc);
            assert_eq!(hit_ids(&ev), vec![(410, "headers:x".to_string())]);
        }
        assert!(sc.memo_hits() > 0);
        let ev = new.evaluate(&fs, &RequestFacts::default(), &mut sc);
        assert!(ev.hits.is_empty(), "{:?}", hit_ids(&ev));
    }

    /// A value that recurs in another field reuses the transforms the
    /// first field applied (`CachedValue::derived`): each field still gets
    /// its own chain's output, whichever field came first.
    #[test]
    fn a_recurring_value_reuses_transforms_per_chain() {
        let pack = r#"pack: t
rules:
  - id: 310
    name: lowercased keyword in json
    severity: critical
    targets: [json]
    transforms: [lowercase]
    match: {contains: "drop table"}
  - id: 311
    name: whitespace-free keyword in args
    severity: critical
    targets: [args_post]
    transforms: [lowercase, remove_whitespace]
    match: {contains: "droptable"}
  - id: 312
    name: raw keyword in args
    severity: critical
    targets: [args_post, json]
    match: {contains: "DROP TABLE"}
"#;
        for (backend, settings) in every_backend() {
            let rs = set(pack, &settings);
            let mut sc = EngineScratch::default();
            for order in [
                [TargetKind::Json, TargetKind::ArgsPost],
                [TargetKind::ArgsPost, TargetKind::Json],
            ] {
                let list = [
                    (order[0], "q", "DROP TABLE users"),
                    (order[1], "q", "DROP TABLE users"),
                ];
                let ev = rs.evaluate(&fields(&list), &RequestFacts::default(), &mut sc);
                let ids = hit_ids(&ev);
                assert_eq!(
                    ids,
                    [
                        (310, "json:q".to_string()),
                        (311, "args_post:q".to_string()),
                        // An aliased value scores once, on the first field.
                        (312, format!("{}:q", kind_name(order[0])))
                    ],
                    "{backend} {order:?}"
                );
                // Unchanged by `lowercase` and by `remove_whitespace`: no rule.
                let list = [(order[0], "q", "drop"), (order[1], "q", "drop")];
                let ev = rs.evaluate(&fields(&list), &RequestFacts::default(), &mut sc);
                assert!(ev.hits.is_empty(), "{backend} {order:?}: {:?}", ev.hits);
            }
        }
    }

    /// Chain guards and batch-match filters only skip work: with the
    /// bundled packs (every paranoia level), generated values hit exactly
    /// the rules they hit with every guard and filter removed, and both do
    /// skip work on ordinary values.
    #[test]
    fn guards_and_batch_filters_never_hide_a_hit() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
        let mut packs: Vec<Pack> = std::fs::read_dir(&dir)
            .expect("rules/")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .map(|p| crate::rules::schema::load_pack(&p).expect("bundled pack"))
            .collect();
        packs.sort_by(|a, b| a.name.cmp(&b.name));
        let settings = EngineSettings {
            paranoia: 4,
            ..EngineSettings::default()
        };
        let mut set = RuleSet::compile(&packs, &settings).expect("bundled packs compile");
        let with_bytes = set
            .chains
            .iter()
            .filter(|c| c.guard.as_ref().is_some_and(|g| g.bytes.is_some()))
            .count();
        assert!(with_bytes >= 3, "{with_bytes} chains with a byte guard");
        // Prose: the whitespace-removing chains of 941150 and 941200 are
        // ruled out by their guards, before they run.
        for (id, wanted) in [
            (941150, &b"x = [] [ (![]"[..]),
            (941200, b"width: expression(alert(1))"),
        ] {
            let ri = set.rules.iter().position(|r| r.id == id).expect("rule");
            let info = &set.chains[set.rule_chain[ri]];
            let guard = info.guard.as_ref().expect("a guard");
            let (node, bytes) = guard.bytes.as_ref().expect("a byte guard");
            assert_ne!(
                *node, info.node,
                "{id}: checked before the chain's last step"
            );
            assert!(
                !detect::has_any(b"value number 1 of the form", bytes),
                "{id}"
            );
            assert!(detect::has_any(wanted, bytes), "{id}");
        }
        // Fragments of what the guarded rules look for, split by the
        // whitespace, comments and escapes their chains remove.
        const PIECES: &[&str] = &[
            " ",
            "\t",
            "\n",
            "/**/",
            "/*",
            "*/",
            "(",
            ")",
            "[",
            "]",
            "!",
            "+",
            "<",
            ">",
            ":",
            "&#40;",
            "&#x5b;",
            "%28",
            "%5B",
            "%20",
            "\\28 ",
            "\\",
            "\\u0028",
            "expression",
            "-moz-binding",
            "behavior",
            "url",
            "style",
            "@import",
            "child_process",
            "process",
            "constructor",
            ".",
            "O:8:\"stdClass\":1:{",
            "Y2hpbGRfcHJvY2Vzcw==",
            "==",
            "a",
            "Z",
            "0",
            "9",
            "select",
            "union",
            "'",
            "\"",
            ";",
            "=",
            "\u{212A}",
            "\u{A0}",
            "İ",
            "\r\n",
            "Set-Cookie",
            "127.0.0.1",
            ":8080/",
            "localhost/",
            "%0d%0a",
        ];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let kinds = [
            (TargetKind::ArgsPost, "f"),
            (TargetKind::Json, "a.b"),
            (TargetKind::Headers, "user-agent"),
            (TargetKind::Cookies, "c"),
            (TargetKind::ArgsNames, ""),
        ];
        let requests: Vec<Vec<(TargetKind, &str, String)>> = (0..800)
            .map(|round| {
                (0..8)
                    .map(|i| {
                        let n = (next() % 12) as usize;
                        let v: String = (0..n)
                            .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                            .collect();
                        let (kind, name) = kinds[(round + i) % kinds.len()];
                        (kind, name, v)
                    })
                    .collect()
            })
            .collect();
        let all_hits = |set: &RuleSet| -> Vec<Vec<(u32, String)>> {
            let mut scratch = EngineScratch::default();
            requests
                .iter()
                .map(|values| {
                    let list: Vec<(TargetKind, &str, &str)> = values
                        .iter()
                        .map(|(k, n, v)| (*k, *n, v.as_str()))
                        .collect();
                    let ev = set.evaluate(&fields(&list), &RequestFacts::default(), &mut scratch);
                    hit_ids(&ev)
                })
                .collect()
        };
        // The batch filter of the header-injection rule: an address with a
        // port, which its pattern matched across a newline separator, is
        // not scanned again; a line break before a header line is.
        let ri = set.rules.iter().position(|r| r.id == 921120).expect("rule");
        let (db, id) = set
            .dbs
            .iter()
            .flatten()
            .find_map(|db| {
                db.pattern_rule
                    .iter()
                    .position(|&r| r == ri)
                    .map(|id| (db, id))
            })
            .expect("compiled");
        let headers = 1 << TargetKind::Headers as usize;
        assert!(!db.could_match(id as u32, b"127.0.0.1:18502", headers));
        assert!(db.could_match(id as u32, b"a\r\nSet-Cookie: x", headers));
        assert!(!db.could_match(
            id as u32,
            b"a\r\nSet-Cookie: x",
            1 << TargetKind::Json as usize
        ));
        let guarded = all_hits(&set);
        for c in &mut set.chains {
            c.guard = None;
        }
        for db in set.dbs.iter_mut().flatten() {
            db.filters.clear();
        }
        // Gated databases: the costly SQL patterns are gated, and a plain
        // value is not scanned with them.
        assert!(set.gated_dbs.count_ones() >= 2, "{:b}", set.gated_dbs);
        for id in [942260, 942190, 934604] {
            let ri = set.rules.iter().position(|r| r.id == id).expect("rule");
            assert!(
                set.gated_dbs & 1 << set.db_of_rule[ri] != 0,
                "{id} in an ungated database"
            );
        }
        assert!(set.rare_dbs != 0 && set.rare_dbs & !set.gated_dbs == 0);
        set.gated_dbs = 0;
        set.rare_dbs = 0;
        let bare = all_hits(&set);
        for ((g, b), values) in guarded.iter().zip(&bare).zip(&requests) {
            assert_eq!(g, b, "{values:?}");
        }
        let of_guarded_rules = guarded
            .iter()
            .flatten()
            .filter(|(id, _)| matches!(id, 941150 | 941200 | 934001 | 934002 | 933023))
            .count();
        assert!(
            of_guarded_rules >= 50,
            "only {of_guarded_rules} hits of guarded rules"
        );
    }

    #[test]
    fn inline_tests_run_through_the_compiled_matcher() {
        let rs = set(
            &PACK.replace("    caseless: true\n", ""),
            &EngineSettings::default(),
        );
        assert_eq!(rs.test_rule(100, b"1 union   select 2"), Some(true));
        assert_eq!(rs.test_rule(100, b"the union is selected"), Some(false));
        assert_eq!(rs.test_rule(102, b"short"), Some(false));
    }
}
