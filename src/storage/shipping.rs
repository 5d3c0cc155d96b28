//! [`ShipGate`]: what the storage layer asks of a block shipper (the
//! `shipper` module, above storage) without knowing it: whether a block's
//! data is already in object storage, and a wake-up when a block is
//! completed. With a gate installed ([`crate::storage::Db::set_ship_gate`])
//! the database never deletes, merges or rewrites a block that is not yet
//! shipped, so a block leaves the disk only after its data is in the
//! bucket. Owns no state and touches no files.

use crate::storage::block::BlockMeta;

/// A block shipper, as the database sees it.
pub trait ShipGate: Send + Sync {
    /// Whether the data of `meta`'s block is in object storage: the block
    /// itself was uploaded, or every block it was merged from was.
    fn is_shipped(&self, meta: &BlockMeta) -> bool;

    /// Called after a block was written and added to the block list (from
    /// the head or by a merge or rewrite). Must return at once: it runs
    /// inside compaction.
    fn block_completed(&self, meta: &BlockMeta);
}
