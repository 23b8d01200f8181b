//! The demo: list the asset, register and link an AP and whitelist its
//! wallet (as an operator and Alpaca would), then one mint and one
//! redemption end to end, printing every state the service reports.
//!
//! The service is only ever observed over its HTTP API; the chain and
//! the simulator are observed directly, as a person would check them.

use std::time::Duration;

use alloy::primitives::{Address, TxHash, U256};
use alloy::sol_types::SolEvent;
use issuance_bot::quantity::AlpacaQuantity;
use itn_sim::{ApId, ApSpec, ClientIdMode, MintSpec, SimError};
use receipt_vault::OffchainAssetReceiptVault;
use receipt_vault::testing::LocalChainError;
use rust_decimal::Decimal;

use crate::operator::{
    ApiCallError, MintAnswer, OperatorApi, RedemptionAnswer,
};
use crate::report::{StepLog, Tag, tokens};
use crate::stack::{Devnet, NETWORK, SECOND_NETWORK, TOKEN, UNDERLYING};
use receipt_vault::deploy::VaultStack;
use receipt_vault::testing::LocalChain;

pub const AP_EMAIL: &str = "desk@ap.example.com";
pub const AP_ACCOUNT_NUMBER: &str = "AP-0001";
/// What the AP holds at Alpaca before the demo.
pub const AP_STARTING_POSITION: u32 = 1000;
/// How often the service and the simulator are polled.
const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Api(#[from] ApiCallError),
    #[error("simulator: {0}")]
    Sim(#[from] SimError),
    #[error("chain: {0}")]
    Chain(#[from] LocalChainError),
    #[error("chain call failed: {0}")]
    Contract(#[from] alloy::contract::Error),
    #[error("waiting for the transaction failed: {0}")]
    Pending(#[from] alloy::providers::PendingTransactionError),
    #[error(
        "Alpaca linked the AP as {linked:?}, the service registered {registered:?}"
    )]
    LinkMismatch { linked: String, registered: String },
    #[error("the issuer answered the mint request {status}: {body}")]
    MintRefused { status: u16, body: String },
    #[error("the mint ended {status}: {detail}")]
    MintFailed { status: String, detail: String },
    #[error("the redemption ended failed: {reason}")]
    RedemptionFailed { reason: String },
    #[error("the AP's transfer {tx_hash} {problem}")]
    Transfer {
        tx_hash: TxHash,
        problem: &'static str,
    },
    #[error("{field} missing from {what}")]
    Missing {
        what: &'static str,
        field: &'static str,
    },
    #[error("gave up after {secs} s waiting for {what}; last seen: {last}")]
    Timeout {
        what: &'static str,
        secs: u64,
        last: String,
    },
}

/// The ids a person can look up after the demo.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub ap: ApId,
    pub client_id: String,
    pub mint_issuer_request_id: String,
    /// The mint on the second chain (ethereum).
    pub second_mint_issuer_request_id: String,
    pub redemption_issuer_request_id: String,
}

pub struct Demo<'a> {
    devnet: &'a Devnet,
    api: OperatorApi,
    log: &'a StepLog,
    /// How long any one step may take.
    patience: Duration,
}

impl<'a> Demo<'a> {
    pub fn new(
        devnet: &'a Devnet,
        log: &'a StepLog,
        patience: Duration,
    ) -> Self {
        Self {
            devnet,
            api: OperatorApi::new(
                devnet.service_url.as_str(),
                devnet.credentials.internal.as_str().to_owned(),
            ),
            log,
            patience,
        }
    }

    pub async fn run(
        &self,
        qty: AlpacaQuantity,
    ) -> Result<DemoSummary, DemoError> {
        let (ap, client_id) = self.set_up().await?;
        let mint_issuer_request_id = self.mint(ap, qty, NETWORK).await?;
        let second_mint_issuer_request_id =
            self.mint(ap, qty, SECOND_NETWORK).await?;
        let redemption_issuer_request_id = self.redeem(ap, qty).await?;
        Ok(DemoSummary {
            ap,
            client_id,
            mint_issuer_request_id,
            second_mint_issuer_request_id,
            redemption_issuer_request_id,
        })
    }

    /// The chain and vault serving `network`.
    fn chain_of(&self, network: &str) -> (&LocalChain, &VaultStack) {
        if network == SECOND_NETWORK {
            (&self.devnet.second.chain, &self.devnet.second.vault)
        } else {
            (&self.devnet.chain, &self.devnet.vault)
        }
    }

    fn ap_wallet(&self) -> Address {
        self.devnet.chain.ap.address()
    }

    fn bot_wallet(&self) -> Address {
        self.devnet.chain.bot.address()
    }

    async fn set_up(&self) -> Result<(ApId, String), DemoError> {
        for network in [NETWORK, SECOND_NETWORK] {
            let vault = self.chain_of(network).1.vault;
            let asset = self
                .api
                .add_asset(UNDERLYING, TOKEN, network, &vault.to_string())
                .await?;
            self.log.step(
                Tag::Setup,
                format!(
                    "POST /tokenized-assets: {UNDERLYING} as {TOKEN} on \
                     {network} -> {} (vault {}, enabled {})",
                    asset.outcome, asset.vault, asset.enabled
                ),
            );
        }
        let account = self.api.register_account(AP_EMAIL).await?;
        self.log.step(
            Tag::Setup,
            format!(
                "POST /accounts: {AP_EMAIL} registered as client_id {}",
                account.client_id
            ),
        );
        let wallet = self
            .api
            .whitelist_wallet(&account.client_id, &self.ap_wallet().to_string())
            .await?;
        self.log.step(
            Tag::Setup,
            format!(
                "POST /accounts/{}/wallets: {} whitelisted {}",
                account.client_id, wallet.wallet, wallet.whitelisted
            ),
        );
        let sim = &self.devnet.sim;
        let ap = sim.add_ap(ApSpec {
            email: AP_EMAIL.to_owned(),
            account_number: AP_ACCOUNT_NUMBER.to_owned(),
            positions: vec![(
                UNDERLYING.to_owned(),
                Decimal::from(AP_STARTING_POSITION),
            )],
            id_mode: ClientIdMode::External,
        });
        self.log.step(
            Tag::Sim,
            format!(
                "AP account {ap} ({AP_ACCOUNT_NUMBER}) holds \
                 {AP_STARTING_POSITION} {UNDERLYING} at Alpaca"
            ),
        );
        let linked = sim.link_ap(ap).await?;
        if linked != account.client_id {
            return Err(DemoError::LinkMismatch {
                linked,
                registered: account.client_id,
            });
        }
        self.log.step(
            Tag::Setup,
            format!(
                "Alpaca linked AP {ap} ({AP_EMAIL}, {AP_ACCOUNT_NUMBER}); the \
                 service answered client_id {linked}"
            ),
        );
        Ok((ap, account.client_id))
    }

    async fn mint(
        &self,
        ap: ApId,
        qty: AlpacaQuantity,
        network: &str,
    ) -> Result<String, DemoError> {
        let sim = &self.devnet.sim;
        self.log.step(
            Tag::Mint,
            format!(
                "the AP asks Alpaca to mint {qty} {UNDERLYING} as {TOKEN} on \
                 {network} to {}",
                self.ap_wallet()
            ),
        );
        let outcome = sim
            .request_mint(
                ap,
                MintSpec {
                    underlying: UNDERLYING.to_owned(),
                    token: TOKEN.to_owned(),
                    network: network.to_owned(),
                    qty: qty.quantity().as_decimal(),
                    wallet: self.ap_wallet().to_string(),
                },
            )
            .await?;
        if outcome.issuer_response_status != 200 {
            return Err(DemoError::MintRefused {
                status: outcome.issuer_response_status,
                body: outcome.issuer_body.to_string(),
            });
        }
        let id = outcome.issuer_request_id.ok_or(DemoError::Missing {
            what: "the issuer's mint answer",
            field: "issuer_request_id",
        })?;
        self.log.step(
            Tag::Mint,
            format!(
                "Alpaca sent tokenization request {}; the issuer accepted it \
                 as {id}",
                outcome.tokenization_request_id
            ),
        );

        let deadline = self.deadline("the mint to complete");
        let mut last_status: Option<String> = None;
        let mint = loop {
            if let Some(mint) = self.api.mint(&id).await? {
                if last_status.as_ref() != Some(&mint.status) {
                    self.log.step(Tag::Mint, describe_mint(&mint, qty));
                    last_status = Some(mint.status.clone());
                }
                if let Poll::Ready(mint) = mint_progress(mint)? {
                    break mint;
                }
            }
            deadline.wait(last_status.as_deref()).await?;
        };

        let receipt_id = mint.receipt_id.clone().ok_or(DemoError::Missing {
            what: "the completed mint",
            field: "receipt_id",
        })?;
        let tx_hash = mint.tx_hash.clone().ok_or(DemoError::Missing {
            what: "the completed mint",
            field: "tx_hash",
        })?;
        let (chain, vault) = self.chain_of(network);
        let ap_balance =
            chain.share_balance_in(vault, self.ap_wallet()).await?;
        let receipt_number =
            receipt_id.parse::<U256>().map_err(|_| DemoError::Missing {
                what: "the completed mint",
                field: "numeric receipt_id",
            })?;
        let held = chain
            .receipt_balance_in(vault, self.bot_wallet(), receipt_number)
            .await?;
        let alpaca = sim
            .request(outcome.tokenization_request_id)
            .map_or("unknown", |request| request.status.as_str());
        self.log.step(
            Tag::Mint,
            format!(
                "completed on {network}: tx {tx_hash} receipt #{receipt_id}; \
                 AP balance {} {TOKEN}; bot holds receipt #{receipt_id} for {}; Alpaca: \
                 request {alpaca}, AP {} {UNDERLYING}, issuer {} {UNDERLYING}",
                tokens(ap_balance),
                tokens(held),
                sim.position(ap, UNDERLYING).normalize(),
                sim.issuer_position(UNDERLYING).normalize(),
            ),
        );
        Ok(id)
    }

    async fn redeem(
        &self,
        ap: ApId,
        qty: AlpacaQuantity,
    ) -> Result<String, DemoError> {
        // The AP's position at Alpaca once the redeemed shares are back.
        let restored = self.devnet.sim.position(ap, UNDERLYING)
            + qty.quantity().as_decimal();
        let chain = &self.devnet.chain;
        let vault_address = self.devnet.vault.vault;
        let vault = OffchainAssetReceiptVault::new(
            vault_address,
            chain.provider_for(&chain.ap),
        );
        let receipt = vault
            .transfer(self.bot_wallet(), qty.to_shares())
            .send()
            .await?
            .get_receipt()
            .await?;
        let tx_hash = receipt.transaction_hash;
        if !receipt.status() {
            return Err(DemoError::Transfer {
                tx_hash,
                problem: "reverted",
            });
        }
        let log_index = receipt
            .inner
            .logs()
            .iter()
            .find(|log| {
                log.address() == vault_address
                    && log.topic0()
                        == Some(&OffchainAssetReceiptVault::Transfer::SIGNATURE_HASH)
            })
            .and_then(|log| log.log_index)
            .ok_or(DemoError::Transfer {
                tx_hash,
                problem: "emitted no Transfer log",
            })?;
        let id = format!("{tx_hash:#x}-{log_index}");
        self.log.step(
            Tag::Redemption,
            format!(
                "the AP sends {qty} {TOKEN} to the bot wallet {}: tx {tx_hash} \
                 block {} -> issuer_request_id {id}",
                self.bot_wallet(),
                receipt.block_number.unwrap_or_default()
            ),
        );

        let deadline = self.deadline("the redemption to complete");
        let mut last_state: Option<String> = None;
        let redemption = loop {
            if let Some(redemption) = self.api.redemption(&id).await? {
                if last_state.as_ref() != Some(&redemption.state) {
                    self.log.step(
                        Tag::Redemption,
                        describe_redemption(&redemption),
                    );
                    last_state = Some(redemption.state.clone());
                }
                if let Poll::Ready(redemption) =
                    redemption_progress(redemption)?
                {
                    break redemption;
                }
            }
            deadline.wait(last_state.as_deref()).await?;
        };

        let sim = &self.devnet.sim;
        let deadline = self.deadline("Alpaca to restore the AP's position");
        loop {
            let held = sim.position(ap, UNDERLYING);
            if held == restored {
                break;
            }
            deadline
                .wait(Some(&format!("AP holds {held} {UNDERLYING}")))
                .await?;
        }
        let alpaca = redemption
            .tokenization_request_id
            .as_deref()
            .and_then(|raw| raw.parse().ok())
            .and_then(|request| sim.request(request))
            .map_or("unknown", |request| request.status.as_str());
        let ap_balance = chain
            .share_balance_in(&self.devnet.vault, self.ap_wallet())
            .await?;
        let bot_balance = chain
            .share_balance_in(&self.devnet.vault, self.bot_wallet())
            .await?;
        self.log.step(
            Tag::Redemption,
            format!(
                "completed on {NETWORK}: burn tx {} block {} ({}); AP balance \
                 {} {TOKEN}, bot balance {} {TOKEN}; Alpaca: request \
                 {alpaca}, AP {} {UNDERLYING} (the redeemed shares \
                 restored), issuer {} {UNDERLYING}",
                redemption.burn_tx_hash.as_deref().unwrap_or("?"),
                redemption
                    .burn_block
                    .map_or_else(|| "?".to_owned(), |block| block.to_string()),
                burned(&redemption),
                tokens(ap_balance),
                tokens(bot_balance),
                sim.position(ap, UNDERLYING).normalize(),
                sim.issuer_position(UNDERLYING).normalize(),
            ),
        );
        Ok(id)
    }

    fn deadline(&self, what: &'static str) -> Deadline {
        Deadline {
            what,
            patience: self.patience,
            at: tokio::time::Instant::now().checked_add(self.patience),
        }
    }
}

/// The end of one waiting step.
struct Deadline {
    what: &'static str,
    patience: Duration,
    /// `None`: a patience too large to add to the clock never runs out.
    at: Option<tokio::time::Instant>,
}

impl Deadline {
    /// Sleeps one [`POLL`], or fails once the deadline has passed.
    async fn wait(&self, last_seen: Option<&str>) -> Result<(), DemoError> {
        if self.at.is_some_and(|at| tokio::time::Instant::now() >= at) {
            return Err(DemoError::Timeout {
                what: self.what,
                secs: self.patience.as_secs(),
                last: last_seen.unwrap_or("nothing").to_owned(),
            });
        }
        tokio::time::sleep(POLL).await;
        Ok(())
    }
}

/// One poll's verdict: done, or still waiting.
enum Poll<T> {
    Ready(T),
    Pending,
}

fn mint_progress(mint: MintAnswer) -> Result<Poll<MintAnswer>, DemoError> {
    match mint.status.as_str() {
        "completed" => Ok(Poll::Ready(mint)),
        "failed" | "journal_rejected" => Err(DemoError::MintFailed {
            detail: mint
                .failure
                .as_ref()
                .map(ToString::to_string)
                .or_else(|| mint.rejection_reason.clone())
                .unwrap_or_default(),
            status: mint.status,
        }),
        _ => Ok(Poll::Pending),
    }
}

fn redemption_progress(
    redemption: RedemptionAnswer,
) -> Result<Poll<RedemptionAnswer>, DemoError> {
    match redemption.state.as_str() {
        "completed" => Ok(Poll::Ready(redemption)),
        "failed" => Err(DemoError::RedemptionFailed {
            reason: redemption.failure_reason.unwrap_or_default(),
        }),
        _ => Ok(Poll::Pending),
    }
}

fn or_unknown(value: Option<&str>) -> &str {
    value.unwrap_or("?")
}

/// One log line for a mint state the service reported.
fn describe_mint(mint: &MintAnswer, qty: AlpacaQuantity) -> String {
    let tx = or_unknown(mint.tx_hash.as_deref());
    let detail = match mint.status.as_str() {
        "initiated" => "recorded; waiting for Alpaca to journal".to_owned(),
        "journal_confirmed" => format!(
            "Alpaca confirmed the journal ({qty} {UNDERLYING} moved from the \
             AP to the issuer); the driver mints next"
        ),
        "mint_intended" => format!(
            "mint transaction signed and sent: tx {tx} (attempt {}, nonce {})",
            mint.tx_attempt
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
            mint.tx_nonce
                .map_or_else(|| "?".to_owned(), |n| n.to_string()),
        ),
        "minted" => format!(
            "tx {tx} landed in block {} as receipt #{}; calling Alpaca back",
            mint.block.map_or_else(|| "?".to_owned(), |n| n.to_string()),
            or_unknown(mint.receipt_id.as_deref()),
        ),
        "completed" => {
            format!("Alpaca acknowledged the callback with tx {tx}")
        }
        "journal_rejected" => format!(
            "Alpaca rejected the journal: {}",
            or_unknown(mint.rejection_reason.as_deref())
        ),
        "failed" => format!(
            "failed: {}",
            mint.failure
                .as_ref()
                .map_or_else(|| "?".to_owned(), ToString::to_string)
        ),
        _ => String::new(),
    };
    let retrying = mint.last_error.as_ref().map_or_else(String::new, |err| {
        format!(" (driver retrying after: {err})")
    });
    format!("state {}: {detail}{retrying}", mint.status)
}

/// One log line for a redemption state the service reported.
fn describe_redemption(redemption: &RedemptionAnswer) -> String {
    let qty = or_unknown(redemption.alpaca_qty.as_deref());
    let detail = match redemption.state.as_str() {
        "detected" => format!(
            "the transfer monitor saw it: {} shares, {qty} to redeem at \
             Alpaca, dust {}",
            redemption.shares, redemption.dust
        ),
        "alpaca_called" => format!(
            "Alpaca accepted the redeem as tokenization request {}",
            or_unknown(redemption.tokenization_request_id.as_deref())
        ),
        "journal_completed" => format!(
            "Alpaca moved {qty} {UNDERLYING} back to the AP; burning next"
        ),
        "burning" => format!(
            "burn transaction signed and sent: tx {}",
            or_unknown(redemption.burn_tx_hash.as_deref())
        ),
        "completed" => format!(
            "burn tx {} landed ({})",
            or_unknown(redemption.burn_tx_hash.as_deref()),
            burned(redemption)
        ),
        "failed" => format!(
            "failed: {}",
            or_unknown(redemption.failure_reason.as_deref())
        ),
        _ => String::new(),
    };
    format!("state {}: {detail}", redemption.state)
}

/// `receipt #1: 10.5` for every receipt the burn used.
fn burned(redemption: &RedemptionAnswer) -> String {
    let parts: Vec<String> = redemption
        .burns
        .iter()
        .map(|burn| {
            let amount = burn
                .shares
                .parse::<U256>()
                .map_or_else(|_| burn.shares.clone(), tokens);
            format!("receipt #{}: {amount}", burn.receipt_id)
        })
        .collect();
    if parts.is_empty() {
        "no receipts".to_owned()
    } else {
        parts.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::BurnAnswer;

    fn mint(status: &str) -> MintAnswer {
        MintAnswer {
            status: status.to_owned(),
            tx_hash: Some("0xabc".to_owned()),
            tx_attempt: Some(1),
            tx_nonce: Some(7),
            receipt_id: Some("1".to_owned()),
            shares: Some("10500000000000000000".to_owned()),
            block: Some(12),
            rejection_reason: None,
            failure: None,
            last_error: None,
        }
    }

    fn redemption(state: &str) -> RedemptionAnswer {
        RedemptionAnswer {
            state: state.to_owned(),
            shares: "10500000000000000000".to_owned(),
            alpaca_qty: Some("10.5".to_owned()),
            dust: "0".to_owned(),
            tokenization_request_id: None,
            burn_tx_hash: Some("0xdef".to_owned()),
            burns: vec![BurnAnswer {
                receipt_id: "1".to_owned(),
                shares: "10500000000000000000".to_owned(),
            }],
            burn_block: Some(20),
            failure_reason: None,
        }
    }

    #[test]
    fn only_completed_ends_a_mint_and_rejections_are_errors() {
        assert!(matches!(mint_progress(mint("minted")), Ok(Poll::Pending)));
        assert!(matches!(
            mint_progress(mint("completed")),
            Ok(Poll::Ready(_))
        ));
        for status in ["failed", "journal_rejected"] {
            assert!(
                matches!(
                    mint_progress(mint(status)),
                    Err(DemoError::MintFailed { .. })
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn only_completed_ends_a_redemption_and_failure_is_an_error() {
        assert!(matches!(
            redemption_progress(redemption("burning")),
            Ok(Poll::Pending)
        ));
        assert!(matches!(
            redemption_progress(redemption("completed")),
            Ok(Poll::Ready(_))
        ));
        assert!(matches!(
            redemption_progress(redemption("failed")),
            Err(DemoError::RedemptionFailed { .. })
        ));
    }

    #[test]
    fn mint_lines_name_the_transaction_and_receipt() {
        let qty = AlpacaQuantity::parse("10.5").unwrap();
        let line = describe_mint(&mint("minted"), qty);
        assert_eq!(
            line,
            "state minted: tx 0xabc landed in block 12 as receipt #1; calling \
             Alpaca back"
        );
        let mut retrying = mint("mint_intended");
        retrying.last_error = Some(serde_json::json!("rpc down"));
        assert!(
            describe_mint(&retrying, qty)
                .ends_with("(driver retrying after: \"rpc down\")")
        );
    }

    #[tokio::test]
    async fn a_passed_deadline_fails_with_what_was_last_seen() {
        let passed = Deadline {
            what: "the redemption to complete",
            patience: Duration::ZERO,
            at: Some(tokio::time::Instant::now()),
        };
        let error = passed.wait(Some("burning")).await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "gave up after 0 s waiting for the redemption to complete; last \
             seen: burning"
        );
        let endless = Deadline {
            what: "anything",
            patience: Duration::MAX,
            at: None,
        };
        assert!(endless.wait(None).await.is_ok());
    }

    #[test]
    fn burns_are_listed_as_token_amounts_per_receipt() {
        assert_eq!(burned(&redemption("completed")), "receipt #1: 10.5");
        let mut none = redemption("burning");
        none.burns.clear();
        assert_eq!(burned(&none), "no receipts");
    }
}
