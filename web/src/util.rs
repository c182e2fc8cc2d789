//! Small browser helpers: the clock core is driven by, randomness, lower case, readable
//! numbers (sizes read with core's `human_size`, as the terminal shows them).

use wasm_bindgen::{JsCast, JsValue};

/// A property of the global object, whether that is the page's `window` or the
/// engine's worker (`self`): both offer `performance` and `indexedDB`.
pub fn global(name: &str) -> Option<JsValue> {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str(name)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

thread_local! {
    static PERFORMANCE: Option<web_sys::Performance> = global("performance").map(JsCast::unchecked_into);
}

/// Milliseconds since the page (or the worker) started (`performance.now()`), the
/// clock core is given.
pub fn now_ms() -> u64 {
    PERFORMANCE.with(|p| p.as_ref().map(|p| p.now() as u64).unwrap_or(0))
}

/// Fills `out` from the browser's cryptographic generator (`crypto.getRandomValues`),
/// in the page and in the worker alike: handshake keys and identities need it.
pub fn random_bytes(out: &mut [u8]) -> Result<(), crate::WebError> {
    let crypto: web_sys::Crypto = global("crypto")
        .ok_or_else(|| crate::WebError::Js("this browser offers no crypto.getRandomValues".into()))?
        .unchecked_into();
    crypto.get_random_values_with_u8_array(out)?;
    Ok(())
}

/// `text` in lower case, by the JS engine (`toLowerCase`, the same Unicode mapping as
/// `str::to_lowercase`): std's case tables stay out of the bundle.
pub fn lowercase(text: &str) -> String {
    js_sys::JsString::from(text).to_lower_case().into()
}

/// `n` random hex digits (identity and seeds only; nothing here needs a CSPRNG).
pub fn random_hex(n: usize) -> String {
    (0..n).map(|_| char::from_digit((js_sys::Math::random() * 16.0) as u32 % 16, 16).unwrap_or('0')).collect()
}

pub fn random_u64() -> u64 {
    let hi = (js_sys::Math::random() * 4_294_967_296.0) as u64;
    let lo = (js_sys::Math::random() * 4_294_967_296.0) as u64;
    (hi << 32) | lo
}

/// A fraction as a percentage that never rounds up to 100% before it is complete.
pub fn percent(f: f64) -> String {
    if f >= 1.0 {
        return "100%".into();
    }
    if f <= 0.0 {
        return "0%".into();
    }
    let tenths = (f * 1000.0).floor() / 10.0;
    if tenths == tenths.floor() {
        format!("{tenths:.0}%")
    } else {
        format!("{tenths:.1}%")
    }
}

/// A transfer rate, `42.0 MiB/s`.
pub fn rate(bytes_per_s: f64) -> String {
    format!("{}/s", torronto_core::human_size(bytes_per_s.max(0.0) as u64))
}

/// A time left, rounded for reading: `42 s`, `3 min 5 s`, `2 h 10 min`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).ceil() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}
