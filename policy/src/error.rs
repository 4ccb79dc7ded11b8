//! Errors of the policy crate: topic validation and rule validation/compilation.

use thiserror::Error;

/// Why a topic name, topic filter or `$share` subscription is invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    #[error("topic contains U+0000")]
    NullChar,
    #[error("a topic name may not contain the wildcards '+' or '#'")]
    WildcardInTopic,
    #[error("'#' must be the whole last level of a filter")]
    MisplacedMultiLevel,
    #[error("'+' must be a whole level of a filter")]
    MisplacedSingleLevel,
    #[error("a $share subscription needs a non-empty group without '+', '#' or '/', and a filter")]
    InvalidShare,
}

/// Why a rule is invalid or a policy cannot be compiled.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("rule has no actions")]
    NoActions,
    #[error("a connect rule may not have other actions (publish, subscribe, receive)")]
    ConnectMixedWithTopicActions,
    #[error("unknown placeholder ${{{0}}}; known: ${{username}}, ${{clientid}}, ${{cert.cn}}, ${{cert.san}}")]
    UnknownPlaceholder(String),
    #[error("unterminated placeholder in pattern {0:?}")]
    UnterminatedPlaceholder(String),
    #[error("invalid topic filter {pattern:?}: {source}")]
    InvalidFilter {
        pattern: String,
        #[source]
        source: TopicError,
    },
    #[error("client-id pattern is empty or contains U+0000")]
    InvalidClientIdPattern,
    #[error("max_qos is a condition of allow rules; a deny rule may not set it")]
    MaxQosOnDeny,
    #[error("max_qos and retain do not apply to connect rules")]
    ConditionOnConnect,
    #[error("invalid subject {0:?}: expected \"user:NAME\", \"role:NAME\" or \"everyone\"")]
    InvalidSubject(String),
}
