//! The proxy-wasm contexts, kept thin: read what the host gives, hand it to the [`Worker`],
//! act on what it decided.
//!
//! * [`Root`] (one per worker VM) loads the configuration, refuses to start on an invalid one,
//!   and ticks once a second for background key refreshes and deadlines.
//! * [`HttpFilter`] (one per request) reads the request head, asks the worker, and either
//!   forwards, answers, or pauses until what the request waits for arrives.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use mcp_auth_core::config::Config;

use crate::filter::host::{install_logger, CalloutToken, ContextId, Host, ProxyWasmHost};
use crate::filter::mcp::ResponseStep;
use crate::filter::outcome::{apply_outcome, apply_to_contexts, not_ready};
use crate::filter::request::RequestHead;
use crate::filter::worker::{BodyVerdict, Outcome, Verdict, Worker};

pub fn new_root(context_id: u32) -> Box<dyn RootContext> {
    install_logger(None);
    Box::new(Root {
        context: ContextId(context_id),
        shared: Shared::default(),
    })
}

/// The worker state, plus the contexts that ended while it was borrowed (a host call made on
/// behalf of one request can end another request's stream synchronously).
#[derive(Clone, Default)]
struct Shared {
    worker: Rc<RefCell<Option<Worker>>>,
    ended: Rc<RefCell<Vec<ContextId>>>,
}

impl Shared {
    /// Runs `f` on the worker state, after forgetting the contexts that ended meanwhile.
    fn with<T>(&self, f: impl FnOnce(&mut Worker, &mut ProxyWasmHost) -> T) -> Option<T> {
        let mut guard = self.worker.try_borrow_mut().ok()?;
        let worker = guard.as_mut()?;
        let mut host = ProxyWasmHost;
        if let Ok(mut ended) = self.ended.try_borrow_mut() {
            for id in ended.drain(..) {
                worker.on_context_gone(&mut host, id);
            }
        }
        Some(f(worker, &mut host))
    }

    /// A key or STS reply delivered to context `active` (root or HTTP): hand it to the worker,
    /// then act on the requests it decided.
    fn on_callout_reply(&self, token: u32, active: ContextId, body_size: usize) {
        let decided = self
            .with(|w, host| w.on_callout_reply(host, CalloutToken(token), active, body_size))
            .unwrap_or_default();
        apply_to_contexts(&mut ProxyWasmHost, decided, active);
    }
}

struct Root {
    context: ContextId,
    shared: Shared,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        self.shared.on_callout_reply(token, self.context, body);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let mut host = ProxyWasmHost;
        // Log at Envoy's level for this component: below info, no audit line is even built.
        install_logger(host.log_level());
        let bytes = host.plugin_configuration();
        // Secrets (the STS client secret) come from the VM's environment, never the document.
        let env = |name: &str| std::env::var(name).ok();
        let config = match Config::from_json_with_env(&bytes, &env) {
            Ok(c) => c,
            Err(e) => {
                log::error!("mcp_auth_filter: invalid configuration: {e}");
                return false;
            }
        };
        log::info!(
            "mcp_auth_filter: configured for resource {} with {} provider(s)",
            config.resource,
            config.providers.len()
        );
        for warning in &config.warnings {
            log::warn!("mcp_auth_filter: {warning}");
        }
        let worker = Worker::new(config, &mut host);
        let Ok(mut slot) = self.shared.worker.try_borrow_mut() else {
            log::error!("mcp_auth_filter: configuration arrived while the worker was busy");
            return false;
        };
        *slot = Some(worker);
        true
    }

    fn on_tick(&mut self) {
        let root = self.context;
        let decided = self
            .shared
            .with(|w, host| w.on_tick(host, root))
            .unwrap_or_default();
        apply_to_contexts(&mut ProxyWasmHost, decided, root);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HttpFilter {
            context: ContextId(context_id),
            shared: self.shared.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct HttpFilter {
    context: ContextId,
    shared: Shared,
}

impl Context for HttpFilter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body: usize,
        _trailers: usize,
    ) {
        self.shared.on_callout_reply(token, self.context, body);
    }
}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let mut host = ProxyWasmHost;
        // Fail closed when the head cannot be read: an empty head is refused for want of a token.
        let head = RequestHead::from_headers(&host.request_headers().unwrap_or_default());
        let context = self.context;
        let verdict = self
            .shared
            .with(|w, host| w.on_request(host, context, head, end_of_stream));
        match verdict {
            Some(verdict) => act(&mut host, verdict),
            None => {
                // No configuration (cannot happen once on_configure succeeded): fail closed.
                host.send_response(&not_ready());
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let mut host = ProxyWasmHost;
        let context = self.context;
        let verdict = self
            .shared
            .with(|w, host| w.on_request_body(host, context, body_size, end_of_stream));
        match verdict {
            Some(BodyVerdict::Decided(verdict)) => act(&mut host, verdict),
            Some(BodyVerdict::Continue) => Action::Continue,
            // The worker is busy with another host call: keep the body until it is not.
            None => Action::Pause,
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        let mut host = ProxyWasmHost;
        let context = self.context;
        let verdict = self
            .shared
            .with(|w, host| w.on_request_trailers(host, context));
        match verdict {
            Some(BodyVerdict::Decided(verdict)) => act(&mut host, verdict),
            Some(BodyVerdict::Continue) => Action::Continue,
            None => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let context = self.context;
        let step = self
            .shared
            .with(|w, host| w.on_response_headers(host, context));
        response_action(step)
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let context = self.context;
        let step = self
            .shared
            .with(|w, host| w.on_response_body(host, context, body_size, end_of_stream));
        response_action(step)
    }

    fn on_log(&mut self) {
        let context = self.context;
        let _ = self.shared.with(|w, host| {
            // Asked for only when there is an audit line to finish.
            let status = || {
                host.response_header(":status")
                    .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u32>().ok())
            };
            w.finish_audit(context, status, host);
        });
    }
}

/// Acts on a request's verdict in its own callback.
fn act(host: &mut ProxyWasmHost, verdict: Verdict) -> Action {
    match verdict {
        Verdict::Done(outcome @ Outcome::Forward(_)) => {
            apply_outcome(host, &outcome);
            Action::Continue
        }
        Verdict::Done(outcome @ Outcome::Respond(_)) => {
            apply_outcome(host, &outcome);
            Action::Pause
        }
        Verdict::Parked | Verdict::AwaitBody => Action::Pause,
    }
}

fn response_action(step: Option<ResponseStep>) -> Action {
    match step {
        Some(ResponseStep::Buffer) => Action::Pause,
        Some(ResponseStep::Continue) | None => Action::Continue,
    }
}

impl Drop for HttpFilter {
    fn drop(&mut self) {
        let context = self.context;
        if self
            .shared
            .with(|w, host| w.on_context_gone(host, context))
            .is_none()
        {
            if let Ok(mut ended) = self.shared.ended.try_borrow_mut() {
                ended.push(context);
            }
        }
    }
}
