//! A worker on a fake host, configured like the shipped examples, and tokens for it.

use std::cell::RefCell;
use std::rc::Rc;

use jwt_simple::prelude::*;
use mcp_auth_core::config::Config;
use mcp_auth_core::testing::{jwks, rsa, rsa_jwk};
use serde_json::{json, Value};

use crate::filter::host::fake::{FakeHost, FakeReply, FakeSharedData, SentCall};
use crate::filter::host::{ContextId, Host};
use crate::filter::worker::{Forwarding, Outcome, Verdict, Worker};

pub const ISS: &str = "https://idp.example.com";
pub const RESOURCE: &str = "https://mcp.example.com/mcp";
pub const NOW_MS: u64 = 1_800_000_000_000;
pub const ROOT: ContextId = ContextId(1);

/// The inbound configuration: remote keys through cluster `idp`, one required scope.
pub fn inbound_config() -> Value {
    json!({
        "resource": RESOURCE,
        "required_scopes": ["mcp:tools:call"],
        "providers": {"idp": {
            "issuer": ISS,
            "remote_jwks": {
                "http_uri": {"uri": "https://idp.example.com/jwks", "cluster": "idp", "timeout": "2s"},
                "cache_duration": "600s",
                "unknown_kid_refetch_interval": "30s"
            },
            "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}]
        }}
    })
}

/// The inbound configuration plus an RFC 8693 exchange through cluster `sts`.
pub fn exchange_config() -> Value {
    let mut config = inbound_config();
    config["token_exchange"] = json!({
        "token_endpoint": {"uri": "https://sts.example.com/token", "cluster": "sts", "timeout": "2s"},
        "audience": "backend",
        "scopes": ["backend:read"],
        "client_auth": {"method": "none"}
    });
    config
}

#[derive(Serialize, Deserialize)]
pub struct Scopes {
    scp: Vec<String>,
}

/// Claims for `sub` from our issuer, valid for five minutes from NOW_MS.
pub fn claims_now(sub: &str) -> JWTClaims<Scopes> {
    let mut claims = Claims::with_custom_claims(
        Scopes {
            scp: vec!["mcp:tools:call".into()],
        },
        Duration::from_secs(300),
    )
    .with_issuer(ISS)
    .with_audience(RESOURCE)
    .with_subject(sub);
    let now = NOW_MS / 1000;
    claims.issued_at = Some(UnixTimeStamp::from_secs(now));
    claims.expires_at = Some(UnixTimeStamp::from_secs(now + 300));
    claims
}

/// A token for `sub`, signed with the fixture key `rsa-1`, valid for five minutes.
pub fn token_for(sub: &str) -> String {
    rsa().sign(claims_now(sub)).unwrap()
}

pub fn good_jwks() -> Vec<u8> {
    jwks(vec![rsa_jwk(rsa(), "rsa-1", None)])
}

pub fn sts_answer(token: &str) -> Vec<u8> {
    json!({"access_token": token, "token_type": "Bearer", "expires_in": 300})
        .to_string()
        .into_bytes()
}

/// One worker VM on a fake host.
pub struct Rig {
    pub host: FakeHost,
    pub worker: Worker,
    next_context: u32,
}

impl Rig {
    pub fn new(config: Value) -> Rig {
        Rig::on_shared(config, Rc::default())
    }

    /// A worker that shares its shared data with others (the same Envoy, another worker).
    pub fn on_shared(config: Value, shared: Rc<RefCell<FakeSharedData>>) -> Rig {
        let mut host = FakeHost::with_shared(NOW_MS, shared);
        let config = Config::from_json(config.to_string().as_bytes()).unwrap();
        let worker = Worker::new(config, &mut host);
        host.effective = Some(ROOT);
        Rig {
            host,
            worker,
            next_context: 10,
        }
    }

    /// A new request bearing `token` (None: no `Authorization`).
    pub fn request(&mut self, token: Option<&str>) -> (ContextId, Verdict) {
        self.next_context += 1;
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![(":method", "POST"), (":path", "/mcp")];
        if let Some(a) = &authorization {
            headers.push(("authorization", a.as_str()));
        }
        let context = self.host.open_stream(self.next_context, &headers);
        let head = crate::filter::request::RequestHead::from_headers(
            &self.host.request_headers().unwrap(),
        );
        let verdict = self.worker.on_request(&mut self.host, context, head);
        (context, verdict)
    }

    /// Delivers the reply to callout `call` to the context that sent it.
    pub fn deliver(&mut self, call: &SentCall, reply: FakeReply) -> Vec<(ContextId, Outcome)> {
        let owner = call.owner.unwrap();
        self.host.effective = Some(owner);
        let size = reply.body.len();
        self.host.reply = Some(reply);
        let decided = self
            .worker
            .on_callout_reply(&mut self.host, call.token, owner, size);
        self.host.reply = None;
        decided
    }

    pub fn tick(&mut self) -> Vec<(ContextId, Outcome)> {
        self.host.effective = Some(ROOT);
        self.worker.on_tick(&mut self.host, ROOT)
    }

    /// The client of `context` went away (its HTTP context is dropped).
    pub fn gone(&mut self, context: ContextId) {
        if let Some(stream) = self.host.streams.get_mut(&context) {
            stream.ended = true;
        }
        self.worker.on_context_gone(&mut self.host, context);
    }

    pub fn sent_to(&self, cluster: &str) -> Vec<SentCall> {
        self.host.sent_to(cluster).into_iter().cloned().collect()
    }
}

/// The forwarding of an outcome, or a panic naming what it was.
pub fn forwarded(outcome: &Outcome) -> &Forwarding {
    match outcome {
        Outcome::Forward(f) => f,
        Outcome::Respond(r) => panic!(
            "expected a forward, got {} {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        ),
    }
}

pub fn status(outcome: &Outcome) -> u32 {
    match outcome {
        Outcome::Respond(r) => r.status,
        Outcome::Forward(_) => 200,
    }
}

pub fn done(verdict: Verdict) -> Outcome {
    match verdict {
        Verdict::Done(o) => o,
        Verdict::Parked => panic!("expected a decision, the request was parked"),
    }
}

pub fn header<'a>(forwarding: &'a Forwarding, name: &str) -> Option<&'a str> {
    forwarding
        .set
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The outcome decided for `context` in a batch.
pub fn outcome_of(decided: &[(ContextId, Outcome)], context: ContextId) -> &Outcome {
    &decided
        .iter()
        .find(|(c, _)| *c == context)
        .unwrap_or_else(|| panic!("no outcome for {context:?} in {decided:?}"))
        .1
}
