//! Helpers shared by the vault tests.

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::DynProvider;
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolCall;
use receipt_vault::OffchainAssetReceiptVault as V;
use receipt_vault::errors::VaultRevert;
use receipt_vault::testing::LocalChain;

pub type Vault = V::OffchainAssetReceiptVaultInstance<DynProvider>;

/// 1e18: one whole share, and the 1:1 share ratio.
pub const ONE: U256 = U256::from_limbs([1_000_000_000_000_000_000, 0, 0, 0]);

pub fn whole(amount: u64) -> U256 {
    U256::from(amount) * ONE
}

pub fn info(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

pub fn deposit_call(assets: U256, receiver: Address, info: &Bytes) -> Bytes {
    V::depositCall {
        assets,
        receiver,
        depositMinShareRatio: ONE,
        receiptInformation: info.clone(),
    }
    .abi_encode()
    .into()
}

pub fn redeem_call(
    shares: U256,
    receiver: Address,
    owner: Address,
    id: U256,
    info: &Bytes,
) -> Bytes {
    V::redeemCall {
        shares,
        receiver,
        owner,
        id,
        receiptInformation: info.clone(),
    }
    .abi_encode()
    .into()
}

pub fn transfer_call(to: Address, value: U256) -> Bytes {
    V::transferCall { to, value }.abi_encode().into()
}

/// Sends and waits, asserting the transaction succeeded.
pub async fn mined<N>(
    pending: alloy::providers::PendingTransactionBuilder<N>,
) -> N::ReceiptResponse
where
    N: alloy::network::Network,
{
    use alloy::network::ReceiptResponse;

    let receipt = pending.get_receipt().await.unwrap();
    assert!(receipt.status(), "transaction reverted");
    receipt
}

/// `signer` deposits `assets` to `receiver`; returns the new receipt id.
pub async fn deposit(
    vault: &Vault,
    receiver: Address,
    assets: U256,
    info: &Bytes,
) -> U256 {
    let receipt = mined(
        vault
            .deposit(assets, receiver, ONE, info.clone())
            .send()
            .await
            .unwrap(),
    )
    .await;
    deposit_log(&receipt).id
}

/// The issuer's mint: deposit to the bot and forward the shares to `to`
/// in one multicall. Returns the receipt id.
pub async fn mint_to(
    chain: &LocalChain,
    to: Address,
    assets: U256,
    info: &Bytes,
) -> U256 {
    let bot = chain.bot.address();
    let receipt = mined(
        chain
            .vault_as(&chain.bot)
            .multicall(vec![
                deposit_call(assets, bot, info),
                transfer_call(to, assets),
            ])
            .send()
            .await
            .unwrap(),
    )
    .await;
    deposit_log(&receipt).id
}

pub fn deposit_log(receipt: &TransactionReceipt) -> V::Deposit {
    receipt.decoded_log::<V::Deposit>().unwrap().data
}

/// The decoded revert of a call or send that must fail.
pub fn revert_of<T: std::fmt::Debug>(
    result: Result<T, alloy::contract::Error>,
) -> VaultRevert {
    let error = result.expect_err("the call should revert");
    VaultRevert::from_contract_error(&error)
        .unwrap_or_else(|| panic!("no revert data in {error}"))
}

pub fn reason(text: &str) -> VaultRevert {
    VaultRevert::Reason(text.to_owned())
}

/// A vault cloned by the deployer but never given an authorizer: its
/// placeholder authorizer (the vault itself) refuses everything.
pub async fn vault_without_authorizer(chain: &LocalChain) -> Address {
    use alloy::sol_types::SolValue;
    use receipt_vault::CloneFactory;

    let config = (
        chain.deployer.address(),
        (Address::ZERO, "Bare".to_owned(), "BARE".to_owned()),
    )
        .abi_encode();
    let factory = CloneFactory::new(chain.stack.factory, chain.provider());
    let receipt = mined(
        factory
            .clone(chain.stack.vault_impl, config.into())
            .send()
            .await
            .unwrap(),
    )
    .await;
    receipt
        .decoded_log::<CloneFactory::NewClone>()
        .unwrap()
        .data
        .clone
}

/// `vault` as seen by `signer`.
pub fn vault_at(
    chain: &LocalChain,
    vault: Address,
    signer: &PrivateKeySigner,
) -> Vault {
    V::new(vault, chain.provider_for(signer))
}
