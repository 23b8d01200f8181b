use super::{AlpacaAccountId, AlpacaAccountNumber, ClientId, Email, Wallet};

/// Commands carry already-validated values: parsing happens at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    Register {
        client_id: ClientId,
        email: Email,
    },
    Link {
        alpaca_account: AlpacaAccountNumber,
    },
    WhitelistWallet {
        wallet: Wallet,
    },
    UnwhitelistWallet {
        wallet: Wallet,
    },
    /// Sets (or replaces) the AP's Alpaca account UUID for the affiliated
    /// flow; the same id again is a no-op.
    RecordAlpacaAccountId {
        alpaca_account_id: AlpacaAccountId,
    },
}
