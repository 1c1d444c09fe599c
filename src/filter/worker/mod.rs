//! One Envoy worker's filter state, shared by its root context and its HTTP contexts, and the
//! request flow: headers → decide (waiting for keys if needed) → exchange (waiting for the STS
//! if needed) → forward with the headers rewritten, or answer.
//!
//! The worker composes parts that own their state: the authenticator, the keys, the token
//! exchanges, the callouts in flight, the parked requests and the audit log. A callout's reply
//! reaches the context that dispatched it (root or HTTP); whichever it is, the reply comes here
//! and the requests waiting on it are decided again. Those decisions are returned to the
//! caller, which acts on their contexts once this state is no longer borrowed (acting on a
//! request can call back into the VM).

//!
//! The flow is split by step: `decide` (headers and body → a decision, waits), `conclude` (a
//! final decision → metrics, audit, outcome), `wake` (callout replies and the tick decide the
//! waiting requests again).

mod conclude;
mod decide;
mod wake;

use std::rc::Rc;
use std::time::Duration;

use mcp_auth_core::audit::Outcome as AuditOutcome;
use mcp_auth_core::authenticator::{
    Authenticated, Authenticator, Decision, Denial, IntrospectionNeed, KeyNeed, KeyNeedKind,
    Vouched,
};
use mcp_auth_core::config::Config;
use mcp_auth_core::introspection::IntrospectionFailure;
use mcp_auth_core::jwks_cache::FetchReason;
use mcp_auth_core::mcp::gate::Refusal;
use mcp_auth_core::response::{DenyReason, LocalResponse};
use mcp_auth_core::token_cache::Identity;
use mcp_auth_core::token_exchange::{ExchangeFailure, TokenExchanger};

use crate::filter::audit_log::{AuditFacts, AuditLog, ExchangeUse};
use crate::filter::callouts::{Callouts, Purpose};
use crate::filter::exchange::{Exchanges, Settled};
use crate::filter::host::{CalloutToken, ContextId, Host};
use crate::filter::introspection::{Answered, Introspections};
use crate::filter::keys::{AfterReply, FetchWait, KeyLoader};
use crate::filter::mcp::{McpSide, ResponseStep};
use crate::filter::metrics::Metrics;
use crate::filter::parking::{Parked, Parking, WaitingFor};
use crate::filter::pending::{McpPassed, PendingRequest};
use crate::filter::request::RequestHead;

/// The root's tick: background refreshes and deadlines.
pub const TICK: Duration = Duration::from_secs(1);
/// The tick while requests wait for another worker's fetch or exchange: how soon they see its
/// result in shared data.
pub const FAST_TICK: Duration = Duration::from_millis(50);

/// Forward upstream after removing `remove` (and `remove_also`) and setting `set`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forwarding {
    pub remove: Rc<[String]>,
    /// This request's own spellings of the removed headers (`x_mcp_user_sub`), which a
    /// CGI-style server would read as the same header.
    pub remove_also: Vec<String>,
    pub set: Vec<(String, String)>,
}

/// The end of a request's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Forward(Forwarding),
    Respond(LocalResponse),
}

/// What to do with a new request: act now, or leave it paused (parked, or its body awaited).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Done(Outcome),
    Parked,
    /// The MCP gate needs the whole body first: keep buffering it.
    AwaitBody,
}

/// What to do with a request body chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyVerdict {
    /// Not a body the filter reads: let it through.
    Continue,
    Decided(Verdict),
}

/// Whether a request may start a key fetch to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyWait {
    MayFetch,
    /// It already waited once: a second wait after a failed fetch would loop.
    AlreadyWaited,
}

/// A decision with nothing left to wait for.
enum Final {
    Metadata(LocalResponse),
    Bypass,
    Allow {
        authenticated: Authenticated,
        /// The upstream token's header, and the STS latency when just obtained.
        upstream: Option<((String, String), Option<u64>)>,
    },
    Deny(Denial),
    /// Refused by the MCP gate (after the caller was authenticated, when it was).
    McpRefused {
        caller: Option<Rc<Identity>>,
        token_hash: Option<mcp_auth_core::cache::Digest>,
        refusal: Box<Refusal>,
    },
}

pub struct Worker {
    auth: Authenticator,
    keys: KeyLoader,
    exchanges: Option<Exchanges>,
    introspections: Option<Introspections>,
    mcp: Option<McpSide>,
    metrics: Metrics,
    callouts: Callouts,
    parking: Parking,
    audit: AuditLog,
    /// Request headers removed before forwarding (built once from the configuration).
    stripped: Rc<[String]>,
    /// The tick period asked of the host last.
    tick: Option<Duration>,
}

impl Worker {
    pub fn new(config: Config, host: &mut impl Host) -> Worker {
        let me = host.random_u64();
        let mut worker = Worker {
            stripped: config.stripped_headers.clone().into(),
            keys: KeyLoader::new(&config, me),
            exchanges: config
                .token_exchange
                .clone()
                .map(|c| Exchanges::new(TokenExchanger::new(c), me)),
            introspections: Introspections::new(&config, me),
            mcp: McpSide::new(&config, host),
            auth: Authenticator::new(config),
            metrics: Metrics::define(host),
            callouts: Callouts::default(),
            parking: Parking::default(),
            audit: AuditLog::default(),
            tick: None,
        };
        worker.sync_tick(host);
        worker
    }

    /// Asks the host for the tick this worker needs now: none without remote keys, exchanges
    /// or introspection, fast while requests wait on another worker, else once a second.
    pub(super) fn sync_tick(&mut self, host: &mut impl Host) {
        let needs_tick = self.exchanges.is_some()
            || self.introspections.is_some()
            || !self.keys.remote_providers().is_empty();
        if !needs_tick {
            return;
        }
        let watching = self.keys.watching()
            || self.exchanges.as_ref().is_some_and(Exchanges::watching)
            || self
                .introspections
                .as_ref()
                .is_some_and(Introspections::watching);
        let period = if watching { FAST_TICK } else { TICK };
        if self.tick != Some(period) {
            host.set_tick_period(period);
            self.tick = Some(period);
        }
    }

    /// Decides a new request whose headers just arrived (`end_of_stream`: it has no body).
    pub fn on_request(
        &mut self,
        host: &mut impl Host,
        context: ContextId,
        head: RequestHead,
        end_of_stream: bool,
    ) -> Verdict {
        let request = PendingRequest {
            context,
            head,
            started: host.now(),
            body: end_of_stream.then(|| Rc::from(Vec::new())),
            mcp: None,
        };
        let verdict = self.evaluate(host, request, context, KeyWait::MayFetch);
        self.sync_tick(host);
        verdict
    }

    /// Logs the audit line of a request that ended, with the status the client got.
    pub fn finish_audit(
        &mut self,
        context: ContextId,
        status: impl FnOnce() -> Option<u32>,
        host: &impl Host,
    ) {
        self.audit.finish(context, status, host.now());
    }

    /// An HTTP context ended. Its parked request is dropped; a callout it owned will never
    /// deliver its reply, so the root sends it again on the next tick (keeping its place:
    /// a client that goes away can neither cancel a refetch nor spend its rate limit).
    pub fn on_context_gone(&mut self, host: &mut impl Host, context: ContextId) {
        // A request that ended without `on_log` (client gone while it waited) is still audited.
        self.audit.finish(context, || None, host.now());
        self.parking.remove(context);
        if let Some(mcp) = self.mcp.as_mut() {
            mcp.forget(context);
        }
        for purpose in self.callouts.take_owned_by(context) {
            match purpose {
                Purpose::Keys { provider, .. } => self.keys.orphan(provider),
                Purpose::Exchange { key } => {
                    if let Some(x) = self.exchanges.as_mut() {
                        x.orphan(&key);
                    }
                }
                Purpose::Introspection { key } => {
                    if let Some(x) = self.introspections.as_mut() {
                        x.orphan(&key);
                    }
                }
            }
        }
    }

    /// Response headers: a list result to filter may need its whole body buffered.
    pub fn on_response_headers(
        &mut self,
        host: &mut impl Host,
        context: ContextId,
    ) -> ResponseStep {
        match self.mcp.as_mut() {
            Some(mcp) => mcp.on_response_headers(host, context),
            None => ResponseStep::Continue,
        }
    }

    /// A response body chunk: list results are filtered on their way back.
    pub fn on_response_body(
        &mut self,
        host: &mut impl Host,
        context: ContextId,
        body_size: usize,
        end_of_stream: bool,
    ) -> ResponseStep {
        match self.mcp.as_mut() {
            Some(mcp) => mcp.on_response_body(host, context, body_size, end_of_stream),
            None => ResponseStep::Continue,
        }
    }
}
