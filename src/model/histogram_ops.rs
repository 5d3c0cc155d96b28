//! Value arithmetic on [`FloatHistogram`]s, as Prometheus's
//! `model/histogram/float_histogram.go` (v3.14) defines it: bucket bounds,
//! bucket iteration, scaling, addition and subtraction (with schema
//! reduction, zero-bucket widening and custom-bound intersection),
//! compaction and counter-reset detection.
//!
//! Owns pure value operations only; must not know about storage, encodings
//! or PromQL (annotations are the caller's: operations report what happened
//! in [`Combined`] and [`HistogramOpError`]).
//!
//! Internally a side of a histogram is handled as a sorted list of
//! `(bucket index, count)` pairs ([`FloatHistogram::positive`],
//! [`FloatHistogram::negative`]) and written back as spans with
//! [`FloatHistogram::set_positive`] / [`FloatHistogram::set_negative`].

use crate::model::histogram::{
    is_custom_buckets, CounterResetHint, FloatHistogram, Span, CUSTOM_BUCKETS_SCHEMA,
};

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistogramOpError {
    /// One uses custom buckets, the other an exponential schema
    /// (Prometheus `ErrHistogramsIncompatibleSchema`).
    #[error("cannot apply this operation on histograms with a mix of exponential and custom bucket schemas")]
    IncompatibleSchema,
}

/// What an addition or subtraction noticed besides its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Combined {
    /// One operand said `CounterReset`, the other `NotCounterReset`.
    pub counter_reset_collision: bool,
    /// Custom bounds differed and were reduced to their intersection.
    pub nhcb_bounds_reconciled: bool,
}

/// Kahan-Babuška compensation terms of a running histogram sum (count,
/// sum and zero count), for [`FloatHistogram::kahan_add`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Compensation {
    /// Compensation of `count`.
    pub count: f64,
    /// Compensation of `sum`.
    pub sum: f64,
    /// Compensation of `zero_count`.
    pub zero_count: f64,
}

impl Compensation {
    /// Scales the terms with their histogram (`Mul`).
    pub fn mul(&mut self, f: f64) {
        self.count *= f;
        self.sum *= f;
        self.zero_count *= f;
    }

    /// Divides the terms with their histogram (`Div`).
    pub fn div(&mut self, d: f64) {
        self.count /= d;
        self.sum /= d;
        self.zero_count /= d;
    }
}

/// One Neumaier step: the compensation after `sum + inc` became `t`
/// (Prometheus `kahansum.Inc`; an infinite result resets it).
fn neumaier(c: &mut f64, sum: f64, inc: f64, t: f64) {
    if t.is_infinite() {
        *c = 0.0;
    } else if sum.abs() >= inc.abs() {
        *c += (sum - t) + inc;
    } else {
        *c += (inc - t) + sum;
    }
}

/// One bucket with its bounds, as Prometheus's `Bucket[float64]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
    /// Whether `lower` itself belongs to the bucket.
    pub lower_inclusive: bool,
    /// Whether `upper` itself belongs to the bucket.
    pub upper_inclusive: bool,
    /// Observations in the bucket.
    pub count: f64,
    /// Bucket index (0 for the zero bucket).
    pub index: i32,
}

/// The upper bound of exponential bucket `idx` at `schema` (Prometheus
/// `getBoundExponential`): `2^(idx·2^-schema)`, with the bucket just below
/// +Inf ending at `f64::MAX`.
pub fn exponential_bound(idx: i32, schema: i32) -> f64 {
    if schema < 0 {
        let exp = i64::from(idx) << (-schema).min(62);
        if exp == 1024 {
            return f64::MAX;
        }
        return ldexp(1.0, exp);
    }
    // Valid schemas are at most 8; a larger one must not overflow a shift.
    let schema = schema.min(62);
    let per = 1i64 << schema;
    let idx = i64::from(idx);
    let frac_idx = idx & (per - 1);
    // frac in [0.5, 1): 2^(frac_idx/per - 1).
    let frac = (frac_idx as f64 / per as f64 - 1.0).exp2();
    let exp = (idx >> schema) + 1;
    if frac == 0.5 && exp == 1025 {
        return f64::MAX;
    }
    ldexp(frac, exp)
}

/// `frac · 2^exp` without intermediate overflow or underflow.
fn ldexp(frac: f64, exp: i64) -> f64 {
    let mut v = frac;
    let mut e = exp.clamp(-2200, 2200);
    while e > 1000 {
        v *= 2f64.powi(1000);
        e -= 1000;
    }
    while e < -1000 {
        v *= 2f64.powi(-1000);
        e += 1000;
    }
    v * 2f64.powi(e as i32)
}

/// The upper bound of bucket `idx` (Prometheus `getBound`): custom bounds
/// for schema −53 (−Inf below the first, +Inf for the last), exponential
/// otherwise.
pub fn bucket_bound(idx: i32, schema: i32, custom_values: &[f64]) -> f64 {
    if is_custom_buckets(schema) {
        if idx < 0 {
            return f64::NEG_INFINITY;
        }
        return custom_values
            .get(idx as usize)
            .copied()
            .unwrap_or(f64::INFINITY);
    }
    exponential_bound(idx, schema)
}

/// The index of the bucket in `target` schema that bucket `idx` of
/// `origin` schema falls into (`origin >= target`).
fn target_index(idx: i32, origin: i32, target: i32) -> i32 {
    let shift = (origin - target).clamp(0, 31);
    (idx.saturating_sub(1) >> shift).saturating_add(1)
}

/// Expands spans + absolute counts into `(index, count)` pairs; a
/// malformed layout yields only the buckets both describe.
fn expand(spans: &[Span], buckets: &[f64]) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(buckets.len());
    let mut idx: i32 = 0;
    let mut k = 0;
    for (n, s) in spans.iter().enumerate() {
        idx = if n == 0 {
            s.offset
        } else {
            idx.saturating_add(s.offset)
        };
        for _ in 0..s.length {
            let Some(&c) = buckets.get(k) else {
                return out;
            };
            out.push((idx, c));
            k += 1;
            idx = idx.saturating_add(1);
        }
    }
    out
}

/// Builds spans + counts from ascending `(index, count)` pairs, keeping
/// every bucket given (zeros too) and starting a new span at each gap.
fn collapse(pairs: &[(i32, f64)]) -> (Vec<Span>, Vec<f64>) {
    let mut spans: Vec<Span> = Vec::new();
    let mut buckets = Vec::with_capacity(pairs.len());
    let mut next: Option<i32> = None;
    for &(idx, c) in pairs {
        match (next, spans.last_mut()) {
            (Some(n), Some(last)) if n == idx => last.length += 1,
            (Some(n), _) => spans.push(Span {
                offset: idx.saturating_sub(n),
                length: 1,
            }),
            (None, _) => spans.push(Span {
                offset: idx,
                length: 1,
            }),
        }
        buckets.push(c);
        next = Some(idx.saturating_add(1));
    }
    (spans, buckets)
}

/// Merges the buckets of `pairs` (at schema `origin`) into schema `target`.
fn reduce_pairs(pairs: &[(i32, f64)], origin: i32, target: i32) -> Vec<(i32, f64)> {
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(pairs.len());
    for &(idx, c) in pairs {
        let t = target_index(idx, origin, target);
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 += c,
            _ => out.push((t, c)),
        }
    }
    out
}

/// Adds (or subtracts) `b` into `a`, both ascending; buckets of `b` whose
/// absolute upper bound is within `threshold` are ignored (they are part
/// of the zero bucket already).
fn add_pairs(
    a: &[(i32, f64)],
    b: &[(i32, f64)],
    schema: i32,
    threshold: f64,
    negate: bool,
) -> Vec<(i32, f64)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    // Bounds grow with the index: once one bucket of `b` is above the
    // threshold, every later one is too.
    let mut past_threshold = is_custom_buckets(schema);
    while i < a.len() || j < b.len() {
        if j < b.len() && !past_threshold {
            if exponential_bound(b[j].0, schema) <= threshold {
                j += 1;
                continue;
            }
            past_threshold = true;
        }
        let take_a = j >= b.len() || (i < a.len() && a[i].0 < b[j].0);
        let take_b = i >= a.len() || (j < b.len() && b[j].0 < a[i].0);
        let bv = |v: f64| if negate { -v } else { v };
        if take_a {
            out.push(a[i]);
            i += 1;
        } else if take_b {
            out.push((b[j].0, bv(b[j].1)));
            j += 1;
        } else {
            out.push((a[i].0, a[i].1 + bv(b[j].1)));
            i += 1;
            j += 1;
        }
    }
    out
}

/// The strictly ascending bounds present in both lists.
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Re-buckets custom buckets with `bounds` onto the coarser `target`
/// bounds (a subset): each bucket goes to the first target bucket whose
/// upper bound is at least its own.
fn map_custom(pairs: &[(i32, f64)], bounds: &[f64], target: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; target.len() + 1];
    for &(idx, c) in pairs {
        let upper = bucket_bound(idx, CUSTOM_BUCKETS_SCHEMA, bounds);
        let t = target.partition_point(|&b| b < upper);
        if let Some(slot) = out.get_mut(t) {
            *slot += c;
        }
    }
    out
}

impl FloatHistogram {
    /// Whether this histogram uses custom buckets (schema −53).
    pub fn uses_custom_buckets(&self) -> bool {
        is_custom_buckets(self.schema)
    }

    /// The positive buckets as ascending `(index, count)` pairs.
    pub fn positive(&self) -> Vec<(i32, f64)> {
        expand(&self.positive_spans, &self.positive_buckets)
    }

    /// The negative buckets as ascending `(index, count)` pairs.
    pub fn negative(&self) -> Vec<(i32, f64)> {
        expand(&self.negative_spans, &self.negative_buckets)
    }

    /// Replaces the positive buckets with ascending `(index, count)` pairs.
    pub fn set_positive(&mut self, pairs: &[(i32, f64)]) {
        (self.positive_spans, self.positive_buckets) = collapse(pairs);
    }

    /// Replaces the negative buckets with ascending `(index, count)` pairs.
    pub fn set_negative(&mut self, pairs: &[(i32, f64)]) {
        (self.negative_spans, self.negative_buckets) = collapse(pairs);
    }

    /// Multiplies counts, sum and every bucket by `factor` (Prometheus
    /// `Mul`); a negative factor makes it a gauge histogram.
    pub fn mul(&mut self, factor: f64) {
        self.zero_count *= factor;
        self.count *= factor;
        self.sum *= factor;
        self.positive_buckets.iter_mut().for_each(|b| *b *= factor);
        self.negative_buckets.iter_mut().for_each(|b| *b *= factor);
        if factor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Divides like [`FloatHistogram::mul`] multiplies; division by zero
    /// removes every bucket (Prometheus `Div`).
    pub fn div(&mut self, divisor: f64) {
        self.zero_count /= divisor;
        self.count /= divisor;
        self.sum /= divisor;
        if divisor == 0.0 {
            self.positive_buckets.clear();
            self.negative_buckets.clear();
            self.positive_spans.clear();
            self.negative_spans.clear();
            return;
        }
        self.positive_buckets.iter_mut().for_each(|b| *b /= divisor);
        self.negative_buckets.iter_mut().for_each(|b| *b /= divisor);
        if divisor < 0.0 {
            self.counter_reset_hint = CounterResetHint::Gauge;
        }
    }

    /// Adds `other` into `self` (Prometheus `Add`).
    ///
    /// # Errors
    /// [`HistogramOpError::IncompatibleSchema`] when exactly one of them
    /// uses custom buckets.
    pub fn add(&mut self, other: &FloatHistogram) -> Result<Combined, HistogramOpError> {
        self.combine(other, false)
    }

    /// [`FloatHistogram::add`] with compensated summation of count, sum and
    /// zero count (as Prometheus's `KahanAdd`); apply the terms with
    /// [`FloatHistogram::apply_compensation`] at the end.
    ///
    /// # Errors
    /// As [`FloatHistogram::add`].
    pub fn kahan_add(
        &mut self,
        other: &FloatHistogram,
        comp: &mut Compensation,
    ) -> Result<Combined, HistogramOpError> {
        let (count, sum, zero, threshold) =
            (self.count, self.sum, self.zero_count, self.zero_threshold);
        let r = self.add(other)?;
        neumaier(&mut comp.count, count, other.count, self.count);
        neumaier(&mut comp.sum, sum, other.sum, self.sum);
        if threshold == self.zero_threshold && other.zero_threshold == threshold {
            neumaier(
                &mut comp.zero_count,
                zero,
                other.zero_count,
                self.zero_count,
            );
        }
        Ok(r)
    }

    /// Adds the compensation terms of a [`FloatHistogram::kahan_add`] sum.
    pub fn apply_compensation(&mut self, comp: &Compensation) {
        self.count += comp.count;
        self.sum += comp.sum;
        self.zero_count += comp.zero_count;
    }

    /// Subtracts `other` from `self` (Prometheus `Sub`; the caller sets the
    /// gauge hint for PromQL's `-`).
    ///
    /// # Errors
    /// As [`FloatHistogram::add`].
    pub fn sub(&mut self, other: &FloatHistogram) -> Result<Combined, HistogramOpError> {
        self.combine(other, true)
    }

    fn combine(
        &mut self,
        other: &FloatHistogram,
        negate: bool,
    ) -> Result<Combined, HistogramOpError> {
        if self.uses_custom_buckets() != other.uses_custom_buckets() {
            return Err(HistogramOpError::IncompatibleSchema);
        }
        let mut out = Combined {
            counter_reset_collision: self.adjust_counter_reset(other),
            nhcb_bounds_reconciled: false,
        };
        let sign = if negate { -1.0 } else { 1.0 };
        if !self.uses_custom_buckets() {
            let other_zero = self.reconcile_zero_buckets(other);
            self.zero_count += sign * other_zero;
        }
        self.count += sign * other.count;
        self.sum += sign * other.sum;
        if self.uses_custom_buckets() {
            if self.custom_values == other.custom_values {
                let sum = add_pairs(
                    &self.positive(),
                    &other.positive(),
                    self.schema,
                    0.0,
                    negate,
                );
                self.set_positive(&sum);
            } else {
                out.nhcb_bounds_reconciled = true;
                let bounds = intersect_bounds(&self.custom_values, &other.custom_values);
                let a = map_custom(&self.positive(), &self.custom_values, &bounds);
                let b = map_custom(&other.positive(), &other.custom_values, &bounds);
                let pairs: Vec<(i32, f64)> = a
                    .iter()
                    .zip(&b)
                    .enumerate()
                    .map(|(i, (x, y))| (i as i32, x + sign * y))
                    .collect();
                self.set_positive(&pairs);
                self.custom_values = bounds;
            }
            return Ok(out);
        }
        let (mut sp, mut sn) = (self.positive(), self.negative());
        let (mut op, mut on) = (other.positive(), other.negative());
        if other.schema < self.schema {
            sp = reduce_pairs(&sp, self.schema, other.schema);
            sn = reduce_pairs(&sn, self.schema, other.schema);
            self.schema = other.schema;
        } else if other.schema > self.schema {
            op = reduce_pairs(&op, other.schema, self.schema);
            on = reduce_pairs(&on, other.schema, self.schema);
        }
        let p = add_pairs(&sp, &op, self.schema, self.zero_threshold, negate);
        let n = add_pairs(&sn, &on, self.schema, self.zero_threshold, negate);
        self.set_positive(&p);
        self.set_negative(&n);
        Ok(out)
    }

    /// Sets the hint of a sum or difference (Prometheus
    /// `adjustCounterReset`); true on a `CounterReset`/`NotCounterReset`
    /// collision.
    fn adjust_counter_reset(&mut self, other: &FloatHistogram) -> bool {
        use CounterResetHint::*;
        let (a, b) = (self.counter_reset_hint, other.counter_reset_hint);
        match (a, b) {
            _ if a == b => false,
            (Gauge, _) => false,
            (_, Gauge) => {
                self.counter_reset_hint = Gauge;
                false
            }
            (Unknown, _) => false,
            (_, Unknown) => {
                self.counter_reset_hint = Unknown;
                false
            }
            _ => {
                self.counter_reset_hint = Unknown;
                true
            }
        }
    }

    /// Zero count and threshold this histogram would have with a zero
    /// bucket at least `larger` wide, widened further to the upper bound
    /// of a populated bucket the threshold falls into (Prometheus
    /// `zeroCountForLargerThreshold`).
    fn zero_count_for_larger_threshold(&self, mut larger: f64) -> (f64, f64) {
        if larger <= self.zero_threshold {
            return (self.zero_count, self.zero_threshold.max(larger));
        }
        let (pos, neg) = (self.positive(), self.negative());
        'outer: loop {
            let mut zero = self.zero_count;
            for &(idx, c) in &pos {
                let lower = exponential_bound(idx.saturating_sub(1), self.schema);
                let upper = exponential_bound(idx, self.schema);
                if lower >= larger {
                    break;
                }
                zero += c;
                if upper > larger {
                    if c != 0.0 {
                        larger = upper;
                    }
                    break;
                }
            }
            for &(idx, c) in &neg {
                let upper_abs = exponential_bound(idx, self.schema);
                let lower_abs = exponential_bound(idx.saturating_sub(1), self.schema);
                if lower_abs >= larger {
                    break;
                }
                zero += c;
                if upper_abs > larger {
                    if c != 0.0 {
                        larger = upper_abs;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zero, larger);
        }
    }

    /// Widens the zero buckets of `self` and (virtually) `other` to a
    /// common threshold; returns `other`'s zero count at that threshold
    /// (Prometheus `reconcileZeroBuckets`).
    fn reconcile_zero_buckets(&mut self, other: &FloatHistogram) -> f64 {
        let mut other_zero = other.zero_count;
        let mut other_threshold = other.zero_threshold;
        let mut guard = 0;
        while other_threshold != self.zero_threshold && guard < 64 {
            guard += 1;
            if self.zero_threshold > other_threshold {
                (other_zero, other_threshold) =
                    other.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_threshold > self.zero_threshold {
                let (z, t) = self.zero_count_for_larger_threshold(other_threshold);
                self.zero_count = z;
                self.zero_threshold = t;
                self.trim_buckets_in_zero_bucket();
            }
        }
        other_zero
    }

    /// Drops the buckets now inside the zero bucket (their counts are
    /// already in the zero count).
    fn trim_buckets_in_zero_bucket(&mut self) {
        let t = self.zero_threshold;
        let s = self.schema;
        let p: Vec<(i32, f64)> = self
            .positive()
            .into_iter()
            .filter(|&(i, _)| exponential_bound(i.saturating_sub(1), s) >= t)
            .collect();
        let n: Vec<(i32, f64)> = self
            .negative()
            .into_iter()
            .filter(|&(i, _)| exponential_bound(i.saturating_sub(1), s) >= t)
            .collect();
        self.set_positive(&p);
        self.set_negative(&n);
    }

    /// Removes every empty bucket and merges adjacent spans (Prometheus
    /// `Compact(0)`).
    pub fn compact(&mut self) {
        let p: Vec<(i32, f64)> = self.positive().into_iter().filter(|b| b.1 != 0.0).collect();
        let n: Vec<(i32, f64)> = self.negative().into_iter().filter(|b| b.1 != 0.0).collect();
        self.set_positive(&p);
        self.set_negative(&n);
    }

    /// Merges buckets down to the lower-resolution `target` schema
    /// (exponential schemas only; a no-op otherwise).
    pub fn reduce_resolution(&mut self, target: i32) {
        if self.uses_custom_buckets() || is_custom_buckets(target) || target >= self.schema {
            return;
        }
        let p = reduce_pairs(&self.positive(), self.schema, target);
        let n = reduce_pairs(&self.negative(), self.schema, target);
        self.set_positive(&p);
        self.set_negative(&n);
        self.schema = target;
    }

    /// Whether a counter reset happened between `previous` and `self`
    /// (Prometheus `DetectReset`).
    pub fn detect_reset(&self, previous: &FloatHistogram) -> bool {
        match self.counter_reset_hint {
            CounterResetHint::CounterReset => return true,
            CounterResetHint::NotCounterReset => return false,
            _ => {}
        }
        if self.count < previous.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !previous.uses_custom_buckets() {
                return true;
            }
            if self.custom_values != previous.custom_values {
                let bounds = intersect_bounds(&self.custom_values, &previous.custom_values);
                let cur = map_custom(&self.positive(), &self.custom_values, &bounds);
                let prev = map_custom(&previous.positive(), &previous.custom_values, &bounds);
                return cur.iter().zip(&prev).any(|(c, p)| c < p);
            }
            return buckets_decreased(&self.positive(), &previous.positive());
        }
        if previous.uses_custom_buckets() {
            return true;
        }
        if self.schema > previous.schema {
            return true;
        }
        if self.zero_threshold < previous.zero_threshold {
            return true;
        }
        let (prev_zero, new_threshold) =
            previous.zero_count_for_larger_threshold(self.zero_threshold);
        if new_threshold != self.zero_threshold {
            return true;
        }
        if self.zero_count < prev_zero {
            return true;
        }
        let skip = |pairs: Vec<(i32, f64)>, schema: i32| -> Vec<(i32, f64)> {
            pairs
                .into_iter()
                .filter(|&(i, _)| exponential_bound(i, schema) > self.zero_threshold)
                .collect()
        };
        let prev_p = skip(
            reduce_pairs(&previous.positive(), previous.schema, self.schema),
            self.schema,
        );
        let prev_n = skip(
            reduce_pairs(&previous.negative(), previous.schema, self.schema),
            self.schema,
        );
        let cur_p = skip(self.positive(), self.schema);
        let cur_n = skip(self.negative(), self.schema);
        buckets_decreased(&cur_p, &prev_p) || buckets_decreased(&cur_n, &prev_n)
    }

    /// Every bucket in ascending order of bounds: negative buckets from
    /// the most negative, the zero bucket (if populated), then positive
    /// buckets (Prometheus `AllBucketIterator`, empty buckets included).
    pub fn all_buckets(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        let custom = self.uses_custom_buckets();
        let s = self.schema;
        let cv = &self.custom_values;
        let inclusive = |lower: f64, upper: f64, idx: i32| {
            if custom {
                (idx == 0, true)
            } else {
                (lower < 0.0, upper > 0.0)
            }
        };
        for (idx, c) in self.negative().into_iter().rev() {
            let lower = -bucket_bound(idx, s, cv);
            let mut upper = -bucket_bound(idx.saturating_sub(1), s, cv);
            if upper < 0.0 && upper > -self.zero_threshold {
                upper = -self.zero_threshold;
            }
            let (li, ui) = inclusive(lower, upper, idx);
            out.push(Bucket {
                lower,
                upper,
                lower_inclusive: li,
                upper_inclusive: ui,
                count: c,
                index: idx,
            });
        }
        if self.zero_count > 0.0 {
            out.push(Bucket {
                lower: -self.zero_threshold,
                upper: self.zero_threshold,
                lower_inclusive: true,
                upper_inclusive: true,
                count: self.zero_count,
                index: 0,
            });
        }
        for (idx, c) in self.positive() {
            let mut lower = bucket_bound(idx.saturating_sub(1), s, cv);
            let upper = bucket_bound(idx, s, cv);
            if !custom && lower > 0.0 && lower < self.zero_threshold {
                lower = self.zero_threshold;
            }
            let (li, ui) = inclusive(lower, upper, idx);
            out.push(Bucket {
                lower,
                upper,
                lower_inclusive: li,
                upper_inclusive: ui,
                count: c,
                index: idx,
            });
        }
        out
    }

    /// Removes the observations above `rhs` (`upper`, PromQL's `</`) or
    /// below it (`>/`), interpolating within the bucket `rhs` falls into,
    /// and re-estimates count and sum from the surviving buckets'
    /// midpoints (Prometheus `TrimBuckets`). Unchanged when nothing is cut.
    pub fn trim_buckets(&mut self, rhs: f64, upper: bool) {
        let custom = self.uses_custom_buckets();
        let (s, cv) = (self.schema, self.custom_values.clone());
        let (mut count, mut sum, mut trimmed) = (0.0, 0.0, false);
        let (mut has_pos, mut has_neg) = (false, false);
        for positive in [true, false] {
            let mut pairs = if positive {
                self.positive()
            } else {
                self.negative()
            };
            for (idx, c) in pairs.iter_mut() {
                if *c == 0.0 {
                    continue;
                }
                if positive {
                    has_pos = true;
                } else {
                    has_neg = true;
                }
                let (lower, upper_b) = if positive {
                    (
                        bucket_bound(idx.saturating_sub(1), s, &cv),
                        bucket_bound(*idx, s, &cv),
                    )
                } else {
                    (
                        -bucket_bound(*idx, s, &cv),
                        -bucket_bound(idx.saturating_sub(1), s, &cv),
                    )
                };
                let b = Bucket {
                    lower,
                    upper: upper_b,
                    lower_inclusive: false,
                    upper_inclusive: false,
                    count: *c,
                    index: *idx,
                };
                let whole = if upper {
                    b.upper <= rhs
                } else {
                    b.lower >= rhs
                };
                let partial = if upper { b.lower < rhs } else { b.upper > rhs };
                if whole {
                    count += b.count;
                    sum += trim_midpoint(b.lower, b.upper, positive, custom) * b.count;
                } else if partial {
                    let (keep, mid) = bucket_trim(&b, rhs, upper, positive, custom);
                    count += keep;
                    sum += mid * keep;
                    if *c != keep {
                        *c = keep;
                        trimmed = true;
                    }
                } else {
                    *c = 0.0;
                    trimmed = true;
                }
            }
            if positive {
                self.set_positive(&pairs);
            } else {
                self.set_negative(&pairs);
            }
        }
        if self.zero_count > 0.0 {
            let (keep, mid) = zero_bucket_trim(self, rhs, has_neg, has_pos, upper);
            if self.zero_count != keep {
                self.zero_count = keep;
                trimmed = true;
            }
            sum += mid * keep;
            count += keep;
        }
        if trimmed {
            self.count = count;
            self.sum = sum;
            self.compact();
        }
    }

    /// Whether a count, the sum or any bucket is infinite (Prometheus
    /// `HasOverflow`).
    pub fn has_overflow(&self) -> bool {
        self.zero_count.is_infinite()
            || self.count.is_infinite()
            || self.sum.is_infinite()
            || self.positive_buckets.iter().any(|b| b.is_infinite())
            || self.negative_buckets.iter().any(|b| b.is_infinite())
    }
}

/// Where the surviving part of a bucket is taken to sit: arithmetic mean
/// for custom buckets, geometric mean otherwise, the finite bound (or half
/// of it) for infinite buckets (Prometheus `computeMidpoint`).
fn trim_midpoint(lower: f64, upper: f64, positive: bool, linear: bool) -> f64 {
    if lower.is_infinite() {
        if upper.is_infinite() {
            return 0.0;
        }
        return if upper > 0.0 { upper / 2.0 } else { upper };
    }
    if upper.is_infinite() {
        return lower;
    }
    if linear {
        return (lower + upper) / 2.0;
    }
    let g = (lower * upper).abs().sqrt();
    if positive {
        g
    } else {
        -g
    }
}

/// Fraction of a bucket below `v` (Prometheus `Bucket.FractionBelow`).
fn fraction_below(b: &Bucket, v: f64, linear: bool) -> f64 {
    if linear {
        return (v - b.lower) / (b.upper - b.lower);
    }
    let (ll, lu, lv) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
    if v > 0.0 {
        return (lv - ll) / (lu - ll);
    }
    1.0 - ((lv - lu) / (ll - lu))
}

/// Kept count and midpoint of a bucket `rhs` cuts (Prometheus
/// `computeBucketTrim` with `handleInfinityBuckets`).
fn bucket_trim(b: &Bucket, rhs: f64, upper: bool, positive: bool, custom: bool) -> (f64, f64) {
    let zero_if_inf = |x: f64| if x.is_infinite() { 0.0 } else { x };
    if b.lower == f64::NEG_INFINITY {
        if upper {
            if rhs >= b.upper {
                return (b.count, 0.0);
            }
            if rhs > 0.0 && b.upper > 0.0 && b.upper.is_finite() {
                return (b.count * rhs / b.upper, rhs / 2.0);
            }
            if b.upper <= 0.0 {
                return (b.count, rhs);
            }
            return (0.0, zero_if_inf(b.upper));
        }
        if rhs <= b.lower {
            return (b.count, 0.0);
        }
        if rhs >= 0.0 && b.upper > rhs && b.upper.is_finite() {
            return (b.count * (1.0 - rhs / b.upper), (rhs + b.upper) / 2.0);
        }
        return (0.0, zero_if_inf(b.upper));
    }
    if b.upper == f64::INFINITY {
        if upper {
            return (0.0, zero_if_inf(b.lower));
        }
        if rhs >= b.lower {
            return (b.count, rhs);
        }
        return (0.0, zero_if_inf(b.lower));
    }
    let under = if rhs <= b.lower {
        0.0
    } else if rhs >= b.upper {
        b.count
    } else {
        b.count * fraction_below(b, rhs, custom)
    };
    if upper {
        (under, trim_midpoint(b.lower, rhs, positive, custom))
    } else {
        (
            b.count - under,
            trim_midpoint(rhs, b.upper, positive, custom),
        )
    }
}

/// Kept count and midpoint of the zero bucket (Prometheus
/// `computeZeroBucketTrim`): linear within it, its far half ignored when
/// the histogram has buckets on one side only.
fn zero_bucket_trim(
    h: &FloatHistogram,
    rhs: f64,
    has_neg: bool,
    has_pos: bool,
    upper: bool,
) -> (f64, f64) {
    let (mut lower, mut up) = (-h.zero_threshold, h.zero_threshold);
    if has_neg && !has_pos {
        up = 0.0;
    }
    if has_pos && !has_neg {
        lower = 0.0;
    }
    let c = h.zero_count;
    if upper {
        if rhs <= lower {
            return (0.0, 0.0);
        }
        if rhs >= up {
            return (c, (lower + up) / 2.0);
        }
        (c * (rhs - lower) / (up - lower), (lower + rhs) / 2.0)
    } else {
        if rhs <= lower {
            return (c, (lower + up) / 2.0);
        }
        if rhs >= up {
            return (0.0, 0.0);
        }
        (c * (up - rhs) / (up - lower), (rhs + up) / 2.0)
    }
}

/// Whether some bucket of `prev` is populated and missing from `cur` or
/// larger than in `cur` (Prometheus `detectReset`), both ascending.
fn buckets_decreased(cur: &[(i32, f64)], prev: &[(i32, f64)]) -> bool {
    let mut j = 0;
    for &(idx, pc) in prev {
        while j < cur.len() && cur[j].0 < idx {
            j += 1;
        }
        match cur.get(j) {
            Some(&(ci, cc)) if ci == idx => {
                if cc < pc {
                    return true;
                }
            }
            _ => {
                if pc != 0.0 {
                    return true;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fh(schema: i32, count: f64, sum: f64, offset: i32, buckets: &[f64]) -> FloatHistogram {
        let mut h = FloatHistogram {
            schema,
            count,
            sum,
            ..Default::default()
        };
        let pairs: Vec<(i32, f64)> = buckets
            .iter()
            .enumerate()
            .map(|(i, &c)| (offset + i as i32, c))
            .collect();
        h.set_positive(&pairs);
        h
    }

    fn arb_histogram() -> impl proptest::strategy::Strategy<Value = FloatHistogram> {
        use proptest::prelude::*;
        (
            -4i32..=8,
            prop_oneof![Just(0.0), Just(0.001), Just(1.0)],
            // Buckets start at index 1 (lower bound 1 at every schema), so
            // none lies inside a zero bucket (at most 1 wide here), which
            // addition would drop as Prometheus does.
            1i32..40,
            proptest::collection::vec(0.0f64..100.0, 0..12),
            1i32..10,
            proptest::collection::vec(0.0f64..100.0, 0..6),
            0.0f64..10.0,
        )
            .prop_map(|(schema, zt, off, pos, noff, neg, zero)| {
                let mut h = FloatHistogram {
                    schema,
                    zero_threshold: zt,
                    zero_count: zero,
                    ..Default::default()
                };
                let p: Vec<(i32, f64)> = pos
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| (off + i as i32, c))
                    .collect();
                let n: Vec<(i32, f64)> = neg
                    .iter()
                    .enumerate()
                    .map(|(i, &c)| (noff + i as i32, c))
                    .collect();
                h.set_positive(&p);
                h.set_negative(&n);
                h.count = zero + pos.iter().sum::<f64>() + neg.iter().sum::<f64>();
                h.sum = h.count;
                h
            })
    }

    proptest::proptest! {
        #[test]
        fn prop_operations_never_panic_and_keep_totals(
            a in arb_histogram(),
            b in arb_histogram(),
            rhs in -100.0f64..100.0,
        ) {
            // Addition keeps the total of all buckets (zero bucket included).
            let total = |h: &FloatHistogram| {
                h.zero_count + h.positive_buckets.iter().sum::<f64>()
                    + h.negative_buckets.iter().sum::<f64>()
            };
            let mut s = a.clone();
            s.add(&b).unwrap();
            let want = total(&a) + total(&b);
            proptest::prop_assert!((total(&s) - want).abs() <= 1e-9 * want.max(1.0));
            proptest::prop_assert_eq!(s.count, a.count + b.count);
            let _ = s.detect_reset(&a);
            let _ = a.detect_reset(&s);
            s.compact();
            proptest::prop_assert!(s.positive_buckets.iter().all(|&c| c != 0.0));
            let mut d = s.clone();
            d.sub(&b).unwrap();
            let mut t = a.clone();
            t.trim_buckets(rhs, rhs > 0.0);
            proptest::prop_assert!(t.count <= a.count + 1e-9);
            let buckets = a.all_buckets();
            proptest::prop_assert!(buckets.windows(2).all(|w| w[0].upper <= w[1].lower + 1e-12));
        }

        #[test]
        fn prop_same_layout_add_then_sub_restores(a in arb_histogram(), b in arb_histogram()) {
            let mut b = b;
            b.schema = a.schema;
            b.zero_threshold = a.zero_threshold;
            let mut s = a.clone();
            s.add(&b).unwrap();
            s.sub(&b).unwrap();
            s.compact();
            let mut want = a.clone();
            want.compact();
            let (got, exp) = (s.positive(), want.positive());
            let got: Vec<(i32, f64)> = got.into_iter().filter(|x| x.1.abs() > 1e-9).collect();
            proptest::prop_assert_eq!(got.len(), exp.len());
            for (g, e) in got.iter().zip(&exp) {
                proptest::prop_assert_eq!(g.0, e.0);
                proptest::prop_assert!((g.1 - e.1).abs() <= 1e-9 * e.1.max(1.0));
            }
        }
    }

    #[test]
    fn exponential_bound_matches_powers_of_two() {
        assert_eq!(exponential_bound(0, 0), 1.0);
        assert_eq!(exponential_bound(1, 0), 2.0);
        assert_eq!(exponential_bound(-1, 0), 0.5);
        assert_eq!(exponential_bound(1, -1), 4.0);
        assert!((exponential_bound(1, 1) - 2f64.sqrt()).abs() < 1e-15);
        assert_eq!(exponential_bound(1024, 0), f64::MAX);
        assert_eq!(exponential_bound(1025, 0), f64::INFINITY);
    }

    #[test]
    fn add_same_schema_merges_buckets() {
        let mut a = fh(0, 3.0, 5.0, 0, &[1.0, 2.0]);
        let b = fh(0, 2.0, 1.0, 1, &[1.0, 1.0]);
        a.add(&b).unwrap();
        assert_eq!(a.count, 5.0);
        assert_eq!(a.positive(), vec![(0, 1.0), (1, 3.0), (2, 1.0)]);
        assert_eq!(a.positive_spans.len(), 1);
    }

    #[test]
    fn add_reduces_to_the_lower_schema() {
        let mut a = fh(1, 4.0, 0.0, 1, &[1.0, 1.0, 1.0, 1.0]);
        let b = fh(0, 1.0, 0.0, 1, &[1.0]);
        a.add(&b).unwrap();
        assert_eq!(a.schema, 0);
        // schema 1 indexes 1,2 -> 1; 3,4 -> 2.
        assert_eq!(a.positive(), vec![(1, 3.0), (2, 2.0)]);
    }

    #[test]
    fn sub_and_compact_drop_empty_buckets() {
        let mut a = fh(0, 3.0, 5.0, 0, &[1.0, 2.0]);
        let b = fh(0, 1.0, 1.0, 0, &[1.0]);
        a.sub(&b).unwrap();
        a.compact();
        assert_eq!(a.positive(), vec![(1, 2.0)]);
        assert_eq!(
            a.positive_spans,
            vec![Span {
                offset: 1,
                length: 1
            }]
        );
    }

    #[test]
    fn mixing_custom_and_exponential_fails() {
        let mut a = fh(0, 1.0, 1.0, 0, &[1.0]);
        let mut b = fh(CUSTOM_BUCKETS_SCHEMA, 1.0, 1.0, 0, &[1.0]);
        b.custom_values = vec![1.0];
        assert_eq!(a.add(&b), Err(HistogramOpError::IncompatibleSchema));
    }

    #[test]
    fn custom_bounds_are_intersected() {
        let mut a = fh(CUSTOM_BUCKETS_SCHEMA, 3.0, 1.0, 0, &[1.0, 1.0, 1.0]);
        a.custom_values = vec![1.0, 2.0];
        let mut b = fh(CUSTOM_BUCKETS_SCHEMA, 2.0, 1.0, 0, &[1.0, 1.0]);
        b.custom_values = vec![2.0];
        let r = a.add(&b).unwrap();
        assert!(r.nhcb_bounds_reconciled);
        assert_eq!(a.custom_values, vec![2.0]);
        assert_eq!(a.positive(), vec![(0, 3.0), (1, 2.0)]);
    }

    #[test]
    fn zero_buckets_are_widened_to_the_larger_threshold() {
        let mut a = fh(0, 2.0, 0.0, 0, &[1.0, 1.0]);
        a.zero_threshold = 0.0;
        let mut b = fh(0, 1.0, 0.0, 3, &[1.0]);
        b.zero_threshold = 1.0;
        b.zero_count = 0.0;
        a.add(&b).unwrap();
        // a's bucket 0 is (0.5, 1]: inside b's zero bucket.
        assert_eq!(a.zero_threshold, 1.0);
        assert_eq!(a.zero_count, 1.0);
        assert_eq!(a.positive(), vec![(1, 1.0), (3, 1.0)]);
    }

    #[test]
    fn detect_reset_sees_count_and_bucket_decreases() {
        let prev = fh(0, 3.0, 5.0, 0, &[1.0, 2.0]);
        let same = prev.clone();
        assert!(!same.detect_reset(&prev));
        let fewer = fh(0, 3.0, 5.0, 0, &[2.0, 1.0]);
        assert!(fewer.detect_reset(&prev));
        let lower_count = fh(0, 2.0, 5.0, 0, &[1.0, 2.0]);
        assert!(lower_count.detect_reset(&prev));
        let finer = fh(1, 3.0, 5.0, 0, &[1.0, 2.0]);
        assert!(finer.detect_reset(&prev));
        let coarser = fh(-1, 3.0, 5.0, 0, &[1.0, 2.0]);
        assert!(!coarser.detect_reset(&prev));
    }

    #[test]
    fn div_by_zero_removes_buckets() {
        let mut a = fh(0, 3.0, 5.0, 0, &[1.0, 2.0]);
        a.div(0.0);
        assert!(a.positive_buckets.is_empty());
        assert_eq!(a.count, f64::INFINITY);
    }

    #[test]
    fn all_buckets_orders_negative_zero_positive() {
        let mut a = fh(0, 4.0, 0.0, 0, &[1.0]);
        a.set_negative(&[(0, 1.0), (1, 1.0)]);
        a.zero_count = 1.0;
        a.zero_threshold = 0.001;
        let b = a.all_buckets();
        let bounds: Vec<(f64, f64)> = b.iter().map(|b| (b.lower, b.upper)).collect();
        assert_eq!(
            bounds,
            vec![(-2.0, -1.0), (-1.0, -0.5), (-0.001, 0.001), (0.5, 1.0)]
        );
    }
}
