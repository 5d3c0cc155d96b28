//! Prometheus rule files (`rulefmt`): parsing and validation into
//! [`GroupSpec`]s. A file that fails is refused whole, with the file,
//! group and rule named ([`RuleFileError`]).
//!
//! Owns the file format only: no evaluation, no state, no I/O beyond
//! reading the file. Accepts exactly the fields Prometheus's `rulefmt`
//! knows (unknown fields are errors, as there).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use promql_parser::parser::Expr;
use serde::Deserialize;

use crate::model::parse_duration_ms;
use crate::promql::Engine;
use crate::rules::template::Template;

/// What is wrong with a rule file, and where.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {location}{reason}")]
pub struct RuleFileError {
    /// The file.
    pub file: PathBuf,
    /// `group "g": rule 3 ("name"): `, or empty for the whole file.
    pub location: String,
    /// What is wrong.
    pub reason: RuleFileReason,
}

/// Why a rule file is refused.
#[derive(Debug, thiserror::Error)]
pub enum RuleFileReason {
    /// The file cannot be read.
    #[error("cannot read: {0}")]
    Read(#[source] std::io::Error),
    /// Not YAML of the rule file shape (includes unknown fields).
    #[error("{0}")]
    Yaml(#[source] serde_yaml::Error),
    /// A group without a name.
    #[error("group name must not be empty")]
    EmptyGroupName,
    /// Two groups of one file share a name.
    #[error("repeated group name {0:?}")]
    DuplicateGroup(String),
    /// A duration field that is not a Prometheus duration.
    #[error("{field}: invalid duration {value:?}")]
    Duration {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// A group interval of zero.
    #[error("interval must be greater than zero")]
    ZeroInterval,
    /// Neither or both of `record` and `alert`.
    #[error("exactly one of 'record' and 'alert' must be set")]
    RecordXorAlert,
    /// An empty `expr`.
    #[error("field 'expr' must be set")]
    EmptyExpr,
    /// `expr` does not parse.
    #[error("could not parse expression: {0}")]
    Expr(String),
    /// A recording rule's name that is not a valid metric name.
    #[error("invalid recording rule name: {0:?}")]
    RecordName(String),
    /// A field only alerting rules have, on a recording rule.
    #[error("invalid field '{0}' in recording rule")]
    AlertOnlyField(&'static str),
    /// A label or annotation name that is not valid.
    #[error("invalid {kind} name: {name:?}")]
    Name {
        /// `label` or `annotation`.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A label or annotation template that does not parse.
    #[error("template of {kind} {name:?}: {error}")]
    Template {
        /// `label` or `annotation`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The template error.
        error: String,
    },
}

/// One rule group of a file, validated.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// The file it came from.
    pub file: PathBuf,
    /// The group name (unique in its file).
    pub name: String,
    /// Evaluation interval in ms (the group's, or the global default).
    pub interval_ms: i64,
    /// Evaluate as of this long ago (ms; `query_offset`).
    pub query_offset_ms: i64,
    /// Most series a rule may produce (0 = no limit).
    pub limit: usize,
    /// Labels added to every rule's output.
    pub labels: BTreeMap<String, String>,
    /// The rules, in file order.
    pub rules: Vec<RuleSpec>,
}

/// One rule, validated, its expression parsed.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// Recording or alerting.
    pub kind: RuleKind,
    /// The query text as written.
    pub expr_text: String,
    /// The parsed query.
    pub expr: Expr,
    /// Labels to add or override (templated for alerting rules).
    pub labels: BTreeMap<String, String>,
}

/// What a rule does with its query's result.
#[derive(Debug, Clone)]
pub enum RuleKind {
    /// Store the result as the metric `record`.
    Recording {
        /// The metric name.
        record: String,
    },
    /// Fire an alert per result series.
    Alerting {
        /// The alert name.
        alert: String,
        /// How long a series must stay in the result before firing (ms).
        for_ms: i64,
        /// How long an alert keeps firing after its series left (ms).
        keep_firing_for_ms: i64,
        /// Annotations (templated).
        annotations: BTreeMap<String, String>,
    },
}

impl RuleSpec {
    /// The rule's name: the recorded metric or the alert name.
    pub fn name(&self) -> &str {
        match &self.kind {
            RuleKind::Recording { record } => record,
            RuleKind::Alerting { alert, .. } => alert,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    name: String,
    interval: Option<String>,
    query_offset: Option<String>,
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<String>,
    alert: Option<String>,
    #[serde(default)]
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Reads and validates one rule file; groups without an `interval` get
/// `default_interval_ms`.
///
/// # Errors
/// [`RuleFileError`] naming the file, group and rule.
pub fn load_file(path: &Path, default_interval_ms: i64) -> Result<Vec<GroupSpec>, RuleFileError> {
    let fail = |location: String, reason| RuleFileError {
        file: path.to_path_buf(),
        location,
        reason,
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| fail(String::new(), RuleFileReason::Read(e)))?;
    parse_groups(path, &text, default_interval_ms)
}

/// [`load_file`] on text already read.
///
/// # Errors
/// As [`load_file`].
pub fn parse_groups(
    path: &Path,
    text: &str,
    default_interval_ms: i64,
) -> Result<Vec<GroupSpec>, RuleFileError> {
    let fail = |location: String, reason| RuleFileError {
        file: path.to_path_buf(),
        location,
        reason,
    };
    let raw: RawFile = if text.trim().is_empty() {
        RawFile { groups: Vec::new() }
    } else {
        serde_yaml::from_str(text).map_err(|e| fail(String::new(), RuleFileReason::Yaml(e)))?
    };
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(raw.groups.len());
    for g in raw.groups {
        let at = format!("group {:?}: ", g.name);
        if g.name.is_empty() {
            return Err(fail(at, RuleFileReason::EmptyGroupName));
        }
        if !seen.insert(g.name.clone()) {
            return Err(fail(String::new(), RuleFileReason::DuplicateGroup(g.name)));
        }
        let interval_ms = match &g.interval {
            Some(v) => duration("interval", v).map_err(|r| fail(at.clone(), r))?,
            None => default_interval_ms,
        };
        if interval_ms <= 0 {
            return Err(fail(at, RuleFileReason::ZeroInterval));
        }
        let query_offset_ms = match &g.query_offset {
            Some(v) => duration("query_offset", v).map_err(|r| fail(at.clone(), r))?,
            None => 0,
        };
        check_names("label", g.labels.keys()).map_err(|r| fail(at.clone(), r))?;
        let mut rules = Vec::with_capacity(g.rules.len());
        for (i, r) in g.rules.into_iter().enumerate() {
            let name = r.record.as_deref().or(r.alert.as_deref()).unwrap_or("");
            let at = format!("group {:?}: rule {} ({name:?}): ", g.name, i + 1);
            rules.push(validate_rule(r).map_err(|reason| fail(at, reason))?);
        }
        out.push(GroupSpec {
            file: path.to_path_buf(),
            name: g.name,
            interval_ms,
            query_offset_ms,
            limit: g.limit,
            labels: g.labels,
            rules,
        });
    }
    Ok(out)
}

fn duration(field: &'static str, value: &str) -> Result<i64, RuleFileReason> {
    parse_duration_ms(value).ok_or_else(|| RuleFileReason::Duration {
        field,
        value: value.to_string(),
    })
}

fn validate_rule(r: RawRule) -> Result<RuleSpec, RuleFileReason> {
    if r.expr.trim().is_empty() {
        return Err(RuleFileReason::EmptyExpr);
    }
    let expr = Engine::parse(&r.expr).map_err(|e| RuleFileReason::Expr(e.to_string()))?;
    check_names("label", r.labels.keys())?;
    if r.labels.contains_key(crate::model::METRIC_NAME) {
        return Err(RuleFileReason::Name {
            kind: "label",
            name: crate::model::METRIC_NAME.into(),
        });
    }
    let kind = match (r.record, r.alert) {
        (Some(record), None) => {
            if !is_metric_name(&record) {
                return Err(RuleFileReason::RecordName(record));
            }
            if r.for_.is_some() {
                return Err(RuleFileReason::AlertOnlyField("for"));
            }
            if r.keep_firing_for.is_some() {
                return Err(RuleFileReason::AlertOnlyField("keep_firing_for"));
            }
            if !r.annotations.is_empty() {
                return Err(RuleFileReason::AlertOnlyField("annotations"));
            }
            RuleKind::Recording { record }
        }
        (None, Some(alert)) if !alert.is_empty() => {
            check_names("annotation", r.annotations.keys())?;
            for (kind, map) in [("label", &r.labels), ("annotation", &r.annotations)] {
                for (name, text) in map {
                    Template::parse(text).map_err(|e| RuleFileReason::Template {
                        kind,
                        name: name.clone(),
                        error: e.to_string(),
                    })?;
                }
            }
            RuleKind::Alerting {
                alert,
                for_ms: r
                    .for_
                    .as_deref()
                    .map(|v| duration("for", v))
                    .transpose()?
                    .unwrap_or(0),
                keep_firing_for_ms: r
                    .keep_firing_for
                    .as_deref()
                    .map(|v| duration("keep_firing_for", v))
                    .transpose()?
                    .unwrap_or(0),
                annotations: r.annotations,
            }
        }
        _ => return Err(RuleFileReason::RecordXorAlert),
    };
    Ok(RuleSpec {
        kind,
        expr_text: r.expr,
        expr,
        labels: r.labels,
    })
}

fn check_names<'a>(
    kind: &'static str,
    names: impl Iterator<Item = &'a String>,
) -> Result<(), RuleFileReason> {
    for name in names {
        if !is_label_name(name) {
            return Err(RuleFileReason::Name {
                kind,
                name: name.clone(),
            });
        }
    }
    Ok(())
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Prometheus's legacy label name rule.
fn is_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`, Prometheus's legacy metric name rule.
fn is_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    b.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<GroupSpec>, RuleFileError> {
        parse_groups(Path::new("r.yml"), text, 60_000)
    }

    #[test]
    fn parses_groups_and_rules() {
        let g = parse(
            "groups:
  - name: g
    interval: 30s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: Down
        expr: up == 0
        for: 5m
        keep_firing_for: 1m
        labels: {severity: page}
        annotations: {summary: '{{ $labels.instance }} is down ({{ $value }})'}
  - name: h
    rules: []
",
        )
        .unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!((g[0].interval_ms, g[1].interval_ms), (30_000, 60_000));
        assert_eq!(g[0].rules[0].name(), "job:up:sum");
        match &g[0].rules[1].kind {
            RuleKind::Alerting {
                for_ms,
                keep_firing_for_ms,
                ..
            } => assert_eq!((*for_ms, *keep_firing_for_ms), (300_000, 60_000)),
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn refuses_with_file_group_and_rule_named() {
        let cases = [
            ("groups: [{name: g, rules: [{record: 'a b', expr: up}]}]", "rule 1 (\"a b\")", "invalid recording rule name"),
            ("groups: [{name: g, rules: [{record: a, alert: b, expr: up}]}]", "group \"g\"", "exactly one of"),
            ("groups: [{name: g, rules: [{alert: a, expr: 'up +'}]}]", "rule 1 (\"a\")", "could not parse"),
            ("groups: [{name: g, rules: [{record: a, expr: up, for: 1m}]}]", "rule 1", "'for'"),
            ("groups: [{name: g, interval: 1x, rules: []}]", "group \"g\"", "invalid duration"),
            ("groups: [{name: g, rules: []}, {name: g, rules: []}]", "r.yml", "repeated group name"),
            ("groups: [{name: g, rules: [{alert: a, expr: up, labels: {'1x': y}}]}]", "rule 1", "invalid label name"),
            ("groups: [{name: g, rules: [{alert: a, expr: up, annotations: {s: '{{ $labels. }}'}}]}]", "rule 1", "template"),
            ("groups: [{name: g, bogus: 1, rules: []}]", "r.yml", "unknown field"),
            ("groups: [{name: '', rules: []}]", "group", "must not be empty"),
        ];
        for (text, location, reason) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(location) && e.contains(reason), "{text}: {e}");
            assert!(e.starts_with("r.yml"), "{e}");
        }
    }

    #[test]
    fn empty_file_has_no_groups() {
        assert!(parse("").unwrap().is_empty());
        assert!(parse("groups: []").unwrap().is_empty());
    }
}
