//! Every revert case of the spec's §10 table, decoded with
//! `receipt_vault::errors`.

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolType;
use receipt_vault::errors::{RevertReason, VaultRevert};
use receipt_vault::testing::{Certification, LocalChain};
use receipt_vault::{
    OffchainAssetReceiptVault as V, OffchainAssetReceiptVaultAuthorizerV1,
    Receipt, roles,
};

use crate::support::{
    ONE, deposit, deposit_call, info, mined, mint_to, reason, revert_of,
    transfer_call, vault_at, vault_without_authorizer, whole,
};

alloy::sol! {
    #[derive(Debug, PartialEq, Eq)]
    struct DepositStateChange {
        address owner;
        address receiver;
        uint256 id;
        uint256 assetsDeposited;
        uint256 sharesMinted;
        bytes data;
    }
}

fn unauthorized(
    user: Address,
    permission: alloy::primitives::B256,
) -> impl Fn(&VaultRevert) -> bool {
    move |revert| {
        matches!(
            revert,
            VaultRevert::Unauthorized { user: u, permission: p, .. }
                if *u == user && *p == permission
        )
    }
}

#[tokio::test]
async fn deposit_without_the_deposit_role_is_unauthorized() {
    let chain = LocalChain::start().await.unwrap();
    let ap = chain.ap.address();
    let receipt_info = info("not mine");

    let revert = revert_of(
        chain
            .vault_as(&chain.ap)
            .deposit(whole(1), ap, ONE, receipt_info.clone())
            .call()
            .await,
    );

    let VaultRevert::Unauthorized {
        user,
        permission,
        data,
    } = &revert
    else {
        panic!("expected Unauthorized, got {revert}");
    };
    assert_eq!((*user, *permission), (ap, roles::DEPOSIT));
    assert_eq!(
        DepositStateChange::abi_decode(data).unwrap(),
        DepositStateChange {
            owner: ap,
            receiver: ap,
            id: U256::from(1),
            assetsDeposited: whole(1),
            sharesMinted: whole(1),
            data: receipt_info,
        }
    );
    assert!(revert.is_deterministic());
}

#[tokio::test]
async fn everything_is_unauthorized_before_set_authorizer() {
    let chain = LocalChain::start().await.unwrap();
    let bare = vault_without_authorizer(&chain).await;
    let bot = chain.bot.address();
    let vault = vault_at(&chain, bare, &chain.bot);
    let is_transfer_shares = unauthorized(bot, roles::TRANSFER_SHARES);

    let on_deposit =
        revert_of(vault.deposit(whole(1), bot, ONE, Bytes::new()).call().await);
    assert!(is_transfer_shares(&on_deposit), "{on_deposit}");

    let on_transfer =
        revert_of(vault.transfer(chain.ap.address(), ONE).call().await);
    assert!(is_transfer_shares(&on_transfer), "{on_transfer}");

    let on_redeem = revert_of(
        vault
            .redeem(ONE, bot, bot, U256::from(1), Bytes::new())
            .call()
            .await,
    );
    assert!(is_transfer_shares(&on_redeem), "{on_redeem}");

    let on_certify =
        revert_of(vault.certify(U256::MAX, false, Bytes::new()).call().await);
    assert!(
        unauthorized(chain.deployer.address(), roles::CERTIFY)(&on_certify),
        "{on_certify}"
    );
}

#[tokio::test]
async fn mint_multicall_on_an_expired_vault_mints_nothing() {
    let chain = LocalChain::start_with(Certification::Expired)
        .await
        .unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    let vault = chain.vault_as(&chain.bot);

    let revert = revert_of(
        vault
            .multicall(vec![
                deposit_call(whole(1), bot, &info("mint")),
                transfer_call(ap, whole(1)),
            ])
            .send()
            .await,
    );

    assert_eq!(
        revert,
        VaultRevert::CertificationExpired { from: bot, to: ap }
    );
    assert_eq!(vault.highwaterId().call().await.unwrap(), U256::ZERO);
    assert_eq!(vault.totalSupply().call().await.unwrap(), U256::ZERO);
    let latest = chain.provider_for(&chain.bot);
    let logs = alloy::providers::Provider::get_logs(
        &latest,
        &alloy::rpc::types::Filter::new()
            .address(chain.stack.vault)
            .event_signature(
                <V::Deposit as alloy::sol_types::SolEvent>::SIGNATURE_HASH,
            )
            .from_block(0),
    )
    .await
    .unwrap();
    assert!(logs.is_empty());
}

#[tokio::test]
async fn expired_deposit_to_an_ordinary_receiver_reports_certification_first() {
    let chain = LocalChain::start_with(Certification::Expired)
        .await
        .unwrap();
    let ap = chain.ap.address();

    // Neither the caller nor the receiver holds DEPOSIT: the share hook
    // fails before the DEPOSIT check is reached (spec §7.4).
    let revert = revert_of(
        chain
            .vault_as(&chain.ap)
            .deposit(whole(1), ap, ONE, Bytes::new())
            .call()
            .await,
    );

    assert_eq!(
        revert,
        VaultRevert::CertificationExpired {
            from: Address::ZERO,
            to: ap
        }
    );
}

#[tokio::test]
async fn ap_transfer_to_the_issuer_fails_once_certification_lapses() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    mint_to(&chain, ap, whole(2), &info("mint")).await;

    // Forcing a timestamp in the past expires the vault.
    let vault = chain.vault_as(&chain.deployer);
    mined(
        vault
            .certify(U256::from(1), true, Bytes::new())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(vault.isCertificationExpired().call().await.unwrap());

    let revert = revert_of(
        chain
            .vault_as(&chain.ap)
            .transfer(bot, whole(1))
            .send()
            .await,
    );

    assert_eq!(
        revert,
        VaultRevert::CertificationExpired { from: ap, to: bot }
    );
    assert_eq!(chain.share_balance(ap).await.unwrap(), whole(2));
}

#[tokio::test]
async fn redeem_without_the_withdraw_role_is_unauthorized() {
    let chain = LocalChain::start().await.unwrap();
    let ap = chain.ap.address();
    // A plain deposit to the AP gives it both shares and the receipt.
    let id =
        deposit(&chain.vault_as(&chain.bot), ap, whole(2), &Bytes::new()).await;

    let revert = revert_of(
        chain
            .vault_as(&chain.ap)
            .redeem(whole(1), ap, ap, id, Bytes::new())
            .call()
            .await,
    );

    assert!(unauthorized(ap, roles::WITHDRAW)(&revert), "{revert}");
}

#[tokio::test]
async fn redeem_beyond_the_share_balance_fails_on_the_erc20_burn() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    // The bot keeps the receipt but forwarded the shares.
    let id = mint_to(&chain, ap, whole(5), &info("mint")).await;

    let revert = revert_of(
        chain
            .vault_as(&chain.bot)
            .redeem(whole(5), ap, bot, id, Bytes::new())
            .call()
            .await,
    );

    assert_eq!(revert, reason("ERC20: burn amount exceeds balance"));
    assert_eq!(revert.reason(), Some(RevertReason::Erc20BurnExceedsBalance));
    assert!(revert.is_insufficient_balance());
}

#[tokio::test]
async fn redeem_beyond_the_receipt_balance_or_of_an_unknown_id_fails() {
    let chain = LocalChain::start().await.unwrap();
    let bot = chain.bot.address();
    let vault = chain.vault_as(&chain.bot);
    let small = deposit(&vault, bot, whole(1), &Bytes::new()).await;
    deposit(&vault, bot, whole(5), &Bytes::new()).await;

    for id in [small, U256::MAX] {
        let revert = revert_of(
            vault
                .redeem(whole(2), bot, bot, id, Bytes::new())
                .call()
                .await,
        );
        assert_eq!(revert, reason("ERC1155: burn amount exceeds balance"));
        assert!(revert.is_insufficient_balance());
    }
}

#[tokio::test]
async fn redeem_for_another_owner_needs_allowance_and_receipt_approval() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    let id =
        deposit(&chain.vault_as(&chain.bot), ap, whole(2), &Bytes::new()).await;
    let bot_vault = chain.vault_as(&chain.bot);
    let redeem_for_ap = || bot_vault.redeem(ONE, bot, ap, id, Bytes::new());

    let no_allowance = revert_of(redeem_for_ap().call().await);
    assert_eq!(no_allowance, reason("ERC20: insufficient allowance"));

    mined(
        chain
            .vault_as(&chain.ap)
            .approve(bot, U256::MAX)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let no_approval = revert_of(redeem_for_ap().call().await);
    assert_eq!(
        no_approval,
        reason("ERC1155: caller is not token owner or approved")
    );

    let receipt =
        Receipt::new(chain.stack.receipt, chain.provider_for(&chain.ap));
    mined(receipt.setApprovalForAll(bot, true).send().await.unwrap()).await;
    mined(redeem_for_ap().send().await.unwrap()).await;
    assert_eq!(chain.share_balance(ap).await.unwrap(), ONE);
}

#[tokio::test]
async fn zero_amounts_addresses_and_id_are_rejected() {
    let chain = LocalChain::start().await.unwrap();
    let bot = chain.bot.address();
    let vault = chain.vault_as(&chain.bot);
    let id = deposit(&vault, bot, whole(1), &Bytes::new()).await;
    let none = Bytes::new;

    let cases = [
        (
            revert_of(vault.deposit(U256::ZERO, bot, ONE, none()).call().await),
            VaultRevert::ZeroAssetsAmount,
        ),
        (
            revert_of(
                vault.deposit(ONE, Address::ZERO, ONE, none()).call().await,
            ),
            VaultRevert::ZeroReceiver,
        ),
        (
            revert_of(
                vault.redeem(U256::ZERO, bot, bot, id, none()).call().await,
            ),
            VaultRevert::ZeroAssetsAmount,
        ),
        (
            revert_of(
                vault
                    .redeem(ONE, Address::ZERO, bot, id, none())
                    .call()
                    .await,
            ),
            VaultRevert::ZeroReceiver,
        ),
        (
            revert_of(
                vault
                    .redeem(ONE, bot, Address::ZERO, id, none())
                    .call()
                    .await,
            ),
            VaultRevert::ZeroOwner,
        ),
        (
            revert_of(
                vault.redeem(ONE, bot, bot, U256::ZERO, none()).call().await,
            ),
            VaultRevert::InvalidId { id: U256::ZERO },
        ),
        (
            revert_of(
                vault
                    .redeposit(ONE, bot, U256::from(2), none())
                    .call()
                    .await,
            ),
            VaultRevert::InvalidId { id: U256::from(2) },
        ),
        (
            revert_of(
                vault.redeposit(ONE, bot, U256::ZERO, none()).call().await,
            ),
            VaultRevert::InvalidId { id: U256::ZERO },
        ),
    ];
    for (actual, expected) in cases {
        assert_eq!(actual, expected);
    }
}

#[tokio::test]
async fn min_share_ratio_above_one_is_rejected() {
    let chain = LocalChain::start().await.unwrap();
    let bot = chain.bot.address();
    let vault = chain.vault_as(&chain.bot);
    let min = ONE + U256::from(1);
    let expected = VaultRevert::MinShareRatio {
        min_share_ratio: min,
        share_ratio: ONE,
    };

    assert_eq!(
        revert_of(vault.deposit(ONE, bot, min, Bytes::new()).call().await),
        expected
    );
    assert_eq!(
        revert_of(vault.previewDeposit(ONE, min).call().await),
        expected
    );
    // Exactly 1e18 and 0 both pass.
    assert_eq!(vault.previewDeposit(ONE, ONE).call().await.unwrap(), ONE);
    assert_eq!(
        vault.previewDeposit(ONE, U256::ZERO).call().await.unwrap(),
        ONE
    );
}

#[tokio::test]
async fn movements_during_an_owner_freeze_are_blocked() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    mint_to(&chain, ap, whole(2), &info("mint")).await;
    let owner_vault = chain.vault_as(&chain.deployer);
    let until = U256::from(u64::MAX);
    mined(owner_vault.ownerFreezeUntil(until).send().await.unwrap()).await;
    assert_eq!(owner_vault.ownerFrozenUntil().call().await.unwrap(), until);

    let on_transfer =
        revert_of(chain.vault_as(&chain.ap).transfer(bot, ONE).call().await);
    assert_eq!(
        on_transfer,
        VaultRevert::OwnerFrozen {
            freeze_until: until,
            from: ap,
            to: bot
        }
    );
    let on_deposit = revert_of(
        chain
            .vault_as(&chain.bot)
            .deposit(ONE, bot, ONE, Bytes::new())
            .call()
            .await,
    );
    assert_eq!(
        on_deposit,
        VaultRevert::OwnerFrozen {
            freeze_until: until,
            from: Address::ZERO,
            to: bot
        }
    );

    // An always-allowed recipient may still receive.
    mined(
        owner_vault
            .ownerFreezeAlwaysAllowTo(bot, U256::from(1))
            .send()
            .await
            .unwrap(),
    )
    .await;
    mined(
        chain
            .vault_as(&chain.ap)
            .transfer(bot, ONE)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(chain.share_balance(bot).await.unwrap(), ONE);
    assert_eq!(
        revert_of(
            owner_vault
                .ownerFreezeAlwaysAllowFrom(ap, U256::ZERO)
                .call()
                .await
        ),
        VaultRevert::OwnerFreezeAlwaysAllowedFromZero { from: ap }
    );
}

#[tokio::test]
async fn certify_needs_the_role_and_a_non_zero_timestamp() {
    let chain = LocalChain::start().await.unwrap();
    let ap = chain.ap.address();

    let by_ap = revert_of(
        chain
            .vault_as(&chain.ap)
            .certify(U256::MAX, false, Bytes::new())
            .call()
            .await,
    );
    assert!(unauthorized(ap, roles::CERTIFY)(&by_ap), "{by_ap}");

    let zero = revert_of(
        chain
            .vault_as(&chain.deployer)
            .certify(U256::ZERO, false, Bytes::new())
            .call()
            .await,
    );
    assert_eq!(zero, VaultRevert::ZeroCertifyUntil);
}

#[tokio::test]
async fn set_authorizer_is_owner_only_and_checks_the_interface() {
    let chain = LocalChain::start().await.unwrap();
    let authorizer = chain.stack.authorizer;

    let by_ap = revert_of(
        chain
            .vault_as(&chain.ap)
            .setAuthorizer(authorizer)
            .call()
            .await,
    );
    assert_eq!(by_ap, reason("Ownable: caller is not the owner"));
    assert_eq!(by_ap.reason(), Some(RevertReason::OwnableNotOwner));

    let owner_vault = chain.vault_as(&chain.deployer);
    for incompatible in
        [chain.stack.receipt, chain.stack.factory, chain.ap.address()]
    {
        assert_eq!(
            revert_of(owner_vault.setAuthorizer(incompatible).call().await),
            VaultRevert::IncompatibleAuthorizer
        );
    }
}

#[tokio::test]
async fn grant_role_without_the_admin_role_reports_oz_v4_string() {
    let chain = LocalChain::start().await.unwrap();
    let ap = chain.ap.address();
    let authorizer = OffchainAssetReceiptVaultAuthorizerV1::new(
        chain.stack.authorizer,
        chain.provider_for(&chain.ap),
    );

    let revert =
        revert_of(authorizer.grantRole(roles::DEPOSIT, ap).call().await);

    let expected = format!(
        "AccessControl: account {} is missing role {}",
        format!("{ap:#x}").to_lowercase(),
        roles::DEPOSIT_ADMIN
    );
    assert_eq!(revert, VaultRevert::Reason(expected));
    assert_eq!(
        revert.reason(),
        Some(RevertReason::AccessControlMissingRole)
    );
}

#[tokio::test]
async fn authorizer_admin_holds_only_the_admin_roles() {
    let chain = LocalChain::start().await.unwrap();
    let deployer = chain.deployer.address();
    let authorizer = OffchainAssetReceiptVaultAuthorizerV1::new(
        chain.stack.authorizer,
        chain.provider(),
    );
    let has = |role| authorizer.hasRole(role, deployer);

    for role in [
        roles::DEPOSIT_ADMIN,
        roles::WITHDRAW_ADMIN,
        roles::CERTIFY_ADMIN,
        roles::CONFISCATE_SHARES_ADMIN,
        roles::CONFISCATE_RECEIPT_ADMIN,
    ] {
        assert!(has(role).call().await.unwrap());
        assert_eq!(
            authorizer.getRoleAdmin(role).call().await.unwrap(),
            role,
            "admin roles administer themselves"
        );
    }
    assert!(!has(roles::DEFAULT_ADMIN_ROLE).call().await.unwrap());
    assert!(!has(roles::CONFISCATE_SHARES).call().await.unwrap());
    assert_eq!(
        authorizer
            .getRoleAdmin(roles::DEPOSIT)
            .call()
            .await
            .unwrap(),
        roles::DEPOSIT_ADMIN
    );
}

#[tokio::test]
async fn receipt_rejects_non_manager_and_zero_owner_queries() {
    let chain = LocalChain::start().await.unwrap();
    let bot = chain.bot.address();
    let receipt = Receipt::new(chain.stack.receipt, chain.provider());

    assert_eq!(
        revert_of(
            receipt
                .managerMint(bot, bot, U256::from(1), ONE, Bytes::new())
                .call()
                .await
        ),
        VaultRevert::OnlyManager
    );
    assert_eq!(
        revert_of(receipt.balanceOf(Address::ZERO, U256::from(1)).call().await),
        reason("ERC1155: address zero is not a valid owner")
    );
    assert_eq!(
        revert_of(
            chain
                .vault_as(&chain.bot)
                .authorizeReceiptTransfer3(bot, bot, bot, vec![], vec![])
                .call()
                .await
        ),
        VaultRevert::UnmanagedReceiptTransfer
    );
}
