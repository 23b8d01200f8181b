//! Aggregate (given/when/then) and newtype tests for tokenized assets.
//! HTTP tests live in `api_tests.rs`.

use std::sync::Arc;

use alloy::primitives::{Address, address};
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::Aggregate as _;
use cqrs_es::test::TestFramework;

use super::*;
use crate::clock::FixedClock;
use crate::operator::OperatorReason;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).unwrap()
}

fn earlier() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 9, 30, 0).unwrap()
}

fn framework() -> TestFramework<TokenizedAsset> {
    TestFramework::with(TokenizedAssetServices {
        clock: Arc::new(FixedClock::new(now())),
    })
}

const VAULT_1: Address = address!("0xaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
const VAULT_2: Address = address!("0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");

fn vault(address: Address) -> Vault {
    Vault::new(address).unwrap()
}

fn aapl() -> UnderlyingSymbol {
    UnderlyingSymbol::new("AAPL").unwrap()
}

fn taapl() -> TokenSymbol {
    TokenSymbol::new("tAAPL").unwrap()
}

fn add(token: TokenSymbol, vault_address: Address) -> TokenizedAssetCommand {
    TokenizedAssetCommand::Add {
        underlying: aapl(),
        token,
        network: Network::Base,
        vault: vault(vault_address),
    }
}

fn added() -> TokenizedAssetEvent {
    TokenizedAssetEvent::Added {
        underlying: aapl(),
        token: taapl(),
        network: Network::Base,
        vault: vault(VAULT_1),
        added_at: earlier(),
    }
}

fn disabled() -> TokenizedAssetEvent {
    TokenizedAssetEvent::Disabled {
        disabled_at: earlier(),
    }
}

#[test]
fn add_new_asset() {
    framework()
        .given_no_previous_events()
        .when(add(taapl(), VAULT_1))
        .then_expect_events(vec![TokenizedAssetEvent::Added {
            underlying: aapl(),
            token: taapl(),
            network: Network::Base,
            vault: vault(VAULT_1),
            added_at: now(),
        }]);
}

#[test]
fn re_adding_with_the_same_vault_is_a_no_op() {
    framework()
        .given(vec![added()])
        .when(add(taapl(), VAULT_1))
        .then_expect_events(vec![]);
}

#[test]
fn re_adding_a_disabled_asset_with_the_same_vault_is_a_no_op() {
    framework()
        .given(vec![added(), disabled()])
        .when(add(taapl(), VAULT_1))
        .then_expect_events(vec![]);
}

#[test]
fn re_adding_with_another_vault_repoints() {
    framework()
        .given(vec![added()])
        .when(add(taapl(), VAULT_2))
        .then_expect_events(vec![TokenizedAssetEvent::VaultRepointed {
            previous_vault: vault(VAULT_1),
            vault: vault(VAULT_2),
            repointed_at: now(),
        }]);
}

#[test]
fn repoint_records_the_current_vault_as_previous() {
    framework()
        .given(vec![
            added(),
            TokenizedAssetEvent::VaultRepointed {
                previous_vault: vault(VAULT_1),
                vault: vault(VAULT_2),
                repointed_at: earlier(),
            },
        ])
        .when(add(taapl(), VAULT_1))
        .then_expect_events(vec![TokenizedAssetEvent::VaultRepointed {
            previous_vault: vault(VAULT_2),
            vault: vault(VAULT_1),
            repointed_at: now(),
        }]);
}

#[test]
fn re_adding_with_another_token_is_rejected() {
    framework()
        .given(vec![added()])
        .when(add(TokenSymbol::new("AAPLx").unwrap(), VAULT_1))
        .then_expect_error(TokenizedAssetError::TokenMismatch {
            underlying: aapl(),
            network: Network::Base,
            listed: taapl(),
            requested: TokenSymbol::new("AAPLx").unwrap(),
        });
}

#[test]
fn adding_another_key_to_a_stream_is_rejected() {
    framework()
        .given(vec![added()])
        .when(TokenizedAssetCommand::Add {
            underlying: aapl(),
            token: taapl(),
            network: Network::Ethereum,
            vault: vault(VAULT_1),
        })
        .then_expect_error(TokenizedAssetError::KeyMismatch {
            listed: "AAPL:base".to_owned(),
            requested: "AAPL:ethereum".to_owned(),
        });
}

#[test]
fn disable_enabled_asset() {
    framework()
        .given(vec![added()])
        .when(TokenizedAssetCommand::Disable)
        .then_expect_events(vec![TokenizedAssetEvent::Disabled {
            disabled_at: now(),
        }]);
}

#[test]
fn disable_disabled_asset_is_a_no_op() {
    framework()
        .given(vec![added(), disabled()])
        .when(TokenizedAssetCommand::Disable)
        .then_expect_events(vec![]);
}

#[test]
fn enable_disabled_asset() {
    framework()
        .given(vec![added(), disabled()])
        .when(TokenizedAssetCommand::Enable)
        .then_expect_events(vec![TokenizedAssetEvent::Enabled {
            enabled_at: now(),
        }]);
}

#[test]
fn enable_enabled_asset_is_a_no_op() {
    framework()
        .given(vec![added()])
        .when(TokenizedAssetCommand::Enable)
        .then_expect_events(vec![]);
}

#[test]
fn enable_and_disable_require_a_listing() {
    for command in [
        TokenizedAssetCommand::Enable,
        TokenizedAssetCommand::Disable,
    ] {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(TokenizedAssetError::NotAdded);
    }
}

fn reason(text: &str) -> OperatorReason {
    OperatorReason::new(text).unwrap()
}

fn later() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 30, 16, 0, 0).unwrap()
}

fn freeze(
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> TokenizedAssetCommand {
    TokenizedAssetCommand::Freeze {
        reason: reason("stock split"),
        from,
        until,
    }
}

fn frozen(
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    frozen_at: DateTime<Utc>,
) -> TokenizedAssetEvent {
    TokenizedAssetEvent::Frozen {
        reason: reason("stock split"),
        from,
        until,
        frozen_at,
    }
}

#[test]
fn freeze_a_listing_now_or_in_a_window() {
    framework()
        .given(vec![added()])
        .when(freeze(None, None))
        .then_expect_events(vec![frozen(None, None, now())]);
    framework()
        .given(vec![added(), disabled()])
        .when(freeze(Some(now()), Some(later())))
        .then_expect_events(vec![frozen(Some(now()), Some(later()), now())]);
}

#[test]
fn the_same_freeze_again_is_a_no_op() {
    framework()
        .given(vec![added(), frozen(None, Some(later()), earlier())])
        .when(freeze(None, Some(later())))
        .then_expect_events(vec![]);
}

#[test]
fn another_window_or_reason_replaces_the_freeze() {
    framework()
        .given(vec![added(), frozen(None, Some(later()), earlier())])
        .when(freeze(None, None))
        .then_expect_events(vec![frozen(None, None, now())]);
    framework()
        .given(vec![added(), frozen(None, None, earlier())])
        .when(TokenizedAssetCommand::Freeze {
            reason: reason("merger"),
            from: None,
            until: None,
        })
        .then_expect_events(vec![TokenizedAssetEvent::Frozen {
            reason: reason("merger"),
            from: None,
            until: None,
            frozen_at: now(),
        }]);
}

#[test]
fn a_window_that_cannot_hold_is_refused() {
    framework()
        .given(vec![added()])
        .when(freeze(Some(later()), Some(later())))
        .then_expect_error(TokenizedAssetError::InvalidWindow(
            InvalidWindow::EndsBeforeStart {
                from: later(),
                until: later(),
            },
        ));
    framework()
        .given(vec![added()])
        .when(freeze(None, Some(now())))
        .then_expect_error(TokenizedAssetError::InvalidWindow(
            InvalidWindow::AlreadyEnded { until: now() },
        ));
}

#[test]
fn unfreeze_lifts_a_freeze_and_is_a_no_op_without_one() {
    framework()
        .given(vec![added(), frozen(Some(later()), None, earlier())])
        .when(TokenizedAssetCommand::Unfreeze {
            reason: reason("split done"),
        })
        .then_expect_events(vec![TokenizedAssetEvent::Unfrozen {
            reason: reason("split done"),
            unfrozen_at: now(),
        }]);
    framework()
        .given(vec![
            added(),
            frozen(None, None, earlier()),
            TokenizedAssetEvent::Unfrozen {
                reason: reason("split done"),
                unfrozen_at: earlier(),
            },
        ])
        .when(TokenizedAssetCommand::Unfreeze {
            reason: reason("split done"),
        })
        .then_expect_events(vec![]);
}

#[test]
fn freeze_and_unfreeze_require_a_listing() {
    for command in [
        freeze(None, None),
        TokenizedAssetCommand::Unfreeze {
            reason: reason("split done"),
        },
    ] {
        framework()
            .given_no_previous_events()
            .when(command)
            .then_expect_error(TokenizedAssetError::NotAdded);
    }
}

#[test]
fn a_freeze_is_active_inside_its_window_only() {
    let window = Freeze {
        reason: reason("stock split"),
        from: Some(now()),
        until: Some(later()),
        frozen_at: earlier(),
    };
    assert!(!window.is_active(earlier()));
    assert!(window.is_active(now()));
    assert!(!window.is_active(later()));
    let open = Freeze {
        from: None,
        until: None,
        ..window
    };
    assert!(open.is_active(earlier()));
    assert!(open.is_active(later()));
}

#[test]
fn apply_tracks_the_freeze() {
    let mut asset = TokenizedAsset::default();
    asset.apply(added());
    asset.apply(frozen(None, Some(later()), earlier()));
    asset.apply(disabled());
    let TokenizedAsset::Disabled { listing } = &asset else {
        panic!("expected a disabled asset, got {asset:?}");
    };
    assert_eq!(
        listing.freeze.as_ref().map(|freeze| freeze.until),
        Some(Some(later()))
    );
    asset.apply(TokenizedAssetEvent::Unfrozen {
        reason: reason("split done"),
        unfrozen_at: now(),
    });
    let TokenizedAsset::Disabled { listing } = &asset else {
        panic!("expected a disabled asset, got {asset:?}");
    };
    assert_eq!(listing.freeze, None);
}

#[test]
fn apply_tracks_vault_and_status() {
    let mut asset = TokenizedAsset::default();
    for event in [
        added(),
        disabled(),
        TokenizedAssetEvent::VaultRepointed {
            previous_vault: vault(VAULT_1),
            vault: vault(VAULT_2),
            repointed_at: earlier(),
        },
    ] {
        asset.apply(event);
    }
    let TokenizedAsset::Disabled { listing } = &asset else {
        panic!("expected a disabled asset, got {asset:?}");
    };
    assert_eq!(listing.vault, vault(VAULT_2));
    asset.apply(TokenizedAssetEvent::Enabled {
        enabled_at: earlier(),
    });
    assert!(matches!(asset, TokenizedAsset::Enabled { .. }));
}

#[test]
fn underlying_symbol_rules() {
    for ok in ["AAPL", "BRK.B", "A", "ABCDEFGHIJ12"] {
        assert!(UnderlyingSymbol::new(ok).is_ok(), "{ok}");
    }
    for bad in ["", "aapl", "AAPL ", "ABCDEFGHIJ123", "AA-PL", "ÄAPL"] {
        assert!(UnderlyingSymbol::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn token_symbol_rules_preserve_case() {
    assert_eq!(TokenSymbol::new("tAAPL").unwrap().as_str(), "tAAPL");
    assert!(TokenSymbol::new("BRK.Bx").is_ok());
    assert!(TokenSymbol::new(&"x".repeat(20)).is_ok());
    for bad in ["", "t AAPL", "t-AAPL", &"x".repeat(21)] {
        assert!(TokenSymbol::new(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn network_wire_names_round_trip_and_sort_alphabetically() {
    let mut names = Vec::new();
    for network in Network::ALL {
        let json = serde_json::to_string(&network).unwrap();
        assert_eq!(json, format!("\"{}\"", network.as_str()));
        assert_eq!(network.as_str().parse::<Network>().unwrap(), network);
        assert_eq!(serde_json::from_str::<Network>(&json).unwrap(), network);
        names.push(network.as_str());
    }
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    let mut by_ord = Network::ALL;
    by_ord.sort();
    assert_eq!(by_ord, Network::ALL);
    assert!("Base".parse::<Network>().is_err());
    assert!("polygon".parse::<Network>().is_err());
}

#[test]
fn asset_key_format() {
    assert_eq!(
        AssetKey::new(aapl(), Network::Base).to_string(),
        "AAPL:base"
    );
}

#[test]
fn vault_rejects_zero_and_malformed() {
    assert!(
        "0x0000000000000000000000000000000000000000"
            .parse::<Vault>()
            .is_err()
    );
    assert!("0x1234".parse::<Vault>().is_err());
    assert_eq!(
        "0xAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            .parse::<Vault>()
            .unwrap(),
        vault(VAULT_1)
    );
}
