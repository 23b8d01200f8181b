//! Broker API auth: HTTP Basic key:secret (the OpenAPI scheme), the
//! `APCA-API-KEY-ID`/`APCA-API-SECRET-KEY` headers and bearer tokens.
//! Nothing presented (or unreadable) is 401; anything wrong is 403.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{Incoming, Reply};
use crate::config::SimConfig;

fn unauthorized() -> Reply {
    Reply::error(401, "unauthorized")
}

fn forbidden() -> Reply {
    Reply::error(403, "forbidden")
}

fn check_authorization(cfg: &SimConfig, value: &str) -> Result<(), Reply> {
    let (scheme, credentials) =
        value.trim().split_once(' ').ok_or_else(unauthorized)?;
    let credentials = credentials.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD
            .decode(credentials)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(unauthorized)?;
        let (key, secret) = decoded.split_once(':').ok_or_else(unauthorized)?;
        if key == cfg.broker_key_id && secret == cfg.broker_secret {
            Ok(())
        } else {
            Err(forbidden())
        }
    } else if scheme.eq_ignore_ascii_case("bearer") {
        match &cfg.broker_bearer_token {
            Some(token) if token == credentials => Ok(()),
            _ => Err(forbidden()),
        }
    } else {
        Err(unauthorized())
    }
}

/// Every credential presented must be valid, and at least one must be.
pub(super) fn check(cfg: &SimConfig, incoming: &Incoming) -> Result<(), Reply> {
    let mut presented = false;
    if let Some(value) = incoming.header("authorization") {
        check_authorization(cfg, value)?;
        presented = true;
    }
    match (
        incoming.header("apca-api-key-id"),
        incoming.header("apca-api-secret-key"),
    ) {
        (None, None) => {}
        (Some(key), Some(secret)) => {
            if key != cfg.broker_key_id || secret != cfg.broker_secret {
                return Err(forbidden());
            }
            presented = true;
        }
        _ => return Err(unauthorized()),
    }
    if presented {
        Ok(())
    } else {
        Err(unauthorized())
    }
}
