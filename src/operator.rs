//! What an operator's action on a flow carries: a reason, always, and
//! where the flow has a transaction, that transaction's hash echoed back
//! as proof that they looked at it.

use alloy::primitives::TxHash;
use serde::{Deserialize, Serialize};
use sqlite_es::StoredEvent;

use crate::vocabulary::string_newtype;

/// Longest reason kept (an event is not a document store).
pub const MAX_REASON_CHARS: usize = 1_000;

/// Why an operator acted: 1–1000 characters, not blank.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String)]
pub struct OperatorReason(String);

string_newtype!(OperatorReason, InvalidReason);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidReason {
    #[error("a reason is required")]
    Missing,
    #[error("the reason has {chars} characters; at most {MAX_REASON_CHARS}")]
    TooLong { chars: usize },
}

impl OperatorReason {
    pub fn new(raw: &str) -> Result<Self, InvalidReason> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(InvalidReason::Missing);
        }
        let chars = trimmed.chars().count();
        if chars > MAX_REASON_CHARS {
            return Err(InvalidReason::TooLong { chars });
        }
        Ok(Self(trimmed.to_owned()))
    }
}

/// The body of an operator's retry.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    pub reason: OperatorReason,
}

/// The body of an operator's close.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseRequest {
    pub reason: OperatorReason,
    /// The flow's transaction (a mint's deposit, a redemption's burn),
    /// echoed; required when it has one.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^0x[0-9a-fA-F]{64}$")]
    pub tx_hash: Option<TxHash>,
}

/// The echo check: a flow with a transaction is closed only by someone
/// who names that transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EchoError {
    #[error("this flow has transaction {expected}: echo it as tx_hash")]
    Missing { expected: TxHash },
    #[error("tx_hash {found} is not this flow's transaction {expected}")]
    Mismatch { expected: TxHash, found: TxHash },
}

/// Checks `echoed` against the flow's transaction `expected` (if any).
pub fn check_echo(
    expected: Option<TxHash>,
    echoed: Option<TxHash>,
) -> Result<(), EchoError> {
    match (expected, echoed) {
        (None, _) => Ok(()),
        (Some(expected), None) => Err(EchoError::Missing { expected }),
        (Some(expected), Some(found)) if found == expected => Ok(()),
        (Some(expected), Some(found)) => {
            Err(EchoError::Mismatch { expected, found })
        }
    }
}

/// Of the operator actions in `actions` (stored event type → action
/// name), the latest in `history`, and whether it was taken for `reason`:
/// a repeat of an action already done then gets the same answer.
pub fn last_action(
    history: &[StoredEvent],
    actions: &[(&str, &'static str)],
    reason: &OperatorReason,
) -> Option<(&'static str, bool)> {
    history.iter().rev().find_map(|event| {
        let (_, action) = actions
            .iter()
            .find(|(event_type, _)| *event_type == event.event_type)?;
        // Stored events are externally tagged: {"<Variant>": {...}}.
        let recorded = event
            .payload
            .as_object()
            .and_then(|fields| fields.values().next())
            .and_then(|body| body.get("reason"))
            .and_then(serde_json::Value::as_str);
        Some((*action, recorded == Some(reason.as_str())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_trimmed_and_required() {
        assert_eq!(
            OperatorReason::new("  ").unwrap_err(),
            InvalidReason::Missing
        );
        assert_eq!(
            OperatorReason::new(" fixed allowlist ").unwrap().as_str(),
            "fixed allowlist"
        );
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        assert_eq!(
            OperatorReason::new(&long).unwrap_err(),
            InvalidReason::TooLong {
                chars: MAX_REASON_CHARS + 1
            }
        );
        assert!(serde_json::from_str::<OperatorReason>("\"\"").is_err());
    }

    #[test]
    fn the_echo_must_name_the_flows_transaction() {
        let a = TxHash::repeat_byte(1);
        let b = TxHash::repeat_byte(2);
        assert_eq!(check_echo(None, None), Ok(()));
        assert_eq!(check_echo(None, Some(a)), Ok(()));
        assert_eq!(check_echo(Some(a), Some(a)), Ok(()));
        assert_eq!(
            check_echo(Some(a), None),
            Err(EchoError::Missing { expected: a })
        );
        assert_eq!(
            check_echo(Some(a), Some(b)),
            Err(EchoError::Mismatch {
                expected: a,
                found: b
            })
        );
    }
}
