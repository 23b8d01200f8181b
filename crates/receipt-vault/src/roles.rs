//! Authorizer roles and vault permissions: `keccak256` of their names.

use alloy::primitives::{B256, b256};

pub const DEPOSIT: B256 =
    b256!("87a7811f4bfedea3d341ad165680ae306b01aaeacc205d227629cf157dd9f821");
pub const WITHDRAW: B256 =
    b256!("7a8dc26796a1e50e6e190b70259f58f6a4edd5b22280ceecc82b687b8e982869");
pub const CERTIFY: B256 =
    b256!("50a07cb25d0d864370863300b20987dfdae089abad71b607faf639d09d053391");
pub const CONFISCATE_SHARES: B256 =
    b256!("54f0af3716c79b30b8c228679d31d77a1a5f526c16af3262730e0a8de4363fed");
pub const CONFISCATE_RECEIPT: B256 =
    b256!("3dd35eca0ca8a128757fa464a5dfa4ad6cc4853cad96dce4e90fdbea4f0a52e3");

pub const DEPOSIT_ADMIN: B256 =
    b256!("1ae915b310cb86de75afe5db1721d474dd0a8617151f7524866025476454bc02");
pub const WITHDRAW_ADMIN: B256 =
    b256!("a0f4a7675effb97b81a0c9d5b53b44a73019f25c5ec8fda76d7c1ad3920851d3");
pub const CERTIFY_ADMIN: B256 =
    b256!("48ece560b6811ee496fa3dedc7d5be3dfce8c5eb8f1cc18626507e158a23169b");
pub const CONFISCATE_SHARES_ADMIN: B256 =
    b256!("e5c740c26fb65f0a8de546defe3fe0011d5f2292abe6c4e6c3833916f4d8f76c");
pub const CONFISCATE_RECEIPT_ADMIN: B256 =
    b256!("4fa4167c411e3d3edd62f8bf767cb8c66f94f891502ddab57e7c55ca1d7d891d");

/// Checked by the vault on every share movement; never granted.
pub const TRANSFER_SHARES: B256 =
    b256!("55387ad71a8e46cc1293406722dd825c028eaf5ff0c2a3e4f176184d62e9d30a");
/// Checked by the vault on every receipt movement; never granted.
pub const TRANSFER_RECEIPT: B256 =
    b256!("0e5bce7997400ea2056cf00fe99ca5d6be40bdb9d8b4e41217fe8670c2639a48");

/// OpenZeppelin's default admin role; held by nobody on these authorizers.
pub const DEFAULT_ADMIN_ROLE: B256 = B256::ZERO;

/// Name of a known role or permission, for logs and error messages.
pub fn name(role: B256) -> Option<&'static str> {
    NAMED
        .iter()
        .find(|(_, value)| *value == role)
        .map(|(name, _)| *name)
}

const NAMED: [(&str, B256); 13] = [
    ("DEPOSIT", DEPOSIT),
    ("WITHDRAW", WITHDRAW),
    ("CERTIFY", CERTIFY),
    ("CONFISCATE_SHARES", CONFISCATE_SHARES),
    ("CONFISCATE_RECEIPT", CONFISCATE_RECEIPT),
    ("DEPOSIT_ADMIN", DEPOSIT_ADMIN),
    ("WITHDRAW_ADMIN", WITHDRAW_ADMIN),
    ("CERTIFY_ADMIN", CERTIFY_ADMIN),
    ("CONFISCATE_SHARES_ADMIN", CONFISCATE_SHARES_ADMIN),
    ("CONFISCATE_RECEIPT_ADMIN", CONFISCATE_RECEIPT_ADMIN),
    ("TRANSFER_SHARES", TRANSFER_SHARES),
    ("TRANSFER_RECEIPT", TRANSFER_RECEIPT),
    ("DEFAULT_ADMIN_ROLE", DEFAULT_ADMIN_ROLE),
];

#[cfg(test)]
mod tests {
    use alloy::primitives::keccak256;

    use super::*;

    #[test]
    fn every_named_constant_is_the_keccak_of_its_name() {
        for (name, value) in NAMED {
            if name == "DEFAULT_ADMIN_ROLE" {
                assert_eq!(value, B256::ZERO);
            } else {
                assert_eq!(keccak256(name), value, "{name}");
            }
        }
    }

    #[test]
    fn names_resolve_back() {
        assert_eq!(name(WITHDRAW), Some("WITHDRAW"));
        assert_eq!(name(keccak256("NOPE")), None);
    }
}
