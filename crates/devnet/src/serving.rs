//! What a person needs to keep using the devnet after the demo: where
//! everything listens, the keys, and curl commands that work as printed.

use std::fmt::Write as _;

use issuance_bot::quantity::AlpacaQuantity;

use crate::demo::DemoSummary;
use crate::stack::{Devnet, NETWORK, SECOND_NETWORK, TOKEN, UNDERLYING};

pub fn print_banner(
    devnet: &Devnet,
    summary: &DemoSummary,
    qty: AlpacaQuantity,
) {
    println!("{}", banner(devnet, summary, qty));
}

fn banner(
    devnet: &Devnet,
    summary: &DemoSummary,
    qty: AlpacaQuantity,
) -> String {
    let service = devnet.service_url.as_str().trim_end_matches('/');
    let sim = devnet.sim.base_url();
    let sim = sim.as_str().trim_end_matches('/');
    let chain = &devnet.chain;
    let internal = &devnet.credentials.internal;
    let alpaca = &devnet.credentials.alpaca;
    let ap_wallet = chain.ap.address();
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(String::new());
    line("The devnet is serving; Ctrl-C stops everything.".to_owned());
    line(String::new());
    line(format!("  service        {service}"));
    line(format!(
        "  ITN simulator  {sim}  (Alpaca's Broker API, /sim control)"
    ));
    let second = &devnet.second;
    line(format!(
        "  anvil          {}  ({NETWORK}, chain id {})",
        chain.rpc_url,
        chain.anvil.chain_id()
    ));
    line(format!(
        "  {TOKEN} vault    {}  ({NETWORK})",
        devnet.vault.vault
    ));
    line(format!(
        "  anvil          {}  ({SECOND_NETWORK}, chain id {})",
        second.chain.rpc_url,
        second.chain.anvil.chain_id()
    ));
    line(format!(
        "  {TOKEN} vault    {}  ({SECOND_NETWORK})",
        second.vault.vault
    ));
    line(format!(
        "  bot wallet     {}  (anvil key 0, on both chains)",
        chain.bot.address()
    ));
    line(format!(
        "  AP wallet      {ap_wallet}  (anvil key 1: {})",
        chain.ap.to_bytes()
    ));
    line(format!(
        "  database       {}",
        devnet.dir.database().display()
    ));
    line(format!(
        "  config         {}",
        devnet.dir.config().display()
    ));
    line(String::new());
    line(format!("  internal API key  {internal}"));
    line(format!("  Alpaca API key    {alpaca}"));
    line(String::new());
    line("Try:".to_owned());
    let get = |path: &str| {
        format!("  curl -H 'X-API-KEY: {internal}' {service}{path}")
    };
    line(get(&format!("/mints/{}", summary.mint_issuer_request_id)));
    line(get(&format!(
        "/mints/{}   # on {SECOND_NETWORK}",
        summary.second_mint_issuer_request_id
    )));
    line(get(&format!(
        "/redemptions/{}",
        summary.redemption_issuer_request_id
    )));
    line(get(&format!("/accounts/{}", summary.client_id)));
    line(get(&format!("/tokenized-assets/{UNDERLYING}/{NETWORK}")));
    line(get("/receipts"));
    line(format!("  curl {service}/ready"));
    line(format!(
        "  curl -H 'X-API-KEY: {alpaca}' {service}/tokenization/tokens   \
         # the token list as Alpaca sees it"
    ));
    line(String::new());
    line("Another mint, with the simulator playing Alpaca:".to_owned());
    let mut mint = String::new();
    // Writing to a String cannot fail.
    let _ = write!(
        mint,
        "  curl -XPOST {sim}/sim/aps/{}/mint -d '{{\"underlying\":\
         \"{UNDERLYING}\",\"token\":\"{TOKEN}\",\"network\":\"{NETWORK}\",\
         \"qty\":\"{qty}\",\"wallet\":\"{ap_wallet}\"}}'",
        summary.ap
    );
    line(mint);
    line(format!(
        "  # on {SECOND_NETWORK}: the same with \"network\":\"{SECOND_NETWORK}\""
    ));
    line(format!(
        "  curl {sim}/sim/requests        # what Alpaca has seen"
    ));
    line(format!(
        "  curl {sim}/sim/aps/{}   # the AP at Alpaca",
        summary.ap
    ));
    line(String::new());
    line(
        "Another redemption: send tokens from the AP wallet to the bot \
         wallet, e.g. with foundry's cast:"
            .to_owned(),
    );
    line(format!(
        "  cast send {} 'transfer(address,uint256)' {} {} --private-key {} \
         --rpc-url {}",
        devnet.vault.vault,
        chain.bot.address(),
        qty.to_shares(),
        chain.ap.to_bytes(),
        chain.rpc_url
    ));
    out
}
