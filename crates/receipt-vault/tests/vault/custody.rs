//! Receipt custody moves, confiscation and the remaining Rain quirks.

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use receipt_vault::errors::VaultRevert;
use receipt_vault::testing::LocalChain;
use receipt_vault::{
    OffchainAssetReceiptVault as V, Receipt as R, deploy, roles,
};

use crate::support::{
    ONE, deposit, info, mined, mint_to, reason, revert_of, whole,
};

#[tokio::test]
async fn receipts_move_with_safe_transfers_checked_like_rains() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    let vault = chain.vault_as(&chain.bot);
    let first = deposit(&vault, bot, whole(3), &Bytes::new()).await;
    let second = deposit(&vault, bot, whole(2), &Bytes::new()).await;
    let bot_receipt =
        R::new(chain.stack.receipt, chain.provider_for(&chain.bot));
    let ap_receipt = R::new(chain.stack.receipt, chain.provider_for(&chain.ap));

    let tx = mined(
        bot_receipt
            .safeTransferFrom(bot, ap, first, ONE, Bytes::new())
            .send()
            .await
            .unwrap(),
    )
    .await;
    let single = tx.decoded_log::<R::TransferSingle>().unwrap().data;
    assert_eq!((single.operator, single.from, single.to), (bot, bot, ap));

    let tx = mined(
        bot_receipt
            .safeBatchTransferFrom(
                bot,
                ap,
                vec![first, second],
                vec![ONE, ONE],
                Bytes::new(),
            )
            .send()
            .await
            .unwrap(),
    )
    .await;
    let batch = tx.decoded_log::<R::TransferBatch>().unwrap().data;
    assert_eq!(batch.ids, vec![first, second]);

    let balances = bot_receipt
        .balanceOfBatch(
            vec![bot, ap, bot, ap],
            vec![first, first, second, second],
        )
        .call()
        .await
        .unwrap();
    assert_eq!(balances, vec![whole(1), whole(2), whole(1), whole(1)]);

    assert_eq!(
        revert_of(
            ap_receipt
                .safeTransferFrom(bot, ap, first, ONE, Bytes::new())
                .call()
                .await
        ),
        reason("ERC1155: caller is not token owner or approved")
    );
    assert_eq!(
        revert_of(
            bot_receipt
                .safeTransferFrom(bot, ap, first, whole(5), Bytes::new())
                .call()
                .await
        ),
        reason("ERC1155: insufficient balance for transfer")
    );
    assert_eq!(
        revert_of(
            bot_receipt
                .safeTransferFrom(bot, Address::ZERO, first, ONE, Bytes::new())
                .call()
                .await
        ),
        reason("ERC1155: transfer to the zero address")
    );
    // A contract that does not implement the receiver hook cannot hold
    // receipts.
    assert_eq!(
        revert_of(
            bot_receipt
                .safeTransferFrom(
                    bot,
                    chain.stack.factory,
                    first,
                    ONE,
                    Bytes::new()
                )
                .call()
                .await
        ),
        reason("ERC1155: transfer to non-ERC1155Receiver implementer")
    );
}

#[tokio::test]
async fn receipt_transfers_need_certification() {
    let chain = LocalChain::start().await.unwrap();
    let (bot, ap) = (chain.bot.address(), chain.ap.address());
    let id = deposit(&chain.vault_as(&chain.bot), bot, whole(1), &Bytes::new())
        .await;
    mined(
        chain
            .vault_as(&chain.deployer)
            .certify(U256::from(1), true, Bytes::new())
            .send()
            .await
            .unwrap(),
    )
    .await;

    let receipt = R::new(chain.stack.receipt, chain.provider_for(&chain.bot));
    assert_eq!(
        revert_of(
            receipt
                .safeTransferFrom(bot, ap, id, ONE, Bytes::new())
                .call()
                .await
        ),
        VaultRevert::CertificationExpired { from: bot, to: ap }
    );
}

#[tokio::test]
async fn balance_errors_win_over_a_missing_withdraw_role() {
    let chain = LocalChain::start().await.unwrap();
    let ap = chain.ap.address();

    // Spec §7.5: WITHDRAW is checked last.
    let revert = revert_of(
        chain
            .vault_as(&chain.ap)
            .redeem(ONE, ap, ap, U256::from(1), Bytes::new())
            .call()
            .await,
    );

    assert_eq!(revert, reason("ERC20: burn amount exceeds balance"));
}

#[tokio::test]
async fn confiscation_needs_its_role_and_works_while_expired() {
    let chain = LocalChain::start().await.unwrap();
    let (deployer, ap) = (chain.deployer.address(), chain.ap.address());
    let id =
        deposit(&chain.vault_as(&chain.bot), ap, whole(3), &info("ap")).await;
    let vault = chain.vault_as(&chain.deployer);

    let without_role = revert_of(
        vault
            .confiscateShares(ap, whole(1), Bytes::new())
            .call()
            .await,
    );
    assert!(matches!(
        without_role,
        VaultRevert::Unauthorized { permission, .. } if permission == roles::CONFISCATE_SHARES
    ));
    assert_eq!(
        revert_of(
            vault
                .confiscateShares(ap, U256::ZERO, Bytes::new())
                .call()
                .await
        ),
        VaultRevert::ZeroConfiscateAmount
    );

    for role in [roles::CONFISCATE_SHARES, roles::CONFISCATE_RECEIPT] {
        deploy::grant_role(
            chain.provider(),
            chain.stack.authorizer,
            role,
            deployer,
        )
        .await
        .unwrap();
    }
    mined(
        vault
            .certify(U256::from(1), true, Bytes::new())
            .send()
            .await
            .unwrap(),
    )
    .await;

    let tx = mined(
        vault
            .confiscateShares(ap, whole(5), info("court order"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let event = tx.decoded_log::<V::ConfiscateShares>().unwrap().data;
    assert_eq!(
        (event.targetAmount, event.confiscated),
        (whole(5), whole(3))
    );
    mined(
        vault
            .confiscateReceipt(ap, id, whole(1), Bytes::new())
            .send()
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(chain.share_balance(ap).await.unwrap(), U256::ZERO);
    assert_eq!(chain.share_balance(deployer).await.unwrap(), whole(3));
    assert_eq!(chain.receipt_balance(ap, id).await.unwrap(), whole(2));
    assert_eq!(chain.receipt_balance(deployer, id).await.unwrap(), whole(1));
}

#[tokio::test]
async fn unknown_selectors_succeed_with_empty_data() {
    let chain = LocalChain::start().await.unwrap();
    mint_to(&chain, chain.ap.address(), ONE, &info("mint")).await;
    let request = TransactionRequest::default()
        .to(chain.stack.vault)
        .input(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]).into());

    let output = chain.provider().call(request).await.unwrap();

    // A binding mistake shows up as "no return data", not as a revert.
    assert!(output.is_empty());
}

#[tokio::test]
async fn reverts_decode_from_raw_rpc_errors_too() {
    let chain = LocalChain::start().await.unwrap();
    let ap = chain.ap.address();
    let call = chain
        .vault_as(&chain.ap)
        .deposit(ONE, ap, ONE, Bytes::new())
        .into_transaction_request()
        .from(ap);

    let error = chain.provider_for(&chain.ap).call(call).await.unwrap_err();

    let revert = VaultRevert::from_transport_error(&error).unwrap();
    assert!(matches!(
        revert,
        VaultRevert::Unauthorized { user, permission, .. }
            if user == ap && permission == roles::DEPOSIT
    ));
}
