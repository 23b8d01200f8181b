//! Mint, transfer and burn flows as the issuer drives them (spec §7, §9).

use alloy::primitives::{Address, Bytes, U256};
use alloy::sol_types::SolEvent;
use receipt_vault::testing::{Certification, LocalChain};
use receipt_vault::{OffchainAssetReceiptVault as V, Receipt as R};

use crate::support::{
    ONE, deposit, deposit_call, deposit_log, info, mined, mint_to, redeem_call,
    transfer_call, whole,
};

#[tokio::test]
async fn deposits_mint_shares_and_receipts_one_to_one_with_ids_from_one() {
    let chain = LocalChain::start().await.unwrap();
    let bot = chain.bot.address();
    let vault = chain.vault_as(&chain.bot);
    assert_eq!(vault.highwaterId().call().await.unwrap(), U256::ZERO);
    assert_eq!(
        vault.previewDeposit(whole(7), ONE).call().await.unwrap(),
        whole(7)
    );

    let amounts = [whole(5), whole(3), U256::from(1)];
    for (index, assets) in amounts.into_iter().enumerate() {
        let id = deposit(&vault, bot, assets, &info("deposit")).await;

        let expected_id = U256::from(index + 1);
        assert_eq!(id, expected_id);
        assert_eq!(vault.highwaterId().call().await.unwrap(), expected_id);
        assert_eq!(chain.receipt_balance(bot, id).await.unwrap(), assets);
    }

    let total = whole(8) + U256::from(1);
    assert_eq!(chain.share_balance(bot).await.unwrap(), total);
    assert_eq!(vault.totalSupply().call().await.unwrap(), total);
    assert_eq!(vault.totalAssets().call().await.unwrap(), total);
    assert_eq!(vault.asset().call().await.unwrap(), Address::ZERO);
    assert_eq!(vault.decimals().call().await.unwrap(), 18);
    assert_eq!(vault.name().call().await.unwrap(), "Test Vault");
    assert_eq!(vault.symbol().call().await.unwrap(), "TEST");
    assert_eq!(
        vault.maxRedeem(bot, U256::from(2)).call().await.unwrap(),
        whole(3)
    );
}

#[tokio::test]
async fn mint_multicall_leaves_shares_with_ap_and_receipt_with_bot() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    let assets = whole(12) + U256::from(345);
    let receipt_info = info(r#"{"issuer_request_id":"abc"}"#);

    let tx = mined(
        chain
            .vault_as(&chain.bot)
            .multicall(vec![
                deposit_call(assets, bot, &receipt_info),
                transfer_call(ap, assets),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;

    let deposit = deposit_log(&tx);
    assert_eq!(
        deposit,
        V::Deposit {
            sender: bot,
            owner: bot,
            assets,
            shares: assets,
            id: U256::from(1),
            receiptInformation: receipt_info.clone(),
        }
    );
    assert_eq!(chain.share_balance(ap).await.unwrap(), assets);
    assert_eq!(chain.share_balance(bot).await.unwrap(), U256::ZERO);
    assert_eq!(
        chain.receipt_balance(bot, deposit.id).await.unwrap(),
        assets
    );
    assert_eq!(
        chain.receipt_balance(ap, deposit.id).await.unwrap(),
        U256::ZERO
    );

    // Log order of the reference issuer's mint (spec §7.4).
    let (vault, receipt) = (chain.stack.vault, chain.stack.receipt);
    let logs: Vec<_> = tx
        .inner
        .logs()
        .iter()
        .map(|log| (log.address(), log.topic0().copied()))
        .collect();
    assert_eq!(
        logs,
        vec![
            (vault, Some(V::Deposit::SIGNATURE_HASH)),
            (vault, Some(V::Transfer::SIGNATURE_HASH)),
            (receipt, Some(R::ReceiptInformation::SIGNATURE_HASH)),
            (receipt, Some(R::TransferSingle::SIGNATURE_HASH)),
            (vault, Some(V::Transfer::SIGNATURE_HASH)),
        ]
    );

    let transfers: Vec<_> = tx
        .inner
        .logs()
        .iter()
        .filter_map(|log| log.log_decode::<V::Transfer>().ok())
        .map(|log| (log.inner.data.from, log.inner.data.to))
        .collect();
    assert_eq!(transfers, vec![(Address::ZERO, bot), (bot, ap)]);

    // The receipt names the vault's caller as operator, not the vault.
    let single = tx.decoded_log::<R::TransferSingle>().unwrap().data;
    assert_eq!(
        (
            single.operator,
            single.from,
            single.to,
            single.id,
            single.value
        ),
        (bot, Address::ZERO, bot, U256::from(1), assets)
    );
    let information = tx.decoded_log::<R::ReceiptInformation>().unwrap().data;
    assert_eq!(
        (information.sender, information.id, information.information),
        (bot, U256::from(1), receipt_info)
    );
}

#[tokio::test]
async fn redeem_burns_shares_and_receipt() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    let mint_info = info("mint");
    let id = mint_to(&chain, ap, whole(10), &mint_info).await;

    // The AP sends shares to the issuer wallet to redeem.
    mined(
        chain
            .vault_as(&chain.ap)
            .transfer(bot, whole(4))
            .send()
            .await
            .unwrap(),
    )
    .await;

    let tx = mined(
        chain
            .vault_as(&chain.bot)
            .redeem(whole(4), ap, bot, id, mint_info.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;

    let withdraw = tx.decoded_log::<V::Withdraw>().unwrap().data;
    assert_eq!(
        withdraw,
        V::Withdraw {
            sender: bot,
            receiver: ap,
            owner: bot,
            assets: whole(4),
            shares: whole(4),
            id,
            receiptInformation: mint_info,
        }
    );
    let burn = tx.decoded_log::<V::Transfer>().unwrap().data;
    assert_eq!(
        (burn.from, burn.to, burn.value),
        (bot, Address::ZERO, whole(4))
    );
    let single = tx.decoded_log::<R::TransferSingle>().unwrap().data;
    assert_eq!(
        (
            single.operator,
            single.from,
            single.to,
            single.id,
            single.value
        ),
        (bot, bot, Address::ZERO, id, whole(4))
    );

    assert_eq!(chain.share_balance(bot).await.unwrap(), U256::ZERO);
    assert_eq!(chain.share_balance(ap).await.unwrap(), whole(6));
    assert_eq!(chain.receipt_balance(bot, id).await.unwrap(), whole(6));
    let vault = chain.vault_as(&chain.bot);
    assert_eq!(vault.totalSupply().call().await.unwrap(), whole(6));
}

#[tokio::test]
async fn multicall_redeems_across_receipts_and_returns_dust() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    let infos = [info("one"), info("two"), info("three")];
    let mut ids = Vec::new();
    for (amount, receipt_info) in [5, 3, 2].into_iter().zip(&infos) {
        ids.push(mint_to(&chain, ap, whole(amount), receipt_info).await);
    }

    // The AP redeems 7 shares plus a sub-9-decimal remainder.
    let dust = U256::from(123_456_789);
    let sent = whole(7) + dust;
    mined(
        chain
            .vault_as(&chain.ap)
            .transfer(bot, sent)
            .send()
            .await
            .unwrap(),
    )
    .await;

    let tx = mined(
        chain
            .vault_as(&chain.bot)
            .multicall(vec![
                redeem_call(whole(5), ap, bot, ids[0], &infos[0]),
                redeem_call(whole(2), ap, bot, ids[1], &infos[1]),
                transfer_call(ap, dust),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;

    let withdrawals: Vec<_> = tx
        .inner
        .logs()
        .iter()
        .filter_map(|log| log.log_decode::<V::Withdraw>().ok())
        .map(|log| (log.inner.data.id, log.inner.data.shares))
        .collect();
    assert_eq!(withdrawals, vec![(ids[0], whole(5)), (ids[1], whole(2))]);

    assert_eq!(
        chain.receipt_balance(bot, ids[0]).await.unwrap(),
        U256::ZERO
    );
    assert_eq!(chain.receipt_balance(bot, ids[1]).await.unwrap(), whole(1));
    assert_eq!(chain.receipt_balance(bot, ids[2]).await.unwrap(), whole(2));
    assert_eq!(chain.share_balance(bot).await.unwrap(), U256::ZERO);
    // 10 minted, 7 + dust sent, dust returned.
    assert_eq!(chain.share_balance(ap).await.unwrap(), whole(3));
}

#[tokio::test]
async fn withdraw_is_the_asset_driven_twin_of_redeem() {
    let chain = LocalChain::start().await.unwrap();
    let bot = chain.bot.address();
    let vault = chain.vault_as(&chain.bot);
    let id = deposit(&vault, bot, whole(2), &Bytes::new()).await;

    let tx = mined(
        vault
            .withdraw(ONE, bot, bot, id, Bytes::new())
            .send()
            .await
            .unwrap(),
    )
    .await;

    let withdraw = tx.decoded_log::<V::Withdraw>().unwrap().data;
    assert_eq!((withdraw.assets, withdraw.shares), (ONE, ONE));
    // Empty receipt information emits no ReceiptInformation.
    assert!(tx.decoded_log::<R::ReceiptInformation>().is_none());
    assert_eq!(chain.share_balance(bot).await.unwrap(), ONE);
    assert_eq!(chain.receipt_balance(bot, id).await.unwrap(), ONE);
}

#[tokio::test]
async fn issuer_mints_and_burns_for_itself_while_expired() {
    let chain = LocalChain::start_with(Certification::Expired)
        .await
        .unwrap();
    let bot = chain.bot.address();
    let vault = chain.vault_as(&chain.bot);
    assert!(vault.isCertificationExpired().call().await.unwrap());

    let id = deposit(&vault, bot, whole(3), &info("self")).await;
    mined(
        vault
            .redeem(whole(1), bot, bot, id, info("self"))
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(chain.share_balance(bot).await.unwrap(), whole(2));
    assert_eq!(chain.receipt_balance(bot, id).await.unwrap(), whole(2));
}

#[tokio::test]
async fn added_vaults_have_their_own_ids_and_balances() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    mint_to(&chain, ap, whole(1), &info("first")).await;

    let second = chain.add_vault("Second Vault", "SEC").await.unwrap();
    assert_eq!(second.factory, chain.stack.factory);
    assert_eq!(second.vault_impl, chain.stack.vault_impl);
    assert_ne!(second.vault, chain.stack.vault);
    assert_ne!(second.receipt, chain.stack.receipt);

    let vault = V::new(second.vault, chain.provider_for(&chain.bot));
    let id = deposit(&vault, bot, whole(4), &info("second")).await;

    assert_eq!(id, U256::from(1));
    assert_eq!(vault.symbol().call().await.unwrap(), "SEC");
    assert_eq!(
        chain.share_balance_in(&second, bot).await.unwrap(),
        whole(4)
    );
    assert_eq!(
        chain.receipt_balance_in(&second, bot, id).await.unwrap(),
        whole(4)
    );
    assert_eq!(chain.share_balance(ap).await.unwrap(), whole(1));
    let receipt = R::new(second.receipt, chain.provider());
    assert_eq!(receipt.name().call().await.unwrap(), "SEC Receipt");
    assert_eq!(receipt.symbol().call().await.unwrap(), "SEC RCPT");
    assert_eq!(receipt.manager().call().await.unwrap(), second.vault);
}
