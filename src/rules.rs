//! Recording and alerting rules, as Prometheus evaluates them: rule files
//! ([`file`]), the alert template subset ([`template`]), group evaluation
//! and alert state ([`group`]), scheduling and reload ([`manager`]) and
//! delivery to Alertmanager ([`notifier`]).
//!
//! Sits above `promql` and beside `api`: evaluates through
//! [`crate::promql::Engine`] and appends through [`crate::storage::Db`]'s
//! normal append path. Never imports `api`, `ingest` or `server`.

pub mod file;
pub mod group;
pub mod manager;
pub mod notifier;
pub mod template;

pub use file::{GroupSpec, RuleFileError, RuleKind, RuleSpec};
pub use group::{Alert, AlertState, Group};
pub use manager::{load_groups, RuleManager, RuleMetrics, RulesOptions};
pub use notifier::{Notifier, NotifierOptions};
