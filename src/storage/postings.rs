//! Sorted postings-list set operations shared by the head's in-memory index
//! and the block index reader, so both answer matchers with the same code.
//!
//! Owns only the algorithms over ascending, deduplicated slices of ids; knows
//! nothing of labels, matchers or where the lists live.

/// Sorted intersection of two ascending lists.
pub(crate) fn intersect<T: Ord + Copy>(a: &[T], b: &[T]) -> Vec<T> {
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

/// Sorted, deduplicated union of ascending lists.
pub(crate) fn merge<T: Ord + Copy, L: AsRef<[T]>>(lists: &[L]) -> Vec<T> {
    match lists {
        [] => Vec::new(),
        [one] => one.as_ref().to_vec(),
        _ => {
            let mut out: Vec<T> = lists
                .iter()
                .flat_map(|l| l.as_ref().iter().copied())
                .collect();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
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
    }
}
