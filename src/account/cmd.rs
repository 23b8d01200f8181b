use super::{AlpacaAccountNumber, ClientId, Email, Wallet};

/// Commands carry already-validated values: parsing happens at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    Register { client_id: ClientId, email: Email },
    Link { alpaca_account: AlpacaAccountNumber },
    WhitelistWallet { wallet: Wallet },
    UnwhitelistWallet { wallet: Wallet },
}
