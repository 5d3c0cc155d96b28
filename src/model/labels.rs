//! [`Labels`]: the sorted, validated, cheaply cloned identity of a series, and
//! the [`Interner`] that keeps one copy of each distinct label string.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

use parking_lot::Mutex;

/// The reserved label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

/// One label pair. Strings are shared (`Arc<str>`) so that interned copies
/// cost one pointer each.
#[derive(Clone, Eq)]
pub struct Label {
    /// The label name; never empty.
    pub name: Arc<str>,
    /// The label value; never empty inside a [`Labels`] (an empty value means
    /// the label is absent, as in Prometheus).
    pub value: Arc<str>,
}

/// Interned strings compare by pointer before by content.
impl PartialEq for Label {
    fn eq(&self, other: &Self) -> bool {
        (Arc::ptr_eq(&self.name, &other.name) || self.name == other.name)
            && (Arc::ptr_eq(&self.value, &other.value) || self.value == other.value)
    }
}

impl std::hash::Hash for Label {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.value.hash(state);
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.name, self.value)
    }
}

/// Why a set of labels was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A label had an empty name.
    #[error("empty label name")]
    EmptyName,
    /// A name appeared twice.
    #[error("duplicate label name {name:?}")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// A name is not valid under the legacy `[a-zA-Z_][a-zA-Z0-9_]*` rule
    /// (only checked when [`LabelsBuilder::legacy_names`] is set).
    #[error("invalid label name {name:?}")]
    InvalidName {
        /// The offending name.
        name: String,
    },
}

/// A sorted set of labels with unique, non-empty names. Cloning is one
/// reference-count increment. Carries its [`Labels::stable_hash`], computed
/// once when built: the head's series map and the remote-write series cache
/// look label sets up by it on every append.
#[derive(Clone)]
pub struct Labels {
    labels: Arc<[Label]>,
    hash: u64,
}

impl Default for Labels {
    fn default() -> Self {
        Self::new(Arc::from([]))
    }
}

impl PartialOrd for Label {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By name, then value; interned strings compare by pointer first: sorting
/// 31k series of one metric for the series API spent most of its time
/// reading the shared name strings to find them equal.
impl Ord for Label {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        cmp_shared(&self.name, &other.name).then_with(|| cmp_shared(&self.value, &other.value))
    }
}

fn cmp_shared(a: &Arc<str>, b: &Arc<str>) -> std::cmp::Ordering {
    if Arc::ptr_eq(a, b) {
        std::cmp::Ordering::Equal
    } else {
        a.cmp(b)
    }
}

/// Equal hashes first (almost every unequal pair stops there), then the
/// same allocation, then the labels themselves.
#[cfg(test)]
impl Labels {
    /// These labels with their hash replaced: hash collisions on demand.
    pub(crate) fn with_hash_for_test(mut self, hash: u64) -> Self {
        self.hash = hash;
        self
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && (Arc::ptr_eq(&self.labels, &other.labels) || self.labels == other.labels)
    }
}

impl Eq for Labels {}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By name, then value, label by label (as Prometheus sorts series).
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.labels, &other.labels) {
            return std::cmp::Ordering::Equal;
        }
        self.labels.cmp(&other.labels)
    }
}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Labels {
    fn new(labels: Arc<[Label]>) -> Self {
        let mut h = HASH_STATE.build_hasher();
        for l in labels.iter() {
            h.write(l.name.as_bytes());
            h.write_u8(0xff);
            h.write(l.value.as_bytes());
            h.write_u8(0xff);
        }
        Self {
            hash: h.finish(),
            labels,
        }
    }

    /// The empty label set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds labels from `(name, value)` pairs: sorts them, drops pairs with
    /// empty values and validates the names.
    ///
    /// # Errors
    /// [`LabelError`] for an empty or duplicate name.
    pub fn try_from_pairs<N: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Result<Self, LabelError> {
        let mut b = LabelsBuilder::new();
        for (n, v) in pairs {
            b.push(n.as_ref(), v.as_ref());
        }
        b.build()
    }

    /// Builds labels from pairs known to be valid (tests, constants).
    ///
    /// # Panics
    /// If the pairs are invalid.
    pub fn from_static(pairs: &[(&str, &str)]) -> Self {
        Self::try_from_pairs(pairs.iter().copied()).expect("static labels are valid")
    }

    /// The labels in name order.
    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.labels.iter()
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Reports whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .map(|i| &*self.labels[i].value)
    }

    /// The metric name (`__name__`), if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// A hash of the names and values, stable for the life of the process
    /// (used to shard the head's series map; never persisted).
    pub fn stable_hash(&self) -> u64 {
        self.hash
    }

    /// Returns a copy whose strings come from `interner`: these labels
    /// themselves (no allocation) when every string already does.
    pub fn interned(&self, interner: &Interner) -> Labels {
        let strings: Vec<Label> = self
            .labels
            .iter()
            .map(|l| Label {
                name: interner.intern(&l.name),
                value: interner.intern(&l.value),
            })
            .collect();
        let same = strings
            .iter()
            .zip(self.labels.iter())
            .all(|(a, b)| Arc::ptr_eq(&a.name, &b.name) && Arc::ptr_eq(&a.value, &b.value));
        if same {
            return self.clone();
        }
        Labels {
            labels: strings.into(),
            hash: self.hash,
        }
    }

    /// Approximate heap bytes held by these labels if nothing were shared.
    pub fn size_bytes(&self) -> usize {
        self.labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 2 * std::mem::size_of::<Arc<str>>())
            .sum()
    }
}

static HASH_STATE: ahash::RandomState = ahash::RandomState::with_seeds(
    0x243f_6a88_85a3_08d3,
    0x1319_8a2e_0370_7344,
    0xa409_3822_299f_31d0,
    0x082e_fa98_ec4e_6c89,
);

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prometheus text style: `name{a="b", c="d"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = self.metric_name() {
            f.write_str(n)?;
        }
        f.write_str("{")?;
        let mut first = true;
        for l in self.labels.iter().filter(|l| &*l.name != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        f.write_str("}")
    }
}

/// Collects label pairs in any order and produces valid [`Labels`].
#[derive(Debug, Default)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
    legacy_names: bool,
}

impl LabelsBuilder {
    /// An empty builder accepting any non-empty UTF-8 name (Prometheus 3's
    /// default `utf8` name validation).
    pub fn new() -> Self {
        Self::default()
    }

    /// Restricts names to the legacy `[a-zA-Z_][a-zA-Z0-9_]*` rule.
    pub fn legacy_names(mut self, on: bool) -> Self {
        self.legacy_names = on;
        self
    }

    /// Adds a pair; a pair with an empty value is dropped, as in Prometheus.
    pub fn push(&mut self, name: &str, value: &str) -> &mut Self {
        if !value.is_empty() {
            self.labels.push(Label {
                name: name.into(),
                value: value.into(),
            });
        }
        self
    }

    /// Adds a pair of already shared strings (no copy).
    pub fn push_shared(&mut self, name: Arc<str>, value: Arc<str>) -> &mut Self {
        if !value.is_empty() {
            self.labels.push(Label { name, value });
        }
        self
    }

    /// Sorts, validates and returns the labels; the builder is left empty.
    ///
    /// # Errors
    /// [`LabelError`] for an empty, invalid or duplicate name.
    pub fn build(&mut self) -> Result<Labels, LabelError> {
        let mut labels = std::mem::take(&mut self.labels);
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        for (i, l) in labels.iter().enumerate() {
            if l.name.is_empty() {
                return Err(LabelError::EmptyName);
            }
            if self.legacy_names && !is_legacy_label_name(&l.name) {
                return Err(LabelError::InvalidName {
                    name: l.name.to_string(),
                });
            }
            if i > 0 && labels[i - 1].name == l.name {
                return Err(LabelError::DuplicateName {
                    name: l.name.to_string(),
                });
            }
        }
        Ok(Labels::new(labels.into()))
    }
}

/// Reports whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_legacy_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    match bytes.next() {
        Some(b) if b.is_ascii_alphabetic() || b == b'_' => {}
        _ => return false,
    }
    bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

const INTERNER_SHARDS: usize = 64;

type StringSet = HashSet<Arc<str>, ahash::RandomState>;

/// Keeps one shared copy of each distinct string. Sharded so that concurrent
/// series creation does not contend on one lock. Strings stay until the
/// interner is dropped or [`Interner::purge_unused`] runs.
pub struct Interner {
    shards: Box<[Mutex<StringSet>]>,
}

impl Default for Interner {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Interner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interner")
            .field("len", &self.len())
            .finish()
    }
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Self {
            shards: (0..INTERNER_SHARDS)
                .map(|_| Mutex::new(HashSet::default()))
                .collect(),
        }
    }

    fn shard(&self, s: &str) -> &Mutex<StringSet> {
        &self.shards[(HASH_STATE.hash_one(s) as usize) % INTERNER_SHARDS]
    }

    /// Returns the shared copy of `s`, adding it on first sight.
    pub fn intern(&self, s: &str) -> Arc<str> {
        let mut set = self.shard(s).lock();
        if let Some(a) = set.get(s) {
            return a.clone();
        }
        let a: Arc<str> = s.into();
        set.insert(a.clone());
        a
    }

    /// Number of distinct strings held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    /// Reports whether no string is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops strings that nobody but the interner references any more.
    pub fn purge_unused(&self) {
        for s in self.shards.iter() {
            s.lock().retain(|a| Arc::strong_count(a) > 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_unsorted_input_sorted_output() {
        let l = Labels::try_from_pairs([("b", "2"), ("__name__", "up"), ("a", "1")]).unwrap();
        let names: Vec<&str> = l.iter().map(|l| &*l.name).collect();
        assert_eq!(names, ["__name__", "a", "b"]);
        assert_eq!(l.metric_name(), Some("up"));
        assert_eq!(l.get("b"), Some("2"));
        assert_eq!(l.get("zz"), None);
        assert_eq!(l.to_string(), r#"up{a="1", b="2"}"#);
    }

    #[test]
    fn builder_duplicate_name_rejected() {
        let e = Labels::try_from_pairs([("a", "1"), ("a", "2")]).unwrap_err();
        assert_eq!(e, LabelError::DuplicateName { name: "a".into() });
    }

    #[test]
    fn builder_empty_name_rejected_empty_value_dropped() {
        assert_eq!(
            Labels::try_from_pairs([("", "x")]).unwrap_err(),
            LabelError::EmptyName
        );
        let l = Labels::try_from_pairs([("a", ""), ("b", "1")]).unwrap();
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn legacy_names_checked_only_when_asked() {
        assert!(Labels::try_from_pairs([("a.b", "1")]).is_ok());
        let mut b = LabelsBuilder::new().legacy_names(true);
        b.push("a.b", "1");
        assert!(matches!(b.build(), Err(LabelError::InvalidName { .. })));
        assert!(is_legacy_label_name("_ok9"));
        assert!(!is_legacy_label_name("9no"));
    }

    #[test]
    fn interner_shares_one_copy() {
        let i = Interner::new();
        let a = Labels::from_static(&[("job", "x")]).interned(&i);
        let b = Labels::from_static(&[("job", "x")]).interned(&i);
        let (la, lb) = (a.iter().next().unwrap(), b.iter().next().unwrap());
        assert!(Arc::ptr_eq(&la.value, &lb.value));
        assert_eq!(i.len(), 2);
        drop((a, b));
        i.purge_unused();
        assert!(i.is_empty());
    }

    #[test]
    fn stable_hash_distinguishes_boundaries() {
        let a = Labels::from_static(&[("a", "bc")]);
        let b = Labels::from_static(&[("ab", "c")]);
        assert_ne!(a.stable_hash(), b.stable_hash());
        assert_eq!(a.stable_hash(), a.clone().stable_hash());
    }
}
