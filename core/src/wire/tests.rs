//! Round trips through encoding and decoding, the original spellings, and the limits.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::layout::{ChunkIndex, CHUNK_SIZE};
use crate::manifest::Digest;
use crate::name::FileName;
use crate::status::Status;
#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn name(s: &str) -> FileName {
    FileName::new(s).unwrap()
}

/// Runs bytes through the TCP decoder and the message reader, as a node does.
fn decode_stream(mut buf: BytesMut) -> Vec<Result<Envelope, WireError>> {
    let mut reader = MessageReader::new();
    let mut out = Vec::new();
    loop {
        match FrameDecoder::decode(&mut buf, reader.frame_limit()) {
            Ok(Some(frame)) => match reader.push_frame(frame) {
                Ok(Some(env)) => out.push(Ok(env)),
                Ok(None) => {}
                Err(e) => out.push(Err(e)),
            },
            Ok(None) => return out,
            Err(e) => {
                out.push(Err(e));
                return out;
            }
        }
    }
}

fn raw_frames(frames: &[&[u8]]) -> BytesMut {
    let mut buf = BytesMut::new();
    for f in frames {
        buf.extend_from_slice(&frame_prefix(f.len()));
        buf.extend_from_slice(f);
    }
    buf
}

fn round_trip(message: Message) {
    let env = Envelope { from: Some(PeerAddr::new("127.0.0.1", 7001)), token: Some("t".into()), message };
    let mut buf = BytesMut::new();
    env.encode().write_tcp(&mut buf);
    let got = decode_stream(buf);
    assert_eq!(got, vec![Ok(env)]);
}

#[test]
fn every_message_round_trips() {
    let chunk = ChunkRef { file: name("dir/a.bin"), size: CHUNK_SIZE + 5, index: ChunkIndex(1) };
    let entry = FileEntry {
        name: name("a"),
        size: 3 * CHUNK_SIZE,
        digest: Digest([7; 32]),
        chunks: vec![ChunkIndex(0), ChunkIndex(2)],
    };
    let messages: Vec<Message> = vec![
        Control::Join.into(),
        Control::Leave.into(),
        Control::Insert { path: "/tmp/x y.txt".into() }.into(),
        Control::Query { file: None }.into(),
        Control::Query { file: Some(name("a/b")) }.into(),
        Control::Limit { upload: None, download: None }.into(),
        Control::Limit { upload: Some(2 << 20), download: Some(0) }.into(),
        Control::Torrent { file: name("a/b.iso"), trackers: vec![] }.into(),
        Control::Torrent { file: name("c"), trackers: vec!["http://t/a".into(), "udp://u:80".into()] }.into(),
        Control::AddTorrent { torrent: Bytes::from_static(b"d4:infodee"), peers: vec![] }.into(),
        Control::AddTorrent { torrent: Bytes::from_static(b"de"), peers: vec!["10.0.0.5:6881".into()] }.into(),
        PeerMessage::Add { files: vec![entry.clone()] }.into(),
        PeerMessage::Remove.into(),
        PeerMessage::Files {
            files: vec![entry, FileEntry { name: name("e"), size: 0, digest: Digest([1; 32]), chunks: vec![] }],
        }
        .into(),
        PeerMessage::download(chunk.clone()).into(),
        PeerMessage::Download { chunk: chunk.clone(), uplink_delay: Some(41_500) }.into(),
        PeerMessage::upload(chunk.clone(), Bytes::from_static(b"hello")).into(),
        PeerMessage::Upload {
            chunk: chunk.clone(),
            data: Bytes::from_static(b"hello"),
            stamps: Stamps { sent: Some(1_764_787_200_000_123), arrived: None },
        }
        .into(),
        PeerMessage::Have(vec![
            HaveEntry { chunk: chunk.clone(), digest: Some(Digest([9; 32])) },
            HaveEntry { chunk, digest: None },
        ])
        .into(),
        PeerMessage::GetManifest { file: name("a") }.into(),
        Control::Delete { file: name("dir/a.bin") }.into(),
        PeerMessage::Tombstones(vec![
            Tombstone { file: name("a"), digest: Digest([4; 32]), time: 1_764_787_200_000 },
            Tombstone { file: name("b/c"), digest: Digest([6; 32]), time: 0 },
        ])
        .into(),
        PeerMessage::Manifest {
            file: name("a"),
            size: 10,
            digest: Digest([3; 32]),
            hashes: Bytes::from(vec![5u8; 32]),
        }
        .into(),
        Message::Reply(Reply::code(Code::FileExists)),
        Message::Reply(Reply {
            torrent: Some(Box::new(TorrentExport {
                torrent: Bytes::from_static(b"d4:infode"),
                seeder: Some("h:6881".into()),
            })),
            ..Reply::code(Code::Ok)
        }),
        Message::Reply(Reply {
            torrent: Some(Box::new(TorrentExport { torrent: Bytes::from_static(b"de"), seeder: None })),
            ..Reply::code(Code::Ok)
        }),
        Message::Reply(Reply { limits: Some(RateLimits { upload: 0, download: 500 }), ..Reply::code(Code::Ok) }),
        Message::Reply(Reply {
            code: Some(Code::Ok),
            status: Some(Box::new(Status {
                num_files: 1,
                files: vec!["a".into()],
                local: vec![0.5],
                ..Status::default()
            })),
            ..Reply::default()
        }),
        Message::Reply(Reply {
            code: Some(Code::FileMissing),
            about: Some(FileRef { name: name("a"), chunk: Some((10, ChunkIndex(0))) }),
            reason: Some("gone".into()),
            ..Reply::default()
        }),
    ];
    for m in messages {
        round_trip(m);
    }
}

#[test]
fn a_status_too_large_for_a_header_travels_as_a_body() {
    let n = 3000;
    let status = Status {
        num_files: n,
        files: (0..n).map(|i| format!("some-rather-long-file-name-{i}.bin")).collect(),
        local: vec![0.5; n],
        system: vec![1.0; n],
        least_replication: vec![2; n],
        weighted_least_replication: vec![2.5; n],
        ..Status::default()
    };
    let message = Message::Reply(Reply { status: Some(Box::new(status)), ..Reply::code(Code::Ok) });
    let encoded = Envelope { from: None, token: None, message: message.clone() }.encode();
    assert!(encoded.header.len() <= HEADER_LIMIT && encoded.body.is_some());
    round_trip(message);
}

#[test]
fn accepts_original_spellings() {
    let header = br#"{"HostName":"h","PortNumber":"7001","Action":6}"#;
    let body = br#"{"Files":[{"file":"a","Size":131072,"Digest":"0707070707070707070707070707070707070707070707070707070707070707","chunks":"[1, 0]"}]}"#;
    let got = decode_stream(raw_frames(&[header, body]));
    let Ok(Envelope { from, message: Message::Peer(PeerMessage::Files { files }), .. }) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(from.as_ref().unwrap(), &PeerAddr::new("h", 7001));
    assert_eq!(files[0].chunks, vec![ChunkIndex(0), ChunkIndex(1)]);
    // A control message from the original document, trailing comma aside.
    let got = decode_stream(raw_frames(&[br#"{"HostName":"h","PortNumber":"1","Action":0}"#]));
    assert_eq!(got[0].as_ref().unwrap().message, Control::Join.into());
}

#[test]
fn limits_are_checked_before_reading() {
    // A length prefix near 4 GiB is refused from the prefix alone.
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xf0][..]);
    assert!(matches!(FrameDecoder::decode(&mut buf, HEADER_LIMIT), Err(WireError::FrameTooLong { .. })));
    // A header over 64 KiB.
    let big = vec![b' '; HEADER_LIMIT + 1];
    let got = decode_stream(raw_frames(&[&big]));
    assert!(got[0].as_ref().unwrap_err().is_fatal());
    // An Upload body longer than its chunk.
    let header = br#"{"HostName":"h","PortNumber":1,"Action":8,"Files":[{"FileName":"a","chunks":[10,0]}]}"#;
    let got = decode_stream(raw_frames(&[header, &[0u8; 11]]));
    assert!(got[0].as_ref().unwrap_err().is_fatal());
    // Shorter is a bad request, not fatal.
    let got = decode_stream(raw_frames(&[header, &[0u8; 9]]));
    assert_eq!(got[0].as_ref().unwrap_err(), &WireError::BadRequest("chunk body has 9 bytes, expected 10".into()));
}

#[test]
fn bad_requests_keep_the_stream_in_step() {
    let cases: &[&[u8]] = &[
        b"not json",
        br#"{"Action":"zero"}"#,
        br#"{"Action":42}"#,
        br#"{"HostName":"h"}"#,
        br#"{"Action":7,"Files":[{"FileName":"../x","chunks":[10,0]}]}"#,
        br#"{"Action":7,"Files":[{"FileName":"/etc/passwd","chunks":[10,0]}]}"#,
        br#"{"Action":7,"Files":[{"FileName":"a","chunks":[10,-1]}]}"#,
        br#"{"Action":7,"Files":[{"FileName":"a","chunks":[10,1]}]}"#,
        br#"{"Action":7,"Files":[{"FileName":"a","chunks":[0,0]}]}"#,
        br#"{"Action":7,"Files":[{"FileName":"a","chunks":[99999999999999999,0]}]}"#,
        br#"{"Action":2,"Files":[]}"#,
        br#"{"Action":9,"Files":[]}"#,
        br#"{"Action":3,"PortNumber":70000,"HostName":"h"}"#,
    ];
    for case in cases {
        let got = decode_stream(raw_frames(&[case, br#"{"Action":3}"#]));
        assert!(matches!(got[0], Err(WireError::BadRequest(_))), "{}: {got:?}", String::from_utf8_lossy(case));
        assert_eq!(
            got[1].as_ref().unwrap().message,
            Control::Query { file: None }.into(),
            "stream stays usable after {case:?}"
        );
    }
    // A refused Upload header has its body skipped.
    let header = br#"{"Action":8,"Files":[{"FileName":"..","chunks":[10,0]}]}"#;
    let got = decode_stream(raw_frames(&[header, &[0u8; 10], br#"{"Action":3}"#]));
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].as_ref().unwrap().message, Control::Query { file: None }.into());
}

#[test]
fn action_numbers_decode_as_they_encode() {
    for n in 0..19 {
        assert_eq!(Action::try_from(n).map(|a| i64::from(u8::from(a))), Ok(n));
    }
    assert!(Action::try_from(19).is_err() && Action::try_from(-1).is_err());
    assert_eq!(Code::from_number(6), Some(Code::BadRequest));
    assert_eq!(Code::from_number(7), Some(Code::NoSpace));
    assert_eq!(Code::from_number(8), None);
}

#[test]
fn peer_addresses_parse() {
    assert_eq!("127.0.0.1:7001".parse::<PeerAddr>().unwrap(), PeerAddr::new("127.0.0.1", 7001));
    assert_eq!("localhost 7002".parse::<PeerAddr>().unwrap(), PeerAddr::new("localhost", 7002));
    assert_eq!("[::1]:7003".parse::<PeerAddr>().unwrap(), PeerAddr::new("::1", 7003));
    assert_eq!(PeerAddr::new("::1", 7003).to_string(), "[::1]:7003");
    assert!("nohost".parse::<PeerAddr>().is_err());
    assert!("h:99999".parse::<PeerAddr>().is_err());
}

#[test]
fn a_control_only_reader_refuses_any_body_before_reading_it() {
    let mut reader = MessageReader::control_only();
    let query = Envelope { from: None, token: Some("t".into()), message: Control::Query { file: None }.into() };
    assert_eq!(reader.push_frame(query.encode().header), Ok(Some(query)));
    // Bodiless peer messages reach the node, which refuses them itself.
    let remove = Envelope { from: None, token: None, message: PeerMessage::Remove.into() };
    assert_eq!(reader.push_frame(remove.encode().header), Ok(Some(remove)));
    // A header announcing a body ends the connection; valid or not, nothing more is read.
    let add = Envelope { from: None, token: None, message: PeerMessage::Add { files: vec![] }.into() };
    let err = reader.push_frame(add.encode().header).unwrap_err();
    assert_eq!(err, WireError::ControlOnly);
    assert!(err.is_fatal());
    let mut reader = MessageReader::control_only();
    let bad_upload = br#"{"Action": 8, "Files": [{"FileName": "../x", "chunks": [10, 0]}]}"#;
    assert_eq!(reader.push_frame(Bytes::from_static(bad_upload)), Err(WireError::ControlOnly));
    // The ordinary reader reads the same Add and waits for its body.
    let mut open = MessageReader::new();
    assert_eq!(open.push_frame(add.encode().header), Ok(None));
    assert_eq!(open.frame_limit(), LIST_BODY_LIMIT);
}

#[test]
fn tombstones_need_a_digest_and_a_time_and_delete_a_valid_name() {
    let refused = |header: &str| {
        let got = decode_stream(raw_frames(&[header.as_bytes()]));
        assert!(matches!(got[..], [Err(WireError::BadRequest(_))]), "{header}: {got:?}");
    };
    let digest = "04".repeat(32);
    refused(r#"{"HostName":"h","PortNumber":1,"Action":13,"Files":[]}"#);
    refused(r#"{"HostName":"h","PortNumber":1,"Action":13,"Files":[{"FileName":"a","Removed":5}]}"#);
    refused(&format!(
        r#"{{"HostName":"h","PortNumber":1,"Action":13,"Files":[{{"FileName":"a","Digest":"{digest}"}}]}}"#
    ));
    refused(&format!(
        r#"{{"HostName":"h","PortNumber":1,"Action":13,"Files":[{{"FileName":"../a","Digest":"{digest}","Removed":5}}]}}"#
    ));
    refused(r#"{"Action":12,"Token":"t","Files":[{"FileName":".torronto/token"}]}"#);
    refused(r#"{"Action":12,"Token":"t"}"#);
}

#[test]
fn torrent_requests_name_one_file_and_bounded_tracker_urls() {
    let refused = |header: String| {
        let got = decode_stream(raw_frames(&[header.as_bytes()]));
        assert!(matches!(&got[..], [Err(WireError::BadRequest(_))]), "{header}: {got:?}");
    };
    refused(r#"{"Action":15}"#.into());
    refused(r#"{"Action":15,"Files":[{"FileName":"../x"}]}"#.into());
    for bad in ["ftp://x", "http://", "http://a b", "x", &format!("http://{}", "a".repeat(MAX_TRACKER_LEN))] {
        refused(format!(r#"{{"Action":15,"Files":[{{"FileName":"a"}}],"Trackers":[{bad:?}]}}"#));
    }
    let many = vec!["http://t/a"; MAX_TRACKERS + 1];
    refused(format!(r#"{{"Action":15,"Files":[{{"FileName":"a"}}],"Trackers":{many:?}}}"#));
    let ok = decode_stream(raw_frames(&[br#"{"Action":15,"Files":[{"FileName":"a"}],"Trackers":["https://t/a"]}"#]));
    let want = Control::Torrent { file: name("a"), trackers: vec!["https://t/a".into()] };
    assert!(matches!(&ok[..], [Ok(Envelope { message: Message::Control(c), .. })] if *c == want), "{ok:?}");
}

#[test]
fn add_torrent_requests_carry_the_torrent_as_a_body_and_bounded_peers() {
    let refused = |header: String| {
        let got = decode_stream(raw_frames(&[header.as_bytes(), b"de"]));
        assert!(matches!(&got[0], Err(WireError::BadRequest(_))), "{header}: {got:?}");
    };
    refused(format!(r#"{{"Action":17,"BitTorrentPeers":{:?}}}"#, vec!["h:1"; MAX_ADD_PEERS + 1]));
    refused(r#"{"Action":17,"BitTorrentPeers":["no-port"]}"#.into());
    let ok = decode_stream(raw_frames(&[br#"{"Action":17,"BitTorrentPeers":["h:1"]}"#, b"d4:infodee"]));
    let want = Control::AddTorrent { torrent: Bytes::from_static(b"d4:infodee"), peers: vec!["h:1".into()] };
    assert!(matches!(&ok[..], [Ok(Envelope { message: Message::Control(c), .. })] if *c == want), "{ok:?}");
    // Not on a connection that may make control requests only: no body is read there.
    let mut reader = MessageReader::control_only();
    assert!(matches!(reader.push_frame(Bytes::from_static(br#"{"Action":17}"#)), Err(WireError::ControlOnly)));
}

#[test]
fn a_have_lists_each_files_chunks_in_one_entry_and_is_bounded() {
    let size = 10 * CHUNK_SIZE;
    let have = |file: &str, i: u32, digest: Option<Digest>| HaveEntry {
        chunk: ChunkRef { file: name(file), size, index: ChunkIndex(i) },
        digest,
    };
    let d = Some(Digest([7; 32]));
    let message: Message =
        PeerMessage::Have(vec![have("a", 1, d), have("b", 0, None), have("a", 2, d), have("a", 3, d)]).into();
    let env = Envelope { from: Some(PeerAddr::new("127.0.0.1", 7001)), token: None, message };
    let encoded = env.encode();
    let header = std::str::from_utf8(&encoded.header).unwrap();
    assert!(header.contains(&format!(r#""chunks":[{size},1,2,3]"#)), "{header}");
    assert_eq!(header.matches("FileName").count(), 2, "{header}");
    let mut buf = BytesMut::new();
    encoded.write_tcp(&mut buf);
    let Ok(Envelope { message: Message::Peer(PeerMessage::Have(got)), .. }) = decode_stream(buf).remove(0) else {
        panic!("a Have")
    };
    assert_eq!(got, vec![have("a", 1, d), have("a", 2, d), have("a", 3, d), have("b", 0, None)]);

    // The seed's one chunk per entry still reads; an entry without a chunk, a chunk past
    // the end, or more chunks than a Have may carry do not.
    let read = |chunks: &str| {
        let header =
            format!(r#"{{"HostName":"h","PortNumber":1,"Action":9,"Files":[{{"FileName":"a","chunks":{chunks}}}]}}"#);
        decode_stream(raw_frames(&[header.as_bytes()])).remove(0)
    };
    assert!(read(&format!("[{size},4]")).is_ok());
    for bad in [format!("[{size}]"), format!("[{size},1,10]"), format!("[{size}{}]", ",1".repeat(MAX_HAVE_CHUNKS + 1))]
    {
        assert!(matches!(read(&bad), Err(WireError::BadRequest(_))), "{bad}");
    }
}
