//! Two parties through the whole construction: handshake, then the channel, on both the
//! stream and the WebSocket form, and what an attacker on the path or a stranger can do.

use bytes::{Buf, BytesMut};

use super::*;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn identity(seed: u8) -> Identity {
    Identity::from_random_bytes([seed; 32])
}

fn secret(seed: u8) -> NetworkSecret {
    NetworkSecret::from_random_bytes([seed; 32])
}

fn entropy(seed: u8) -> [u8; HANDSHAKE_ENTROPY_LEN] {
    std::array::from_fn(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
}

fn config(identity_seed: u8, secret_seed: u8, hello: Hello) -> SecureConfig {
    SecureConfig::new(identity(identity_seed), secret(secret_seed), hello)
}

/// An initiator (identity 1, listening at 10.0.0.1:7001) and a responder (identity 2, a
/// browser-like peer with no listen address) with the given secrets.
fn pair(initiator_secret: u8, responder_secret: u8) -> (Handshake, Handshake) {
    let initiator = config(1, initiator_secret, Hello::listening_at("10.0.0.1:7001"));
    pair_of(&initiator, &config(2, responder_secret, Hello::default()))
}

fn pair_of(initiator: &SecureConfig, responder: &SecureConfig) -> (Handshake, Handshake) {
    (Handshake::initiator(initiator, entropy(1)).unwrap(), Handshake::responder(responder, entropy(2)).unwrap())
}

/// Which side failed, and how.
#[derive(Debug, PartialEq)]
enum Failure {
    Initiator(SecureError),
    Responder(SecureError),
}

/// Runs a handshake over an in-memory stream, handing bytes over `piece` at a time.
fn run_stream(initiator: &mut Handshake, responder: &mut Handshake, piece: usize) -> Result<(), Failure> {
    for _round in 0..4 {
        let mut to_responder = BytesMut::new();
        initiator.write_output(&mut to_responder);
        for chunk in to_responder.chunks(piece) {
            let used = responder.handle_input(chunk).map_err(Failure::Responder)?;
            assert_eq!(used, chunk.len(), "a handshake record has nothing behind it here");
        }
        let mut to_initiator = BytesMut::new();
        responder.write_output(&mut to_initiator);
        for chunk in to_initiator.chunks(piece) {
            let used = initiator.handle_input(chunk).map_err(Failure::Initiator)?;
            assert_eq!(used, chunk.len());
        }
        if initiator.is_finished() && responder.is_finished() {
            return Ok(());
        }
    }
    panic!("the handshake did not finish: {initiator:?} {responder:?}");
}

type Established = ((SecureChannel, AuthenticatedPeer), (SecureChannel, AuthenticatedPeer));

fn establish() -> Established {
    let (mut initiator, mut responder) = pair(7, 7);
    run_stream(&mut initiator, &mut responder, usize::MAX).unwrap();
    (initiator.finish().unwrap(), responder.finish().unwrap())
}

/// A recognisable, non-repeating plaintext.
fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i ^ (i >> 11) ^ (i >> 19)) as u8).collect()
}

#[test]
fn members_prove_their_keys_and_hellos_to_each_other() {
    let ((_, seen_by_initiator), (_, seen_by_responder)) = establish();
    assert_eq!(seen_by_initiator.id, identity(2).node_id());
    assert_eq!(&seen_by_initiator.public_key, identity(2).public_key());
    assert_eq!(seen_by_initiator.hello, Hello { listen: None });
    assert_eq!(seen_by_responder.id, identity(1).node_id());
    assert_eq!(seen_by_responder.hello.listen.as_deref(), Some("10.0.0.1:7001"));
}

#[test]
fn handshake_records_are_small() {
    // 1 suite byte + e + an empty payload's tag; e + encrypted s + payload + tag; encrypted s + payload + tag.
    let (mut initiator, mut responder) = pair(7, 7);
    let first = initiator.poll_record().unwrap();
    assert_eq!(first.len(), 1 + 32 + 16);
    responder.handle_record(&first).unwrap();
    let second = responder.poll_record().unwrap();
    assert_eq!(second.len(), 32 + 48 + br#"{}"#.len() + 16);
    initiator.handle_record(&second).unwrap();
    let third = initiator.poll_record().unwrap();
    assert_eq!(third.len(), 48 + br#"{"Listen":"10.0.0.1:7001"}"#.len() + 16);
}

#[test]
fn a_byte_at_a_time_is_as_good_as_all_at_once() {
    let (mut initiator, mut responder) = pair(7, 7);
    run_stream(&mut initiator, &mut responder, 1).unwrap();
    let ((mut a, _), (mut b, _)) = (initiator.finish().unwrap(), responder.finish().unwrap());
    let mut wire = BytesMut::new();
    a.seal(b"hello", &mut wire).unwrap();
    let mut out = BytesMut::new();
    for byte in wire.iter() {
        b.open(&[*byte], &mut out).unwrap();
    }
    assert_eq!(&out[..], b"hello");
}

#[test]
fn sixteen_mib_cross_in_records_byte_identical() {
    let ((mut a, _), (mut b, _)) = establish();
    let sent = plaintext(16 * 1024 * 1024 + 12_345);
    let mut wire = BytesMut::new();
    a.seal(&sent, &mut wire).unwrap();
    assert_eq!(wire.len(), SecureChannel::sealed_len(sent.len()));
    // Every record within the Noise limit, as its prefix says.
    let mut rest = &wire[..];
    let mut records = 0;
    while !rest.is_empty() {
        let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!(len <= MAX_RECORD_LEN);
        rest = &rest[4 + len..];
        records += 1;
    }
    assert_eq!(records, sent.len().div_ceil(MAX_RECORD_PLAINTEXT));
    // Delivered in pieces that never line up with records, as TCP reads do.
    let mut received = BytesMut::new();
    for chunk in wire.chunks(100_003) {
        b.open(chunk, &mut received).unwrap();
    }
    assert_eq!(b.buffered_len(), 0);
    assert!(received[..] == sent[..], "16 MiB differ after the round trip");
    // The same through the driver's own read buffer.
    let ((mut a, _), (mut b, _)) = establish();
    let mut wire = BytesMut::new();
    a.seal(&sent, &mut wire).unwrap();
    let (mut buf, mut received) = (BytesMut::new(), BytesMut::new());
    for chunk in wire.chunks(100_003) {
        buf.extend_from_slice(chunk);
        b.open_buf(&mut buf, &mut received).unwrap();
        assert!(buf.len() < RECORD_PREFIX_LEN + MAX_RECORD_LEN, "only a partial record stays");
    }
    assert!(buf.is_empty());
    assert!(received[..] == sent[..], "16 MiB differ after open_buf");
    // And the other way.
    let mut back = BytesMut::new();
    b.seal(b"thanks", &mut back).unwrap();
    let mut got = BytesMut::new();
    a.open(&back, &mut got).unwrap();
    assert_eq!(&got[..], b"thanks");
}

#[test]
fn websocket_form_one_record_per_message() {
    let (mut initiator, mut responder) = pair(7, 7);
    while !(initiator.is_finished() && responder.is_finished()) {
        while let Some(message) = initiator.poll_record() {
            responder.handle_record(&message).unwrap();
        }
        while let Some(message) = responder.poll_record() {
            initiator.handle_record(&message).unwrap();
        }
    }
    let ((mut a, _), (mut b, _)) = (initiator.finish().unwrap(), responder.finish().unwrap());
    let sent = plaintext(3 * MAX_RECORD_PLAINTEXT + 10);
    let messages = a.seal_records(&sent).unwrap();
    assert_eq!(messages.len(), 4);
    let mut received = BytesMut::new();
    for message in &messages {
        assert!(message.len() <= MAX_RECORD_LEN);
        b.open_record(message, &mut received).unwrap();
    }
    assert!(received[..] == sent[..]);
    let mut too_big = BytesMut::new();
    assert!(a.seal_record(&sent[..MAX_RECORD_PLAINTEXT + 1], &mut too_big).is_err());
}

#[test]
fn bytes_behind_the_last_handshake_record_belong_to_the_channel() {
    let (mut initiator, mut responder) = pair(7, 7);
    let mut wire = BytesMut::new();
    initiator.write_output(&mut wire);
    assert_eq!(responder.handle_input(&wire), Ok(wire.len()));
    wire.clear();
    responder.write_output(&mut wire);
    assert_eq!(initiator.handle_input(&wire), Ok(wire.len()));
    // The initiator sends its last handshake message and its first frames at once.
    wire.clear();
    initiator.write_output(&mut wire);
    let handshake_len = wire.len();
    let (mut a, _) = initiator.finish().unwrap();
    a.seal(b"first frames", &mut wire).unwrap();
    let used = responder.handle_input(&wire).unwrap();
    assert_eq!(used, handshake_len);
    assert!(responder.is_finished());
    assert_eq!(responder.handle_input(&wire[used..]), Ok(0), "nothing more for the handshake");
    let (mut b, _) = responder.finish().unwrap();
    // As a driver with its own read buffer does it.
    wire.advance(used);
    let mut out = BytesMut::new();
    b.open_buf(&mut wire, &mut out).unwrap();
    assert_eq!(&out[..], b"first frames");
    assert!(wire.is_empty());
}

#[test]
fn another_secret_fails_on_both_sides_and_reveals_nothing() {
    let (mut initiator, mut responder) = pair(7, 8);
    assert_eq!(
        run_stream(&mut initiator, &mut responder, usize::MAX),
        Err(Failure::Responder(SecureError::HandshakeFailed))
    );
    // The responder answered nothing: no key, no hello.
    assert_eq!(responder.poll_record(), None);
    assert!(responder.peer().is_none() && initiator.peer().is_none());
    assert_eq!(responder.handle_input(b"more"), Err(SecureError::Poisoned));
    assert!(responder.finish().is_err());
    // An initiator of network 7 shown a genuine answer from network 8 fails as well.
    let (mut other_initiator, mut other_responder) = pair(8, 8);
    other_responder.handle_record(&other_initiator.poll_record().unwrap()).unwrap();
    let answer = other_responder.poll_record().unwrap();
    assert_eq!(initiator.handle_record(&answer), Err(SecureError::HandshakeFailed));
    assert_eq!(initiator.poll_record(), None);
    assert!(initiator.peer().is_none());
    assert!(initiator.finish().is_err());
}

#[test]
fn an_open_protocol_client_is_refused() {
    let (_, mut responder) = pair(7, 7);
    let header = br#"{"HostName":"10.0.0.9","PortNumber":7001,"Action":4}"#;
    let mut frame = BytesMut::new();
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    assert_eq!(responder.handle_input(&frame), Err(SecureError::HandshakeFailed));
    assert_eq!(responder.poll_record(), None);
}

#[test]
fn a_pinned_id_refuses_any_other_key_naming_both() {
    let (initiator, mut responder) = pair(7, 7);
    let pinned = identity(9).node_id();
    let mut initiator = initiator.require_peer(pinned);
    let err = run_stream(&mut initiator, &mut responder, usize::MAX).unwrap_err();
    let presented = identity(2).node_id();
    assert_eq!(err, Failure::Initiator(SecureError::PeerMismatch { pinned, presented }));
    let message = SecureError::PeerMismatch { pinned, presented }.to_string();
    assert!(message.contains(&pinned.to_string()) && message.contains(&presented.to_string()), "{message}");
    // The initiator refused before showing its own key: it has nothing more to send.
    assert_eq!(initiator.poll_record(), None);

    // The responder side pins too; and the right pin passes on both.
    let (initiator, responder) = pair(7, 7);
    let mut responder = responder.require_peer(pinned);
    let mut initiator = initiator.require_peer(identity(2).node_id());
    let err = run_stream(&mut initiator, &mut responder, usize::MAX).unwrap_err();
    assert_eq!(err, Failure::Responder(SecureError::PeerMismatch { pinned, presented: identity(1).node_id() }));
    let (initiator, responder) = pair(7, 7);
    let mut initiator = initiator.require_peer(identity(2).node_id());
    let mut responder = responder.require_peer(identity(1).node_id());
    run_stream(&mut initiator, &mut responder, usize::MAX).unwrap();
}

#[test]
fn a_changed_byte_anywhere_is_detected_and_fatal() {
    let ((mut a, _), _) = establish();
    let mut wire = BytesMut::new();
    a.seal(&plaintext(1000), &mut wire).unwrap();
    for position in [4, 5, 500, wire.len() - 17, wire.len() - 1] {
        let (_, (mut b, _)) = establish();
        let mut tampered = wire.clone();
        tampered[position] ^= 0x01;
        let mut out = BytesMut::from(&b"kept"[..]);
        assert_eq!(b.open(&tampered, &mut out), Err(SecureError::Decrypt), "byte {position}");
        assert_eq!(&out[..], b"kept", "nothing of a failed record is delivered");
        assert_eq!(b.open(&wire, &mut out), Err(SecureError::Poisoned));
    }
}

#[test]
fn a_replayed_or_reordered_record_is_detected() {
    let ((mut a, _), (mut b, _)) = establish();
    let (mut first, mut second) = (BytesMut::new(), BytesMut::new());
    a.seal(b"pay alice", &mut first).unwrap();
    a.seal(b"pay bob", &mut second).unwrap();
    let mut out = BytesMut::new();
    b.open(&first, &mut out).unwrap();
    assert_eq!(b.open(&first, &mut out), Err(SecureError::Decrypt));
    assert_eq!(&out[..], b"pay alice");

    let ((mut a, _), (mut b, _)) = establish();
    let (mut first, mut second) = (BytesMut::new(), BytesMut::new());
    a.seal(b"one", &mut first).unwrap();
    a.seal(b"two", &mut second).unwrap();
    assert_eq!(b.open(&second, &mut BytesMut::new()), Err(SecureError::Decrypt));
}

#[test]
fn a_record_prefix_over_the_limit_is_refused_before_allocating() {
    let ((_, _), (mut b, _)) = establish();
    let mut out = BytesMut::new();
    let prefix = ((MAX_TRANSPORT_RECORD_LEN + 1) as u32).to_be_bytes();
    assert_eq!(
        b.open(&prefix, &mut out),
        Err(SecureError::RecordTooLong { len: MAX_TRANSPORT_RECORD_LEN + 1, limit: MAX_TRANSPORT_RECORD_LEN })
    );
    assert_eq!(b.buffered_len(), 0);
    assert!(out.capacity() == 0, "nothing was reserved for the record");
    let ((_, _), (mut b, _)) = establish();
    let mut buf = BytesMut::from(&prefix[..]);
    assert!(matches!(b.open_buf(&mut buf, &mut out), Err(SecureError::RecordTooLong { .. })));
    assert!(buf.capacity() < 64, "nothing was reserved for the record");
    let ((_, _), (b, _)) = establish();
    let (_, mut b) = b.split();
    let (mut buf, mut plain, mut sealed) = (prefix.to_vec(), 0, 0);
    assert!(matches!(b.open_in_place(&mut buf, &mut plain, &mut sealed), Err(SecureError::RecordTooLong { .. })));
    // The handshake's limit is smaller still.
    let (_, mut responder) = pair(7, 7);
    let prefix = ((HANDSHAKE_RECORD_LIMIT + 1) as u32).to_be_bytes();
    assert!(matches!(responder.handle_input(&prefix), Err(SecureError::RecordTooLong { .. })));
    let (_, mut responder) = pair(7, 7);
    assert!(matches!(
        responder.handle_record(&[0; HANDSHAKE_RECORD_LIMIT + 1]),
        Err(SecureError::RecordTooLong { .. })
    ));
    // A record too short to hold its tag cannot authenticate.
    let ((_, _), (mut b, _)) = establish();
    assert_eq!(b.open(&[0, 0, 0, 3, 1, 2, 3], &mut out), Err(SecureError::Decrypt));
}

#[test]
fn records_out_of_turn_and_early_finish_are_refused() {
    let (mut initiator, mut responder) = pair(7, 7);
    let first = initiator.poll_record().unwrap();
    responder.handle_record(&first).unwrap();
    // A replayed first message where the third is due does not authenticate.
    assert_eq!(responder.handle_record(&first), Err(SecureError::HandshakeFailed));

    let (mut initiator, mut responder) = pair(7, 7);
    assert!(matches!(pair(7, 7).0.finish(), Err(SecureError::Sequence(_))));
    responder.handle_record(&initiator.poll_record().unwrap()).unwrap();
    initiator.handle_record(&responder.poll_record().unwrap()).unwrap();
    assert!(initiator.peer().is_some() && !initiator.is_finished(), "its last message is still to send");
    let last = initiator.poll_record().unwrap();
    responder.handle_record(&last).unwrap();
    assert!(matches!(responder.handle_record(&last), Err(SecureError::Sequence(_))));
}

#[test]
fn an_over_long_hello_is_refused_at_the_start() {
    let config = config(1, 1, Hello::listening_at("h".repeat(MAX_HELLO_LEN)));
    assert!(matches!(Handshake::responder(&config, entropy(1)), Err(SecureError::BadHello(_))));
}

#[test]
fn fresh_entropy_means_fresh_keys() {
    let first = pair(7, 7).0.poll_record().unwrap();
    let again = pair(7, 7).0.poll_record().unwrap();
    assert_eq!(first, again, "the same entropy gives the same ephemeral key: drivers must not reuse it");
    let mut other = Handshake::initiator(&config(1, 7, Hello::default()), entropy(3)).unwrap();
    assert_ne!(first, other.poll_record().unwrap());
}

/// Records through a stream, then 1 MiB each way: the two ends really share keys.
fn exchange(initiator: &SecureConfig, responder: &SecureConfig) -> Result<Suite, Failure> {
    let (mut i, mut r) = pair_of(initiator, responder);
    run_stream(&mut i, &mut r, 1000)?;
    let ((mut a, _), (mut b, _)) = (i.finish().unwrap(), r.finish().unwrap());
    assert_eq!(a.suite(), b.suite());
    let sent = plaintext(1 << 20);
    let one_way = |from: &mut SecureChannel, to: &mut SecureChannel| {
        let (mut wire, mut got) = (BytesMut::new(), BytesMut::new());
        from.seal(&sent, &mut wire).unwrap();
        to.open(&wire, &mut got).unwrap();
        assert!(got[..] == sent[..]);
    };
    one_way(&mut a, &mut b);
    one_way(&mut b, &mut a);
    Ok(a.suite())
}

#[test]
fn the_initiator_picks_the_suite_and_any_responder_follows() {
    assert_eq!(config(1, 7, Hello::default()).suite, Suite::preferred());
    for suite in Suite::ALL {
        let mut initiator = config(1, 7, Hello::default());
        initiator.suite = suite;
        let mut responder = config(2, 7, Hello::default());
        responder.suite = if suite == Suite::AesGcm { Suite::ChaChaPoly } else { Suite::AesGcm };
        assert_eq!(exchange(&initiator, &responder), Ok(suite));
    }
}

#[test]
fn native_and_pure_rust_ciphers_interoperate() {
    // What a browser peer (pure Rust in wasm) and a native node (ring) run, in both roles.
    for suite in Suite::ALL {
        for pure_rust_dials in [true, false] {
            let (mut browser, mut node) = (config(1, 7, Hello::default()), config(2, 7, Hello::default()));
            browser.providers = noise::Providers::PureRust;
            browser.suite = suite;
            node.suite = suite;
            let (initiator, responder) = if pure_rust_dials { (&browser, &node) } else { (&node, &browser) };
            assert_eq!(exchange(initiator, responder), Ok(suite));
        }
    }
}

#[test]
fn a_changed_suite_byte_fails_like_a_wrong_secret() {
    for suite_byte in [1, 2, 0, 3, b'{'] {
        let (mut initiator, mut responder) = pair(7, 7);
        let mut first = initiator.poll_record().unwrap().to_vec();
        if first[0] == suite_byte {
            continue;
        }
        first[0] = suite_byte;
        assert_eq!(responder.handle_record(&first), Err(SecureError::HandshakeFailed), "suite byte {suite_byte}");
        assert_eq!(responder.poll_record(), None);
    }
}

#[test]
fn split_halves_keep_order_and_refuse_replays() {
    let ((a, _), (b, _)) = establish();
    let ((mut a_seal, mut a_open), (mut b_seal, mut b_open)) = (a.split(), b.split());
    let (mut wire, mut out) = (BytesMut::new(), BytesMut::new());
    a_seal.seal(b"one", &mut wire).unwrap();
    let first = wire.clone();
    a_seal.seal(&plaintext(200_000), &mut wire).unwrap();
    b_open.open_buf(&mut wire, &mut out).unwrap();
    assert_eq!(&out[..3], b"one");
    assert_eq!(&out[3..], &plaintext(200_000)[..]);
    assert_eq!(b_open.open(&first, &mut out), Err(SecureError::Decrypt), "a replay fails");
    let mut back = BytesMut::new();
    b_seal.seal(b"answer", &mut back).unwrap();
    let mut got = BytesMut::new();
    a_open.open(&back, &mut got).unwrap();
    assert_eq!(&got[..], b"answer");
}

#[test]
fn a_first_record_is_told_from_a_plaintext_frame() {
    let (mut initiator, _) = pair(7, 7);
    assert!(Handshake::is_first_record(&initiator.poll_record().unwrap()));
    for suite in Suite::ALL {
        let mut config = config(1, 7, Hello::default());
        config.suite = suite;
        assert!(Handshake::is_first_record(&Handshake::initiator(&config, entropy(3)).unwrap().poll_record().unwrap()));
    }
    // What an open-protocol client sends first on a WebSocket: a JSON header.
    assert!(!Handshake::is_first_record(br#"{"Action":"Query","Token":"t"}"#));
    assert!(!Handshake::is_first_record(b" {}"));
    assert!(!Handshake::is_first_record(b""));
}

/// Seals `pieces` as records where they lie, each behind room for its prefix, as a
/// writer that reads chunks straight into its output does.
fn seal_pieces_in_place(sealer: &mut Sealer, pieces: &[&[u8]]) -> BytesMut {
    let mut wire = BytesMut::new();
    for piece in pieces {
        let start = wire.len();
        wire.extend_from_slice(&[0; RECORD_PREFIX_LEN]);
        wire.extend_from_slice(piece);
        sealer.seal_in_place(&mut wire, start).unwrap();
        assert_eq!(wire.len(), start + RECORD_PREFIX_LEN + piece.len() + TAG_LEN);
    }
    wire
}

#[test]
fn records_sealed_in_place_open_in_place_in_any_reads() {
    let ((a, _), (b, _)) = establish();
    let ((mut sealer, _), (_, mut opener)) = (a.split(), b.split());
    let data = plaintext(3 * MAX_TRANSPORT_PLAINTEXT + 100);
    // A whole 64 KiB chunk frame and more in one record, an empty one, the largest.
    let pieces: Vec<&[u8]> = vec![
        &data[..65_536 + 300],
        &data[..0],
        &data[1..MAX_TRANSPORT_PLAINTEXT + 1],
        &data[7..100],
        &data[..MAX_TRANSPORT_PLAINTEXT],
    ];
    let wire = seal_pieces_in_place(&mut sealer, &pieces);
    let want: Vec<u8> = pieces.concat();
    for read in [1, 5, 1000, 65_557, 100_003, wire.len()] {
        let ((a, _), (b, _)) = establish();
        let ((mut sealer, _), (_, mut opener)) = (a.split(), b.split());
        let wire = seal_pieces_in_place(&mut sealer, &pieces);
        // One buffer, as the reader keeps it: plaintext taken off the front as it opens.
        let (mut buf, mut plain, mut sealed, mut got) = (Vec::new(), 0, 0, Vec::new());
        for piece in wire.chunks(read) {
            buf.extend_from_slice(piece);
            opener.open_in_place(&mut buf, &mut plain, &mut sealed).unwrap();
            assert!(buf.len() - sealed <= RECORD_PREFIX_LEN + MAX_TRANSPORT_RECORD_LEN, "a partial record at most");
            got.extend_from_slice(&buf[..plain]);
            buf.drain(..sealed);
            (plain, sealed) = (0, 0);
        }
        assert_eq!(sealed, buf.len(), "all opened, reads of {read}");
        assert!(got == want, "reads of {read}");
    }
    // Plaintext left in front (a partial frame) stays and the next record follows it.
    let mut buf = wire.to_vec();
    let (mut plain, mut sealed) = (0, 0);
    opener.open_in_place(&mut buf[..RECORD_PREFIX_LEN + pieces[0].len() + TAG_LEN], &mut plain, &mut sealed).unwrap();
    assert_eq!(plain, pieces[0].len());
    opener.open_in_place(&mut buf, &mut plain, &mut sealed).unwrap();
    assert!(buf[..plain] == want[..], "records moved down behind the plaintext before them");
    // The stream form of the other API reads what was sealed in place, and vice versa.
    let ((a, _), (mut b, _)) = establish();
    let (mut sealer, _) = a.split();
    let wire = seal_pieces_in_place(&mut sealer, &pieces);
    let mut out = BytesMut::new();
    b.open(&wire, &mut out).unwrap();
    assert!(out[..] == want[..]);
    let ((mut a, _), (b, _)) = establish();
    let (_, mut opener) = b.split();
    let mut wire = BytesMut::new();
    a.seal(&want, &mut wire).unwrap();
    let (mut buf, mut plain, mut sealed) = (wire.to_vec(), 0, 0);
    opener.open_in_place(&mut buf, &mut plain, &mut sealed).unwrap();
    assert!(buf[..plain] == want[..]);
}

#[test]
fn in_place_records_fail_on_tampering_replay_and_size() {
    let ((a, _), (b, _)) = establish();
    let ((mut sealer, _), (_, opener)) = (a.split(), b.split());
    let wire = seal_pieces_in_place(&mut sealer, &[b"first", b"second"]);
    let first_len = RECORD_PREFIX_LEN + 5 + TAG_LEN;
    let open = |mut opener: Opener, mut buf: Vec<u8>| {
        let (mut plain, mut sealed) = (0, 0);
        let result = opener.open_in_place(&mut buf, &mut plain, &mut sealed);
        // Poisoned after a failure.
        let again = opener.open_in_place(&mut buf, &mut plain, &mut sealed);
        (result, again, buf[..plain].to_vec())
    };
    let fresh = || {
        let ((_, _), (b, _)) = establish();
        b.split().1
    };
    // A flipped bit anywhere in the body or the tag.
    for at in [RECORD_PREFIX_LEN, first_len - 1] {
        let mut bad = wire.to_vec();
        bad[at] ^= 1;
        let (result, again, plain) = open(fresh(), bad);
        assert_eq!(result, Err(SecureError::Decrypt), "bit {at}");
        assert_eq!(again, Err(SecureError::Poisoned));
        assert!(plain.is_empty());
    }
    // A record replayed, or the second one first.
    let mut replayed = wire[..first_len].to_vec();
    replayed.extend_from_slice(&wire[..first_len]);
    let (result, _, plain) = open(opener, replayed);
    assert_eq!((result, &plain[..]), (Err(SecureError::Decrypt), &b"first"[..]));
    let (result, _, _) = open(fresh(), wire[first_len..].to_vec());
    assert_eq!(result, Err(SecureError::Decrypt));
    // A record shorter than its tag.
    let (result, _, _) = open(fresh(), vec![0, 0, 0, 3, 1, 2, 3]);
    assert_eq!(result, Err(SecureError::Decrypt));
    // Sealing more than a record holds is refused and leaves the output as it was.
    let mut out = BytesMut::from(&b"kept"[..]);
    out.extend_from_slice(&vec![0; RECORD_PREFIX_LEN + MAX_TRANSPORT_PLAINTEXT + 1]);
    assert!(matches!(sealer.seal_in_place(&mut out, 4), Err(SecureError::RecordTooLong { .. })));
    assert_eq!(&out[..], b"kept");
}
