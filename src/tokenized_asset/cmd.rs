use super::{Network, TokenSymbol, UnderlyingSymbol, Vault};

/// Commands carry already-validated values: parsing happens at the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenizedAssetCommand {
    /// Lists the asset, or repoints its vault when already listed.
    Add {
        underlying: UnderlyingSymbol,
        token: TokenSymbol,
        network: Network,
        vault: Vault,
    },
    Enable,
    Disable,
}
