//! JSON-RPC helpers: reading calls, building answers, block-tag rewriting
//! and merging batch answers.

use serde_json::{Map, Value};

pub(crate) const BLOCK_NUMBER: &str = "eth_blockNumber";
const LATEST: &str = "latest";

/// The call's method name, if it is a JSON-RPC call object.
pub(crate) fn method(call: &Value) -> Option<&str> {
    call.get("method").and_then(Value::as_str)
}

/// `{"jsonrpc":"2.0","id":<call id>,<key>:<value>}`; `None` for a
/// notification (a call without an id gets no answer).
pub(crate) fn answer(call: &Value, key: &str, value: Value) -> Option<Value> {
    let id = call.get("id")?.clone();
    let mut answer = Map::new();
    answer.insert("jsonrpc".into(), Value::String("2.0".into()));
    answer.insert("id".into(), id);
    answer.insert(key.into(), value);
    Some(Value::Object(answer))
}

/// Whether any string in `params` (at any depth) is the block tag "latest".
pub(crate) fn contains_latest(params: &Value) -> bool {
    match params {
        Value::String(tag) => tag == LATEST,
        Value::Array(items) => items.iter().any(contains_latest),
        Value::Object(fields) => fields.values().any(contains_latest),
        _ => false,
    }
}

/// Replaces every "latest" string in `params` by `block`.
pub(crate) fn replace_latest(params: &mut Value, block: &str) {
    match params {
        Value::String(tag) if tag == LATEST => {
            block.clone_into(tag);
        }
        Value::Array(items) => {
            for item in items {
                replace_latest(item, block);
            }
        }
        Value::Object(fields) => {
            for value in fields.values_mut() {
                replace_latest(value, block);
            }
        }
        _ => {}
    }
}

/// A JSON-RPC quantity ("0x1a").
pub(crate) fn parse_quantity(hex: &str) -> Option<u64> {
    let digits = hex.strip_prefix("0x")?;
    u64::from_str_radix(digits, 16).ok()
}

/// Rewrites an eth_blockNumber answer to (head - n), saturating.
pub(crate) fn lag_block_number(answer: &mut Value, n: u64) {
    let Some(result) = answer.get_mut("result") else {
        return;
    };
    if let Some(head) = result.as_str().and_then(parse_quantity) {
        *result = Value::String(format!("{:#x}", head.saturating_sub(n)));
    }
}

/// One call of a batch, for merging the answers.
pub(crate) enum Slot {
    /// Answered by the proxy (`None`: a notification).
    Local(Option<Value>),
    /// Sent upstream; `id` is `None` for a notification.
    Forwarded {
        id: Option<Value>,
        lag_answer: Option<u64>,
    },
}

/// The batch answer in the order of the calls: local answers in place,
/// upstream answers matched by id; upstream answers that match no call
/// (e.g. errors for invalid elements, id null) come last.
pub(crate) fn merge(slots: Vec<Slot>, upstream: Vec<Value>) -> Vec<Value> {
    let mut upstream: Vec<Option<Value>> =
        upstream.into_iter().map(Some).collect();
    let mut merged = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Slot::Local(answer) => merged.extend(answer),
            Slot::Forwarded { id: None, .. } => {}
            Slot::Forwarded {
                id: Some(id),
                lag_answer,
            } => {
                let found = upstream.iter_mut().find(|answer| {
                    answer
                        .as_ref()
                        .is_some_and(|answer| answer.get("id") == Some(&id))
                });
                if let Some(mut answer) = found.and_then(Option::take) {
                    if let Some(n) = lag_answer {
                        lag_block_number(&mut answer, n);
                    }
                    merged.push(answer);
                }
            }
        }
    }
    merged.extend(upstream.into_iter().flatten());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn replaces_latest_at_any_depth() {
        let mut params = json!([{"to": "0x01", "data": "0x"}, "latest", {"toBlock": "latest"}]);
        assert!(contains_latest(&params));
        replace_latest(&mut params, "0x5");
        assert_eq!(
            params,
            json!([{"to": "0x01", "data": "0x"}, "0x5", {"toBlock": "0x5"}])
        );
        assert!(!contains_latest(&params));
    }

    #[test]
    fn lags_block_numbers_saturating() {
        let mut answer = json!({"jsonrpc": "2.0", "id": 1, "result": "0x10"});
        lag_block_number(&mut answer, 3);
        assert_eq!(answer["result"], "0xd");
        lag_block_number(&mut answer, 100);
        assert_eq!(answer["result"], "0x0");
    }

    #[test]
    fn merges_by_id_keeping_call_order() {
        let slots = vec![
            Slot::Forwarded {
                id: Some(json!(1)),
                lag_answer: None,
            },
            Slot::Local(Some(json!({"id": 2, "result": null}))),
            Slot::Forwarded {
                id: None,
                lag_answer: None,
            },
            Slot::Forwarded {
                id: Some(json!("three")),
                lag_answer: Some(1),
            },
        ];
        let upstream = vec![
            json!({"id": "three", "result": "0x2"}),
            json!({"id": null, "error": {"code": -32600}}),
            json!({"id": 1, "result": "0x1"}),
        ];
        assert_eq!(
            merge(slots, upstream),
            vec![
                json!({"id": 1, "result": "0x1"}),
                json!({"id": 2, "result": null}),
                json!({"id": "three", "result": "0x1"}),
                json!({"id": null, "error": {"code": -32600}}),
            ]
        );
    }
}
