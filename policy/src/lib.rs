//! Warden's policy engine: topic algebra, rules, and the compiled per-client
//! policy that makes every connect, publish, subscribe and receive decision.
//! Pure: no I/O, no async, no store.
//!
//! # Layout
//! - `topic`: topic/filter validation, matching, `covers`, `overlaps`, `$share` parsing.
//! - `rule`, `placeholder`: rules as stored, and placeholder templates.
//! - `principal`, `action`, `decision`: who asks, what, and the verdict.
//! - `compile`, `client_id`, `trie`: turning rules into a per-client matcher.
//! - `engine`, `policy`, `explain`: the traits, `AclEngine`/`AclPolicy`, and `explain`.
//!
//! Semantics are documented in the crate's README.md.

mod action;
mod client_id;
mod compile;
mod decision;
mod engine;
mod error;
mod explain;
mod placeholder;
mod policy;
mod principal;
mod qos;
mod rule;
mod topic;
mod trie;

pub use action::Action;
pub use compile::{principal_dependencies, CompileWarning, PrincipalDependencies};
pub use decision::{Decision, DenyReason};
pub use engine::{AclEngine, CompiledPolicy, EngineOptions, PolicyEngine, PolicyVersion};
pub use error::{PolicyError, TopicError};
pub use explain::{Explanation, RuleOutcome, RuleTrace};
pub use placeholder::{Placeholder, ValueProblem};
pub use policy::AclPolicy;
pub use principal::{CertInfo, Principal};
pub use qos::QoS;
pub use rule::{ActionKind, ActionSet, Effect, Rule, RuleId, RuleSet, RuleSpec, Subject};
pub use topic::{
    filter_covers, filters_overlap, topic_matches, validate_filter, validate_topic,
    SubscriptionFilter, Topic, TopicFilter,
};
