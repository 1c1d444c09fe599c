//! A worker on a fake host, configured like the shipped examples, and tokens for it.

use std::cell::RefCell;
use std::rc::Rc;

use jwt_simple::prelude::*;
use mcp_auth_core::config::Config;
use mcp_auth_core::testing::{jwks, rsa, rsa_jwk};
use serde_json::{json, Value};

use crate::filter::host::fake::{FakeHost, FakeReply, FakeSharedData, SentCall};
use crate::filter::host::{ContextId, Host};
use crate::filter::worker::{BodyVerdict, Forwarding, Outcome, Verdict, Worker};

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
    pin_to_now(&mut claims);
    claims
}

/// Issued and valid from NOW_MS, expiring five minutes later: every time claim fixed, so that
/// two tokens minted for the same claims are byte-identical (jwt-simple's defaults read the
/// wall clock, and a second boundary between two mints would make them differ).
pub fn pin_to_now<T>(claims: &mut JWTClaims<T>) {
    let now = NOW_MS / 1000;
    claims.issued_at = Some(UnixTimeStamp::from_secs(now));
    claims.invalid_before = Some(UnixTimeStamp::from_secs(now));
    claims.expires_at = Some(UnixTimeStamp::from_secs(now + 300));
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

/// The VM environment variable that holds the fixtures' client secrets.
pub const FIXTURE_SECRET_ENV: &str = "FIXTURE_CLIENT_SECRET";

/// A provider whose opaque tokens are introspected at cluster `idp` (RFC 7662).
pub fn introspection_config() -> Value {
    json!({
        "resource": RESOURCE,
        "providers": {"idp": {
            "issuer": ISS,
            "introspection": {
                "endpoint": {"uri": "https://idp.example.com/introspect", "cluster": "idp", "timeout": "2s"},
                "client_auth": {"client_id": "mcp-filter", "client_secret_env": FIXTURE_SECRET_ENV},
                "cache_duration": "60s",
                "negative_cache_duration": "10s"
            },
            "claim_to_headers": [{"header_name": "x-user", "claim_name": "sub"}]
        }}
    })
}

/// An active introspection answer for `sub`, valid five minutes from NOW_MS.
pub fn active_answer(sub: &str) -> Vec<u8> {
    json!({"active": true, "sub": sub, "iss": ISS, "aud": RESOURCE,
           "scope": "mcp:tools:call", "exp": NOW_MS / 1000 + 300})
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
        let env = |name: &str| (name == FIXTURE_SECRET_ENV).then(|| "fixture-secret".to_string());
        let config = Config::from_json_with_env(config.to_string().as_bytes(), &env).unwrap();
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
        let verdict = self.worker.on_request(&mut self.host, context, head, true);
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
        Verdict::Parked | Verdict::AwaitBody => {
            panic!("expected a decision, the request is paused: {verdict:?}")
        }
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

/// An MCP configuration: local keys (no fetch), an exchange, and the BigQuery rules.
pub fn mcp_config() -> Value {
    let mut config = exchange_config();
    config["providers"]["idp"]
        .as_object_mut()
        .unwrap()
        .remove("remote_jwks");
    config["providers"]["idp"]["local_jwks"] =
        json!({"inline_string": String::from_utf8(good_jwks()).unwrap()});
    config["scopes_supported"] = json!(["mcp:tools:call", "bigquery:read", "bigquery:write"]);
    config["mcp"] = json!({
        "filter_lists": true,
        "default_action": "deny",
        "rules": [
            {"name": "read", "methods": ["tools/call"], "names": ["query_*"],
             "required_scopes": ["bigquery:read"],
             "exchange": {"scopes": ["bigquery.readonly"]}},
            {"name": "admins-only", "methods": ["tools/call"], "names": ["drop_*"],
             "claims": [{"claim": "groups", "contains": "dba"}],
             "required_scopes": ["bigquery:write"],
             "exchange": {"scopes": ["bigquery.write"]}}
        ]
    });
    config
}

/// A token for `sub` with these scopes and groups.
pub fn token_with(sub: &str, scopes: &[&str], groups: &[&str]) -> String {
    let mut claims = Claims::with_custom_claims(
        json!({"scp": scopes, "groups": groups}),
        Duration::from_secs(300),
    )
    .with_issuer(ISS)
    .with_audience(RESOURCE)
    .with_subject(sub);
    pin_to_now(&mut claims);
    rsa().sign(claims).unwrap()
}

pub fn tools_call(id: u32, name: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{"sql":"select secret"}}}}}}"#
    )
}

impl Rig {
    /// A POST to /mcp bearing `token` with `body`, delivered in `chunks` pieces.
    pub fn post(&mut self, token: &str, body: &str, chunks: usize) -> (ContextId, Verdict) {
        self.next_context += 1;
        let authorization = format!("Bearer {token}");
        let length = body.len().to_string();
        let headers = [
            (":method", "POST"),
            (":path", "/mcp"),
            ("authorization", authorization.as_str()),
            ("content-type", "application/json"),
            ("content-length", length.as_str()),
        ];
        let context = self.host.open_stream(self.next_context, &headers);
        let head = crate::filter::request::RequestHead::from_headers(
            &self.host.request_headers().unwrap(),
        );
        let verdict = self.worker.on_request(&mut self.host, context, head, false);
        if verdict != Verdict::AwaitBody {
            return (context, verdict);
        }
        let bytes = body.as_bytes();
        let step = bytes.len().div_ceil(chunks.max(1)).max(1);
        let mut sent = 0;
        loop {
            sent = (sent + step).min(bytes.len());
            let end = sent == bytes.len();
            if let Some(stream) = self.host.streams.get_mut(&context) {
                stream.request_body = bytes[..sent].to_vec();
            }
            self.host.effective = Some(context);
            match self
                .worker
                .on_request_body(&mut self.host, context, sent, end)
            {
                BodyVerdict::Decided(Verdict::AwaitBody) if !end => continue,
                BodyVerdict::Decided(verdict) => return (context, verdict),
                BodyVerdict::Continue => panic!("the gate let the body through unread"),
            }
        }
    }

    /// The upstream answers `context` with `content_type` and `body` in `chunks` pieces;
    /// returns what the client receives.
    pub fn respond(
        &mut self,
        context: ContextId,
        content_type: &str,
        body: &[u8],
        chunks: usize,
    ) -> (Vec<u8>, Option<String>) {
        self.host.effective = Some(context);
        let stream = self.host.streams.get_mut(&context).unwrap();
        stream.response_headers = vec![
            (":status".into(), "200".into()),
            ("content-type".into(), content_type.into()),
            ("content-length".into(), body.len().to_string()),
        ];
        let step = self.worker.on_response_headers(&mut self.host, context);
        let buffered = step == crate::filter::mcp::ResponseStep::Buffer;
        let mut received = Vec::new();
        let piece = body.len().div_ceil(chunks.max(1)).max(1);
        let mut sent = 0;
        while sent < body.len() {
            let next = (sent + piece).min(body.len());
            let end = next == body.len();
            let stream = self.host.streams.get_mut(&context).unwrap();
            if buffered {
                stream.response_body = body[..next].to_vec();
            } else {
                stream.response_body = body[sent..next].to_vec();
            }
            let size = stream.response_body.len();
            let step = self
                .worker
                .on_response_body(&mut self.host, context, size, end);
            if step == crate::filter::mcp::ResponseStep::Continue {
                received.extend(self.host.stream(context).response_body.clone());
            }
            sent = next;
        }
        let length = self
            .host
            .stream(context)
            .response_headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .map(|(_, v)| v.clone());
        (received, length)
    }
}

impl Rig {
    /// A POST to /mcp whose body never comes.
    pub fn request_head_only(&mut self, token: &str) -> (ContextId, Verdict) {
        self.next_context += 1;
        let authorization = format!("Bearer {token}");
        let headers = [
            (":method", "POST"),
            (":path", "/mcp"),
            ("authorization", authorization.as_str()),
            ("content-type", "application/json"),
        ];
        let context = self.host.open_stream(self.next_context, &headers);
        let head = crate::filter::request::RequestHead::from_headers(
            &self.host.request_headers().unwrap(),
        );
        let verdict = self.worker.on_request(&mut self.host, context, head, false);
        (context, verdict)
    }
}
