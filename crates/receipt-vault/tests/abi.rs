//! The bindings (generated from our artifacts) carry exactly Rain's
//! selectors and event topics (receipt-vault spec §3–§4), and the deployed
//! contracts report Rain's ERC-165 interface ids.
#![cfg(test)]

use alloy::hex;
use alloy::primitives::{B256, FixedBytes};
use alloy::sol_types::{SolCall, SolEvent, TopicList};
use receipt_vault::testing::LocalChain;
use receipt_vault::{
    CloneFactory, OffchainAssetReceiptVault as V,
    OffchainAssetReceiptVaultAuthorizerV1 as A, Receipt as R,
};

fn assert_selectors(cases: &[([u8; 4], &str, &str)]) {
    for (selector, expected, name) in cases {
        assert_eq!(hex::encode(selector), *expected, "selector of {name}");
    }
}

macro_rules! selectors {
    ($($call:ty => $hex:literal),* $(,)?) => {
        assert_selectors(&[
            $((<$call>::SELECTOR, $hex, <$call>::SIGNATURE)),*
        ])
    };
}

#[test]
fn vault_function_selectors_match_rain() {
    selectors! {
        V::depositCall => "1423feba",
        V::mintCall => "c77b66c2",
        V::redepositCall => "c54cafee",
        V::withdrawCall => "ae57de0c",
        V::redeemCall => "921a4c42",
        V::previewDepositCall => "7a7af70d",
        V::previewMintCall => "276b1140",
        V::previewWithdrawCall => "488bd7b0",
        V::previewRedeemCall => "bbec4d06",
        V::convertToSharesCall => "db2088f4",
        V::convertToAssetsCall => "181e7b3b",
        V::maxDepositCall => "402d267d",
        V::maxMintCall => "c63d75b6",
        V::maxWithdrawCall => "85b68756",
        V::maxRedeemCall => "4abe4137",
        V::assetCall => "38d52e0f",
        V::totalAssetsCall => "01e1d114",
        V::receiptCall => "e1e6b898",
        V::receiptVaultInformationCall => "81c3fcb9",
        V::highwaterIdCall => "f5d214f5",
        V::authorizerCall => "d09edf31",
        V::setAuthorizerCall => "058a628f",
        V::authorizeCall => "59f89dda",
        V::certifyCall => "e70689f5",
        V::isCertificationExpiredCall => "f5647943",
        V::confiscateSharesCall => "770afee1",
        V::confiscateReceiptCall => "56db02e8",
        V::authorizeReceiptTransfer3Call => "e5be7d90",
        V::initializeCall => "439fab91",
        V::ownerCall => "8da5cb5b",
        V::transferOwnershipCall => "f2fde38b",
        V::renounceOwnershipCall => "715018a6",
        V::ownerFrozenUntilCall => "1f6759d3",
        V::ownerFreezeUntilCall => "1e4344a1",
        V::ownerFreezeAlwaysAllowedFromCall => "6ba23521",
        V::ownerFreezeAlwaysAllowedToCall => "ae98b39f",
        V::ownerFreezeAlwaysAllowFromCall => "786cd916",
        V::ownerFreezeAlwaysAllowToCall => "2755c6c7",
        V::ownerFreezeStopAlwaysAllowingFromCall => "6c876b94",
        V::ownerFreezeStopAlwaysAllowingToCall => "633ac717",
        V::nameCall => "06fdde03",
        V::symbolCall => "95d89b41",
        V::decimalsCall => "313ce567",
        V::totalSupplyCall => "18160ddd",
        V::balanceOfCall => "70a08231",
        V::transferCall => "a9059cbb",
        V::allowanceCall => "dd62ed3e",
        V::approveCall => "095ea7b3",
        V::transferFromCall => "23b872dd",
        V::increaseAllowanceCall => "39509351",
        V::decreaseAllowanceCall => "a457c2d7",
        V::multicallCall => "ac9650d8",
        V::supportsInterfaceCall => "01ffc9a7",
    }
}

#[test]
fn receipt_authorizer_and_factory_selectors_match_rain() {
    selectors! {
        R::balanceOfCall => "00fdd58e",
        R::balanceOfBatchCall => "4e1273f4",
        R::setApprovalForAllCall => "a22cb465",
        R::isApprovedForAllCall => "e985e9c5",
        R::safeTransferFromCall => "f242432a",
        R::safeBatchTransferFromCall => "2eb2c2d6",
        R::uriCall => "0e89341c",
        R::managerCall => "481c6a75",
        R::managerMintCall => "6d5b3f78",
        R::managerBurnCall => "c2530e39",
        R::managerTransferFromCall => "043fa987",
        R::receiptInformationCall => "177769cb",
        A::hasRoleCall => "91d14854",
        A::getRoleAdminCall => "248a9ca3",
        A::grantRoleCall => "2f2ff15d",
        A::revokeRoleCall => "d547741f",
        A::renounceRoleCall => "36568abe",
        A::DEFAULT_ADMIN_ROLECall => "a217fddf",
        A::authorizeCall => "59f89dda",
        A::initializeCall => "439fab91",
        CloneFactory::cloneCall => "0fbe133c",
    }
}

fn assert_topics(cases: &[(B256, &str, &str)]) {
    for (topic, expected, name) in cases {
        assert_eq!(topic.to_string(), *expected, "topic0 of {name}");
    }
}

macro_rules! topics {
    ($($event:ty => $hex:literal),* $(,)?) => {
        assert_topics(&[
            $((<$event>::SIGNATURE_HASH, $hex, <$event>::SIGNATURE)),*
        ])
    };
}

#[test]
fn event_topics_match_rain() {
    topics! {
        V::Deposit => "0x3377bcbed49a0c0005e53931cd8fe7334b5371523e5de784c0d0d3d01089cfea",
        V::Withdraw => "0x2845b9458bcc357e1abfe8de7f6832dfe7220596a053496b33d0deb6577d8d2a",
        V::ReceiptVaultInformation => "0xdaffad82f53a38a62340f14cdd6fd3b437c5dcda6b32029dac1e661dbce28b2d",
        V::Certify => "0x7ef5cae78e9bd364afb19bb0f8a881a6d156e35a119e28c0d17524e507958158",
        V::AuthorizerSet => "0xa8c713fe8fb360697fc0daab836d85208a605d485fbc265aea0f773fc6cdd71a",
        V::ConfiscateShares => "0x3fc1c49e72362e91416388fe7a107b92db924642476e83e701eeeb6256d7249e",
        V::ConfiscateReceipt => "0x88e2280ece62e9296d3578b77647db2c11f9fa7e42578e2db5d4262123ffae3e",
        V::OffchainAssetReceiptVaultInitializedV2 => "0x17520c66d636c0f98338ee30d33c9fd2f4ab28ea9583fda355854fb100867a02",
        V::OwnerFrozenUntil => "0xff9fd4facd8bd30d905cc7ffbd03e8829a414df4c6554d155d132c3377868a42",
        V::OwnerFreezeAlwaysAllowedFrom => "0xd08871fffa9d03c01fcba597af5dfbe64cb26f207debdae1af25326954474991",
        V::OwnerFreezeAlwaysAllowedTo => "0xa1e5b368dc99c8558f28b1e7e8cb7ab542c989a4b697628ba7bfffe0aeaccffd",
        V::Transfer => "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef",
        V::Approval => "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925",
        V::OwnershipTransferred => "0x8be0079c531659141344cd1fd0a4f28419497f9722a3daafe3b4186f6b6457e0",
        // OZ v5 `Initialized(uint64)`; Rain's v4 one differs (ignored by
        // the issuer).
        V::Initialized => "0xc7f505b2f371ae2175ee4913f4499e1f2633a7b5936321eed1cdaeb6115181d2",
        R::TransferSingle => "0xc3d58168c5ae7397731d063d5bbf3d657854427343f4c083240f7aacaa2d0f62",
        R::TransferBatch => "0x4a39dc06d4c0dbc64b70af90fd698a233a518aa5d07e595d983b8c0526c8f7fb",
        R::ApprovalForAll => "0x17307eab39ab6107e8899845ad3d59bd9653f200f220920489ca2b5937696c31",
        R::URI => "0x6bb7ff708619ba0610cba295a58592e0451dee2622938c8755667688daf3529b",
        R::ReceiptInformation => "0xd66d6a9810a5cef78b704e7e04334961e997c81d337f029f74637f060f3d8d65",
        A::RoleGranted => "0x2f8788117e7eff1d82e926ec794901d17c78024a50270940304540a733656f0d",
        A::RoleRevoked => "0xf6391f5c32d9c69d2a47ea670b442974b53935d1edc7fd64eb21e047a839171b",
        A::RoleAdminChanged => "0xbd79b86ffe0ab8e8776151514217cd7cacd52c909f66475c3af44e129f0b00ff",
        CloneFactory::NewClone => "0x274b5f356634f32a865af65bdc3d8205939d9413d75e1f367652e4f3b24d0c3a",
    }
}

#[test]
fn rain_events_have_no_indexed_fields() {
    // Decoders match on topic0 and the data layout alone.
    const { assert!(!V::Deposit::ANONYMOUS) };
    assert_eq!(<V::Deposit as SolEvent>::TopicList::COUNT, 1);
    assert_eq!(<V::Withdraw as SolEvent>::TopicList::COUNT, 1);
    assert_eq!(<R::ReceiptInformation as SolEvent>::TopicList::COUNT, 1);
    assert_eq!(<CloneFactory::NewClone as SolEvent>::TopicList::COUNT, 1);
    assert_eq!(<V::Transfer as SolEvent>::TopicList::COUNT, 3);
    assert_eq!(<R::TransferSingle as SolEvent>::TopicList::COUNT, 4);
}

async fn supports(
    chain: &LocalChain,
    address: alloy::primitives::Address,
    id: [u8; 4],
) -> bool {
    V::new(address, chain.provider())
        .supportsInterface(FixedBytes(id))
        .call()
        .await
        .unwrap()
}

#[tokio::test]
async fn deployed_contracts_report_rains_interface_ids() {
    let chain = LocalChain::start().await.unwrap();
    let stack = chain.stack;

    for id in ["01ffc9a7", "e5be7d90", "439fab91", "e1e6b898", "59f89dda"] {
        let id = hex::decode_to_array(id).unwrap();
        assert!(supports(&chain, stack.vault, id).await, "vault {id:?}");
    }
    for id in ["01ffc9a7", "d9b67a26", "0e89341c"] {
        let id = hex::decode_to_array(id).unwrap();
        assert!(supports(&chain, stack.receipt, id).await, "receipt {id:?}");
    }
    for id in ["01ffc9a7", "59f89dda", "439fab91", "7965db0b"] {
        let id = hex::decode_to_array(id).unwrap();
        assert!(
            supports(&chain, stack.authorizer, id).await,
            "authorizer {id:?}"
        );
    }
    // Like Rain's, the vault reports no ERC-20 interface id.
    let erc20 = hex::decode_to_array("36372b07").unwrap();
    assert!(!supports(&chain, stack.vault, erc20).await);
}
