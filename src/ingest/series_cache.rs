//! [`SeriesCache`]: the label sets remote-write requests sent before, found
//! by a hash of their raw bytes. A sender repeats every series in every
//! request (once a scrape), so a hit skips what turning raw labels into
//! [`Labels`] costs: UTF-8 checks, string allocations, sorting, validation
//! and the label-set hash. The cached [`Labels`] are the ones the head
//! keeps (interned through it), so the head's own lookup compares them by
//! pointer. Once appended, an entry also keeps the head's handle on the
//! series ([`SeriesHandle`]), so the next append skips the head's own
//! lookup; the head ignores a handle whose series it has dropped.
//!
//! Holds only label sets that passed validation, and answers a hit only
//! when the request's pairs equal the cached labels pair for pair, so a
//! hash collision or a reordered, duplicated or empty-valued label is a
//! miss that takes the full path. Two generations per stripe bound its
//! size and let series no longer sent age out. Knows nothing of storage.
//!
//! Keys are hashes of client-chosen bytes, and the maps use them as they
//! are; so each cache hashes with its own random seeds (from the standard
//! library's per-process random keys), never fixed ones: a client that
//! could compute keys could send label sets that all land in one probe
//! sequence and make every lookup linear (hash flooding).

use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::Mutex;

use crate::model::Labels;
use crate::storage::SeriesHandle;

const STRIPES: usize = 64;

/// Series of one stripe looked up together by [`SeriesCache::get_many`]:
/// more loads under way than a core has line-fill buffers.
const WINDOW: usize = 16;

/// Random seeds for one cache's key hasher: four words drawn from a fresh
/// [`std::collections::hash_map::RandomState`], whose keys come from the OS
/// once per process (and differ per instance), whatever features ahash
/// was built with.
fn random_key_hasher() -> ahash::RandomState {
    let std = std::collections::hash_map::RandomState::new();
    let word = |i: u64| std.hash_one(i);
    ahash::RandomState::with_seeds(word(0), word(1), word(2), word(3))
}

/// Hashes are already well mixed: use them as they are.
#[derive(Default, Clone, Copy)]
struct IdentityHash;

impl BuildHasher for IdentityHash {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

struct IdentityHasher(u64);

impl std::hash::Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Whether `labels` are `pairs`, pair for pair in order.
fn same_pairs<'a>(
    labels: &Labels,
    pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
) -> bool {
    labels.len() == pairs.len()
        && labels
            .iter()
            .zip(pairs)
            .all(|(l, (n, v))| l.name.as_bytes() == n && l.value.as_bytes() == v)
}

/// A cached series: the head's handle on it, whose series holds its
/// labels. A series is cached once an append has given the handle
/// ([`SeriesCache::set_series`]), so an entry and its key take 16 bytes,
/// four to a cache line; caching label sets before their first append
/// took a word more per entry (32 bytes with the key), and at a million
/// series the maps' share of memory with it.
type Cached = SeriesHandle;

/// Where a batch entry's series sits in the cache, and the head's handle
/// on it if known: what [`SeriesCache::get`] found or
/// [`SeriesCache::insert`] added.
#[derive(Debug, Clone)]
pub struct CacheSlot {
    /// The key of the series' raw pairs.
    pub key: u64,
    /// The head's series, from an earlier append.
    pub series: Option<SeriesHandle>,
}

type Generation = HashMap<u64, Cached, IdentityHash>;

#[derive(Default)]
struct Stripe {
    current: Generation,
    previous: Generation,
}

/// A stripe alone on its cache lines, so that two threads locking
/// neighbouring stripes do not take one line from each other.
#[derive(Default)]
#[repr(align(128))]
struct Padded(Mutex<Stripe>);

/// Makes a label set share the storage's strings (`Db::intern_labels`).
pub type InternFn = Box<dyn Fn(&Labels) -> Labels + Send + Sync>;

/// Raw label pairs of recent requests -> their validated [`Labels`].
pub struct SeriesCache {
    /// This cache's randomly seeded key hasher.
    hasher: ahash::RandomState,
    stripes: Box<[Padded]>,
    /// Entries of one stripe's current generation before it rotates.
    per_generation: usize,
    intern: Option<InternFn>,
}

impl SeriesCache {
    /// A cache holding up to about `capacity` series (twice that at most,
    /// across the two generations).
    pub fn new(capacity: usize) -> Self {
        Self {
            hasher: random_key_hasher(),
            stripes: (0..STRIPES).map(|_| Padded::default()).collect(),
            per_generation: (capacity / STRIPES).max(1),
            intern: None,
        }
    }

    /// [`SeriesCache::new`] whose cached labels are made to share the
    /// storage's strings by `intern` as they are added.
    pub fn with_interner(capacity: usize, intern: InternFn) -> Self {
        Self {
            intern: Some(intern),
            ..Self::new(capacity)
        }
    }

    /// The hash a series' raw `(name, value)` pairs are cached under in
    /// this cache (seeded per cache: see the module doc).
    pub fn key<'a>(&self, pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
        use std::hash::Hasher;
        let mut h = self.hasher.build_hasher();
        for (n, v) in pairs {
            h.write_usize(n.len());
            h.write(n);
            h.write_usize(v.len());
            h.write(v);
        }
        h.finish()
    }

    /// The stripe of `key`: bits 32..38, which the maps' own hashing does
    /// not use. hashbrown takes a bucket from the low bits (a stripe holds
    /// far fewer than 2^32 entries) and a 7-bit tag from the top 7 bits;
    /// when the stripe came from the top bits (`key >> 58`), keys of one
    /// stripe shared 6 of the 7 tag bits, and a lookup compared the keys
    /// of about half the entries of its group: a profile under
    /// `tidemark-loadgen` had 12% of this path's time on those compares.
    fn stripe(&self, key: u64) -> &Mutex<Stripe> {
        &self.stripes[Self::stripe_of(key)].0
    }

    /// The index of [`SeriesCache::stripe`].
    fn stripe_of(key: u64) -> usize {
        (key >> 32) as usize % STRIPES
    }

    /// The cached labels for `key`, and the head's handle if known, if
    /// they equal `pairs` (in order).
    pub fn get<'a>(
        &self,
        key: u64,
        pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Option<(Labels, Option<SeriesHandle>)> {
        let mut s = self.stripe(key).lock();
        let found = match s.current.get(&key) {
            Some(c) => c,
            None => {
                let c = s.previous.remove(&key)?;
                s.current.entry(key).or_insert(c)
            }
        };
        // Compared (and the head's series looked at) before anything is
        // cloned: the labels and the series are in memory the processor
        // does not have at hand (a server's series do not fit its caches),
        // and an atomic increment waits for every load before it, so
        // cloning first waited for the two one after the other. A series
        // the head has dropped is not passed on (the head would ignore it).
        let labels = found.labels();
        let same = same_pairs(labels, pairs);
        let series = (!found.is_removed()).then_some(found);
        same.then(|| (labels.clone(), series.cloned()))
    }

    /// [`SeriesCache::get`] for every series of a request: `keys[i]` with
    /// `pairs(i)`; answers in the order of `keys`.
    ///
    /// Looked up stripe by stripe, each locked once: first every entry is
    /// found and compared, then the hits are cloned. A lookup waits on
    /// memory the processor does not have at hand (the entry, its labels,
    /// their values), and a lock or a reference-count increment waits for
    /// every load before it; taken series by series, as `get` does, they
    /// made those waits one after the other. Here nothing atomic stands
    /// between the lookups of a stripe, so the processor overlaps them: a
    /// profile of the compare tool's ingest had 22 % of the server's CPU
    /// waiting on this cache's memory, series by series.
    pub fn get_many<'a, I>(
        &self,
        keys: &[u64],
        pairs: impl Fn(usize) -> I,
    ) -> Vec<Option<(Labels, Option<SeriesHandle>)>>
    where
        I: ExactSizeIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut out: Vec<Option<(Labels, Option<SeriesHandle>)>> =
            (0..keys.len()).map(|_| None).collect();
        // Indices of `keys` grouped by stripe (a counting sort, stable).
        let mut starts = [0usize; STRIPES + 1];
        for &k in keys {
            starts[Self::stripe_of(k) + 1] += 1;
        }
        for i in 0..STRIPES {
            starts[i + 1] += starts[i];
        }
        let mut next = starts;
        let mut order = vec![0usize; keys.len()];
        for (i, &k) in keys.iter().enumerate() {
            let s = Self::stripe_of(k);
            order[next[s]] = i;
            next[s] += 1;
        }
        for stripe in 0..STRIPES {
            let group = &order[starts[stripe]..starts[stripe + 1]];
            if group.is_empty() {
                continue;
            }
            let mut s = self.stripes[stripe].0.lock();
            if !s.previous.is_empty() {
                for &i in group {
                    let key = keys[i];
                    if !s.current.contains_key(&key) {
                        if let Some(c) = s.previous.remove(&key) {
                            s.current.insert(key, c);
                        }
                    }
                }
            }
            // Found, then read stage by stage, then compared, then
            // cloned (see above), a window of series at a time. Each stage
            // is a short loop over the window whose loads do not depend on
            // each other, so the processor has many of them under way at
            // once; within one series they depend on each other (entry,
            // labels, values). The window lives on the stack: buffers
            // allocated per stripe cost more than the overlap saved when
            // every series is in the processor's caches.
            let s = &*s;
            for window in group.chunks(WINDOW) {
                let mut entries: [Option<&Cached>; WINDOW] = [None; WINDOW];
                for (e, &i) in entries.iter_mut().zip(window) {
                    *e = s.current.get(&keys[i]);
                }
                for c in entries.iter().flatten() {
                    std::hint::black_box(c.labels().iter().next().map(|l| l.value.len()));
                }
                for c in entries.iter().flatten() {
                    for l in c.labels().iter() {
                        std::hint::black_box(l.value.as_bytes().first().copied());
                    }
                }
                let mut same = [false; WINDOW];
                for ((hit, e), &i) in same.iter_mut().zip(&entries).zip(window) {
                    *hit = e.is_some_and(|c| same_pairs(c.labels(), pairs(i)));
                }
                for ((&hit, e), &i) in same.iter().zip(&entries).zip(window) {
                    let Some(c) = e.filter(|_| hit) else { continue };
                    let series = (!c.is_removed()).then(|| c.clone());
                    out[i] = Some((c.labels().clone(), series));
                }
            }
        }
        out
    }

    /// `labels` (valid, built from a request's pairs) sharing the
    /// storage's strings, as they are appended and, once appended, cached
    /// ([`SeriesCache::set_series`]).
    pub fn intern(&self, labels: Labels) -> Labels {
        match &self.intern {
            Some(intern) => intern(&labels),
            None => labels,
        }
    }

    /// Caches the head's handle on `series` under `key`, the key of the
    /// raw pairs its labels were built from, in place of whatever that
    /// key held (a series sent after a colliding one replaces it).
    pub fn set_series(&self, key: u64, series: SeriesHandle) {
        let mut s = self.stripe(key).lock();
        if s.current.len() >= self.per_generation && !s.current.contains_key(&key) {
            s.previous = std::mem::take(&mut s.current);
        }
        s.current.insert(key, series);
    }

    /// Cached series, both generations.
    pub fn len(&self) -> usize {
        self.stripes
            .iter()
            .map(|s| {
                let s = s.0.lock();
                s.current.len() + s.previous.len()
            })
            .sum()
    }

    /// Reports whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs<'a>(
        p: &'a [(&'a str, &'a str)],
    ) -> impl ExactSizeIterator<Item = (&'a [u8], &'a [u8])> {
        p.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes()))
    }

    /// An entry and its key fill a quarter of a cache line (see
    /// [`Cached`]).
    #[test]
    fn entries_take_16_bytes() {
        assert_eq!(std::mem::size_of::<(u64, Cached)>(), 16);
    }

    /// Caches `labels` under `key` as an append would.
    fn cache(c: &SeriesCache, key: u64, labels: Labels) {
        c.set_series(key, SeriesHandle::detached(c.intern(labels)));
    }

    #[test]
    fn hit_only_for_the_same_pairs_in_the_same_order() {
        let c = SeriesCache::new(1000);
        let raw = [("__name__", "up"), ("job", "node")];
        let labels = Labels::from_static(&raw);
        let k = c.key(pairs(&raw));
        assert!(c.get(k, pairs(&raw)).is_none());
        cache(&c, k, labels.clone());
        let (got, series) = c.get(k, pairs(&raw)).expect("cached");
        assert_eq!(got, labels);
        assert_eq!(series.as_ref().map(SeriesHandle::labels), Some(&labels));
        // Another order, a changed value, an extra pair: not a hit, even
        // when forced under the same key (a collision).
        let swapped = [("job", "node"), ("__name__", "up")];
        assert_ne!(c.key(pairs(&swapped)), k);
        assert!(c.get(k, pairs(&swapped)).is_none());
        assert!(c
            .get(k, pairs(&[("__name__", "up"), ("job", "nodf")]))
            .is_none());
        assert!(c
            .get(k, pairs(&[("__name__", "up"), ("job", "node"), ("a", "b")]))
            .is_none());
        // Keys spread (a degenerate hasher once made every key 0), and the
        // boundary between name and value is part of the key.
        assert_ne!(k, 0);
        assert_ne!(k, c.key(pairs(&[("__name__", "up")])));
        assert_ne!(c.key(pairs(&[("ab", "c")])), c.key(pairs(&[("a", "bc")])));
    }

    /// `get_many` answers what `get` answers, series by series, in the
    /// order asked, across stripes and generations, and a colliding or
    /// reordered series is a miss there too.
    #[test]
    fn get_many_answers_as_get_in_order() {
        let c = SeriesCache::new(STRIPES * 4);
        let sets: Vec<Vec<(String, String)>> = (0..600)
            .map(|i| {
                vec![
                    ("__name__".to_string(), format!("m{}", i % 7)),
                    ("i".to_string(), i.to_string()),
                ]
            })
            .collect();
        let raw = |i: usize| {
            sets[i]
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect::<Vec<_>>()
        };
        // Every third series cached; inserting 200 into a cache of 4 per
        // stripe and generation leaves some only in the previous one, and
        // drops the oldest.
        for i in (0..sets.len()).step_by(3) {
            let r = raw(i);
            let labels = Labels::from_static(
                &r.iter()
                    .map(|(n, v)| {
                        (
                            std::str::from_utf8(n).expect("utf-8"),
                            std::str::from_utf8(v).expect("utf-8"),
                        )
                    })
                    .collect::<Vec<_>>(),
            );
            cache(&c, c.key(r.into_iter()), labels);
        }
        let mut keys: Vec<u64> = (0..sets.len()).map(|i| c.key(raw(i).into_iter())).collect();
        // A collision: series 1 asked under series 0's key.
        keys[1] = keys[0];
        // `get_many` first: it finds some series in the previous
        // generation (and moves them to the current one, as `get` would).
        let raws: Vec<_> = (0..sets.len()).map(raw).collect();
        let got: Vec<_> = c
            .get_many(&keys, |i| raws[i].iter().copied())
            .into_iter()
            .map(|h| h.map(|(l, _)| l))
            .collect();
        let expected: Vec<_> = (0..sets.len())
            .map(|i| c.get(keys[i], raw(i).into_iter()).map(|(l, _)| l))
            .collect();
        assert_eq!(got, expected);
        assert!(got.iter().any(Option::is_some));
        assert!(got[1].is_none(), "a colliding series is a miss");
        assert!(got.iter().skip(1).step_by(3).all(Option::is_none));
    }

    /// Two caches hash the same pairs differently: the seeds are random,
    /// not fixed (a fixed seed would let a client precompute colliding
    /// keys).
    #[test]
    fn keys_are_seeded_per_cache() {
        let raw = [("__name__", "up"), ("job", "node")];
        let keys: std::collections::HashSet<u64> = (0..4)
            .map(|_| SeriesCache::new(64).key(pairs(&raw)))
            .collect();
        assert_eq!(keys.len(), 4, "same key from different caches: fixed seeds");
        // Within one cache the key is stable.
        let c = SeriesCache::new(64);
        assert_eq!(c.key(pairs(&raw)), c.key(pairs(&raw)));
    }

    #[test]
    fn size_is_bounded_and_recent_series_stay() {
        let c = SeriesCache::new(STRIPES * 10);
        let mut keep = None;
        for i in 0..10_000 {
            let v = i.to_string();
            let raw = [("__name__", "m"), ("i", v.as_str())];
            let k = c.key(pairs(&raw));
            cache(&c, k, Labels::from_static(&raw));
            if i == 0 {
                keep = Some((k, raw.map(|(n, v)| (n.to_string(), v.to_string()))));
            }
            // Series 0 is sent all along: it stays cached.
            let (k0, raw0) = keep.as_ref().unwrap();
            let raw0: Vec<(&[u8], &[u8])> = raw0
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect();
            assert!(
                c.get(*k0, raw0.into_iter()).is_some(),
                "series 0 evicted at {i}"
            );
        }
        assert!(c.len() <= 2 * STRIPES * 10 + STRIPES, "{}", c.len());
    }
}
