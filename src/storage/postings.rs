//! Sorted postings-list set operations shared by the head's in-memory index
//! and the block index reader, so both answer matchers with the same code.
//!
//! Owns only the algorithms over ascending, deduplicated slices of ids; knows
//! nothing of labels, matchers or where the lists live.

/// Sorted intersection of two ascending lists. When one is much shorter
/// (a few thousand candidates against a list of a million), each of its
/// ids is found in the other by galloping search instead of walking both.
pub(crate) fn intersect<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    if small.len().saturating_mul(GALLOP_RATIO) < large.len() {
        return intersect_gallop(small, large);
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

/// Above this length ratio [`intersect`] gallops through the longer list.
const GALLOP_RATIO: usize = 16;

/// `small` ∩ `large`: exponential then binary search in what is left of
/// `large` for each id of `small`.
fn intersect_gallop<T: Ord + Copy>(small: &[T], large: &[T]) -> Vec<T> {
    let mut out = Vec::with_capacity(small.len());
    let mut rest = large;
    for &x in small {
        let mut step = 1;
        while step < rest.len() && rest[step] < x {
            step *= 2;
        }
        let end = (step + 1).min(rest.len());
        let i = rest[..end].partition_point(|&y| y < x);
        rest = &rest[i..];
        match rest.first() {
            None => break,
            Some(&y) if y == x => {
                out.push(x);
                rest = &rest[1..];
            }
            Some(_) => {}
        }
    }
    out
}

/// `a` minus `b`, both ascending.
pub(crate) fn difference<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    if b.is_empty() {
        return a.to_vec();
    }
    let mut j = 0;
    let mut out = Vec::with_capacity(a.len());
    for &x in a {
        while j < b.len() && b[j] < x {
            j += 1;
        }
        if j >= b.len() || b[j] != x {
            out.push(x);
        }
    }
    out
}

/// Sorted, deduplicated union of ascending lists, merged pairwise in
/// rounds (O(n log k) sequential passes). Concatenating and sorting was
/// O(n log n) with random access: a regex over two thousand instance values
/// of a million-series head merged 200k ids that way in milliseconds.
pub(crate) fn merge<T: Ord + Copy, L: AsRef<[T]>>(lists: &[L]) -> Vec<T> {
    match lists {
        [] => Vec::new(),
        [one] => one.as_ref().to_vec(),
        _ => {
            let mut round: Vec<Vec<T>> = lists
                .chunks(2)
                .map(|p| match p {
                    [a, b] => union2(a.as_ref(), b.as_ref()),
                    [a] => a.as_ref().to_vec(),
                    _ => unreachable!("chunks(2) yields one or two lists"),
                })
                .collect();
            while round.len() > 1 {
                let mut next = Vec::with_capacity(round.len().div_ceil(2));
                let mut it = round.into_iter();
                while let Some(a) = it.next() {
                    next.push(match it.next() {
                        Some(b) => union2(&a, &b),
                        None => a,
                    });
                }
                round = next;
            }
            round.pop().unwrap_or_default()
        }
    }
}

/// Sorted, deduplicated union of two ascending lists.
fn union2<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len() + b.len());
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_set_ops_match_btreeset(a in proptest::collection::btree_set(0u64..200, 0..60),
                                       b in proptest::collection::btree_set(0u64..200, 0..60),
                                       c in proptest::collection::btree_set(0u64..200, 0..60)) {
            let (va, vb, vc): (Vec<u64>, Vec<u64>, Vec<u64>) =
                (a.iter().copied().collect(), b.iter().copied().collect(), c.iter().copied().collect());
            prop_assert_eq!(intersect(&va, &vb), a.intersection(&b).copied().collect::<Vec<_>>());
            prop_assert_eq!(difference(&va, &vb), a.difference(&b).copied().collect::<Vec<_>>());
            let mut want_u: Vec<u64> = a.union(&b).copied().collect();
            want_u.extend(c.iter().copied());
            want_u.sort_unstable();
            want_u.dedup();
            prop_assert_eq!(merge(&[&va, &vb, &vc]), want_u);
        }

        #[test]
        fn prop_gallop_and_many_way_merge_match_btreeset(
            small in proptest::collection::btree_set(0u64..5000, 0..20),
            large in proptest::collection::btree_set(0u64..5000, 0..2000),
            lists in proptest::collection::vec(proptest::collection::btree_set(0u64..300, 0..40), 0..12),
        ) {
            let (vs, vl): (Vec<u64>, Vec<u64>) = (small.iter().copied().collect(), large.iter().copied().collect());
            let want: Vec<u64> = small.intersection(&large).copied().collect();
            prop_assert_eq!(intersect(&vs, &vl), want.clone());
            prop_assert_eq!(intersect(&vl, &vs), want);
            let vecs: Vec<Vec<u64>> = lists.iter().map(|s| s.iter().copied().collect()).collect();
            let want_u: Vec<u64> = lists.iter().flatten().copied().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
            prop_assert_eq!(merge(&vecs), want_u);
        }
    }
}
