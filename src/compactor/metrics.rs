//! `tidemark_compact_*` self-metrics, registered by the compactor role
//! only. Owns the counters; the pass decides when they move.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The compactor's metrics.
#[derive(Debug)]
pub struct CompactMetrics {
    passes: Family<ResultLabel, Counter>,
    pub(crate) merges: Counter,
    pub(crate) blocks_merged: Counter,
    marked: Family<ReasonLabel, Counter>,
    deleted: Family<KindLabel, Counter>,
    failures: Family<OpLabel, Counter>,
    pub(crate) hostile: Gauge,
    pub(crate) last_success: Gauge<f64, AtomicU64>,
}

macro_rules! label_set {
    ($name:ident, $field:ident) => {
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct $name {
            $field: &'static str,
        }
    };
}
label_set!(ResultLabel, result);
label_set!(ReasonLabel, reason);
label_set!(KindLabel, kind);
label_set!(OpLabel, op);

/// Why a block was marked for deletion.
pub const REASONS: [&str; 2] = ["compacted", "retention"];
/// What was deleted: a block, or a partial upload (a prefix without `meta.json`).
pub const KINDS: [&str; 2] = ["block", "partial"];
/// What failed.
pub const OPS: [&str; 4] = ["list", "merge", "mark", "delete"];

impl CompactMetrics {
    /// Registers the metrics (every label value present from the start).
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let m = Self {
            passes: Family::default(),
            merges: Counter::default(),
            blocks_merged: Counter::default(),
            marked: Family::default(),
            deleted: Family::default(),
            failures: Family::default(),
            hostile: Gauge::default(),
            last_success: Gauge::default(),
        };
        for result in ["success", "failure"] {
            let _ = m.passes.get_or_create(&ResultLabel { result });
        }
        for reason in REASONS {
            let _ = m.marked.get_or_create(&ReasonLabel { reason });
        }
        for kind in KINDS {
            let _ = m.deleted.get_or_create(&KindLabel { kind });
        }
        for op in OPS {
            let _ = m.failures.get_or_create(&OpLabel { op });
        }
        registry.register(
            "tidemark_compact_passes",
            "Compaction passes over the bucket by result (failure: some step failed; it is retried next pass).",
            m.passes.clone(),
        );
        registry.register(
            "tidemark_compact_merges",
            "Merged blocks uploaded to the bucket.",
            m.merges.clone(),
        );
        registry.register(
            "tidemark_compact_blocks_merged",
            "Source blocks merged into uploaded blocks.",
            m.blocks_merged.clone(),
        );
        registry.register(
            "tidemark_compact_blocks_marked",
            "Deletion marks written, by reason: compacted (covered by an uploaded merged block) or retention.",
            m.marked.clone(),
        );
        registry.register(
            "tidemark_compact_blocks_deleted",
            "Block prefixes deleted from the bucket, by kind: block (marked, past --delete-delay) or partial (an abandoned upload).",
            m.deleted.clone(),
        );
        registry.register(
            "tidemark_compact_failures",
            "Failed steps by operation (list, merge, mark, delete); each is retried next pass.",
            m.failures.clone(),
        );
        registry.register(
            "tidemark_compact_hostile_blocks",
            "Block prefixes whose meta.json cannot be trusted (too large, unparsable, impossible range), skipped at the last pass.",
            m.hostile.clone(),
        );
        registry.register(
            "tidemark_compact_last_success_timestamp_seconds",
            "Unix time of the last pass that succeeded.",
            m.last_success.clone(),
        );
        Arc::new(m)
    }

    pub(crate) fn pass(&self, result: &'static str) {
        self.passes.get_or_create(&ResultLabel { result }).inc();
    }

    pub(crate) fn marked(&self, reason: &'static str) {
        self.marked.get_or_create(&ReasonLabel { reason }).inc();
    }

    pub(crate) fn deleted(&self, kind: &'static str) {
        self.deleted.get_or_create(&KindLabel { kind }).inc();
    }

    pub(crate) fn failed(&self, op: &'static str) {
        self.failures.get_or_create(&OpLabel { op }).inc();
    }

    /// Passes with `result` (`success`, `failure`) so far.
    pub fn passes(&self, result: &'static str) -> u64 {
        self.passes.get_or_create(&ResultLabel { result }).get()
    }
}
