//! Aggregate (given/when/then) tests for redemptions, plus the id and the
//! in-commit bookkeeping on a real database.

use std::sync::Arc;

use alloy::primitives::{Address, Bytes, TxHash, U256, address};
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::account::ClientId;
use crate::alpaca::ApRef;
use crate::chain::SignedTx;
use crate::clock::FixedClock;
use crate::operator::{EchoError, OperatorReason};
use crate::quantity::AlpacaQuantity;
use crate::receipt_inventory::ReceiptBurn;
use crate::vocabulary::{Network, TokenSymbol, UnderlyingSymbol};

const ONE: u128 = 1_000_000_000_000_000_000;
const AP: Address = address!("0x00000000000000000000000000000000000000a1");
const VAULT: Address = address!("0x00000000000000000000000000000000000000fa");
const BOT: Address = address!("0x00000000000000000000000000000000000000b0");

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

fn earlier() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 11, 0, 0).unwrap()
}

fn framework() -> TestFramework<Redemption> {
    TestFramework::with(RedemptionServices {
        clock: Arc::new(FixedClock::new(now())),
    })
}

fn transfer(shares: U256) -> DetectedTransfer {
    let client_id = ClientId::new(Uuid::from_u128(7));
    DetectedTransfer {
        network: Network::Base,
        vault: VAULT,
        underlying: UnderlyingSymbol::new("AAPL").unwrap(),
        token: TokenSymbol::new("tAAPL").unwrap(),
        tx_hash: TxHash::repeat_byte(0x11),
        log_index: 4,
        block: 100,
        from_wallet: AP,
        client_id,
        ap: ApRef::External(client_id.to_string()),
        shares,
    }
}

/// 1.5 tokens plus 123 wei of dust.
fn shares() -> U256 {
    U256::from(ONE + ONE / 2 + 123)
}

fn detection() -> Detection {
    Detection {
        transfer: transfer(shares()),
        alpaca_qty: Some(AlpacaQuantity::parse("1.5").unwrap()),
        dust: U256::from(123),
        detected_at: earlier(),
    }
}

fn detected() -> RedemptionEvent {
    RedemptionEvent::Detected {
        detection: detection(),
    }
}

fn called() -> RedemptionEvent {
    RedemptionEvent::AlpacaCalled {
        tokenization_request_id: "tok-1".into(),
        called_at: earlier(),
    }
}

fn journal_completed() -> RedemptionEvent {
    RedemptionEvent::AlpacaJournalCompleted {
        completed_at: earlier(),
    }
}

fn signed(nonce: u64) -> SignedTx {
    SignedTx {
        raw: Bytes::from_static(&[0x02]),
        hash: TxHash::with_last_byte(u8::try_from(nonce).unwrap() + 1),
        nonce,
        chain_id: 31337,
        from: BOT,
        to: VAULT,
        gas_limit: 300_000,
        max_fee_per_gas: 10,
        max_priority_fee_per_gas: 1,
        signed_at: earlier(),
        head_at_signing: None,
    }
}

fn burns() -> Vec<ReceiptBurn> {
    vec![
        ReceiptBurn {
            receipt_id: U256::from(1),
            shares: U256::from(ONE),
        },
        ReceiptBurn {
            receipt_id: U256::from(2),
            shares: U256::from(ONE / 2),
        },
    ]
}

fn intended(nonce: u64, replaces: Option<TxHash>) -> RedemptionEvent {
    RedemptionEvent::BurnIntended {
        tx: signed(nonce),
        burns: burns(),
        dust: U256::from(123),
        replaces,
        intended_at: earlier(),
    }
}

fn intend(nonce: u64, replaces: Option<TxHash>) -> RedemptionCommand {
    RedemptionCommand::IntendBurn {
        tx: signed(nonce),
        burns: burns(),
        dust: U256::from(123),
        replaces,
    }
}

#[test]
fn issuer_request_id_is_the_transfer_identity() {
    let id = RedemptionId::for_transfer(TxHash::repeat_byte(0xab), 12);
    assert_eq!(
        id.as_str(),
        "0xabababababababababababababababababababababababababababababababab-12"
    );
    assert_eq!(id.as_str().parse::<RedemptionId>().unwrap(), id);
    // Two logs of one transaction are two redemptions.
    assert_ne!(
        RedemptionId::for_transfer(TxHash::repeat_byte(0xab), 13),
        id
    );
    for bad in [
        "",
        "0xabab-1",
        "abababababababababababababababababababababababababababababababababab-1",
        "0xABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABABAB-1",
        "0xabababababababababababababababababababababababababababababababab-",
        "0xabababababababababababababababababababababababababababababababab-01",
        "0xabababababababababababababababababababababababababababababababab-x",
    ] {
        assert!(bad.parse::<RedemptionId>().is_err(), "{bad}");
    }
    assert_eq!(transfer(shares()).issuer_request_id().as_str().len(), 68);
}

#[test]
fn detect_splits_the_amount_for_alpaca() {
    framework()
        .given_no_previous_events()
        .when(RedemptionCommand::Detect {
            transfer: transfer(shares()),
        })
        .then_expect_events(vec![RedemptionEvent::Detected {
            detection: Detection {
                detected_at: now(),
                ..detection()
            },
        }]);
}

#[test]
fn detecting_again_is_a_no_op_and_another_transfer_is_refused() {
    framework()
        .given(vec![detected()])
        .when(RedemptionCommand::Detect {
            transfer: transfer(shares()),
        })
        .then_expect_events(vec![]);
    framework()
        .given(vec![detected(), called()])
        .when(RedemptionCommand::Detect {
            transfer: transfer(U256::from(5)),
        })
        .then_expect_error(RedemptionError::DetectedDifferently {
            tx_hash: TxHash::repeat_byte(0x11),
            log_index: 4,
        });
}

#[test]
fn a_dust_only_transfer_fails_at_detection() {
    let tiny = U256::from(999_999_999_u64);
    framework()
        .given_no_previous_events()
        .when(RedemptionCommand::Detect {
            transfer: transfer(tiny),
        })
        .then_expect_events(vec![
            RedemptionEvent::Detected {
                detection: Detection {
                    transfer: transfer(tiny),
                    alpaca_qty: None,
                    dust: tiny,
                    detected_at: now(),
                },
            },
            RedemptionEvent::Failed {
                reason: FailureReason::BelowMinimumQuantity { shares: tiny },
                resolves: None,
                failed_at: now(),
            },
        ]);
}

#[test]
fn the_alpaca_call_is_recorded_once() {
    framework()
        .given(vec![detected()])
        .when(RedemptionCommand::RecordAlpacaCall {
            tokenization_request_id: "tok-1".into(),
        })
        .then_expect_events(vec![RedemptionEvent::AlpacaCalled {
            tokenization_request_id: "tok-1".into(),
            called_at: now(),
        }]);
    framework()
        .given(vec![detected(), called()])
        .when(RedemptionCommand::RecordAlpacaCall {
            tokenization_request_id: "tok-1".into(),
        })
        .then_expect_events(vec![]);
    framework()
        .given(vec![detected(), called()])
        .when(RedemptionCommand::RecordAlpacaCall {
            tokenization_request_id: "tok-2".into(),
        })
        .then_expect_error(RedemptionError::TokenizationRequestMismatch {
            recorded: "tok-1".into(),
            given: "tok-2".into(),
        });
    framework()
        .given_no_previous_events()
        .when(RedemptionCommand::RecordAlpacaCall {
            tokenization_request_id: "tok-1".into(),
        })
        .then_expect_error(RedemptionError::NotDetected);
}

#[test]
fn the_journal_completes_only_after_the_call() {
    framework()
        .given(vec![detected(), called()])
        .when(RedemptionCommand::RecordJournalCompleted)
        .then_expect_events(vec![RedemptionEvent::AlpacaJournalCompleted {
            completed_at: now(),
        }]);
    framework()
        .given(vec![detected(), called(), journal_completed()])
        .when(RedemptionCommand::RecordJournalCompleted)
        .then_expect_events(vec![]);
    framework()
        .given(vec![detected()])
        .when(RedemptionCommand::RecordJournalCompleted)
        .then_expect_error(RedemptionError::InvalidState {
            command: "RecordJournalCompleted",
            state: "detected",
        });
}

#[test]
fn a_rejection_fails_without_burning_and_is_idempotent() {
    let failed = RedemptionEvent::Failed {
        reason: FailureReason::AlpacaRejected { refusal: None },
        resolves: None,
        failed_at: now(),
    };
    framework()
        .given(vec![detected(), called()])
        .when(RedemptionCommand::RecordAlpacaRejected { refusal: None })
        .then_expect_events(vec![failed.clone()]);
    framework()
        .given(vec![detected(), called(), failed.clone()])
        .when(RedemptionCommand::RecordAlpacaRejected { refusal: None })
        .then_expect_events(vec![]);
    // Once rejected, nothing may burn.
    framework()
        .given(vec![detected(), called(), failed])
        .when(intend(0, None))
        .then_expect_error(RedemptionError::InvalidState {
            command: "IntendBurn",
            state: "failed",
        });
    framework()
        .given(vec![detected(), called(), journal_completed()])
        .when(RedemptionCommand::RecordAlpacaRejected { refusal: None })
        .then_expect_error(RedemptionError::InvalidState {
            command: "RecordAlpacaRejected",
            state: "journal_completed",
        });
}

#[test]
fn polling_times_out_from_alpaca_called() {
    framework()
        .given(vec![detected(), called()])
        .when(RedemptionCommand::RecordPollTimeout { waited_secs: 3600 })
        .then_expect_events(vec![RedemptionEvent::Failed {
            reason: FailureReason::PollTimedOut { waited_secs: 3600 },
            resolves: None,
            failed_at: now(),
        }]);
}

#[test]
fn a_burn_must_account_for_every_share() {
    framework()
        .given(vec![detected(), called(), journal_completed()])
        .when(intend(0, None))
        .then_expect_events(vec![RedemptionEvent::BurnIntended {
            tx: signed(0),
            burns: burns(),
            dust: U256::from(123),
            replaces: None,
            intended_at: now(),
        }]);
    framework()
        .given(vec![detected(), called(), journal_completed()])
        .when(RedemptionCommand::IntendBurn {
            tx: signed(0),
            burns: burns(),
            dust: U256::ZERO,
            replaces: None,
        })
        .then_expect_error(RedemptionError::BurnMismatch(Box::new(
            BurnMismatch {
                burned: Some(U256::from(ONE + ONE / 2)),
                dust: U256::ZERO,
                expected: U256::from(ONE + ONE / 2),
                expected_dust: U256::from(123),
            },
        )));
    framework()
        .given(vec![detected(), called()])
        .when(intend(0, None))
        .then_expect_error(RedemptionError::InvalidState {
            command: "IntendBurn",
            state: "alpaca_called",
        });
}

#[test]
fn replacements_name_the_current_attempt_and_are_bounded() {
    let base =
        vec![detected(), called(), journal_completed(), intended(0, None)];
    // The same intent again is a no-op.
    framework()
        .given(base.clone())
        .when(intend(0, None))
        .then_expect_events(vec![]);
    framework()
        .given(base.clone())
        .when(intend(1, Some(signed(0).hash)))
        .then_expect_events(vec![RedemptionEvent::BurnIntended {
            tx: signed(1),
            burns: burns(),
            dust: U256::from(123),
            replaces: Some(signed(0).hash),
            intended_at: now(),
        }]);
    framework()
        .given(base.clone())
        .when(intend(1, Some(signed(7).hash)))
        .then_expect_error(RedemptionError::NotCurrentAttempt {
            given: signed(7).hash,
            current: signed(0).hash,
        });
    framework()
        .given(base.clone())
        .when(intend(1, None))
        .then_expect_error(RedemptionError::InvalidState {
            command: "IntendBurn",
            state: "burning",
        });
    let mut exhausted = base;
    for nonce in 1..=u64::from(MAX_BURN_REPLACEMENTS) {
        exhausted.push(intended(nonce, Some(signed(nonce - 1).hash)));
    }
    let last = u64::from(MAX_BURN_REPLACEMENTS);
    framework()
        .given(exhausted)
        .when(intend(last + 1, Some(signed(last).hash)))
        .then_expect_error(RedemptionError::ReplacementBudgetExhausted {
            used: MAX_BURN_REPLACEMENTS,
        });
}

#[test]
fn a_landed_burn_completes_the_redemption() {
    let base = vec![
        detected(),
        called(),
        journal_completed(),
        intended(0, None),
        intended(1, Some(signed(0).hash)),
    ];
    let completed = |hash| RedemptionEvent::Completed {
        vault: VAULT,
        burn_tx_hash: hash,
        burns: burns(),
        block: 120,
        completed_at: now(),
    };
    framework()
        .given(base.clone())
        .when(RedemptionCommand::RecordBurnCompleted {
            burn_tx_hash: signed(1).hash,
            block: 120,
        })
        .then_expect_events(vec![completed(signed(1).hash)]);
    framework()
        .given(base.clone())
        .when(RedemptionCommand::RecordBurnCompleted {
            burn_tx_hash: signed(9).hash,
            block: 120,
        })
        .then_expect_error(RedemptionError::UnknownAttempt {
            given: signed(9).hash,
        });
    let mut done = base;
    done.push(completed(signed(1).hash));
    framework()
        .given(done)
        .when(RedemptionCommand::RecordBurnCompleted {
            burn_tx_hash: signed(1).hash,
            block: 120,
        })
        .then_expect_events(vec![]);
}

#[test]
fn a_failed_burn_resolves_its_attempt() {
    let failure = BurnFailure::DeterministicRevert {
        tx_hash: signed(0).hash,
        revert: "CertificationExpired".into(),
    };
    framework()
        .given(vec![
            detected(),
            called(),
            journal_completed(),
            intended(0, None),
        ])
        .when(RedemptionCommand::RecordBurnFailed {
            failure: failure.clone(),
        })
        .then_expect_events(vec![RedemptionEvent::Failed {
            reason: FailureReason::BurnFailed { failure },
            resolves: Some(signed(0).hash),
            failed_at: now(),
        }]);
}

#[test]
fn states_replay_into_the_expected_shape() {
    let mut state = Redemption::default();
    for event in [
        detected(),
        called(),
        journal_completed(),
        intended(0, None),
        intended(1, Some(signed(0).hash)),
    ] {
        cqrs_es::Aggregate::apply(&mut state, event);
    }
    let Redemption::Burning {
        burn, superseded, ..
    } = &state
    else {
        panic!("expected burning, got {state:?}");
    };
    assert_eq!(burn.tx, signed(1));
    assert_eq!(superseded, &vec![signed(0)]);
    assert_eq!(state.alpaca().unwrap().tokenization_request_id, "tok-1");
    assert!(!state.is_terminal());
    // Events survive the JSON round trip the store puts them through.
    let json = serde_json::to_value(&state).unwrap();
    assert_eq!(serde_json::from_value::<Redemption>(json).unwrap(), state);
}

mod bookkeeping {
    use sqlx::SqlitePool;

    use super::*;
    use crate::observability::StuckFlows;
    use crate::receipt_inventory::{self, record_deposit};

    async fn pool() -> SqlitePool {
        let pool = sqlite_es::open_pool("sqlite::memory:", 1).await.unwrap();
        crate::migrate(&pool).await.unwrap();
        pool
    }

    async fn intents(pool: &SqlitePool) -> Vec<(String, i64)> {
        sqlx::query_as(
            "SELECT tx_hash, resolved FROM tx_intents ORDER BY nonce",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn unfinished_redemptions_past_the_cutoff_and_failed_ones_are_counted()
     {
        let pool = pool().await;
        let cqrs = cqrs(
            pool.clone(),
            RedemptionServices {
                clock: Arc::new(FixedClock::new(now())),
            },
        );
        let open = transfer(shares());
        // Below Alpaca's minimum: fails at detection.
        let tiny = DetectedTransfer {
            log_index: 5,
            ..transfer(U256::from(1))
        };
        for transfer in [open, tiny] {
            cqrs.execute(
                transfer.issuer_request_id().as_str(),
                RedemptionCommand::Detect { transfer },
            )
            .await
            .unwrap();
        }
        assert_eq!(
            stuck_redemptions(&pool, now()).await.unwrap(),
            StuckFlows {
                overdue: 0,
                failed: 1
            }
        );
        assert_eq!(
            stuck_redemptions(&pool, now() + chrono::Duration::seconds(1))
                .await
                .unwrap(),
            StuckFlows {
                overdue: 1,
                failed: 1
            }
        );
    }

    #[tokio::test]
    async fn burns_reserve_settle_and_record_intents_in_the_commit() {
        let pool = pool().await;
        {
            let mut conn = pool.acquire().await.unwrap();
            record_deposit(
                &mut conn,
                VAULT,
                U256::from(1),
                U256::from(ONE),
                "m1",
            )
            .await
            .unwrap();
            record_deposit(
                &mut conn,
                VAULT,
                U256::from(2),
                U256::from(ONE),
                "m2",
            )
            .await
            .unwrap();
        }
        let cqrs = cqrs(
            pool.clone(),
            RedemptionServices {
                clock: Arc::new(FixedClock::new(now())),
            },
        );
        let id = transfer(shares()).issuer_request_id();
        for command in [
            RedemptionCommand::Detect {
                transfer: transfer(shares()),
            },
            RedemptionCommand::RecordAlpacaCall {
                tokenization_request_id: "tok-1".into(),
            },
            RedemptionCommand::RecordJournalCompleted,
            intend(0, None),
        ] {
            cqrs.execute(id.as_str(), command).await.unwrap();
        }
        let held = receipt_inventory::list(&pool).await.unwrap();
        assert_eq!(held[0].reserved, U256::from(ONE));
        assert_eq!(held[1].reserved, U256::from(ONE / 2));
        assert_eq!(intents(&pool).await.len(), 1);

        // A second redemption cannot reserve what the first holds: the
        // whole commit (event included) is refused.
        let other = DetectedTransfer {
            log_index: 5,
            ..transfer(shares())
        };
        let other_id = other.issuer_request_id();
        for command in [
            RedemptionCommand::Detect { transfer: other },
            RedemptionCommand::RecordAlpacaCall {
                tokenization_request_id: "tok-2".into(),
            },
            RedemptionCommand::RecordJournalCompleted,
        ] {
            cqrs.execute(other_id.as_str(), command).await.unwrap();
        }
        let refused = cqrs.execute(other_id.as_str(), intend(5, None)).await;
        assert!(refused.is_err());
        assert_eq!(
            find(&pool, &other_id).await.unwrap().unwrap().state_name(),
            "journal_completed"
        );
        assert_eq!(intents(&pool).await.len(), 1);

        // A replacement resolves the old intent and records the new one.
        cqrs.execute(id.as_str(), intend(1, Some(signed(0).hash)))
            .await
            .unwrap();
        let rows = intents(&pool).await;
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].1, 1);
        assert_eq!(rows[1].1, 0);

        cqrs.execute(
            id.as_str(),
            RedemptionCommand::RecordBurnCompleted {
                burn_tx_hash: signed(1).hash,
                block: 9,
            },
        )
        .await
        .unwrap();
        let held = receipt_inventory::list(&pool).await.unwrap();
        assert_eq!(held[0].balance, U256::ZERO);
        assert_eq!(held[1].balance, U256::from(ONE / 2));
        assert!(held.iter().all(|h| h.reserved.is_zero()));
        assert!(
            intents(&pool)
                .await
                .iter()
                .all(|(_, resolved)| *resolved == 1)
        );
        let state = find(&pool, &id).await.unwrap().unwrap();
        assert_eq!(state.state_name(), "completed");
        assert!(
            non_terminal(&pool)
                .await
                .unwrap()
                .iter()
                .all(|(open, _)| *open != id)
        );
        let open = non_terminal(&pool).await.unwrap();
        assert_eq!(open.len(), 1);
        // The indexed state column agrees with the aggregate, row by row,
        // and the open-work query is served by its index.
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT view_id, state FROM redemption_view")
                .fetch_all(&pool)
                .await
                .unwrap();
        for (view_id, column) in rows {
            let state = find(&pool, &view_id.parse().unwrap())
                .await
                .unwrap()
                .unwrap();
            assert_eq!(column, state.state_name(), "{view_id}");
        }
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(
            "EXPLAIN QUERY PLAN SELECT view_id, payload FROM redemption_view \
             WHERE state IN ('detected', 'alpaca_called', \
             'journal_completed', 'burning') ORDER BY view_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(
            plan.iter()
                .any(|row| row.3.contains("redemption_view_by_state")),
            "{plan:?}"
        );
        let response = RedemptionResponse::from_state(&id, &state).unwrap();
        assert_eq!(response.burn_tx_hash, Some(signed(1).hash.to_string()));
        assert_eq!(response.dust, "123");
        assert_eq!(response.alpaca_qty.as_deref(), Some("1.5"));
        assert_eq!(response.burns.len(), 2);
    }
}

fn reason(text: &str) -> OperatorReason {
    OperatorReason::new(text).unwrap()
}

fn replay(events: Vec<RedemptionEvent>) -> Redemption {
    let mut state = Redemption::default();
    for event in events {
        cqrs_es::Aggregate::apply(&mut state, event);
    }
    state
}

fn burn_failed() -> Vec<RedemptionEvent> {
    vec![
        detected(),
        called(),
        journal_completed(),
        intended(0, None),
        RedemptionEvent::Failed {
            reason: FailureReason::BurnFailed {
                failure: BurnFailure::DeterministicRevert {
                    tx_hash: signed(0).hash,
                    revert: "CertificationExpired".into(),
                },
            },
            resolves: Some(signed(0).hash),
            failed_at: earlier(),
        },
    ]
}

fn retried() -> RedemptionEvent {
    RedemptionEvent::Retried {
        reason: reason("certified again"),
        retried_at: now(),
    }
}

#[test]
fn a_retried_burn_failure_burns_again_from_the_journal() {
    framework()
        .given(burn_failed())
        .when(RedemptionCommand::Retry {
            reason: reason("certified again"),
        })
        .then_expect_events(vec![retried()]);
    let mut history = burn_failed();
    history.push(retried());
    let state = replay(history.clone());
    assert_eq!(state.state_name(), "journal_completed");
    // A fresh burn may be intended again.
    framework()
        .given(history)
        .when(intend(1, None))
        .then_expect_events(vec![RedemptionEvent::BurnIntended {
            tx: signed(1),
            burns: burns(),
            dust: U256::from(123),
            replaces: None,
            intended_at: now(),
        }]);
}

#[test]
fn a_retried_poll_timeout_polls_again_with_a_fresh_window() {
    let history = vec![
        detected(),
        called(),
        RedemptionEvent::Failed {
            reason: FailureReason::PollTimedOut { waited_secs: 3600 },
            resolves: None,
            failed_at: earlier(),
        },
        retried(),
    ];
    let Redemption::AlpacaCalled { alpaca, .. } = replay(history) else {
        panic!("expected AlpacaCalled");
    };
    assert_eq!(alpaca.called_at, earlier());
    assert_eq!(alpaca.polling_since(), now());
}

#[test]
fn alpacas_rejection_and_dust_are_not_retried() {
    let rejected = vec![
        detected(),
        called(),
        RedemptionEvent::Failed {
            reason: FailureReason::AlpacaRejected { refusal: None },
            resolves: None,
            failed_at: earlier(),
        },
    ];
    framework()
        .given(rejected)
        .when(RedemptionCommand::Retry {
            reason: reason("again"),
        })
        .then_expect_error(RedemptionError::NotRetryable {
            reason: "Alpaca rejected the redemption".into(),
        });
    // A refused redeem call would be refused again (same request key).
    framework()
        .given(vec![
            detected(),
            RedemptionEvent::Failed {
                reason: FailureReason::AlpacaRejected {
                    refusal: Some(Refusal {
                        status: Some(400),
                        message: "insufficient quantity".into(),
                    }),
                },
                resolves: None,
                failed_at: earlier(),
            },
        ])
        .when(RedemptionCommand::Retry {
            reason: reason("again"),
        })
        .then_expect_error(RedemptionError::NotRetryable {
            reason: "Alpaca refused the redeem call (HTTP 400): insufficient quantity".into(),
        });
    framework()
        .given(vec![detected(), called()])
        .when(RedemptionCommand::Retry {
            reason: reason("again"),
        })
        .then_expect_error(RedemptionError::InvalidState {
            command: "Retry",
            state: "alpaca_called",
        });
}

#[test]
fn a_burn_the_chain_shows_is_recorded_once_with_its_amount_checked() {
    let hand = TxHash::repeat_byte(0x77);
    let record = |burns| RedemptionCommand::RecordBurnByOperator {
        reason: reason("burned by hand"),
        burn_tx_hash: hand,
        burns,
        block: 42,
    };
    framework()
        .given(burn_failed())
        .when(record(vec![ReceiptBurn {
            receipt_id: U256::from(1),
            shares: U256::from(ONE),
        }]))
        .then_expect_error(RedemptionError::RecordedBurnMismatch {
            burned: U256::from(ONE),
            expected: shares() - U256::from(123),
        });
    let recorded = RedemptionEvent::BurnRecordedByOperator {
        reason: reason("burned by hand"),
        vault: VAULT,
        burn_tx_hash: hand,
        burns: burns(),
        block: 42,
        recorded_at: now(),
    };
    framework()
        .given(burn_failed())
        .when(record(burns()))
        .then_expect_events(vec![recorded.clone()]);
    let mut history = burn_failed();
    history.push(recorded);
    assert_eq!(replay(history.clone()).state_name(), "completed");
    framework()
        .given(history)
        .when(record(burns()))
        .then_expect_events(vec![]);
    // Before Alpaca journaled, no burn may be recorded.
    framework()
        .given(vec![detected(), called()])
        .when(record(burns()))
        .then_expect_error(RedemptionError::InvalidState {
            command: "RecordBurnByOperator",
            state: "alpaca_called",
        });
}

#[test]
fn closing_echoes_the_burn_and_is_refused_mid_flight() {
    let close = |tx_hash| RedemptionCommand::Close {
        reason: reason("returned to the AP by hand"),
        tx_hash,
    };
    framework()
        .given(burn_failed())
        .when(close(None))
        .then_expect_error(RedemptionError::Echo(EchoError::Missing {
            expected: signed(0).hash,
        }));
    let closed = RedemptionEvent::Closed {
        reason: reason("returned to the AP by hand"),
        closed_at: now(),
    };
    framework()
        .given(burn_failed())
        .when(close(Some(signed(0).hash)))
        .then_expect_events(vec![closed.clone()]);
    let mut history = burn_failed();
    history.push(closed);
    let state = replay(history.clone());
    assert_eq!(state.state_name(), "closed");
    assert!(state.is_terminal());
    framework()
        .given(history)
        .when(close(Some(signed(0).hash)))
        .then_expect_events(vec![]);
    framework()
        .given(vec![detected(), called()])
        .when(close(None))
        .then_expect_error(RedemptionError::InvalidState {
            command: "Close",
            state: "alpaca_called",
        });
}

#[test]
fn an_attribution_records_the_reason_then_detects_once() {
    let attribute = || RedemptionCommand::Attribute {
        transfer: transfer(shares()),
        reason: reason("the AP's second wallet"),
    };
    framework()
        .given_no_previous_events()
        .when(attribute())
        .then_expect_events(vec![
            RedemptionEvent::Attributed {
                reason: reason("the AP's second wallet"),
                attributed_at: now(),
            },
            RedemptionEvent::Detected {
                detection: Detection {
                    detected_at: now(),
                    ..detection()
                },
            },
        ]);
    let state = replay(vec![
        RedemptionEvent::Attributed {
            reason: reason("the AP's second wallet"),
            attributed_at: now(),
        },
        detected(),
    ]);
    assert_eq!(state.state_name(), "detected");
    framework()
        .given(vec![detected()])
        .when(RedemptionCommand::Attribute {
            transfer: detection().transfer,
            reason: reason("again"),
        })
        .then_expect_events(vec![]);
}

fn return_transfer() -> ReturnTransfer {
    ReturnTransfer {
        network: Network::Base,
        vault: VAULT,
        underlying: UnderlyingSymbol::new("AAPL").unwrap(),
        token: TokenSymbol::new("tAAPL").unwrap(),
        tx_hash: TxHash::repeat_byte(0x11),
        log_index: 4,
        block: 100,
        from_wallet: AP,
        shares: shares(),
        detected_at: "2026-11-28T11:00:00Z".into(),
    }
}

fn return_requested() -> RedemptionEvent {
    RedemptionEvent::ReturnRequested {
        transfer: return_transfer(),
        reason: reason("unknown sender"),
        requested_at: earlier(),
    }
}

fn return_intended(nonce: u64, replaces: Option<TxHash>) -> RedemptionEvent {
    RedemptionEvent::ReturnIntended {
        tx: signed(nonce),
        replaces,
        intended_at: earlier(),
    }
}

fn request_return(why: &str) -> RedemptionCommand {
    RedemptionCommand::RequestReturn {
        transfer: return_transfer(),
        reason: reason(why),
    }
}

#[test]
fn a_return_is_requested_once_and_excludes_a_redemption() {
    framework()
        .given_no_previous_events()
        .when(request_return("unknown sender"))
        .then_expect_events(vec![RedemptionEvent::ReturnRequested {
            transfer: return_transfer(),
            reason: reason("unknown sender"),
            requested_at: now(),
        }]);
    for history in [
        vec![return_requested()],
        vec![return_requested(), return_intended(0, None)],
        vec![
            return_requested(),
            return_intended(0, None),
            RedemptionEvent::Returned {
                tx_hash: signed(0).hash,
                block: 120,
                returned_at: now(),
            },
        ],
    ] {
        // The same request again records nothing.
        framework()
            .given(history.clone())
            .when(request_return("unknown sender"))
            .then_expect_events(vec![]);
        let state = replay(history.clone()).state_name();
        framework()
            .given(history.clone())
            .when(request_return("another reason"))
            .then_expect_error(RedemptionError::InvalidState {
                command: "Return",
                state,
            });
        // A returned transfer is never redeemed.
        framework()
            .given(history)
            .when(RedemptionCommand::Attribute {
                transfer: transfer(shares()),
                reason: reason("it was theirs"),
            })
            .then_expect_error(RedemptionError::InvalidState {
                command: "Detect",
                state,
            });
    }
    framework()
        .given(vec![detected()])
        .when(request_return("unknown sender"))
        .then_expect_error(RedemptionError::InvalidState {
            command: "Return",
            state: "detected",
        });
}

#[test]
fn a_return_is_intended_then_recorded_with_bounded_replacements() {
    framework()
        .given(vec![return_requested()])
        .when(RedemptionCommand::IntendReturn {
            tx: signed(0),
            replaces: None,
        })
        .then_expect_events(vec![RedemptionEvent::ReturnIntended {
            tx: signed(0),
            replaces: None,
            intended_at: now(),
        }]);
    let returning = vec![return_requested(), return_intended(0, None)];
    // The same intent again records nothing; a second one must replace
    // the current attempt.
    framework()
        .given(returning.clone())
        .when(RedemptionCommand::IntendReturn {
            tx: signed(0),
            replaces: None,
        })
        .then_expect_events(vec![]);
    framework()
        .given(returning.clone())
        .when(RedemptionCommand::IntendReturn {
            tx: signed(1),
            replaces: None,
        })
        .then_expect_error(RedemptionError::InvalidState {
            command: "IntendReturn",
            state: "returning",
        });
    let mut exhausted = returning.clone();
    for nonce in 1..=u64::from(MAX_BURN_REPLACEMENTS) {
        exhausted.push(return_intended(nonce, Some(signed(nonce - 1).hash)));
    }
    let last = u64::from(MAX_BURN_REPLACEMENTS);
    framework()
        .given(exhausted)
        .when(RedemptionCommand::IntendReturn {
            tx: signed(last + 1),
            replaces: Some(signed(last).hash),
        })
        .then_expect_error(RedemptionError::ReplacementBudgetExhausted {
            used: MAX_BURN_REPLACEMENTS,
        });
    let returned = RedemptionEvent::Returned {
        tx_hash: signed(0).hash,
        block: 120,
        returned_at: now(),
    };
    framework()
        .given(returning.clone())
        .when(RedemptionCommand::RecordReturned {
            tx_hash: signed(0).hash,
            block: 120,
        })
        .then_expect_events(vec![returned.clone()]);
    let mut history = returning;
    history.push(returned);
    let state = replay(history.clone());
    assert!(state.is_terminal());
    assert_eq!(state.return_order().unwrap().transfer, return_transfer());
    framework()
        .given(history)
        .when(RedemptionCommand::RecordReturned {
            tx_hash: signed(0).hash,
            block: 120,
        })
        .then_expect_events(vec![]);
}
