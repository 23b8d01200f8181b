//! The fault rules and the shared state behind [`Faults`].

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::watch;

/// Identifies a rule added with [`Faults::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleId(u64);

impl RuleId {
    /// The numeric id, as used by the control API (`DELETE /_proxy/rules/N`).
    pub fn get(self) -> u64 {
        self.0
    }

    pub(crate) fn from_raw(raw: u64) -> Self {
        Self(raw)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A fault applied to the calls of one JSON-RPC method.
#[derive(Debug, Clone)]
pub struct Rule {
    pub method: String,
    pub matcher: Match,
    pub fault: Fault,
    /// How many calls the rule rewrites; `None` = until removed.
    pub times: Option<u64>,
}

impl Rule {
    /// A rule for every call of `method` ([`Match::Any`]), until removed.
    pub fn new(method: &str, fault: Fault) -> Self {
        Self {
            method: method.to_owned(),
            matcher: Match::Any,
            fault,
            times: None,
        }
    }

    #[must_use]
    pub fn matching(self, matcher: Match) -> Self {
        Self { matcher, ..self }
    }

    /// Rewrites only the next `n` matching calls (then the rule stays in
    /// place, inert, until removed: a call it hung stays hung until then).
    #[must_use]
    pub fn times(self, n: u64) -> Self {
        Self {
            times: Some(n),
            ..self
        }
    }
}

/// Which calls of the rule's method the rule applies to.
#[derive(Debug, Clone)]
pub enum Match {
    Any,
    /// The first param is a string equal (ASCII case-insensitive) to this,
    /// e.g. a tx hash.
    FirstParam(String),
    /// The first param is NOT a string equal (ASCII case-insensitive) to
    /// this (for "hang every receipt except X"). A call without a string
    /// first param matches.
    FirstParamNot(String),
}

impl Match {
    pub(crate) fn matches(&self, params: Option<&Value>) -> bool {
        let first = params
            .and_then(|params| match params {
                Value::Array(items) => items.first(),
                _ => None,
            })
            .and_then(Value::as_str);
        match self {
            Self::Any => true,
            Self::FirstParam(want) => {
                first.is_some_and(|got| got.eq_ignore_ascii_case(want))
            }
            Self::FirstParamNot(want) => {
                !first.is_some_and(|got| got.eq_ignore_ascii_case(want))
            }
        }
    }
}

/// What the proxy does to a matching call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer `{"jsonrpc":"2.0","id":<same id>,"result":null}` without asking
    /// upstream (a lying/lagging backend that does not know the tx).
    NullResult,
    /// Never answer (until the rule is removed, `clear()`, or shutdown; then
    /// forward normally), i.e. a hung RPC call.
    Hang,
    /// For `eth_blockNumber`: forward, then answer (head - n) saturating, as
    /// a lagging backend. For other methods whose params contain the block
    /// tag "latest": replace "latest" by the hex block (head - n), so
    /// `eth_getTransactionCount`/`eth_getBalance`/`eth_call` see old state.
    /// A call of another method without a "latest" param does not match.
    LagBlocks(u64),
    /// Answer a JSON-RPC error object `{"code":code,"message":message}` with
    /// HTTP 200.
    Error { code: i64, message: String },
    /// Answer HTTP 503 with an empty body.
    Http503,
}

struct Entry {
    id: RuleId,
    rule: Rule,
    remaining: Option<u64>,
}

#[derive(Default)]
struct Tables {
    rules: Vec<Entry>,
    hits: HashMap<RuleId, u64>,
    calls: HashMap<String, u64>,
}

pub(crate) struct State {
    tables: Mutex<Tables>,
    next_id: AtomicU64,
    unreachable: watch::Sender<bool>,
    /// Bumped whenever a rule goes away or the proxy shuts down, so hung
    /// calls re-check whether they are released.
    released: watch::Sender<u64>,
    shut_down: AtomicBool,
}

/// Cheap, cloneable handle on the proxy's fault rules and counters.
#[derive(Clone)]
pub struct Faults {
    pub(crate) state: Arc<State>,
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Faults")
            .field("unreachable", &self.is_unreachable())
            .finish_non_exhaustive()
    }
}

/// The decision for one JSON-RPC call.
pub(crate) struct Applied {
    pub id: RuleId,
    pub fault: Fault,
}

impl Faults {
    pub(crate) fn new() -> Self {
        Self {
            state: Arc::new(State {
                tables: Mutex::new(Tables::default()),
                next_id: AtomicU64::new(1),
                unreachable: watch::Sender::new(false),
                released: watch::Sender::new(0),
                shut_down: AtomicBool::new(false),
            }),
        }
    }

    fn tables(&self) -> MutexGuard<'_, Tables> {
        // The tables stay consistent even if a holder panicked: every
        // critical section is a single insert/remove/increment.
        self.state
            .tables
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a rule after the existing ones (rules are checked in insertion
    /// order; the first matching rule with remaining `times` applies).
    pub fn add(&self, rule: Rule) -> RuleId {
        let id = RuleId(self.state.next_id.fetch_add(1, Ordering::Relaxed));
        let mut tables = self.tables();
        tables.hits.insert(id, 0);
        tables.rules.push(Entry {
            id,
            remaining: rule.times,
            rule,
        });
        id
    }

    /// Removes a rule; calls it hung are released and forwarded normally.
    pub fn remove(&self, id: RuleId) {
        self.remove_rule(id);
    }

    /// Like [`Faults::remove`]; false when no such rule was in place.
    pub(crate) fn remove_rule(&self, id: RuleId) -> bool {
        let removed = {
            let mut tables = self.tables();
            let before = tables.rules.len();
            tables.rules.retain(|entry| entry.id != id);
            tables.rules.len() != before
        };
        if removed {
            self.state.released.send_modify(|n| *n = n.wrapping_add(1));
        }
        removed
    }

    /// Removes every rule and releases every hung call.
    pub fn clear(&self) {
        self.tables().rules.clear();
        self.state.released.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// How many calls this rule has rewritten (kept after the rule is
    /// removed; 0 for an unknown id).
    pub fn hits(&self, id: RuleId) -> u64 {
        self.tables().hits.get(&id).copied().unwrap_or(0)
    }

    /// How many calls of this method passed through the proxy (faulted or
    /// not; each element of a batch counts).
    pub fn calls(&self, method: &str) -> u64 {
        self.tables().calls.get(method).copied().unwrap_or(0)
    }

    /// Every method seen so far with its call count.
    pub fn all_calls(&self) -> HashMap<String, u64> {
        self.tables().calls.clone()
    }

    /// The hit count of every rule ever added.
    pub fn all_hits(&self) -> HashMap<RuleId, u64> {
        self.tables().hits.clone()
    }

    /// While true, JSON-RPC connections are closed without an answer (TCP
    /// reset), new and existing ones alike, like a dead node.
    pub fn set_unreachable(&self, down: bool) {
        self.state.unreachable.send_replace(down);
        tracing::debug!(
            target: "rpc_fault_proxy",
            unreachable = down,
            "unreachable mode changed"
        );
    }

    pub fn is_unreachable(&self) -> bool {
        *self.state.unreachable.borrow()
    }

    /// Resolves once the proxy is (or already was) unreachable.
    pub(crate) async fn until_unreachable(&self) {
        let mut rx = self.state.unreachable.subscribe();
        // The sender lives in `self.state`, so `wait_for` cannot fail; if it
        // did, never resolving is the right answer ("not unreachable").
        if rx.wait_for(|down| *down).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub(crate) fn shut_down(&self) {
        self.state.shut_down.store(true, Ordering::SeqCst);
        self.state.released.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Counts the call and picks the rule that applies to it, if any.
    /// `rewritable_lag` says whether a `LagBlocks` fault can rewrite this
    /// call (eth_blockNumber, or a "latest" tag in the params).
    pub(crate) fn apply(
        &self,
        method: &str,
        params: Option<&Value>,
        rewritable_lag: bool,
    ) -> Option<Applied> {
        let mut tables = self.tables();
        *tables.calls.entry(method.to_owned()).or_insert(0) += 1;
        let entry = tables.rules.iter_mut().find(|entry| {
            entry.rule.method == method
                && entry.remaining != Some(0)
                && entry.rule.matcher.matches(params)
                && (rewritable_lag
                    || !matches!(entry.rule.fault, Fault::LagBlocks(_)))
        })?;
        if let Some(remaining) = entry.remaining.as_mut() {
            *remaining -= 1;
        }
        let applied = Applied {
            id: entry.id,
            fault: entry.rule.fault.clone(),
        };
        *tables.hits.entry(applied.id).or_insert(0) += 1;
        Some(applied)
    }

    /// Resolves once the hang rule `id` no longer holds calls: it was
    /// removed or cleared, or the proxy shut down.
    pub(crate) async fn released(&self, id: RuleId) {
        let mut rx = self.state.released.subscribe();
        loop {
            let in_place = self.tables().rules.iter().any(|e| e.id == id);
            if !in_place || self.state.shut_down.load(Ordering::SeqCst) {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
