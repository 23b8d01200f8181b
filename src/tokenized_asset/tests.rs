//! Aggregate (given/when/then) and newtype tests for tokenized assets.
//! HTTP tests live in `api_tests.rs`.

use std::sync::Arc;

use alloy::primitives::{Address, address};
use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;

use super::*;
use crate::clock::FixedClock;

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
