//! Native unit tests of the proxy-wasm layer's logic, against `FakeHost`: parking, single
//! flight, deadlines, contexts that go away, shared data between workers, ticks.

mod fixtures;

mod across_workers;
mod contexts_gone;
mod crowded_slots;
mod exchanges;
mod introspections;
mod key_waits;
mod many_users;
mod mcp_gate;
mod namespaces;
mod outcomes;
mod shared_between_workers;
