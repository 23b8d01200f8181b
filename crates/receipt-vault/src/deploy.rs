//! Deploying the vault family the way Rain deployments are made:
//! implementations and a `CloneFactory`, then per vault a vault clone (which
//! clones its own receipt) and an authorizer clone installed with
//! `setAuthorizer`.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, TxHash, U256};
use alloy::providers::{PendingTransactionError, Provider};
use alloy::rpc::types::{TransactionReceipt, TransactionRequest};
use alloy::sol_types::SolValue;

use crate::errors::VaultRevert;
use crate::{
    CloneFactory, OffchainAssetReceiptVault,
    OffchainAssetReceiptVaultAuthorizerV1, Receipt,
};

/// Addresses of one deployed vault and the shared contracts it came from.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize,
)]
pub struct VaultStack {
    pub factory: Address,
    pub vault: Address,
    pub receipt: Address,
    pub authorizer: Address,
    pub vault_impl: Address,
    pub receipt_impl: Address,
    pub authorizer_impl: Address,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("contract call failed: {source}{}", display_revert(source))]
    Contract {
        #[from]
        source: alloy::contract::Error,
    },
    #[error("waiting for the transaction failed: {0}")]
    PendingTransaction(#[from] PendingTransactionError),
    #[error("transaction {tx_hash} reverted")]
    Reverted { tx_hash: TxHash },
    #[error("deployment {tx_hash} created no contract")]
    NoContractAddress { tx_hash: TxHash },
    #[error("clone transaction {tx_hash} emitted no NewClone event")]
    MissingNewClone { tx_hash: TxHash },
}

impl DeployError {
    /// The decoded on-chain revert, when the failure carried revert data.
    pub fn revert(&self) -> Option<VaultRevert> {
        match self {
            Self::Contract { source } => {
                VaultRevert::from_contract_error(source)
            }
            _ => None,
        }
    }
}

/// Deploys the factory and the three implementations, then one vault with
/// its receipt and authorizer.
///
/// `admin` becomes the vault owner and the authorizer's initial admin (it
/// holds the five `*_ADMIN` roles, no operational role). It must be the
/// provider's sending account, because it also sends `setAuthorizer`.
pub async fn deploy_stack<P: Provider>(
    provider: &P,
    admin: Address,
    name: &str,
    symbol: &str,
) -> Result<VaultStack, DeployError> {
    let receipt_impl = deploy_code(provider, Receipt::BYTECODE.clone()).await?;
    let factory = deploy_code(provider, CloneFactory::BYTECODE.clone()).await?;
    let vault_impl =
        deploy_code(provider, vault_impl_code(factory, receipt_impl)).await?;
    let authorizer_impl = deploy_code(
        provider,
        OffchainAssetReceiptVaultAuthorizerV1::BYTECODE.clone(),
    )
    .await?;

    let implementations = VaultStack {
        factory,
        vault: Address::ZERO,
        receipt: Address::ZERO,
        authorizer: Address::ZERO,
        vault_impl,
        receipt_impl,
        authorizer_impl,
    };
    deploy_vault(provider, &implementations, admin, name, symbol).await
}

/// Deploys another vault (with its own receipt and authorizer) from the
/// factory and implementations of `base`. Same `admin` rules as
/// [`deploy_stack`].
pub async fn deploy_vault<P: Provider>(
    provider: &P,
    base: &VaultStack,
    admin: Address,
    name: &str,
    symbol: &str,
) -> Result<VaultStack, DeployError> {
    let factory = CloneFactory::new(base.factory, provider);

    let vault_config =
        (admin, (Address::ZERO, name.to_owned(), symbol.to_owned()))
            .abi_encode();
    let vault = clone(&factory, base.vault_impl, vault_config.into()).await?;

    let authorizer =
        clone(&factory, base.authorizer_impl, admin.abi_encode().into())
            .await?;

    let vault_contract = OffchainAssetReceiptVault::new(vault, provider);
    let receipt = vault_contract.receipt().call().await?;
    confirm(vault_contract.setAuthorizer(authorizer).send().await?).await?;

    Ok(VaultStack {
        vault,
        receipt,
        authorizer,
        ..*base
    })
}

/// `authorizer.grantRole(role, account)`, sent by the provider's account
/// (which must hold the role's admin role).
pub async fn grant_role<P: Provider>(
    provider: &P,
    authorizer: Address,
    role: B256,
    account: Address,
) -> Result<TransactionReceipt, DeployError> {
    let authorizer =
        OffchainAssetReceiptVaultAuthorizerV1::new(authorizer, provider);
    confirm(authorizer.grantRole(role, account).send().await?).await
}

/// `vault.certify(until, false, "")`, sent by the provider's account (which
/// must hold CERTIFY). Use `U256::MAX` for "never expires".
pub async fn certify<P: Provider>(
    provider: &P,
    vault: Address,
    until: U256,
) -> Result<TransactionReceipt, DeployError> {
    let vault = OffchainAssetReceiptVault::new(vault, provider);
    confirm(vault.certify(until, false, Bytes::new()).send().await?).await
}

fn vault_impl_code(factory: Address, receipt_impl: Address) -> Bytes {
    let mut code = OffchainAssetReceiptVault::BYTECODE.to_vec();
    // Constructor argument: ReceiptVaultConstructionConfigV2 (a static
    // struct, so encoded inline as two words).
    code.extend((factory, receipt_impl).abi_encode_params());
    code.into()
}

async fn deploy_code<P: Provider>(
    provider: &P,
    code: Bytes,
) -> Result<Address, DeployError> {
    let request = TransactionRequest::default().with_deploy_code(code);
    let pending = provider
        .send_transaction(request)
        .await
        .map_err(alloy::contract::Error::from)?;
    let receipt = confirm(pending).await?;
    receipt
        .contract_address
        .ok_or(DeployError::NoContractAddress {
            tx_hash: receipt.transaction_hash,
        })
}

/// Clones `implementation` and returns the first `NewClone` address of the
/// transaction (nested clones made during `initialize` come later).
async fn clone<P: Provider>(
    factory: &CloneFactory::CloneFactoryInstance<&P>,
    implementation: Address,
    data: Bytes,
) -> Result<Address, DeployError> {
    let receipt =
        confirm(factory.clone(implementation, data).send().await?).await?;
    receipt
        .decoded_log::<CloneFactory::NewClone>()
        .map(|log| log.data.clone)
        .ok_or(DeployError::MissingNewClone {
            tx_hash: receipt.transaction_hash,
        })
}

async fn confirm(
    pending: alloy::providers::PendingTransactionBuilder<
        alloy::network::Ethereum,
    >,
) -> Result<TransactionReceipt, DeployError> {
    let receipt = pending.get_receipt().await?;
    if receipt.status() {
        Ok(receipt)
    } else {
        Err(DeployError::Reverted {
            tx_hash: receipt.transaction_hash,
        })
    }
}

fn display_revert(error: &alloy::contract::Error) -> String {
    VaultRevert::from_contract_error(error)
        .map_or_else(String::new, |revert| format!(" ({revert})"))
}
