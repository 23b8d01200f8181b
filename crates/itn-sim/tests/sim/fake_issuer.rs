//! A tiny issuer: records every call and answers from a script.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use itn_sim::Url;
use rocket::State;
use rocket::fairing::AdHoc;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::serde::json::Json;
use serde_json::{Value, json};
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) path: String,
    pub(crate) api_key: Option<String>,
    pub(crate) body: Value,
}

#[derive(Default)]
pub(crate) struct Script {
    pub(crate) calls: Vec<Call>,
    /// Statuses for successive confirmations; 200 once exhausted.
    pub(crate) confirm_statuses: VecDeque<u16>,
    /// Status and body of mint answers (default 200 created).
    pub(crate) mint_reply: Option<(u16, Value)>,
    pub(crate) minted: u32,
}

#[derive(Clone)]
pub(crate) struct FakeIssuer {
    pub(crate) url: Url,
    pub(crate) script: Arc<Mutex<Script>>,
    shutdown: rocket::Shutdown,
}

impl FakeIssuer {
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.script.lock().unwrap().calls.clone()
    }

    pub(crate) fn calls_to(&self, suffix: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|call| call.path.ends_with(suffix))
            .collect()
    }

    pub(crate) fn script_confirms(&self, statuses: &[u16]) {
        self.script
            .lock()
            .unwrap()
            .confirm_statuses
            .extend(statuses.iter().copied());
    }

    pub(crate) fn script_mint(&self, status: u16, body: Value) {
        self.script.lock().unwrap().mint_reply = Some((status, body));
    }

    pub(crate) fn stop(&self) {
        self.shutdown.clone().notify();
    }
}

struct ApiKey(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for ApiKey {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        Outcome::Success(Self(
            req.headers().get_one("X-API-KEY").map(str::to_owned),
        ))
    }
}

// Rocket guards are taken by value.
#[allow(clippy::needless_pass_by_value)]
#[rocket::post("/<path..>", data = "<body>")]
fn any(
    script: &State<Arc<Mutex<Script>>>,
    path: std::path::PathBuf,
    key: ApiKey,
    body: Json<Value>,
) -> (Status, Json<Value>) {
    let path = format!("/{}", path.display());
    let mut script = script.lock().unwrap();
    script.calls.push(Call {
        path: path.clone(),
        api_key: key.0,
        body: body.0.clone(),
    });
    if path.ends_with("connect") {
        let email = body.0["email"].as_str().unwrap_or_default().to_owned();
        let id = format!("issuer-id-{email}");
        // Answer under both names; the simulator reads the one its
        // wire version expects.
        return (
            Status::Ok,
            Json(json!({"client_id": id, "client_external_account_id": id})),
        );
    }
    if path.ends_with("confirm") {
        let status = script.confirm_statuses.pop_front().unwrap_or(200);
        if status == 200 {
            script.minted += 1;
        }
        return (Status::new(status), Json(json!({})));
    }
    if let Some((status, body)) = script.mint_reply.clone() {
        return (Status::new(status), Json(body));
    }
    let n = script.calls.len();
    (
        Status::Ok,
        Json(
            json!({"issuer_request_id": format!("iss-{n}"), "status": "created"}),
        ),
    )
}

#[allow(clippy::needless_pass_by_value)]
#[rocket::get("/<path..>")]
fn list(
    script: &State<Arc<Mutex<Script>>>,
    path: std::path::PathBuf,
    key: ApiKey,
) -> Json<Value> {
    let mut script = script.lock().unwrap();
    script.calls.push(Call {
        path: format!("/{}", path.display()),
        api_key: key.0,
        body: Value::Null,
    });
    Json(json!({"tokens": [
        {"underlying": "AAPL", "token": "tAAPL", "networks": ["base", "ethereum"]}
    ]}))
}

pub(crate) async fn spawn() -> FakeIssuer {
    let script = Arc::new(Mutex::new(Script::default()));
    let (tx, rx) = oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let config = rocket::Config {
        port: 0,
        log_level: rocket::config::LogLevel::Off,
        shutdown: rocket::config::Shutdown {
            ctrlc: false,
            grace: 1,
            mercy: 1,
            signals: std::collections::HashSet::default(),
            ..Default::default()
        },
        ..rocket::Config::default()
    };
    let rocket = rocket::custom(config)
        .manage(Arc::clone(&script))
        .mount("/", rocket::routes![any, list])
        .attach(AdHoc::on_liftoff("port", move |rocket| {
            let port = rocket.config().port;
            if let Some(tx) = tx.lock().unwrap().take() {
                tx.send(port).unwrap();
            }
            Box::pin(async {})
        }))
        .ignite()
        .await
        .unwrap();
    let shutdown = rocket.shutdown();
    tokio::spawn(rocket.launch());
    let port = rx.await.unwrap();
    FakeIssuer {
        url: Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        script,
        shutdown,
    }
}
