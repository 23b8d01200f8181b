//! `deploy` module against a real anvil: the deployed wiring and its
//! failure reporting.
#![cfg(test)]

use alloy::primitives::{Address, U256};
use alloy::providers::ProviderBuilder;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use receipt_vault::deploy::{self, DeployError};
use receipt_vault::errors::RevertReason;
use receipt_vault::testing::LocalChain;
use receipt_vault::{
    CloneFactory, OffchainAssetReceiptVault,
    OffchainAssetReceiptVaultAuthorizerV1, Receipt, roles,
};

#[tokio::test]
async fn deploy_stack_wires_vault_receipt_and_authorizer() {
    let chain = LocalChain::start().await.unwrap();
    let stack = chain.stack;
    let provider = chain.provider();
    let vault = OffchainAssetReceiptVault::new(stack.vault, provider);

    assert_eq!(
        vault.owner().call().await.unwrap(),
        chain.deployer.address()
    );
    assert_eq!(vault.authorizer().call().await.unwrap(), stack.authorizer);
    assert_eq!(vault.receipt().call().await.unwrap(), stack.receipt);
    assert_eq!(vault.highwaterId().call().await.unwrap(), U256::ZERO);
    assert!(!vault.isCertificationExpired().call().await.unwrap());
    assert_eq!(
        Receipt::new(stack.receipt, provider)
            .manager()
            .call()
            .await
            .unwrap(),
        stack.vault
    );
    let authorizer =
        OffchainAssetReceiptVaultAuthorizerV1::new(stack.authorizer, provider);
    for role in [roles::DEPOSIT, roles::WITHDRAW, roles::CERTIFY] {
        assert!(
            authorizer
                .hasRole(role, chain.bot.address())
                .call()
                .await
                .unwrap()
        );
    }
    assert!(
        !authorizer
            .hasRole(roles::DEPOSIT, chain.ap.address())
            .call()
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn vault_clone_logs_its_own_new_clone_before_its_receipts() {
    let chain = LocalChain::start().await.unwrap();
    let config = (
        chain.deployer.address(),
        (Address::ZERO, "Order".to_owned(), "ORD".to_owned()),
    )
        .abi_encode();
    let factory = CloneFactory::new(chain.stack.factory, chain.provider());

    let receipt = factory
        .clone(chain.stack.vault_impl, config.into())
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    let clones: Vec<_> = receipt
        .inner
        .logs()
        .iter()
        .filter_map(|log| log.log_decode::<CloneFactory::NewClone>().ok())
        .map(|log| log.inner.data)
        .collect();
    assert_eq!(clones.len(), 2);
    assert_eq!(clones[0].implementation, chain.stack.vault_impl);
    assert_eq!(clones[1].implementation, chain.stack.receipt_impl);
    // The vault (cloned by the deployer) cloned its own receipt.
    assert_eq!(clones[0].sender, chain.deployer.address());
    assert_eq!(clones[1].sender, clones[0].clone);
    let init = receipt
        .decoded_log::<OffchainAssetReceiptVault::OffchainAssetReceiptVaultInitializedV2>()
        .unwrap()
        .data;
    assert_eq!(init.sender, chain.stack.factory);
    assert_eq!(init.config.initialAdmin, chain.deployer.address());
    assert_eq!(init.config.receiptVaultConfig.receipt, clones[1].clone);
    assert_eq!(init.config.receiptVaultConfig.vaultConfig.symbol, "ORD");
}

#[tokio::test]
async fn deploy_vault_for_an_admin_other_than_the_sender_reports_the_revert() {
    let chain = LocalChain::start().await.unwrap();
    // The AP sends, but the vault is owned by the deployer: the
    // `setAuthorizer` step is refused.
    let provider = ProviderBuilder::new()
        .wallet(chain.ap.clone())
        .connect_http(chain.rpc_url.clone());

    let error = deploy::deploy_vault(
        &provider,
        &chain.stack,
        chain.deployer.address(),
        "Other",
        "OTH",
    )
    .await
    .unwrap_err();

    assert!(matches!(error, DeployError::Contract { .. }), "{error}");
    let revert = error.revert().unwrap();
    assert_eq!(revert.reason(), Some(RevertReason::OwnableNotOwner));
    assert!(
        error
            .to_string()
            .contains("Ownable: caller is not the owner")
    );
}

#[tokio::test]
async fn cloning_an_address_without_code_is_rejected() {
    let chain = LocalChain::start().await.unwrap();
    let factory = CloneFactory::new(chain.stack.factory, chain.provider());
    let nobody = PrivateKeySigner::random().address();

    let error = factory
        .clone(nobody, Vec::new().into())
        .call()
        .await
        .unwrap_err();

    assert_eq!(
        receipt_vault::errors::VaultRevert::from_contract_error(&error),
        Some(receipt_vault::errors::VaultRevert::ZeroImplementationCodeSize)
    );
}
