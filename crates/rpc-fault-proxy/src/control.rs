//! The control API, served under `/_proxy` on the proxy's own port when
//! the proxy is started with [`crate::RpcFaultProxy::start_with_control`]:
//!
//! - `POST /_proxy/rules` with a [`RuleSpec`] → `{"id":N}`
//! - `DELETE /_proxy/rules` → clear every rule (204)
//! - `DELETE /_proxy/rules/N` → remove rule N (204, or 404 if unknown)
//! - `POST /_proxy/unreachable` with `true`/`false` (204)
//! - `GET /_proxy/stats` → [`Stats`]

use std::collections::BTreeMap;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::faults::{Fault, Faults, Match, Rule, RuleId};
use crate::response::{Body, empty, json_response, json_with_status};

pub(crate) const PREFIX: &str = "/_proxy";

/// Body of `POST /_proxy/rules`, e.g.
/// `{"method":"eth_getTransactionReceipt","match":{"first_param":"0x.."},
/// "fault":"hang","times":null}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub method: String,
    /// Defaults to `"any"`.
    #[serde(rename = "match", default)]
    pub matcher: MatchSpec,
    pub fault: FaultSpec,
    /// `null` or absent: until removed.
    #[serde(default)]
    pub times: Option<u64>,
}

/// `"any"`, `{"first_param":"0x.."}` or `{"first_param_not":"0x.."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchSpec {
    #[default]
    Any,
    FirstParam(String),
    FirstParamNot(String),
}

/// `"null"`, `"hang"`, `"http503"`, `{"lag_blocks":3}` or
/// `{"error":{"code":-32000,"message":"x"}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultSpec {
    Null,
    Hang,
    Http503,
    LagBlocks(u64),
    Error { code: i64, message: String },
}

/// Answer of `POST /_proxy/rules`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    pub id: u64,
}

/// Answer of `GET /_proxy/stats`: calls per method, and hits per rule id
/// (every rule ever added, removed ones included).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub calls: BTreeMap<String, u64>,
    #[serde(default)]
    pub hits: BTreeMap<u64, u64>,
}

impl From<RuleSpec> for Rule {
    fn from(spec: RuleSpec) -> Self {
        Self {
            method: spec.method,
            matcher: match spec.matcher {
                MatchSpec::Any => Match::Any,
                MatchSpec::FirstParam(value) => Match::FirstParam(value),
                MatchSpec::FirstParamNot(value) => Match::FirstParamNot(value),
            },
            fault: match spec.fault {
                FaultSpec::Null => Fault::NullResult,
                FaultSpec::Hang => Fault::Hang,
                FaultSpec::Http503 => Fault::Http503,
                FaultSpec::LagBlocks(n) => Fault::LagBlocks(n),
                FaultSpec::Error { code, message } => {
                    Fault::Error { code, message }
                }
            },
            times: spec.times,
        }
    }
}

pub(crate) async fn handle(
    faults: &Faults,
    request: Request<Incoming>,
) -> Response<Body> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            return bad_request(&format!("reading the body: {error}"));
        }
    };
    let route = path
        .strip_prefix(PREFIX)
        .unwrap_or_default()
        .trim_end_matches('/');
    match (&method, route) {
        (&Method::POST, "/rules") => {
            match serde_json::from_slice::<RuleSpec>(&body) {
                Ok(spec) => {
                    let id = faults.add(spec.into());
                    json_value(&Created { id: id.get() })
                }
                Err(error) => bad_request(&format!("invalid rule: {error}")),
            }
        }
        (&Method::DELETE, "/rules") => {
            faults.clear();
            empty(StatusCode::NO_CONTENT)
        }
        (&Method::POST, "/unreachable") => {
            match serde_json::from_slice::<bool>(&body) {
                Ok(down) => {
                    faults.set_unreachable(down);
                    empty(StatusCode::NO_CONTENT)
                }
                Err(error) => {
                    bad_request(&format!("expected true or false: {error}"))
                }
            }
        }
        (&Method::GET, "/stats") => json_value(&Stats {
            calls: faults.all_calls().into_iter().collect(),
            hits: faults
                .all_hits()
                .into_iter()
                .map(|(id, hits)| (id.get(), hits))
                .collect(),
        }),
        (&Method::DELETE, rule) if rule.starts_with("/rules/") => {
            remove(faults, rule.strip_prefix("/rules/").unwrap_or_default())
        }
        _ => json_with_status(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("no control route {method} {path}") }),
        ),
    }
}

fn remove(faults: &Faults, id: &str) -> Response<Body> {
    match id.parse::<u64>() {
        Ok(id) if faults.remove_rule(RuleId::from_raw(id)) => {
            empty(StatusCode::NO_CONTENT)
        }
        Ok(id) => json_with_status(
            StatusCode::NOT_FOUND,
            &json!({ "error": format!("no rule {id}") }),
        ),
        Err(error) => bad_request(&format!("invalid rule id: {error}")),
    }
}

fn json_value<T: Serialize>(value: &T) -> Response<Body> {
    match serde_json::to_value(value) {
        Ok(value) => json_response(&value),
        Err(error) => json_with_status(
            StatusCode::INTERNAL_SERVER_ERROR,
            &json!({ "error": error.to_string() }),
        ),
    }
}

fn bad_request(message: &str) -> Response<Body> {
    json_with_status(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_rule_shapes() {
        let spec: RuleSpec = serde_json::from_str(
            r#"{"method":"eth_getTransactionReceipt",
                "match":{"first_param":"0xab"},"fault":"hang","times":3}"#,
        )
        .unwrap();
        assert_eq!(spec.matcher, MatchSpec::FirstParam("0xab".into()));
        assert_eq!(spec.fault, FaultSpec::Hang);
        assert_eq!(spec.times, Some(3));

        let spec: RuleSpec = serde_json::from_str(
            r#"{"method":"m","match":"any","fault":{"lag_blocks":3},"times":null}"#,
        )
        .unwrap();
        assert_eq!(spec.matcher, MatchSpec::Any);
        assert_eq!(spec.fault, FaultSpec::LagBlocks(3));
        assert_eq!(spec.times, None);

        let spec: RuleSpec = serde_json::from_str(
            r#"{"method":"m","match":{"first_param_not":"0x1"},
                "fault":{"error":{"code":-32000,"message":"x"}}}"#,
        )
        .unwrap();
        assert_eq!(spec.matcher, MatchSpec::FirstParamNot("0x1".into()));
        assert_eq!(
            spec.fault,
            FaultSpec::Error {
                code: -32000,
                message: "x".into()
            }
        );

        for (text, fault) in [
            ("\"null\"", FaultSpec::Null),
            ("\"http503\"", FaultSpec::Http503),
        ] {
            let spec: RuleSpec = serde_json::from_str(&format!(
                r#"{{"method":"m","fault":{text}}}"#
            ))
            .unwrap();
            assert_eq!(spec.fault, fault);
            assert_eq!(spec.matcher, MatchSpec::Any);
        }
    }
}
