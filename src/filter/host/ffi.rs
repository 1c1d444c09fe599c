//! The proxy-wasm ABI (0.2.1) calls the filter makes, with every status returned as a value.
//!
//! proxy-wasm 0.2.5 panics on any status it does not expect (and its `HttpContext` helpers
//! unwrap on top), and a panic kills the worker's VM. These bindings never panic: a status is
//! an error the caller decides about. Maps returned by the host are decoded fallibly.
//! Callouts are the exception: they go through the SDK's `dispatch_http_call`, because its
//! dispatcher must know the token to route the reply back to the context.

use std::ptr::{null, null_mut};

use super::HeaderPairs;

/// A status other than `Ok` from a host call (the ABI's `WasmResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

pub const NOT_FOUND: Status = Status(1);
pub const CAS_MISMATCH: Status = Status(8);

// ABI enums, as the host numbers them.
pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_CALLOUT_RESPONSE_HEADERS: u32 = 6;
pub const BUFFER_REQUEST_BODY: u32 = 0;
pub const BUFFER_RESPONSE_BODY: u32 = 1;
pub const BUFFER_CALLOUT_RESPONSE_BODY: u32 = 4;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;
pub const STREAM_HTTP_REQUEST: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_log_level(return_level: *mut u32) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_replace_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_record_metric(metric_id: u32, value: u64) -> u32;
}

fn check(status: u32) -> Result<(), Status> {
    match status {
        0 => Ok(()),
        other => Err(Status(other)),
    }
}

/// Takes ownership of a buffer the host allocated through the SDK's `proxy_on_memory_allocate`
/// (a boxed slice of exactly `size` bytes).
///
/// # Safety
/// `data` is null or was returned by the host for a buffer of `size` bytes.
unsafe fn take_host_buffer(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() {
        return Vec::new();
    }
    Box::from_raw(std::ptr::slice_from_raw_parts_mut(data, size)).into_vec()
}

pub fn log(level: u32, message: &str) -> Result<(), Status> {
    check(unsafe { proxy_log(level, message.as_ptr(), message.len()) })
}

pub fn log_level() -> Result<u32, Status> {
    let mut level = 0;
    check(unsafe { proxy_get_log_level(&mut level) }).map(|()| level)
}

pub fn current_time_nanos() -> Result<u64, Status> {
    let mut nanos = 0;
    check(unsafe { proxy_get_current_time_nanoseconds(&mut nanos) }).map(|()| nanos)
}

pub fn set_tick_period_ms(period: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_tick_period_milliseconds(period) })
}

pub fn set_effective_context(context_id: u32) -> Result<(), Status> {
    check(unsafe { proxy_set_effective_context(context_id) })
}

pub fn continue_stream(stream_type: u32) -> Result<(), Status> {
    check(unsafe { proxy_continue_stream(stream_type) })
}

/// Every pair of a header map, as bytes (the host passes values that are not UTF-8 through).
pub fn header_map_pairs(map_type: u32) -> Result<HeaderPairs, Status> {
    let mut data = null_mut();
    let mut size = 0;
    check(unsafe { proxy_get_header_map_pairs(map_type, &mut data, &mut size) })?;
    let bytes = unsafe { take_host_buffer(data, size) };
    decode_map(&bytes).ok_or(Status(u32::MAX))
}

pub fn header_map_value(map_type: u32, name: &str) -> Result<Option<Vec<u8>>, Status> {
    let mut data = null_mut();
    let mut size = 0;
    let status = unsafe {
        proxy_get_header_map_value(map_type, name.as_ptr(), name.len(), &mut data, &mut size)
    };
    match check(status) {
        Ok(()) => Ok(Some(unsafe { take_host_buffer(data, size) })),
        Err(NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

pub fn replace_header_map_value(map_type: u32, name: &str, value: &[u8]) -> Result<(), Status> {
    check(unsafe {
        proxy_replace_header_map_value(
            map_type,
            name.as_ptr(),
            name.len(),
            value.as_ptr(),
            value.len(),
        )
    })
}

pub fn remove_header_map_value(map_type: u32, name: &str) -> Result<(), Status> {
    check(unsafe { proxy_remove_header_map_value(map_type, name.as_ptr(), name.len()) })
}

pub fn buffer_bytes(buffer_type: u32, start: usize, max_size: usize) -> Result<Vec<u8>, Status> {
    let mut data = null_mut();
    let mut size = 0;
    let status =
        unsafe { proxy_get_buffer_bytes(buffer_type, start, max_size, &mut data, &mut size) };
    match check(status) {
        Ok(()) => Ok(unsafe { take_host_buffer(data, size) }),
        Err(NOT_FOUND) => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Replaces `size` bytes at `start` of a body buffer with `data`.
pub fn set_buffer_bytes(
    buffer_type: u32,
    start: usize,
    size: usize,
    data: &[u8],
) -> Result<(), Status> {
    check(unsafe { proxy_set_buffer_bytes(buffer_type, start, size, data.as_ptr(), data.len()) })
}

/// A shared-data value and its CAS; `None` when the key was never set.
pub fn shared_data(key: &str) -> Result<Option<(Vec<u8>, u32)>, Status> {
    let mut data = null_mut();
    let mut size = 0;
    let mut cas = 0;
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match check(status) {
        Ok(()) => Ok(Some((unsafe { take_host_buffer(data, size) }, cas))),
        Err(NOT_FOUND) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Stores a shared-data value; with `cas` other than 0, only if the entry is still at that CAS.
pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> Result<(), Status> {
    check(unsafe {
        proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas)
    })
}

pub fn send_local_response(
    status_code: u32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(), Status> {
    let headers = encode_map(headers);
    let body_data = if body.is_empty() {
        null()
    } else {
        body.as_ptr()
    };
    check(unsafe {
        proxy_send_local_response(
            status_code,
            null(),
            0,
            body_data,
            body.len(),
            headers.as_ptr(),
            headers.len(),
            -1,
        )
    })
}

pub fn define_metric(metric_type: u32, name: &str) -> Result<u32, Status> {
    let mut id = 0;
    check(unsafe { proxy_define_metric(metric_type, name.as_ptr(), name.len(), &mut id) })
        .map(|()| id)
}

pub fn increment_metric(metric_id: u32, offset: i64) -> Result<(), Status> {
    check(unsafe { proxy_increment_metric(metric_id, offset) })
}

pub fn record_metric(metric_id: u32, value: u64) -> Result<(), Status> {
    check(unsafe { proxy_record_metric(metric_id, value) })
}

/// The ABI's map encoding: a u32 count, then (name length, value length) u32 pairs, then each
/// name and value followed by a NUL. All little-endian.
pub fn encode_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(n, v)| 10 + n.len() + v.len())
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes the ABI's map encoding; `None` when the bytes do not follow it.
pub fn decode_map(bytes: &[u8]) -> Option<HeaderPairs> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let read_u32 = |at: usize| -> Option<usize> {
        let chunk = bytes.get(at..at.checked_add(4)?)?;
        Some(u32::from_le_bytes(chunk.try_into().ok()?) as usize)
    };
    let count = read_u32(0)?;
    let mut data_at = count.checked_mul(8)?.checked_add(4)?;
    let mut pairs = Vec::with_capacity(count.min(bytes.len() / 8));
    for i in 0..count {
        let sizes_at = 4 + i * 8;
        let name_len = read_u32(sizes_at)?;
        let value_len = read_u32(sizes_at + 4)?;
        let name = bytes.get(data_at..data_at.checked_add(name_len)?)?.to_vec();
        data_at = data_at.checked_add(name_len)?.checked_add(1)?;
        let value = bytes
            .get(data_at..data_at.checked_add(value_len)?)?
            .to_vec();
        data_at = data_at.checked_add(value_len)?.checked_add(1)?;
        pairs.push((name, value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_encoding_round_trips() {
        let pairs = [
            (":path", "/mcp"),
            ("x-empty", ""),
            ("authorization", "Bearer t"),
        ];
        let decoded = decode_map(&encode_map(&pairs)).unwrap();
        let expected: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect();
        assert_eq!(decoded, expected);
        assert_eq!(decode_map(&[]), Some(Vec::new()));
    }

    #[test]
    fn truncated_or_lying_maps_are_refused() {
        let good = encode_map(&[("a", "b")]);
        for cut in 1..good.len() - 1 {
            assert_eq!(decode_map(&good[..cut]), None, "cut at {cut}");
        }
        let mut huge_count = good.clone();
        huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_map(&huge_count), None);
        let mut huge_len = good;
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_map(&huge_len), None);
    }
}
