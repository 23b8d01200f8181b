//! A local anvil chain with a deployed, configured vault stack, for
//! integration tests (feature `test-support`).
//!
//! Roles follow the reference issuer's harness: anvil key 0 is both the
//! deployer (vault owner, authorizer admin, CERTIFY) and the issuer ("bot")
//! wallet (DEPOSIT and WITHDRAW); anvil key 1 is the authorized
//! participant (AP). The vault is certified until `U256::MAX`.

use alloy::node_bindings::{Anvil, AnvilInstance, NodeError};
use alloy::primitives::{Address, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;

use crate::anvil::{AnvilNotFound, anvil_binary};
use crate::deploy::{self, DeployError, VaultStack};
use crate::{OffchainAssetReceiptVault, Receipt, roles};

/// Name and symbol of the vault `LocalChain::start` deploys.
pub const TEST_VAULT_NAME: &str = "Test Vault";
pub const TEST_VAULT_SYMBOL: &str = "TEST";

#[derive(Debug, thiserror::Error)]
pub enum LocalChainError {
    #[error(transparent)]
    AnvilNotFound(#[from] AnvilNotFound),
    #[error("starting anvil failed: {0}")]
    Spawn(#[from] NodeError),
    #[error("anvil has no key #{index}")]
    MissingKey { index: usize },
    #[error("deploying the vault stack failed: {0}")]
    Deploy(#[from] DeployError),
    #[error("vault call failed: {0}")]
    Contract(#[from] alloy::contract::Error),
    #[error("spending a deployer nonce failed: {0}")]
    Skip(String),
}

/// Whether [`LocalChain::start_with`] certifies the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Certification {
    /// `certify(U256::MAX)`: transfers between ordinary accounts work.
    Forever,
    /// Left as deployed: expired, so only privileged mints/burns pass.
    Expired,
}

pub struct LocalChain {
    /// Keeps anvil alive; it is killed when the chain is dropped.
    pub anvil: AnvilInstance,
    pub rpc_url: Url,
    /// Anvil key 0: owner, authorizer admin, CERTIFY.
    pub deployer: PrivateKeySigner,
    /// Anvil key 0 as well: the issuer wallet (DEPOSIT, WITHDRAW).
    pub bot: PrivateKeySigner,
    /// Anvil key 1: the authorized participant.
    pub ap: PrivateKeySigner,
    /// The first vault, deployed by `start`.
    pub stack: VaultStack,
    provider: DynProvider,
}

impl LocalChain {
    /// Spawns anvil and deploys a certified vault stack.
    pub async fn start() -> Result<Self, LocalChainError> {
        Self::start_with(Certification::Forever).await
    }

    pub async fn start_with(
        certification: Certification,
    ) -> Result<Self, LocalChainError> {
        Self::spawn(Anvil::at(anvil_binary()?), certification, 0).await
    }

    /// As [`LocalChain::start`], on a node reporting `chain_id` (anvil's
    /// default is 31337), so that several chains can run side by side.
    /// The deployer spends a nonce first, so this chain's vault has
    /// another address than [`LocalChain::start`]'s (a vault address
    /// backs one listing, on one network).
    pub async fn start_on(chain_id: u64) -> Result<Self, LocalChainError> {
        Self::spawn(
            Anvil::at(anvil_binary()?).chain_id(chain_id),
            Certification::Forever,
            1,
        )
        .await
    }

    async fn spawn(
        anvil: Anvil,
        certification: Certification,
        skipped_nonces: u64,
    ) -> Result<Self, LocalChainError> {
        let anvil = anvil.try_spawn()?;
        let rpc_url = anvil.endpoint_url();
        let deployer = signer(&anvil, 0)?;
        let ap = signer(&anvil, 1)?;
        let provider = provider_for(&rpc_url, &deployer);
        for _ in 0..skipped_nonces {
            let tx = alloy::rpc::types::TransactionRequest::default()
                .to(deployer.address())
                .value(U256::ZERO);
            provider
                .send_transaction(tx)
                .await
                .map_err(|error| LocalChainError::Skip(error.to_string()))?
                .get_receipt()
                .await
                .map_err(|error| LocalChainError::Skip(error.to_string()))?;
        }

        let stack = deploy::deploy_stack(
            &provider,
            deployer.address(),
            TEST_VAULT_NAME,
            TEST_VAULT_SYMBOL,
        )
        .await?;
        let chain = Self {
            anvil,
            rpc_url,
            bot: deployer.clone(),
            deployer,
            ap,
            stack,
            provider,
        };
        chain.configure(&stack, certification).await?;
        Ok(chain)
    }

    /// The deployer's (= bot's) provider.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    /// An HTTP provider that signs with `signer`.
    pub fn provider_for(&self, signer: &PrivateKeySigner) -> DynProvider {
        provider_for(&self.rpc_url, signer)
    }

    /// Anvil's key `index` (0..10) as a signer.
    pub fn signer(
        &self,
        index: usize,
    ) -> Result<PrivateKeySigner, LocalChainError> {
        signer(&self.anvil, index)
    }

    /// The first vault, called by `signer`.
    pub fn vault_as(
        &self,
        signer: &PrivateKeySigner,
    ) -> OffchainAssetReceiptVault::OffchainAssetReceiptVaultInstance<DynProvider>
    {
        OffchainAssetReceiptVault::new(
            self.stack.vault,
            self.provider_for(signer),
        )
    }

    /// ERC-20 share balance of `owner` in the first vault.
    pub async fn share_balance(
        &self,
        owner: Address,
    ) -> Result<U256, LocalChainError> {
        self.share_balance_in(&self.stack, owner).await
    }

    pub async fn share_balance_in(
        &self,
        stack: &VaultStack,
        owner: Address,
    ) -> Result<U256, LocalChainError> {
        Ok(OffchainAssetReceiptVault::new(stack.vault, &self.provider)
            .balanceOf(owner)
            .call()
            .await?)
    }

    /// ERC-1155 balance of receipt `id` held by `owner` in the first vault.
    pub async fn receipt_balance(
        &self,
        owner: Address,
        id: U256,
    ) -> Result<U256, LocalChainError> {
        self.receipt_balance_in(&self.stack, owner, id).await
    }

    pub async fn receipt_balance_in(
        &self,
        stack: &VaultStack,
        owner: Address,
        id: U256,
    ) -> Result<U256, LocalChainError> {
        Ok(Receipt::new(stack.receipt, &self.provider)
            .balanceOf(owner, id)
            .call()
            .await?)
    }

    /// Deploys and configures another certified vault from the same factory
    /// and implementations.
    pub async fn add_vault(
        &self,
        name: &str,
        symbol: &str,
    ) -> Result<VaultStack, LocalChainError> {
        let stack = deploy::deploy_vault(
            &self.provider,
            &self.stack,
            self.deployer.address(),
            name,
            symbol,
        )
        .await?;
        self.configure(&stack, Certification::Forever).await?;
        Ok(stack)
    }

    async fn configure(
        &self,
        stack: &VaultStack,
        certification: Certification,
    ) -> Result<(), LocalChainError> {
        let grants = [
            (roles::DEPOSIT, self.bot.address()),
            (roles::WITHDRAW, self.bot.address()),
            (roles::CERTIFY, self.deployer.address()),
        ];
        for (role, account) in grants {
            deploy::grant_role(&self.provider, stack.authorizer, role, account)
                .await?;
        }
        if certification == Certification::Forever {
            deploy::certify(&self.provider, stack.vault, U256::MAX).await?;
        }
        Ok(())
    }
}

fn signer(
    anvil: &AnvilInstance,
    index: usize,
) -> Result<PrivateKeySigner, LocalChainError> {
    anvil
        .nth_key(index)
        .map(|key| PrivateKeySigner::from(key.clone()))
        .ok_or(LocalChainError::MissingKey { index })
}

/// Nonces are fetched from the node for every transaction (not cached per
/// provider), so several providers may sign with the same key — the
/// deployer and the bot are one key.
fn provider_for(rpc_url: &Url, signer: &PrivateKeySigner) -> DynProvider {
    ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(signer.clone())
        .connect_http(rpc_url.clone())
        .erased()
}
