//! The proxy-wasm layer: translates host calls into core calls. No policy lives here.
//!
//! * [`Root`] (one per worker VM) loads the configuration, refuses to start on an invalid one,
//!   and ticks once a second for background JWKS refreshes and deadlines.
//! * [`HttpFilter`] (one per request) reads the request head, asks the [`Worker`], and either
//!   forwards, answers, or pauses until keys arrive.

mod exchange;
mod keys;
mod metrics;
mod worker;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use mcp_auth_core::config::Config;
use worker::{apply_headers, apply_to_contexts, now_ms, send_response, RequestHead, Worker};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, shared: Shared::default() })
    });
}}

const TICK: Duration = Duration::from_secs(1);

/// Worker state plus the contexts that ended while the state was borrowed (a host call made
/// on behalf of one request can end another request's stream synchronously).
#[derive(Clone, Default)]
struct Shared {
    worker: Rc<RefCell<Option<Worker>>>,
    ended: Rc<RefCell<Vec<u32>>>,
}

impl Shared {
    /// A JWKS or STS reply delivered to context `id` (root or HTTP): hand it to the worker, then
    /// act on the requests it decided.
    fn on_callout_reply(&self, token: u32, id: u32, body_size: usize) {
        let actions = self
            .with(|w| w.on_callout_reply(token, id, body_size, now_ms()))
            .unwrap_or_default();
        apply_to_contexts(actions, id);
    }

    /// Runs `f` on the worker state, after forgetting the contexts that ended meanwhile.
    fn with<T>(&self, f: impl FnOnce(&mut Worker) -> T) -> Option<T> {
        let mut guard = self.worker.try_borrow_mut().ok()?;
        let worker = guard.as_mut()?;
        if let Ok(mut ended) = self.ended.try_borrow_mut() {
            for id in ended.drain(..) {
                worker.on_context_gone(id);
            }
        }
        Some(f(worker))
    }
}

struct Root {
    context_id: u32,
    shared: Shared,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.shared
            .on_callout_reply(token, self.context_id, body_size);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = hostcalls::get_buffer(
            proxy_wasm::types::BufferType::PluginConfiguration,
            0,
            usize::MAX,
        )
        .ok()
        .flatten()
        .unwrap_or_default();
        // Secrets (the STS client secret) come from the VM's environment, never the document.
        let env = |name: &str| std::env::var(name).ok();
        let config = match Config::from_json_with_env(&bytes, &env) {
            Ok(c) => c,
            Err(e) => {
                log::error!("mcp_auth_filter: invalid configuration: {e}");
                return false;
            }
        };
        // Log at Envoy's level for this component: below info, no audit line is even built.
        if let Ok(level) = hostcalls::get_log_level() {
            proxy_wasm::set_log_level(level);
        }
        log::info!(
            "mcp_auth_filter: configured for resource {} with {} provider(s)",
            config.resource,
            config.providers.len()
        );
        let worker = Worker::new(config);
        let needs_tick = worker.needs_tick();
        *self.shared.worker.borrow_mut() = Some(worker);
        if needs_tick {
            let _ = hostcalls::set_tick_period(TICK);
        }
        true
    }

    fn on_tick(&mut self) {
        let id = self.context_id;
        let actions = self
            .shared
            .with(|w| w.on_tick(id, now_ms()))
            .unwrap_or_default();
        apply_to_contexts(actions, id);
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HttpFilter {
            context_id,
            shared: self.shared.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct HttpFilter {
    context_id: u32,
    shared: Shared,
}

impl HttpFilter {
    fn read_head(&self) -> RequestHead {
        // Header values are bytes: Envoy passes 0x80-0xFF through, and the SDK's String
        // variants panic on them (which would kill the VM). Names are tokens, always ASCII.
        let headers = self.get_http_request_headers_bytes();
        let text = |value: Vec<u8>| String::from_utf8_lossy(&value).into_owned();
        let mut method = String::new();
        let mut path = String::new();
        let mut authorization = None;
        let mut authorization_count = 0;
        let mut origin = false;
        let mut preflight_method = false;
        for (name, value) in headers {
            match name.as_str() {
                ":method" => method = text(value),
                ":path" => path = text(value),
                // Not UTF-8: the replacement character fails the bearer grammar (invalid_request).
                "authorization" => {
                    authorization_count += 1;
                    authorization = Some(text(value));
                }
                "origin" => origin = true,
                "access-control-request-method" => preflight_method = true,
                _ => {}
            }
        }
        let is_cors_preflight = method == "OPTIONS" && origin && preflight_method;
        RequestHead {
            method,
            path,
            authorization,
            repeated_authorization: authorization_count > 1,
            is_cors_preflight,
        }
    }
}

impl Context for HttpFilter {
    fn on_http_call_response(
        &mut self,
        token: u32,
        _headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        self.shared
            .on_callout_reply(token, self.context_id, body_size);
    }
}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let head = self.read_head();
        let id = self.context_id;
        let Some(action) = self.shared.with(|w| w.on_request(id, head, now_ms())) else {
            // No configuration (cannot happen once on_configure succeeded): fail closed.
            send_response(&mcp_auth_core::response::LocalResponse {
                status: 503,
                headers: vec![("content-type", "application/json".into())],
                body:
                    br#"{"error":"temporarily_unavailable","error_description":"filter not ready"}"#
                        .to_vec(),
            });
            return Action::Pause;
        };
        match action {
            worker::Action::Forward { remove, set } => {
                apply_headers(&remove, &set);
                Action::Continue
            }
            worker::Action::Respond(response) => {
                send_response(&response);
                Action::Pause
            }
            worker::Action::Park => Action::Pause,
        }
    }

    fn on_log(&mut self) {
        let id = self.context_id;
        let status = || {
            self.get_http_response_header_bytes(":status")
                .and_then(|s| std::str::from_utf8(&s).ok()?.parse::<u32>().ok())
        };
        let _ = self.shared.with(|w| w.log_audit(id, status, now_ms()));
    }
}

impl Drop for HttpFilter {
    fn drop(&mut self) {
        let id = self.context_id;
        if self.shared.with(|w| w.on_context_gone(id)).is_none() {
            if let Ok(mut ended) = self.shared.ended.try_borrow_mut() {
                ended.push(id);
            }
        }
    }
}
