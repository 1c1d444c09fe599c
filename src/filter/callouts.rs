//! HTTP callouts in flight: what each is for, and which context's host call sent it (its
//! reply is delivered there, and never arrives if that context ends first).

use std::collections::HashMap;

use mcp_auth_core::cache::Digest;
use mcp_auth_core::config::ProviderId;
use mcp_auth_core::jwks_cache::FetchStep;

use crate::filter::host::{CalloutToken, ContextId, Host, OutgoingCall};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Keys {
        provider: ProviderId,
        step: FetchStep,
    },
    Exchange {
        key: Digest,
    },
    /// An introspection of the token with this hash.
    Introspection {
        key: Digest,
    },
}

#[derive(Debug, Clone, Copy)]
struct Callout {
    purpose: Purpose,
    owner: ContextId,
}

#[derive(Default)]
pub struct Callouts {
    in_flight: HashMap<CalloutToken, Callout>,
}

impl Callouts {
    /// Sends a callout from `owner`'s host call; `None` when the host refused it.
    pub fn send(
        &mut self,
        host: &mut impl Host,
        call: &OutgoingCall<'_>,
        purpose: Purpose,
        owner: ContextId,
    ) -> Option<CalloutToken> {
        match host.dispatch(call) {
            Ok(token) => {
                self.in_flight.insert(token, Callout { purpose, owner });
                Some(token)
            }
            Err(status) => {
                log::warn!(
                    "mcp_auth_filter: cannot call cluster {:?}: host status {}",
                    call.cluster,
                    status.0
                );
                None
            }
        }
    }

    /// The purpose of a callout whose reply arrived (it is no longer in flight).
    pub fn take(&mut self, token: CalloutToken) -> Option<Purpose> {
        self.in_flight.remove(&token).map(|c| c.purpose)
    }

    /// Forgets the callouts `owner` sent (its context ended: their replies will never come).
    pub fn take_owned_by(&mut self, owner: ContextId) -> Vec<Purpose> {
        let tokens: Vec<CalloutToken> = self
            .in_flight
            .iter()
            .filter(|(_, c)| c.owner == owner)
            .map(|(t, _)| *t)
            .collect();
        tokens.iter().filter_map(|t| self.take(*t)).collect()
    }

    /// Forgets the callouts with this purpose (given up on: a late reply is then ignored).
    pub fn forget(&mut self, matches: impl Fn(&Purpose) -> bool) {
        self.in_flight.retain(|_, c| !matches(&c.purpose));
    }
}

/// A callout reply as read from the host.
pub struct Reply {
    pub status: Option<u16>,
    pub cache_control: Option<String>,
    /// `None` when the body was larger than the caller's limit.
    pub body: Option<Vec<u8>>,
}

impl Reply {
    /// Reads the reply being delivered. Header values are decoded fallibly: a reply header
    /// that is not UTF-8 must not stop the filter.
    pub fn read(host: &impl Host, body_size: usize, limit: usize) -> Reply {
        let header = |name: &str| {
            host.callout_response_header(name)
                .and_then(|v| String::from_utf8(v).ok())
        };
        Reply {
            status: header(":status").and_then(|s| s.parse::<u16>().ok()),
            cache_control: header("cache-control"),
            body: (body_size <= limit).then(|| host.callout_response_body(body_size)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::host::fake::FakeHost;
    use std::time::Duration;

    fn call() -> OutgoingCall<'static> {
        OutgoingCall {
            cluster: "idp",
            headers: &[(":path", "/jwks")],
            body: None,
            timeout: Duration::from_secs(1),
        }
    }

    const KEYS: Purpose = Purpose::Keys {
        provider: ProviderId(0),
        step: FetchStep::Jwks,
    };

    #[test]
    fn a_reply_is_matched_once() {
        let mut host = FakeHost::new(0);
        let mut callouts = Callouts::default();
        let token = callouts
            .send(&mut host, &call(), KEYS, ContextId(7))
            .unwrap();
        assert_eq!(callouts.take(token), Some(KEYS));
        assert_eq!(callouts.take(token), None);
    }

    #[test]
    fn a_refused_callout_is_not_recorded() {
        let mut host = FakeHost::new(0);
        host.refuse_dispatch = true;
        let mut callouts = Callouts::default();
        assert_eq!(callouts.send(&mut host, &call(), KEYS, ContextId(7)), None);
        assert!(callouts.take_owned_by(ContextId(7)).is_empty());
    }

    #[test]
    fn callouts_of_an_ended_context_are_handed_back() {
        let mut host = FakeHost::new(0);
        let mut callouts = Callouts::default();
        let exchange = Purpose::Exchange { key: [1; 32] };
        callouts.send(&mut host, &call(), KEYS, ContextId(1));
        let kept = callouts
            .send(&mut host, &call(), exchange, ContextId(2))
            .unwrap();
        assert_eq!(callouts.take_owned_by(ContextId(1)), vec![KEYS]);
        callouts.forget(|p| matches!(p, Purpose::Exchange { .. }));
        assert_eq!(callouts.take(kept), None);
    }
}
