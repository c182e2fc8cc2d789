//! Throughput of the transport ciphers, the figures behind docs/security-design.md.
//! Ignored by default; run in release, natively and under node (wasm, as in the browser):
//!   cargo test --release -p torronto-core --test secure_throughput -- --ignored --nocapture
//!   cd core && wasm-pack test --node --release -- --test secure_throughput --include-ignored
//!
//! Each case seals 64 KiB plaintexts and opens them again on one core, in batches of 4 MiB
//! (so the ciphertext stays in cache as a socket buffer would), and reports MB/s of
//! plaintext for sealing, opening, and both in turn (what one node pays per byte it sends
//! and another per byte it receives). Raw snow transports compare the two Noise ciphers
//! from each provider (pure Rust everywhere, ring natively); `SecureChannel` adds the
//! record framing the nodes use, with the providers core picks for the build.

use bytes::BytesMut;
use snow::params::{CipherChoice, DHChoice, HashChoice};
#[cfg(not(target_arch = "wasm32"))]
use snow::resolvers::RingResolver;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use torronto_core::secure::{
    Handshake, Hello, Identity, NetworkSecret, SecureChannel, SecureConfig, Suite, MAX_RECORD_PLAINTEXT,
};
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const PLAINTEXT: usize = 64 * 1024;
const BATCH: usize = 64;

#[cfg(not(target_arch = "wasm32"))]
const TOTAL: usize = 2 << 30;
#[cfg(target_arch = "wasm32")]
const TOTAL: usize = 128 << 20;

#[cfg(not(target_arch = "wasm32"))]
macro_rules! report {
    ($($arg:tt)*) => { println!($($arg)*) };
}
#[cfg(target_arch = "wasm32")]
macro_rules! report {
    ($($arg:tt)*) => { wasm_bindgen_test::console_log!($($arg)*) };
}

/// Seconds since some fixed moment.
#[cfg(not(target_arch = "wasm32"))]
fn now() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}
#[cfg(target_arch = "wasm32")]
fn now() -> f64 {
    js_sys::Date::now() / 1000.0
}

/// Seconds spent sealing and opening `TOTAL` bytes, batch by batch.
struct Timing {
    seal: f64,
    open: f64,
}

impl Timing {
    fn report(&self, name: &str) {
        let mb = TOTAL as f64 / 1e6;
        report!(
            "{name:<44} seal {:>7.0} MB/s  open {:>7.0} MB/s  seal+open {:>7.0} MB/s",
            mb / self.seal,
            mb / self.open,
            mb / (self.seal + self.open)
        );
    }
}

fn measure(mut seal_batch: impl FnMut(), mut open_batch: impl FnMut()) -> Timing {
    // One untimed round to warm caches and fault pages in.
    seal_batch();
    open_batch();
    let mut timing = Timing { seal: 0.0, open: 0.0 };
    for _ in 0..TOTAL / (PLAINTEXT * BATCH) {
        let start = now();
        seal_batch();
        let sealed = now();
        open_batch();
        timing.seal += sealed - start;
        timing.open += now() - sealed;
    }
    timing
}

/// Deterministic "randomness" for the measuring handshakes only.
struct Counter(u8);

impl Random for Counter {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        for byte in dest {
            self.0 = self.0.wrapping_add(1);
            *byte = self.0;
        }
        Ok(())
    }
}

/// Pure-Rust primitives, or ring's ciphers (natively) when `ring`.
struct MeasuringResolver {
    ring: bool,
}

impl CryptoResolver for MeasuringResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        Some(Box::new(Counter(0)))
    }
    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        #[cfg(not(target_arch = "wasm32"))]
        if self.ring {
            return RingResolver.resolve_cipher(choice);
        }
        assert!(!self.ring, "no ring in wasm");
        DefaultResolver.resolve_cipher(choice)
    }
}

/// Two raw snow transports after an unauthenticated NN handshake: only the cipher matters.
fn snow_pair(cipher: &str, ring: bool) -> (snow::TransportState, snow::TransportState) {
    let params = format!("Noise_NN_25519_{cipher}_SHA256");
    let builder = || snow::Builder::with_resolver(params.parse().unwrap(), Box::new(MeasuringResolver { ring }));
    let mut initiator = builder().build_initiator().unwrap();
    let mut responder = builder().build_responder().unwrap();
    let (mut message, mut payload) = ([0u8; 128], [0u8; 128]);
    let len = initiator.write_message(&[], &mut message).unwrap();
    responder.read_message(&message[..len], &mut payload).unwrap();
    let len = responder.write_message(&[], &mut message).unwrap();
    initiator.read_message(&message[..len], &mut payload).unwrap();
    (initiator.into_transport_mode().unwrap(), responder.into_transport_mode().unwrap())
}

fn raw_snow(cipher: &str, ring: bool) -> Timing {
    let (mut sender, mut receiver) = snow_pair(cipher, ring);
    // A raw Noise message holds at most MAX_RECORD_PLAINTEXT: 64 KiB goes as two.
    let plaintext = vec![0xa5u8; PLAINTEXT];
    let mut ciphertexts = vec![Vec::new(); 2 * BATCH];
    let mut opened = vec![0u8; MAX_RECORD_PLAINTEXT];
    let ciphertexts = std::cell::RefCell::new(&mut ciphertexts);
    measure(
        || {
            let mut ciphertexts = ciphertexts.borrow_mut();
            for (slot, piece) in ciphertexts.iter_mut().zip(plaintext.chunks(MAX_RECORD_PLAINTEXT).cycle()) {
                slot.resize(piece.len() + 16, 0);
                sender.write_message(piece, slot).unwrap();
            }
        },
        || {
            for ciphertext in ciphertexts.borrow().iter() {
                receiver.read_message(ciphertext, &mut opened).unwrap();
            }
        },
    )
}

fn channel_pair(suite: Suite) -> (SecureChannel, SecureChannel) {
    let config = |seed| {
        let secret = NetworkSecret::from_random_bytes([7; 32]);
        let mut config = SecureConfig::new(Identity::from_random_bytes([seed; 32]), secret, Hello::default());
        config.suite = suite;
        config
    };
    let mut initiator = Handshake::initiator(&config(1), [3; 32]).unwrap();
    let mut responder = Handshake::responder(&config(2), [4; 32]).unwrap();
    while !(initiator.is_finished() && responder.is_finished()) {
        while let Some(record) = initiator.poll_record() {
            responder.handle_record(&record).unwrap();
        }
        while let Some(record) = responder.poll_record() {
            initiator.handle_record(&record).unwrap();
        }
    }
    (initiator.finish().unwrap().0, responder.finish().unwrap().0)
}

fn secure_channel(suite: Suite) -> Timing {
    let (mut sender, mut receiver) = channel_pair(suite);
    let plaintext = vec![0x5au8; PLAINTEXT];
    let wire = std::cell::RefCell::new(BytesMut::with_capacity(BATCH * SecureChannel::sealed_len(PLAINTEXT)));
    let mut opened = BytesMut::with_capacity(BATCH * PLAINTEXT);
    measure(
        || {
            let mut wire = wire.borrow_mut();
            wire.clear();
            for _ in 0..BATCH {
                sender.seal(&plaintext, &mut wire).unwrap();
            }
        },
        || {
            opened.clear();
            // In 64 KiB reads, as a socket delivers them, never aligned with records.
            for read in wire.borrow().chunks(64 * 1024) {
                receiver.open(read, &mut opened).unwrap();
            }
            assert_eq!(opened.len(), BATCH * PLAINTEXT);
        },
    )
}

/// As a driver with its own read buffer: `open_buf` on what arrived, here a whole batch.
fn secure_channel_buffered(suite: Suite) -> Timing {
    let (mut sender, mut receiver) = channel_pair(suite);
    let plaintext = vec![0x5au8; PLAINTEXT];
    let buf = std::cell::RefCell::new(BytesMut::with_capacity(BATCH * SecureChannel::sealed_len(PLAINTEXT)));
    let mut opened = BytesMut::with_capacity(BATCH * PLAINTEXT);
    measure(
        || {
            let mut buf = buf.borrow_mut();
            for _ in 0..BATCH {
                sender.seal(&plaintext, &mut buf).unwrap();
            }
        },
        || {
            opened.clear();
            receiver.open_buf(&mut buf.borrow_mut(), &mut opened).unwrap();
            assert_eq!(opened.len(), BATCH * PLAINTEXT);
        },
    )
}

#[test]
#[ignore = "a measurement: run in release with --ignored --nocapture"]
fn transport_throughput() {
    report!("{} MiB of 64 KiB plaintexts, one core:", TOTAL >> 20);
    raw_snow("AESGCM", false).report("snow pure-Rust AESGCM (AES-256-GCM)");
    raw_snow("ChaChaPoly", false).report("snow pure-Rust ChaChaPoly (ChaCha20-Poly1305)");
    if cfg!(not(target_arch = "wasm32")) {
        raw_snow("AESGCM", true).report("snow ring AESGCM");
        raw_snow("ChaChaPoly", true).report("snow ring ChaChaPoly");
    }
    for suite in Suite::ALL {
        secure_channel(suite).report(&format!("SecureChannel {suite:?}, open 64K reads"));
        secure_channel_buffered(suite).report(&format!("SecureChannel {suite:?}, open_buf"));
    }
}
