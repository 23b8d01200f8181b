//! Aggregate (given/when/then) and newtype tests for accounts. HTTP tests
//! live in `api_tests.rs`.

use std::sync::Arc;

use alloy::primitives::{Address, address};
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::Aggregate as _;
use cqrs_es::test::TestFramework;
use uuid::Uuid;

use super::*;
use crate::clock::FixedClock;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

fn earlier() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 9, 30, 0).unwrap()
}

fn framework() -> TestFramework<Account> {
    TestFramework::with(AccountServices {
        clock: Arc::new(FixedClock::new(now())),
    })
}

fn client_id() -> ClientId {
    ClientId::new(Uuid::from_u128(0x1234))
}

fn email() -> Email {
    Email::new("ap@example.com").unwrap()
}

fn alpaca_account() -> AlpacaAccountNumber {
    AlpacaAccountNumber::new("5505-1234-ABC-4G45").unwrap()
}

const WALLET_A: Address =
    address!("0x1111111111111111111111111111111111111111");
const WALLET_B: Address =
    address!("0x2222222222222222222222222222222222222222");

fn wallet(address: Address) -> Wallet {
    Wallet::new(address).unwrap()
}

fn registered() -> AccountEvent {
    AccountEvent::Registered {
        client_id: client_id(),
        email: email(),
        registered_at: earlier(),
    }
}

fn linked() -> AccountEvent {
    AccountEvent::Linked {
        alpaca_account: alpaca_account(),
        linked_at: earlier(),
    }
}

fn whitelisted(address: Address) -> AccountEvent {
    AccountEvent::WalletWhitelisted {
        wallet: wallet(address),
        whitelisted_at: earlier(),
    }
}

#[test]
fn register_new_account_stamps_clock_time() {
    framework()
        .given_no_previous_events()
        .when(AccountCommand::Register {
            client_id: client_id(),
            email: email(),
        })
        .then_expect_events(vec![AccountEvent::Registered {
            client_id: client_id(),
            email: email(),
            registered_at: now(),
        }]);
}

#[test]
fn register_twice_is_rejected() {
    framework()
        .given(vec![registered()])
        .when(AccountCommand::Register {
            client_id: client_id(),
            email: email(),
        })
        .then_expect_error(AccountError::AlreadyRegistered {
            client_id: client_id(),
        });
}

#[test]
fn register_after_link_is_rejected() {
    framework()
        .given(vec![registered(), linked()])
        .when(AccountCommand::Register {
            client_id: client_id(),
            email: email(),
        })
        .then_expect_error(AccountError::AlreadyRegistered {
            client_id: client_id(),
        });
}

#[test]
fn link_registered_account() {
    framework()
        .given(vec![registered()])
        .when(AccountCommand::Link {
            alpaca_account: alpaca_account(),
        })
        .then_expect_events(vec![AccountEvent::Linked {
            alpaca_account: alpaca_account(),
            linked_at: now(),
        }]);
}

#[test]
fn link_unregistered_account_is_rejected() {
    framework()
        .given_no_previous_events()
        .when(AccountCommand::Link {
            alpaca_account: alpaca_account(),
        })
        .then_expect_error(AccountError::NotRegistered);
}

#[test]
fn link_twice_is_rejected_even_with_the_same_number() {
    framework()
        .given(vec![registered(), linked()])
        .when(AccountCommand::Link {
            alpaca_account: alpaca_account(),
        })
        .then_expect_error(AccountError::AlreadyLinked {
            client_id: client_id(),
            alpaca_account: alpaca_account(),
        });
}

#[test]
fn whitelist_on_registered_account() {
    framework()
        .given(vec![registered()])
        .when(AccountCommand::WhitelistWallet {
            wallet: wallet(WALLET_A),
        })
        .then_expect_events(vec![AccountEvent::WalletWhitelisted {
            wallet: wallet(WALLET_A),
            whitelisted_at: now(),
        }]);
}

#[test]
fn whitelist_on_linked_account_keeps_existing_wallets() {
    let result = framework()
        .given(vec![registered(), whitelisted(WALLET_A), linked()])
        .when(AccountCommand::WhitelistWallet {
            wallet: wallet(WALLET_B),
        })
        .inspect_result()
        .unwrap();
    assert_eq!(
        result,
        vec![AccountEvent::WalletWhitelisted {
            wallet: wallet(WALLET_B),
            whitelisted_at: now(),
        }]
    );
}

#[test]
fn whitelist_present_wallet_emits_nothing() {
    framework()
        .given(vec![registered(), linked(), whitelisted(WALLET_A)])
        .when(AccountCommand::WhitelistWallet {
            wallet: wallet(WALLET_A),
        })
        .then_expect_events(vec![]);
}

#[test]
fn whitelist_on_unregistered_account_is_rejected() {
    framework()
        .given_no_previous_events()
        .when(AccountCommand::WhitelistWallet {
            wallet: wallet(WALLET_A),
        })
        .then_expect_error(AccountError::NotRegistered);
}

#[test]
fn unwhitelist_present_wallet() {
    framework()
        .given(vec![registered(), whitelisted(WALLET_A)])
        .when(AccountCommand::UnwhitelistWallet {
            wallet: wallet(WALLET_A),
        })
        .then_expect_events(vec![AccountEvent::WalletUnwhitelisted {
            wallet: wallet(WALLET_A),
            unwhitelisted_at: now(),
        }]);
}

#[test]
fn unwhitelist_absent_wallet_emits_nothing() {
    framework()
        .given(vec![registered(), linked(), whitelisted(WALLET_A)])
        .when(AccountCommand::UnwhitelistWallet {
            wallet: wallet(WALLET_B),
        })
        .then_expect_events(vec![]);
}

#[test]
fn unwhitelist_removed_wallet_emits_nothing() {
    framework()
        .given(vec![
            registered(),
            whitelisted(WALLET_A),
            AccountEvent::WalletUnwhitelisted {
                wallet: wallet(WALLET_A),
                unwhitelisted_at: earlier(),
            },
        ])
        .when(AccountCommand::UnwhitelistWallet {
            wallet: wallet(WALLET_A),
        })
        .then_expect_events(vec![]);
}

#[test]
fn unwhitelist_on_unregistered_account_is_rejected() {
    framework()
        .given_no_previous_events()
        .when(AccountCommand::UnwhitelistWallet {
            wallet: wallet(WALLET_A),
        })
        .then_expect_error(AccountError::NotRegistered);
}

fn alpaca_id(n: u128) -> AlpacaAccountId {
    AlpacaAccountId::new(Uuid::from_u128(n)).unwrap()
}

fn alpaca_id_recorded(n: u128) -> AccountEvent {
    AccountEvent::AlpacaAccountIdRecorded {
        alpaca_account_id: alpaca_id(n),
        recorded_at: earlier(),
    }
}

#[test]
fn record_alpaca_account_id_on_registered_account() {
    framework()
        .given(vec![registered()])
        .when(AccountCommand::RecordAlpacaAccountId {
            alpaca_account_id: alpaca_id(0xA1),
        })
        .then_expect_events(vec![AccountEvent::AlpacaAccountIdRecorded {
            alpaca_account_id: alpaca_id(0xA1),
            recorded_at: now(),
        }]);
}

#[test]
fn record_alpaca_account_id_on_linked_account() {
    framework()
        .given(vec![registered(), linked()])
        .when(AccountCommand::RecordAlpacaAccountId {
            alpaca_account_id: alpaca_id(0xA1),
        })
        .then_expect_events(vec![AccountEvent::AlpacaAccountIdRecorded {
            alpaca_account_id: alpaca_id(0xA1),
            recorded_at: now(),
        }]);
}

#[test]
fn record_same_alpaca_account_id_again_emits_nothing() {
    framework()
        .given(vec![registered(), alpaca_id_recorded(0xA1)])
        .when(AccountCommand::RecordAlpacaAccountId {
            alpaca_account_id: alpaca_id(0xA1),
        })
        .then_expect_events(vec![]);
}

#[test]
fn record_other_alpaca_account_id_replaces_it() {
    framework()
        .given(vec![registered(), alpaca_id_recorded(0xA1)])
        .when(AccountCommand::RecordAlpacaAccountId {
            alpaca_account_id: alpaca_id(0xB2),
        })
        .then_expect_events(vec![AccountEvent::AlpacaAccountIdRecorded {
            alpaca_account_id: alpaca_id(0xB2),
            recorded_at: now(),
        }]);
}

#[test]
fn record_alpaca_account_id_on_unregistered_account_is_rejected() {
    framework()
        .given_no_previous_events()
        .when(AccountCommand::RecordAlpacaAccountId {
            alpaca_account_id: alpaca_id(0xA1),
        })
        .then_expect_error(AccountError::NotRegistered);
}

#[test]
fn apply_keeps_the_alpaca_account_id_across_the_link() {
    let mut account = Account::default();
    for event in [registered(), alpaca_id_recorded(0xA1), linked()] {
        account.apply(event);
    }
    let Account::Linked { profile, .. } = account else {
        panic!("expected a linked account, got {account:?}");
    };
    assert_eq!(profile.alpaca_account_id, Some(alpaca_id(0xA1)));
}

#[test]
fn alpaca_account_id_rejects_nil_and_non_uuids() {
    assert!(AlpacaAccountId::new(Uuid::nil()).is_err());
    assert!("not-a-uuid".parse::<AlpacaAccountId>().is_err());
    assert!(
        "00000000-0000-0000-0000-000000000000"
            .parse::<AlpacaAccountId>()
            .is_err()
    );
    assert!(
        serde_json::from_value::<AlpacaAccountId>(serde_json::json!(
            "00000000-0000-0000-0000-000000000000"
        ))
        .is_err()
    );
    let id = alpaca_id(0xA1);
    assert_eq!(id.to_string().parse::<AlpacaAccountId>().unwrap(), id);
    assert_eq!(
        serde_json::from_value::<AlpacaAccountId>(
            serde_json::to_value(id).unwrap()
        )
        .unwrap(),
        id
    );
}

#[test]
fn apply_builds_the_linked_state_with_wallets() {
    let mut account = Account::default();
    for event in [
        registered(),
        whitelisted(WALLET_A),
        linked(),
        whitelisted(WALLET_B),
    ] {
        account.apply(event);
    }
    let Account::Linked {
        profile,
        alpaca_account: number,
        linked_at,
    } = account
    else {
        panic!("expected a linked account, got {account:?}");
    };
    assert_eq!(profile.client_id, client_id());
    assert_eq!(number, alpaca_account());
    assert_eq!(linked_at, earlier());
    assert_eq!(
        profile.wallets.into_iter().collect::<Vec<_>>(),
        vec![wallet(WALLET_A), wallet(WALLET_B)]
    );
}

#[test]
fn email_is_trimmed_and_lowercased() {
    let email = Email::new("  AP.Desk@Example.COM ").unwrap();
    assert_eq!(email.as_str(), "ap.desk@example.com");
}

#[test]
fn email_rejects_malformed_addresses() {
    let cases = [
        ("", EmailDefect::Empty),
        ("   ", EmailDefect::Empty),
        ("no-at-sign.example.com", EmailDefect::AtSign),
        ("two@@example.com", EmailDefect::AtSign),
        ("a@b@example.com", EmailDefect::AtSign),
        ("@example.com", EmailDefect::EmptyPart),
        ("ap@", EmailDefect::EmptyPart),
        ("ap@localhost", EmailDefect::Domain),
        ("ap@example.", EmailDefect::Domain),
        ("ap@.example.com", EmailDefect::Domain),
        ("ap desk@example.com", EmailDefect::Whitespace),
    ];
    for (raw, defect) in cases {
        let err = Email::new(raw).unwrap_err();
        assert_eq!(err.reason, defect, "{raw:?}");
    }
}

#[test]
fn email_length_limit_is_254() {
    let domain = "@example.com";
    let at_limit = format!("{}{domain}", "a".repeat(254 - domain.len()));
    assert!(Email::new(&at_limit).is_ok());
    let over = format!("a{at_limit}");
    assert_eq!(Email::new(&over).unwrap_err().reason, EmailDefect::TooLong);
}

#[test]
fn email_deserialization_validates() {
    let ok: Email = serde_json::from_str("\"AP@Example.com\"").unwrap();
    assert_eq!(ok, email());
    let err = serde_json::from_str::<Email>("\"nope\"").unwrap_err();
    assert!(err.to_string().contains("exactly one '@'"), "{err}");
}

#[test]
fn alpaca_account_number_rules() {
    assert!(AlpacaAccountNumber::new("5505-1234-ABC-4G45").is_ok());
    assert!(AlpacaAccountNumber::new(&"9".repeat(64)).is_ok());
    assert!(AlpacaAccountNumber::new("").is_err());
    assert!(AlpacaAccountNumber::new(&"9".repeat(65)).is_err());
    assert!(AlpacaAccountNumber::new("has space").is_err());
    assert!(AlpacaAccountNumber::new("tab\there").is_err());
}

#[test]
fn wallet_parsing_ignores_checksum_and_requires_prefix() {
    let lower: Wallet = "0xabcdefabcdefabcdefabcdefabcdefabcdefabcd"
        .parse()
        .unwrap();
    let upper: Wallet = "0xABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCD"
        .parse()
        .unwrap();
    assert_eq!(lower, upper);
    assert!(
        "abcdefabcdefabcdefabcdefabcdefabcdefabcd"
            .parse::<Wallet>()
            .is_err()
    );
    assert!("0xabcdef".parse::<Wallet>().is_err());
    assert!(
        "0xzzcdefabcdefabcdefabcdefabcdefabcdefabcd"
            .parse::<Wallet>()
            .is_err()
    );
    let zero = "0x0000000000000000000000000000000000000000"
        .parse::<Wallet>()
        .unwrap_err();
    assert!(zero.reason.contains("zero address"));
}

#[test]
fn client_id_round_trips_through_text() {
    let id = client_id();
    assert_eq!(id.to_string().parse::<ClientId>().unwrap(), id);
    assert!("not-a-uuid".parse::<ClientId>().is_err());
}

mod properties {
    use std::collections::BTreeSet;

    use cqrs_es::event_sink::EventSink;
    use futures::executor::block_on;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the order of (un)whitelisting, the account holds
        /// exactly the wallets a plain set would, and only real changes
        /// emit an event.
        #[test]
        fn wallets_follow_a_set_model(
            ops in prop::collection::vec((any::<bool>(), 1u8..5), 0..40)
        ) {
            let services = AccountServices {
                clock: Arc::new(FixedClock::new(now())),
            };
            let mut account = Account::default();
            account.apply(registered());
            let mut model = BTreeSet::new();
            for (add, byte) in ops {
                let wallet = wallet(Address::with_last_byte(byte));
                let command = if add {
                    AccountCommand::WhitelistWallet { wallet }
                } else {
                    AccountCommand::UnwhitelistWallet { wallet }
                };
                let sink = EventSink::default();
                block_on(account.handle(command, &services, &sink)).unwrap();
                let events = block_on(sink.collect());
                let changed = if add {
                    model.insert(wallet)
                } else {
                    model.remove(&wallet)
                };
                prop_assert_eq!(events.len(), usize::from(changed));
            }
            let Account::Registered { profile } = account else {
                panic!("account left the registered state");
            };
            prop_assert_eq!(profile.wallets, model);
        }

        /// Normalisation is idempotent and ignores letter case and
        /// surrounding whitespace.
        #[test]
        fn email_normalisation(
            raw in "[a-zA-Z0-9._%+-]{1,20}@[a-zA-Z0-9-]{1,10}\\.[a-zA-Z]{2,6}",
            pad in "[ \t]{0,3}",
        ) {
            let email = Email::new(&raw).unwrap();
            prop_assert_eq!(Email::new(email.as_str()).unwrap(), email.clone());
            let noisy = format!("{pad}{}{pad}", raw.to_uppercase());
            prop_assert_eq!(Email::new(&noisy).unwrap(), email.clone());
            let json = serde_json::to_string(&email).unwrap();
            prop_assert_eq!(serde_json::from_str::<Email>(&json).unwrap(), email);
        }
    }
}
