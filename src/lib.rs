//! issuance-bot library.
