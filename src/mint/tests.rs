//! Aggregate (given/when/then) and newtype tests for mints. HTTP tests
//! live in `api_tests.rs`.

use std::sync::Arc;

use alloy::primitives::{Address, Bytes, TxHash, U256, address};
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::{Aggregate as _, DomainEvent as _};
use uuid::Uuid;

use super::*;
use crate::account::{ClientId, Wallet};
use crate::alpaca::ApRef;
use crate::chain::SignedTx;
use crate::clock::FixedClock;
use crate::operator::{EchoError, OperatorReason};
use crate::quantity::AlpacaQuantity;
use crate::vocabulary::{Network, TokenSymbol, UnderlyingSymbol};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

fn earlier() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 11, 0, 0).unwrap()
}

fn framework() -> TestFramework<Mint> {
    TestFramework::with(MintServices {
        clock: Arc::new(FixedClock::new(now())),
    })
}

const WALLET: Address = address!("0x1111111111111111111111111111111111111111");
const VAULT: Address = address!("0x2222222222222222222222222222222222222222");
const OTHER_VAULT: Address =
    address!("0x3333333333333333333333333333333333333333");

fn issuer_id() -> MintId {
    MintId::new(Uuid::from_u128(0xabc))
}

fn other_issuer_id() -> MintId {
    MintId::new(Uuid::from_u128(0xdef))
}

fn order() -> MintOrder {
    MintOrder {
        tokenization_request_id: TokenizationRequestId::new("tok-1").unwrap(),
        qty: AlpacaQuantity::parse("1.5").unwrap(),
        underlying: UnderlyingSymbol::new("AAPL").unwrap(),
        token: TokenSymbol::new("tAAPL").unwrap(),
        network: Network::Base,
        ap: ApRef::Legacy(Uuid::from_u128(7).to_string()),
        wallet: Wallet::new(WALLET).unwrap(),
    }
}

fn request() -> MintRequest {
    MintRequest {
        order: order(),
        issuer_request_id: issuer_id(),
        client_id: ClientId::new(Uuid::from_u128(7)),
        vault: Vault::new(VAULT).unwrap(),
    }
}

fn shares() -> U256 {
    order().qty.to_shares()
}

fn tx(n: u8) -> SignedTx {
    SignedTx {
        raw: Bytes::from(vec![0x02, n]),
        hash: TxHash::repeat_byte(n),
        nonce: u64::from(n),
        chain_id: 31337,
        from: Address::repeat_byte(9),
        to: VAULT,
        gas_limit: 300_000,
        max_fee_per_gas: 100,
        max_priority_fee_per_gas: 1,
        signed_at: earlier(),
        head_at_signing: None,
    }
}

fn initiated() -> MintEvent {
    MintEvent::Initiated {
        request: request(),
        initiated_at: earlier(),
    }
}

fn confirmed() -> MintEvent {
    MintEvent::JournalConfirmed {
        confirmed_at: earlier(),
    }
}

fn rejected() -> MintEvent {
    MintEvent::JournalRejected {
        reason: Some("insufficient position".into()),
        rejected_at: earlier(),
    }
}

fn intended(n: u8) -> MintEvent {
    MintEvent::MintTxIntended {
        tx: tx(n),
        intended_at: earlier(),
    }
}

fn replaced(old: u8, new: u8, attempt: u32) -> MintEvent {
    MintEvent::MintReplacementIntended {
        replaced: tx(old).hash,
        cause: ReplacementCause::Dead,
        tx: tx(new),
        attempt,
        intended_at: earlier(),
    }
}

fn minted_event(n: u8) -> MintEvent {
    MintEvent::TokensMinted {
        tx_hash: tx(n).hash,
        vault: Vault::new(VAULT).unwrap(),
        receipt_id: U256::from(1),
        shares: shares(),
        block: 10,
        gas_used: Some(90_000),
        minted_at: earlier(),
    }
}

fn record_minted(n: u8) -> MintCommand {
    MintCommand::RecordMinted {
        tx_hash: tx(n).hash,
        vault: Vault::new(VAULT).unwrap(),
        receipt_id: U256::from(1),
        shares: shares(),
        block: 10,
        gas_used: Some(90_000),
    }
}

fn failed() -> MintEvent {
    MintEvent::MintFailed {
        classification: FailureClass::DeterministicRevert,
        reason: "CertificationExpired".into(),
        tx_hash: Some(tx(1).hash),
        failed_at: earlier(),
    }
}

fn delivered() -> MintEvent {
    MintEvent::CallbackDelivered {
        delivered_at: earlier(),
    }
}

fn confirm() -> MintCommand {
    MintCommand::ConfirmJournal {
        issuer_request_id: issuer_id(),
    }
}

fn reject() -> MintCommand {
    MintCommand::RejectJournal {
        issuer_request_id: issuer_id(),
        reason: Some("insufficient position".into()),
    }
}

/// Every state after a confirmed journal, as event histories.
fn confirmed_histories() -> Vec<Vec<MintEvent>> {
    vec![
        vec![initiated(), confirmed()],
        vec![initiated(), confirmed(), intended(1)],
        vec![initiated(), confirmed(), intended(1), minted_event(1)],
        vec![
            initiated(),
            confirmed(),
            intended(1),
            minted_event(1),
            delivered(),
        ],
        vec![initiated(), confirmed(), intended(1), failed()],
    ]
}

fn replay(events: Vec<MintEvent>) -> Mint {
    let mut mint = Mint::default();
    for event in events {
        mint.apply(event);
    }
    mint
}

#[test]
fn initiate_records_the_request_stamped_by_the_clock() {
    framework()
        .given_no_previous_events()
        .when(MintCommand::Initiate { request: request() })
        .then_expect_events(vec![MintEvent::Initiated {
            request: request(),
            initiated_at: now(),
        }]);
}

#[test]
fn a_second_initiate_is_refused_with_the_existing_id() {
    let mut second = request();
    second.issuer_request_id = other_issuer_id();
    framework()
        .given(vec![initiated()])
        .when(MintCommand::Initiate { request: second })
        .then_expect_error(MintError::AlreadyInitiated {
            issuer_request_id: issuer_id(),
        });
}

#[test]
fn commands_before_initiate_are_refused() {
    for command in [confirm(), reject(), MintCommand::RecordCallbackDelivered] {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(MintError::NotInitiated);
    }
}

#[test]
fn confirm_journal_moves_to_confirmed() {
    framework()
        .given(vec![initiated()])
        .when(confirm())
        .then_expect_events(vec![MintEvent::JournalConfirmed {
            confirmed_at: now(),
        }]);
}

#[test]
fn repeated_confirms_in_every_later_state_change_nothing() {
    for history in confirmed_histories() {
        framework()
            .given(history)
            .when(confirm())
            .then_expect_events(vec![]);
    }
}

#[test]
fn reject_journal_moves_to_rejected_with_the_reason() {
    framework()
        .given(vec![initiated()])
        .when(reject())
        .then_expect_events(vec![MintEvent::JournalRejected {
            reason: Some("insufficient position".into()),
            rejected_at: now(),
        }]);
    framework()
        .given(vec![initiated(), rejected()])
        .when(reject())
        .then_expect_events(vec![]);
}

#[test]
fn confirm_after_reject_and_reject_after_confirm_conflict() {
    framework()
        .given(vec![initiated(), rejected()])
        .when(confirm())
        .then_expect_error(MintError::ConflictingConfirmation {
            recorded: JournalOutcome::Rejected,
            requested: JournalOutcome::Completed,
        });
    for history in confirmed_histories() {
        framework().given(history).when(reject()).then_expect_error(
            MintError::ConflictingConfirmation {
                recorded: JournalOutcome::Completed,
                requested: JournalOutcome::Rejected,
            },
        );
    }
}

#[test]
fn confirmations_with_another_issuer_request_id_are_refused() {
    let mismatch = MintError::IssuerRequestIdMismatch {
        expected: issuer_id(),
        found: other_issuer_id(),
    };
    framework()
        .given(vec![initiated()])
        .when(MintCommand::ConfirmJournal {
            issuer_request_id: other_issuer_id(),
        })
        .then_expect_error(mismatch.clone());
    framework()
        .given(vec![initiated(), confirmed()])
        .when(MintCommand::RejectJournal {
            issuer_request_id: other_issuer_id(),
            reason: None,
        })
        .then_expect_error(mismatch);
}

#[test]
fn tx_intent_is_recorded_once_and_only_after_confirmation() {
    framework()
        .given(vec![initiated(), confirmed()])
        .when(MintCommand::RecordTxIntent { tx: tx(1) })
        .then_expect_events(vec![MintEvent::MintTxIntended {
            tx: tx(1),
            intended_at: now(),
        }]);
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(MintCommand::RecordTxIntent { tx: tx(1) })
        .then_expect_events(vec![]);
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(MintCommand::RecordTxIntent { tx: tx(2) })
        .then_expect_error(MintError::InvalidState {
            command: "RecordTxIntent",
            state: MintStatus::MintIntended,
        });
    for history in [vec![initiated()], vec![initiated(), rejected()]] {
        let state = replay(history.clone()).status();
        framework()
            .given(history)
            .when(MintCommand::RecordTxIntent { tx: tx(1) })
            .then_expect_error(MintError::InvalidState {
                command: "RecordTxIntent",
                state,
            });
    }
}

#[test]
fn a_replacement_supersedes_the_current_transaction() {
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(MintCommand::RecordReplacement {
            replaced: tx(1).hash,
            cause: ReplacementCause::Reverted,
            tx: tx(2),
        })
        .then_expect_events(vec![MintEvent::MintReplacementIntended {
            replaced: tx(1).hash,
            cause: ReplacementCause::Reverted,
            tx: tx(2),
            attempt: 2,
            intended_at: now(),
        }]);
    // Repeating the recorded replacement changes nothing.
    framework()
        .given(vec![
            initiated(),
            confirmed(),
            intended(1),
            replaced(1, 2, 2),
        ])
        .when(MintCommand::RecordReplacement {
            replaced: tx(1).hash,
            cause: ReplacementCause::Dead,
            tx: tx(2),
        })
        .then_expect_events(vec![]);
    // Replacing anything but the current attempt is refused.
    framework()
        .given(vec![
            initiated(),
            confirmed(),
            intended(1),
            replaced(1, 2, 2),
        ])
        .when(MintCommand::RecordReplacement {
            replaced: tx(1).hash,
            cause: ReplacementCause::Dead,
            tx: tx(3),
        })
        .then_expect_error(MintError::TxMismatch {
            expected: tx(2).hash,
            found: tx(1).hash,
        });
}

#[test]
fn replacements_stop_at_the_attempt_budget() {
    let spent = vec![
        initiated(),
        confirmed(),
        intended(1),
        replaced(1, 2, 2),
        replaced(2, 3, 3),
        replaced(3, 4, 4),
    ];
    let mint = replay(spent.clone());
    let Mint::MintIntended { attempt, .. } = &mint else {
        panic!("expected MintIntended, got {mint:?}");
    };
    assert_eq!(attempt.number, MAX_TX_ATTEMPTS);
    assert_eq!(attempt.superseded, vec![tx(1).hash, tx(2).hash, tx(3).hash]);
    framework()
        .given(spent)
        .when(MintCommand::RecordReplacement {
            replaced: tx(4).hash,
            cause: ReplacementCause::Dead,
            tx: tx(5),
        })
        .then_expect_error(MintError::AttemptsExhausted {
            max: MAX_TX_ATTEMPTS,
        });
}

#[test]
fn minted_needs_the_current_transaction_vault_and_amount() {
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(record_minted(1))
        .then_expect_events(vec![MintEvent::TokensMinted {
            tx_hash: tx(1).hash,
            vault: Vault::new(VAULT).unwrap(),
            receipt_id: U256::from(1),
            shares: shares(),
            block: 10,
            gas_used: Some(90_000),
            minted_at: now(),
        }]);
    // A superseded attempt cannot be recorded as the mint.
    framework()
        .given(vec![
            initiated(),
            confirmed(),
            intended(1),
            replaced(1, 2, 2),
        ])
        .when(record_minted(1))
        .then_expect_error(MintError::TxMismatch {
            expected: tx(2).hash,
            found: tx(1).hash,
        });
    let mut wrong_vault = record_minted(1);
    if let MintCommand::RecordMinted { vault, .. } = &mut wrong_vault {
        *vault = Vault::new(OTHER_VAULT).unwrap();
    }
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(wrong_vault)
        .then_expect_error(MintError::VaultMismatch {
            expected: Vault::new(VAULT).unwrap(),
            found: Vault::new(OTHER_VAULT).unwrap(),
        });
    let mut wrong_amount = record_minted(1);
    if let MintCommand::RecordMinted { shares, .. } = &mut wrong_amount {
        *shares = U256::from(1);
    }
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(wrong_amount)
        .then_expect_error(MintError::SharesMismatch {
            expected: shares(),
            found: U256::from(1),
        });
}

#[test]
fn minted_repeats_are_idempotent_and_early_ones_refused() {
    framework()
        .given(vec![initiated(), confirmed(), intended(1), minted_event(1)])
        .when(record_minted(1))
        .then_expect_events(vec![]);
    framework()
        .given(vec![initiated(), confirmed()])
        .when(record_minted(1))
        .then_expect_error(MintError::InvalidState {
            command: "RecordMinted",
            state: MintStatus::JournalConfirmed,
        });
}

#[test]
fn failure_is_recorded_from_confirmed_or_intended_only() {
    let failure = || MintCommand::RecordFailure {
        classification: FailureClass::DeterministicRevert,
        reason: "CertificationExpired".into(),
        tx_hash: Some(tx(1).hash),
    };
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(failure())
        .then_expect_events(vec![MintEvent::MintFailed {
            classification: FailureClass::DeterministicRevert,
            reason: "CertificationExpired".into(),
            tx_hash: Some(tx(1).hash),
            failed_at: now(),
        }]);
    framework()
        .given(vec![initiated(), confirmed(), intended(1), failed()])
        .when(failure())
        .then_expect_events(vec![]);
    framework()
        .given(vec![initiated(), confirmed(), intended(1), minted_event(1)])
        .when(failure())
        .then_expect_error(MintError::InvalidState {
            command: "RecordFailure",
            state: MintStatus::Minted,
        });
}

#[test]
fn callback_delivery_completes_a_minted_mint_once() {
    let minted = vec![initiated(), confirmed(), intended(1), minted_event(1)];
    framework()
        .given(minted.clone())
        .when(MintCommand::RecordCallbackDelivered)
        .then_expect_events(vec![MintEvent::CallbackDelivered {
            delivered_at: now(),
        }]);
    let mut completed = minted;
    completed.push(delivered());
    framework()
        .given(completed)
        .when(MintCommand::RecordCallbackDelivered)
        .then_expect_events(vec![]);
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(MintCommand::RecordCallbackDelivered)
        .then_expect_error(MintError::InvalidState {
            command: "RecordCallbackDelivered",
            state: MintStatus::MintIntended,
        });
}

#[test]
fn the_lifecycle_replays_to_the_expected_states() {
    let cases = [
        (vec![], MintStatus::NotInitiated),
        (vec![initiated()], MintStatus::Initiated),
        (vec![initiated(), rejected()], MintStatus::JournalRejected),
        (vec![initiated(), confirmed()], MintStatus::JournalConfirmed),
        (
            vec![initiated(), confirmed(), intended(1)],
            MintStatus::MintIntended,
        ),
        (
            vec![initiated(), confirmed(), intended(1), minted_event(1)],
            MintStatus::Minted,
        ),
        (
            vec![
                initiated(),
                confirmed(),
                intended(1),
                minted_event(1),
                delivered(),
            ],
            MintStatus::Completed,
        ),
        (
            vec![initiated(), confirmed(), intended(1), failed()],
            MintStatus::Failed,
        ),
    ];
    for (events, expected) in cases {
        let mint = replay(events);
        assert_eq!(mint.status(), expected);
        assert_eq!(
            mint.request().is_some(),
            expected != MintStatus::NotInitiated
        );
    }
    let done = replay(vec![
        initiated(),
        confirmed(),
        intended(1),
        replaced(1, 2, 2),
        minted_event(2),
        delivered(),
    ]);
    let Mint::Completed { minted, request } = done else {
        panic!("expected Completed");
    };
    assert_eq!(minted.tx_hash, tx(2).hash);
    assert_eq!(request, self::request());
}

#[test]
fn events_survive_the_json_value_round_trip() {
    let events = vec![
        initiated(),
        confirmed(),
        rejected(),
        intended(1),
        replaced(1, 2, 2),
        minted_event(2),
        failed(),
        delivered(),
    ];
    for event in events {
        let value = serde_json::to_value(&event).unwrap();
        let back: MintEvent = serde_json::from_value(value).unwrap();
        assert_eq!(back, event);
        assert!(event.event_type().starts_with("MintEvent::"));
        assert_eq!(event.event_version(), "1.0");
    }
}

#[test]
fn tokenization_request_ids_are_printable_ascii_up_to_128() {
    for good in [
        "5b4f0fba-0c6e-4a5a-9a51-2f1c34a3f2f1",
        "12345-678-90AB",
        &"x".repeat(128),
    ] {
        assert_eq!(TokenizationRequestId::new(good).unwrap().as_str(), good);
    }
    for bad in ["", "has space", "tab\t", "é", &"x".repeat(129)] {
        assert!(TokenizationRequestId::new(bad).is_err(), "{bad:?}");
    }
    let parsed: MintId =
        "00000000-0000-0000-0000-000000000abc".parse().unwrap();
    assert_eq!(parsed, issuer_id());
    assert_eq!(parsed.to_string(), "00000000-0000-0000-0000-000000000abc");
    assert!("not-a-uuid".parse::<MintId>().is_err());
}

#[test]
fn only_confirmed_intended_and_minted_need_the_driver() {
    let busy: Vec<MintStatus> = [
        MintStatus::NotInitiated,
        MintStatus::Initiated,
        MintStatus::JournalRejected,
        MintStatus::JournalConfirmed,
        MintStatus::MintIntended,
        MintStatus::Minted,
        MintStatus::Completed,
        MintStatus::Failed,
    ]
    .into_iter()
    .filter(|status| status.needs_driver())
    .collect();
    assert_eq!(
        busy,
        vec![
            MintStatus::JournalConfirmed,
            MintStatus::MintIntended,
            MintStatus::Minted
        ]
    );
}

mod stuck {
    use super::*;
    use crate::observability::StuckFlows;

    #[tokio::test]
    async fn unfinished_mints_past_the_cutoff_and_failed_ones_are_counted() {
        let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
        crate::migrate(&pool).await.unwrap();
        let cqrs = cqrs(
            pool.clone(),
            MintServices {
                clock: Arc::new(FixedClock::new(now())),
            },
        );
        let second = MintRequest {
            order: MintOrder {
                tokenization_request_id: TokenizationRequestId::new("tok-2")
                    .unwrap(),
                ..order()
            },
            issuer_request_id: other_issuer_id(),
            ..request()
        };
        for (id, request) in [("tok-1", request()), ("tok-2", second)] {
            cqrs.execute(id, MintCommand::Initiate { request })
                .await
                .unwrap();
        }
        let after = now() + chrono::Duration::seconds(1);
        // Initiated at `now`: overdue only for a later cutoff.
        assert_eq!(
            stuck_mints(&pool, now()).await.unwrap(),
            StuckFlows::default()
        );
        assert_eq!(
            stuck_mints(&pool, after).await.unwrap(),
            StuckFlows {
                overdue: 2,
                failed: 0
            }
        );
        cqrs.execute("tok-1", confirm()).await.unwrap();
        cqrs.execute(
            "tok-1",
            MintCommand::RecordFailure {
                classification: FailureClass::Unprocessable,
                reason: "test".into(),
                tx_hash: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            stuck_mints(&pool, after).await.unwrap(),
            StuckFlows {
                overdue: 1,
                failed: 1
            }
        );
        // A failed mint is counted whatever its age.
        assert_eq!(
            stuck_mints(&pool, now()).await.unwrap(),
            StuckFlows {
                overdue: 0,
                failed: 1
            }
        );
    }
}

fn reason(text: &str) -> OperatorReason {
    OperatorReason::new(text).unwrap()
}

fn minted_tokens(n: u8) -> MintedTokens {
    MintedTokens {
        tx_hash: tx(n).hash,
        vault: Vault::new(VAULT).unwrap(),
        receipt_id: U256::from(1),
        shares: shares(),
        block: 10,
        gas_used: None,
    }
}

#[test]
fn a_retry_follows_the_last_transaction_again_with_a_fresh_budget() {
    let spent = vec![
        initiated(),
        confirmed(),
        intended(1),
        replaced(1, 2, 2),
        replaced(2, 3, 3),
        replaced(3, 4, 4),
        MintEvent::MintFailed {
            classification: FailureClass::ReplacementBudgetExhausted,
            reason: "all attempts dead".into(),
            tx_hash: Some(tx(4).hash),
            failed_at: earlier(),
        },
    ];
    framework()
        .given(spent.clone())
        .when(MintCommand::Retry {
            reason: reason("node fixed"),
        })
        .then_expect_events(vec![MintEvent::MintRetried {
            reason: reason("node fixed"),
            retried_at: now(),
        }]);
    let mut history = spent;
    history.push(MintEvent::MintRetried {
        reason: reason("node fixed"),
        retried_at: now(),
    });
    let mint = replay(history.clone());
    let Mint::MintIntended { attempt, .. } = &mint else {
        panic!("expected MintIntended, got {mint:?}");
    };
    // The same bytes are followed (never a blind new transaction), and
    // replacements are allowed again.
    assert_eq!(attempt.tx, tx(4));
    assert_eq!(attempt.number, 1);
    framework()
        .given(history)
        .when(MintCommand::RecordReplacement {
            replaced: tx(4).hash,
            cause: ReplacementCause::Dead,
            tx: tx(5),
        })
        .then_expect_events(vec![MintEvent::MintReplacementIntended {
            replaced: tx(4).hash,
            cause: ReplacementCause::Dead,
            tx: tx(5),
            attempt: 2,
            intended_at: now(),
        }]);
}

#[test]
fn a_retry_without_any_transaction_signs_anew() {
    let history = vec![
        initiated(),
        confirmed(),
        MintEvent::MintFailed {
            classification: FailureClass::Unprocessable,
            reason: "receipt information too long".into(),
            tx_hash: None,
            failed_at: earlier(),
        },
        MintEvent::MintRetried {
            reason: reason("fixed"),
            retried_at: now(),
        },
    ];
    assert_eq!(replay(history).status(), MintStatus::JournalConfirmed);
}

#[test]
fn retry_and_recover_are_for_failed_mints_only() {
    for history in confirmed_histories() {
        let mint = replay(history.clone());
        if mint.status() == MintStatus::Failed {
            continue;
        }
        framework()
            .given(history.clone())
            .when(MintCommand::Retry {
                reason: reason("again"),
            })
            .then_expect_error(MintError::InvalidState {
                command: "Retry",
                state: mint.status(),
            });
    }
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(MintCommand::Recover {
            reason: reason("found"),
            minted: minted_tokens(1),
        })
        .then_expect_error(MintError::InvalidState {
            command: "Recover",
            state: MintStatus::MintIntended,
        });
}

#[test]
fn a_deposit_found_on_chain_is_recorded_and_the_callback_follows() {
    let history = vec![initiated(), confirmed(), intended(1), failed()];
    // Even a transaction that is none of the attempts (a hand mint).
    framework()
        .given(history.clone())
        .when(MintCommand::Recover {
            reason: reason("deposit on chain"),
            minted: minted_tokens(7),
        })
        .then_expect_events(vec![MintEvent::MintRecovered {
            reason: reason("deposit on chain"),
            tx_hash: tx(7).hash,
            vault: Vault::new(VAULT).unwrap(),
            receipt_id: U256::from(1),
            shares: shares(),
            block: 10,
            gas_used: None,
            recovered_at: now(),
        }]);
    let wrong_amount = MintedTokens {
        shares: U256::from(1),
        ..minted_tokens(7)
    };
    framework()
        .given(history.clone())
        .when(MintCommand::Recover {
            reason: reason("deposit on chain"),
            minted: wrong_amount,
        })
        .then_expect_error(MintError::SharesMismatch {
            expected: shares(),
            found: U256::from(1),
        });
    let mut recovered = history;
    recovered.push(MintEvent::MintRecovered {
        reason: reason("deposit on chain"),
        tx_hash: tx(7).hash,
        vault: Vault::new(VAULT).unwrap(),
        receipt_id: U256::from(1),
        shares: shares(),
        block: 10,
        gas_used: None,
        recovered_at: now(),
    });
    assert_eq!(replay(recovered.clone()).status(), MintStatus::Minted);
    // A repeat of the same recovery changes nothing.
    framework()
        .given(recovered.clone())
        .when(MintCommand::Recover {
            reason: reason("deposit on chain"),
            minted: minted_tokens(7),
        })
        .then_expect_events(vec![]);
    framework()
        .given(recovered)
        .when(MintCommand::RecordCallbackDelivered)
        .then_expect_events(vec![MintEvent::CallbackDelivered {
            delivered_at: now(),
        }]);
}

#[test]
fn closing_needs_the_echoed_transaction_and_a_closable_state() {
    let failed_history = vec![initiated(), confirmed(), intended(1), failed()];
    framework()
        .given(failed_history.clone())
        .when(MintCommand::Close {
            reason: reason("minted by hand elsewhere"),
            tx_hash: None,
        })
        .then_expect_error(MintError::Echo(EchoError::Missing {
            expected: tx(1).hash,
        }));
    framework()
        .given(failed_history.clone())
        .when(MintCommand::Close {
            reason: reason("minted by hand elsewhere"),
            tx_hash: Some(tx(2).hash),
        })
        .then_expect_error(MintError::Echo(EchoError::Mismatch {
            expected: tx(1).hash,
            found: tx(2).hash,
        }));
    let close = || MintCommand::Close {
        reason: reason("minted by hand elsewhere"),
        tx_hash: Some(tx(1).hash),
    };
    framework()
        .given(failed_history.clone())
        .when(close())
        .then_expect_events(vec![MintEvent::MintClosed {
            reason: reason("minted by hand elsewhere"),
            closed_at: now(),
        }]);
    let mut closed = failed_history;
    closed.push(MintEvent::MintClosed {
        reason: reason("minted by hand elsewhere"),
        closed_at: now(),
    });
    let mint = replay(closed.clone());
    assert_eq!(mint.status(), MintStatus::Closed);
    assert!(!mint.status().needs_driver());
    framework()
        .given(closed)
        .when(close())
        .then_expect_events(vec![]);
    // A transaction that may still land is never closed over.
    framework()
        .given(vec![initiated(), confirmed(), intended(1)])
        .when(close())
        .then_expect_error(MintError::InvalidState {
            command: "Close",
            state: MintStatus::MintIntended,
        });
    // Alpaca never confirmed: nothing to echo.
    framework()
        .given(vec![initiated()])
        .when(MintCommand::Close {
            reason: reason("Alpaca abandoned the request"),
            tx_hash: None,
        })
        .then_expect_events(vec![MintEvent::MintClosed {
            reason: reason("Alpaca abandoned the request"),
            closed_at: now(),
        }]);
}

#[test]
fn an_event_the_state_cannot_follow_is_ignored() {
    // A deposit recorded for a mint Alpaca never confirmed.
    let mint = replay(vec![initiated(), minted_event(1)]);
    assert_eq!(mint.status(), MintStatus::Initiated);
}
