//! Carrying out decided outcomes on HTTP streams: header rewrites and resuming, or a local
//! reply. Called with the worker state not borrowed, because acting on a request can call
//! back into the VM.

use mcp_auth_core::response::LocalResponse;

use crate::filter::host::{ContextId, Host};
use crate::filter::worker::Outcome;

/// Applies an outcome to the effective context (headers for a forward; the reply otherwise).
/// Resuming is the caller's business: a request decided in its own headers callback simply
/// continues.
pub fn apply_outcome(host: &mut impl Host, outcome: &Outcome) {
    match outcome {
        Outcome::Forward(forwarding) => {
            // Setting a header replaces all its values (Envoy's replace is remove + add), so a
            // header about to be set needs no removal first: one host call less per identity
            // header on every request. Other spellings of it (`remove_also`) still go.
            let set_later = |name: &&String| forwarding.set.iter().any(|(set, _)| set == *name);
            let stale = forwarding.remove.iter().filter(|name| !set_later(name));
            for name in stale.chain(&forwarding.remove_also) {
                host.remove_request_header(name);
            }
            for (name, value) in &forwarding.set {
                host.set_request_header(name, value);
            }
        }
        Outcome::Respond(response) => host.send_response(response),
    }
}

/// Carries out outcomes for parked requests (other contexts, or the current one), resuming
/// the forwarded ones, then restores the effective context.
pub fn apply_to_contexts(
    host: &mut impl Host,
    decided: Vec<(ContextId, Outcome)>,
    current: ContextId,
) {
    if decided.is_empty() {
        return;
    }
    for (context, outcome) in decided {
        // The context may have ended meanwhile; then there is nothing to act on.
        if host.set_effective_context(context).is_err() {
            continue;
        }
        apply_outcome(host, &outcome);
        if matches!(outcome, Outcome::Forward(_)) {
            host.resume_request();
        }
    }
    let _ = host.set_effective_context(current);
}

/// The answer when the filter has no configuration (it never started): fail closed.
pub fn not_ready() -> LocalResponse {
    LocalResponse {
        status: 503,
        headers: vec![("content-type", "application/json".into())],
        body: br#"{"error":"temporarily_unavailable","error_description":"filter not ready"}"#
            .to_vec(),
    }
}
