//! The two traits that make the engine swappable, and `AclEngine`, the
//! default implementation (deny overrides allow; no matching allow denies).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::action::Action;
use crate::compile::{compile, CompileWarning};
use crate::decision::Decision;
use crate::error::PolicyError;
use crate::explain::Explanation;
use crate::policy::AclPolicy;
use crate::principal::Principal;
use crate::rule::RuleSet;

/// The store's policy version; bumped on every change.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct PolicyVersion(pub u64);

/// A per-client policy, compiled once at CONNECT (and on policy changes).
pub trait CompiledPolicy: Send + Sync + std::fmt::Debug {
    /// The verdict. Synchronous; does not allocate for publish and receive.
    fn decide(&self, action: &Action<'_>) -> Decision;
    /// The verdict with every applicable rule and why it did or did not match.
    fn explain(&self, action: &Action<'_>) -> Explanation;
    fn version(&self) -> PolicyVersion;
    /// Problems found at compile time, e.g. a placeholder that disabled a rule.
    fn warnings(&self) -> &[CompileWarning];
    /// Whether a decision stays valid for as long as this compiled policy
    /// does, so that callers may remember it (the broker's per-connection
    /// decision memo). False for a policy whose answers expire on their own
    /// (an external decider with a TTL).
    fn memoizable(&self) -> bool {
        true
    }
}

/// Compiles a principal's rules into a `CompiledPolicy`.
pub trait PolicyEngine: Send + Sync {
    fn compile(
        &self,
        principal: &Principal,
        rules: &RuleSet,
        version: PolicyVersion,
    ) -> Result<Arc<dyn CompiledPolicy>, PolicyError>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Superusers are allowed everything without evaluating rules.
    pub superuser_bypass: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            superuser_bypass: true,
        }
    }
}

/// The default engine: topic ACLs compiled into per-action tries.
#[derive(Clone, Copy, Debug, Default)]
pub struct AclEngine {
    options: EngineOptions,
}

impl AclEngine {
    pub fn new(options: EngineOptions) -> AclEngine {
        AclEngine { options }
    }

    /// Like `PolicyEngine::compile`, returning the concrete type.
    pub fn compile_policy(
        &self,
        principal: &Principal,
        rules: &RuleSet,
        version: PolicyVersion,
    ) -> Result<AclPolicy, PolicyError> {
        let compiled = compile(principal, rules)?;
        let bypass = self.options.superuser_bypass && principal.superuser;
        Ok(AclPolicy::new(
            compiled,
            principal.client_id.clone(),
            bypass,
            version,
        ))
    }
}

impl PolicyEngine for AclEngine {
    fn compile(
        &self,
        principal: &Principal,
        rules: &RuleSet,
        version: PolicyVersion,
    ) -> Result<Arc<dyn CompiledPolicy>, PolicyError> {
        Ok(Arc::new(self.compile_policy(principal, rules, version)?))
    }
}
