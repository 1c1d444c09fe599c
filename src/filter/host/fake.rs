//! A host for unit tests: a settable clock, callouts recorded and answered by the test, shared
//! data with Envoy's CAS rules (shareable between several fake workers), metrics by name, and
//! HTTP streams whose header edits, resumes and local replies are recorded.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mcp_auth_core::response::LocalResponse;
use mcp_auth_core::time::UnixMillis;

use super::{
    CalloutToken, Cas, ContextId, HeaderPairs, Host, HostError, MetricId, MetricKind, OutgoingCall,
    SharedEntry, SharedWrite,
};

/// Shared data as Envoy keeps it: per key a value and a CAS that changes on every write.
#[derive(Default)]
pub struct FakeSharedData {
    entries: HashMap<String, (Vec<u8>, u32)>,
    next_cas: u32,
    pub writes: usize,
}

impl FakeSharedData {
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.entries.keys().cloned().collect();
        keys.sort();
        keys
    }

    pub fn put(&mut self, key: &str, value: Vec<u8>) {
        self.next_cas += 1;
        self.entries.insert(key.to_string(), (value, self.next_cas));
    }
}

#[derive(Debug, Clone)]
pub struct SentCall {
    pub token: CalloutToken,
    /// The effective context when it was sent: the reply is delivered there.
    pub owner: Option<ContextId>,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Duration,
}

impl SentCall {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The callout reply a test delivers.
#[derive(Debug, Clone, Default)]
pub struct FakeReply {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl FakeReply {
    pub fn status(status: u16, body: &[u8]) -> FakeReply {
        FakeReply {
            headers: vec![(":status".into(), status.to_string())],
            body: body.to_vec(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct FakeStream {
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Vec<u8>,
    pub resumed: usize,
    pub responses: Vec<LocalResponse>,
    pub ended: bool,
}

impl FakeStream {
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Each fake host is its own VM.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

pub struct FakeHost {
    pub now_ms: u64,
    /// What `random_u64` answers: tells fake workers apart.
    pub instance_id: u64,
    pub shared: Rc<RefCell<FakeSharedData>>,
    pub sent: Vec<SentCall>,
    next_token: u32,
    /// When set, every dispatch is refused (an unknown cluster).
    pub refuse_dispatch: bool,
    /// The reply being delivered (set by `deliver` in tests).
    pub reply: Option<FakeReply>,
    metric_names: Vec<String>,
    pub metrics: HashMap<String, i64>,
    pub tick_period: Option<Duration>,
    pub effective: Option<ContextId>,
    pub streams: HashMap<ContextId, FakeStream>,
}

impl FakeHost {
    pub fn new(now_ms: u64) -> FakeHost {
        FakeHost::with_shared(now_ms, Rc::default())
    }

    /// A second worker of the same Envoy: it sees the same shared data.
    pub fn with_shared(now_ms: u64, shared: Rc<RefCell<FakeSharedData>>) -> FakeHost {
        FakeHost {
            now_ms,
            instance_id: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
            shared,
            sent: Vec::new(),
            next_token: 100,
            refuse_dispatch: false,
            reply: None,
            metric_names: Vec::new(),
            metrics: HashMap::new(),
            tick_period: None,
            effective: None,
            streams: HashMap::new(),
        }
    }

    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    /// Opens a stream with these request headers and makes it the effective context.
    pub fn open_stream(&mut self, id: u32, headers: &[(&str, &str)]) -> ContextId {
        let context = ContextId(id);
        let stream = FakeStream {
            request_headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..FakeStream::default()
        };
        self.streams.insert(context, stream);
        self.effective = Some(context);
        context
    }

    pub fn stream(&self, id: ContextId) -> &FakeStream {
        &self.streams[&id]
    }

    pub fn counter(&self, name: &str) -> i64 {
        self.metrics.get(name).copied().unwrap_or(0)
    }

    /// The callouts sent to `cluster`, oldest first.
    pub fn sent_to(&self, cluster: &str) -> Vec<&SentCall> {
        self.sent.iter().filter(|c| c.cluster == cluster).collect()
    }
}

impl Host for FakeHost {
    fn now(&self) -> UnixMillis {
        UnixMillis(self.now_ms)
    }

    fn random_u64(&self) -> u64 {
        self.instance_id
    }

    fn dispatch(&mut self, call: &OutgoingCall<'_>) -> Result<CalloutToken, HostError> {
        if self.refuse_dispatch {
            return Err(HostError(2));
        }
        self.next_token += 1;
        let token = CalloutToken(self.next_token);
        self.sent.push(SentCall {
            token,
            owner: self.effective,
            cluster: call.cluster.to_string(),
            headers: call
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: call.body.map(<[u8]>::to_vec),
            timeout: call.timeout,
        });
        Ok(token)
    }

    fn callout_response_header(&self, name: &str) -> Option<Vec<u8>> {
        let reply = self.reply.as_ref()?;
        reply
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone().into_bytes())
    }

    fn callout_response_body(&self, size: usize) -> Vec<u8> {
        let body = self.reply.as_ref().map_or(&[][..], |r| r.body.as_slice());
        body[..size.min(body.len())].to_vec()
    }

    fn shared_data(&self, key: &str) -> Result<Option<SharedEntry>, HostError> {
        Ok(self
            .shared
            .borrow()
            .entries
            .get(key)
            .map(|(value, cas)| SharedEntry {
                value: value.clone(),
                cas: Cas(*cas),
            }))
    }

    fn set_shared_data(
        &mut self,
        key: &str,
        value: &[u8],
        cas: Option<Cas>,
    ) -> Result<SharedWrite, HostError> {
        let mut shared = self.shared.borrow_mut();
        if let Some(Cas(expected)) = cas {
            let current = shared.entries.get(key).map(|(_, c)| *c);
            if current.is_some_and(|c| c != expected) {
                return Ok(SharedWrite::CasMismatch);
            }
        }
        shared.writes += 1;
        shared.put(key, value.to_vec());
        Ok(SharedWrite::Stored)
    }

    fn define_metric(&mut self, _kind: MetricKind, name: &str) -> Option<MetricId> {
        self.metric_names.push(name.to_string());
        self.metrics.insert(name.to_string(), 0);
        Some(MetricId(self.metric_names.len() as u32 - 1))
    }

    fn increment_metric(&mut self, id: MetricId, by: i64) {
        let name = self.metric_names[id.0 as usize].clone();
        *self.metrics.entry(name).or_default() += by;
    }

    fn record_metric(&mut self, id: MetricId, value: u64) {
        // Histograms: the fake keeps the number of samples and their sum.
        let name = self.metric_names[id.0 as usize].clone();
        *self.metrics.entry(format!("{name}.count")).or_default() += 1;
        *self.metrics.entry(format!("{name}.sum")).or_default() += value as i64;
    }

    fn set_tick_period(&mut self, period: Duration) {
        self.tick_period = Some(period);
    }

    fn set_effective_context(&mut self, context: ContextId) -> Result<(), HostError> {
        match self.streams.get(&context) {
            Some(stream) if !stream.ended => {
                self.effective = Some(context);
                Ok(())
            }
            _ => Err(HostError(2)),
        }
    }

    fn request_headers(&self) -> Result<HeaderPairs, HostError> {
        let stream = self.current().ok_or(HostError(2))?;
        Ok(stream
            .request_headers
            .iter()
            .map(|(n, v)| (n.clone().into_bytes(), v.clone().into_bytes()))
            .collect())
    }

    fn response_header(&self, name: &str) -> Option<Vec<u8>> {
        self.current()?
            .response_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone().into_bytes())
    }

    fn set_response_header(&mut self, name: &str, value: &str) {
        if let Some(stream) = self.current_mut() {
            stream.response_headers.retain(|(n, _)| n != name);
            stream
                .response_headers
                .push((name.to_string(), value.to_string()));
        }
    }

    fn remove_response_header(&mut self, name: &str) {
        if let Some(stream) = self.current_mut() {
            stream.response_headers.retain(|(n, _)| n != name);
        }
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        self.current().map_or(Vec::new(), |s| {
            s.request_body[..size.min(s.request_body.len())].to_vec()
        })
    }

    fn response_body(&self, size: usize) -> Vec<u8> {
        self.current().map_or(Vec::new(), |s| {
            s.response_body[..size.min(s.response_body.len())].to_vec()
        })
    }

    fn replace_response_body(&mut self, size: usize, body: &[u8]) {
        if let Some(stream) = self.current_mut() {
            let end = size.min(stream.response_body.len());
            stream.response_body.splice(..end, body.iter().copied());
        }
    }

    fn remove_request_header(&mut self, name: &str) {
        if let Some(stream) = self.current_mut() {
            stream.request_headers.retain(|(n, _)| n != name);
        }
    }

    fn set_request_header(&mut self, name: &str, value: &str) {
        if let Some(stream) = self.current_mut() {
            stream.request_headers.retain(|(n, _)| n != name);
            stream
                .request_headers
                .push((name.to_string(), value.to_string()));
        }
    }

    fn resume_request(&mut self) {
        if let Some(stream) = self.current_mut() {
            stream.resumed += 1;
        }
    }

    fn send_response(&mut self, response: &LocalResponse) {
        if let Some(stream) = self.current_mut() {
            stream.responses.push(response.clone());
        }
    }
}

impl FakeHost {
    fn current(&self) -> Option<&FakeStream> {
        self.streams.get(&self.effective?)
    }

    fn current_mut(&mut self) -> Option<&mut FakeStream> {
        let effective = self.effective?;
        self.streams.get_mut(&effective)
    }
}
