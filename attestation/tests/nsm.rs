//! NSM API codec (byte-compatible with the nsm-api crate's serde encoding), PCR bank semantics,
//! the device logic, and hostile request bytes (which must never panic).

use std::time::Duration;

use attestation::ca::{Ca, LeafAttester};
use attestation::nsm::{
    decode_request, decode_response, encode_request, encode_response, handle, handle_with_limit,
    BootPcrs, Digest, ErrorCode, PcrBank, Request, Response, MAX_REQUEST_SIZE,
};
use attestation::pcr::{extend, Measurements};
use attestation::verify::{verify, Policy};

fn all_requests() -> Vec<Request> {
    vec![
        Request::DescribePCR { index: 3 },
        Request::ExtendPCR {
            index: 16,
            data: b"hello".to_vec(),
        },
        Request::LockPCR { index: 17 },
        Request::LockPCRs { range: 20 },
        Request::DescribeNSM,
        Request::Attestation {
            user_data: Some(b"u".to_vec()),
            nonce: None,
            public_key: Some(vec![1; 1024]),
        },
        Request::Attestation {
            user_data: None,
            nonce: None,
            public_key: None,
        },
        Request::GetRandom,
    ]
}

#[test]
fn wire_bytes_match_serde_externally_tagged_encoding() {
    // serde_cbor/ciborium of `Request::DescribeNSM`: the text string "DescribeNSM".
    assert_eq!(encode_request(&Request::DescribeNSM), b"\x6bDescribeNSM");
    // `Request::DescribePCR { index: 1 }`: {"DescribePCR": {"index": 1}}.
    assert_eq!(
        encode_request(&Request::DescribePCR { index: 1 }),
        b"\xa1\x6bDescribePCR\xa1\x65index\x01"
    );
    // `ExtendPCR` data is a byte string (serde_bytes).
    assert_eq!(
        encode_request(&Request::ExtendPCR {
            index: 16,
            data: vec![0xab]
        }),
        b"\xa1\x69ExtendPCR\xa2\x65index\x10\x64data\x41\xab"
    );
    // Options: null when absent.
    assert_eq!(
        encode_request(&Request::Attestation {
            user_data: None,
            nonce: Some(vec![1]),
            public_key: None
        }),
        b"\xa1\x6bAttestation\xa3\x69user_data\xf6\x65nonce\x41\x01\x6apublic_key\xf6".as_slice()
    );
    // `Response::Error(ErrorCode::InvalidIndex)`: {"Error": "InvalidIndex"}.
    assert_eq!(
        encode_response(&Response::Error(ErrorCode::InvalidIndex)),
        b"\xa1\x65Error\x6cInvalidIndex"
    );
    assert_eq!(encode_response(&Response::LockPCRs), b"\x68LockPCRs");
}

#[test]
fn requests_and_responses_round_trip() {
    for req in all_requests() {
        assert_eq!(decode_request(&encode_request(&req)).unwrap(), req);
    }
    let responses = vec![
        Response::DescribePCR {
            lock: true,
            data: vec![1; 48],
        },
        Response::ExtendPCR { data: vec![2; 48] },
        Response::LockPCR,
        Response::LockPCRs,
        Response::DescribeNSM {
            version_major: 1,
            version_minor: 0,
            version_patch: 0,
            module_id: "enc-1".into(),
            max_pcrs: 32,
            locked_pcrs: (0..16).collect(),
            digest: Digest::SHA384,
        },
        Response::Attestation {
            document: vec![0x84; 10],
        },
        Response::GetRandom {
            random: vec![5; 256],
        },
    ]
    .into_iter()
    .chain(ErrorCode::ALL.into_iter().map(Response::Error));
    for resp in responses {
        assert_eq!(decode_response(&encode_response(&resp)).unwrap(), resp);
    }
}

#[test]
fn decoder_refuses_what_it_must() {
    let refused = |bytes: &[u8], code: ErrorCode| {
        let e = decode_request(bytes).unwrap_err();
        assert_eq!(e.error_code(), code, "{bytes:x?}: {e}");
    };
    refused(b"\x6bDescribeNSX", ErrorCode::InvalidArgument); // unknown variant
    refused(b"\x6bDescribeNSM\x00", ErrorCode::InvalidArgument); // trailing byte
    refused(
        b"\xa1\x6bDescribePCR\xa1\x65index",
        ErrorCode::InvalidArgument,
    ); // truncated
    refused(
        b"\xa1\x6bDescribePCR\xa1\x65index\x1a\x00\x01\x00\x00",
        ErrorCode::InvalidArgument,
    ); // > u16
    refused(
        b"\xa1\x6bDescribePCR\xa2\x65index\x01\x65extra\x01",
        ErrorCode::InvalidArgument,
    ); // unknown field
    refused(b"\xa1\x6bDescribePCR\xa0", ErrorCode::InvalidArgument); // missing field
    refused(b"\xa1\x6bDescribeNSM\xa0", ErrorCode::InvalidArgument); // unit variant with content
    refused(&vec![0u8; MAX_REQUEST_SIZE + 1], ErrorCode::InputTooLarge);
    for field in ["user_data", "nonce", "public_key"] {
        let mut req = Request::Attestation {
            user_data: None,
            nonce: None,
            public_key: None,
        };
        if let Request::Attestation {
            user_data,
            nonce,
            public_key,
        } = &mut req
        {
            let slot = match field {
                "user_data" => user_data,
                "nonce" => nonce,
                _ => public_key,
            };
            *slot = Some(vec![0; 1025]);
        }
        refused(&encode_request(&req), ErrorCode::InputTooLarge);
    }
}

#[test]
fn pcr_bank_follows_nitro_semantics() {
    let m = Measurements {
        pcr0: [1; 48],
        pcr1: [2; 48],
        pcr2: [3; 48],
        pcr8: Some([8; 48]),
    };
    let mut bank = PcrBank::at_boot(
        &BootPcrs {
            image: Some(m),
            pcr4: [4; 48],
        },
        false,
    );
    assert_eq!(bank.describe(0).unwrap(), (true, [1; 48]));
    assert_eq!(bank.describe(8).unwrap(), (true, [8; 48]));
    assert_eq!(bank.describe(16).unwrap(), (false, [0; 48]));
    assert!(bank.describe(32).is_err());
    assert_eq!(
        bank.extend(0, b"x").unwrap_err().error_code(),
        ErrorCode::ReadOnlyIndex
    );
    assert_eq!(
        bank.extend(32, b"x").unwrap_err().error_code(),
        ErrorCode::InvalidIndex
    );
    let v = bank.extend(16, b"x").unwrap();
    assert_eq!(v, extend(&[0; 48], b"x"));
    assert_eq!(bank.extend(16, b"y").unwrap(), extend(&v, b"y"));
    bank.lock(16).unwrap();
    assert_eq!(
        bank.extend(16, b"z").unwrap_err().error_code(),
        ErrorCode::ReadOnlyIndex
    );
    assert_eq!(
        bank.lock_range(33).unwrap_err().error_code(),
        ErrorCode::InvalidIndex
    );
    bank.lock_range(20).unwrap();
    assert_eq!(bank.locked().len(), 20);
    bank.lock_range(32).unwrap();
    assert_eq!(bank.locked().len(), 32);

    let debug = PcrBank::at_boot(
        &BootPcrs {
            image: Some(m),
            pcr4: [4; 48],
        },
        true,
    );
    assert_eq!(debug.describe(0).unwrap().1, [0; 48]);
    assert_eq!(debug.describe(8).unwrap().1, [0; 48]);
    assert_eq!(debug.describe(4).unwrap().1, [4; 48]);
}

fn attester() -> (Ca, LeafAttester) {
    let ca = Ca::generate().unwrap().ca;
    let leaf = ca
        .issue_leaf("enc-00000000000000bb", Duration::from_secs(600))
        .unwrap();
    let att = LeafAttester::new(leaf, "enc-00000000000000bb", false);
    (ca, att)
}

#[test]
fn device_handles_every_request() {
    let (ca, att) = attester();
    let m = Measurements {
        pcr0: [1; 48],
        pcr1: [2; 48],
        pcr2: [3; 48],
        pcr8: None,
    };
    let mut bank = PcrBank::at_boot(
        &BootPcrs {
            image: Some(m),
            pcr4: [4; 48],
        },
        false,
    );
    let mut call =
        |req: Request| decode_response(&handle(&encode_request(&req), &mut bank, &att)).unwrap();

    assert_eq!(
        call(Request::DescribePCR { index: 0 }),
        Response::DescribePCR {
            lock: true,
            data: vec![1; 48]
        }
    );
    assert_eq!(
        call(Request::DescribePCR { index: 99 }),
        Response::Error(ErrorCode::InvalidIndex)
    );
    assert_eq!(
        call(Request::ExtendPCR {
            index: 1,
            data: vec![1]
        }),
        Response::Error(ErrorCode::ReadOnlyIndex)
    );
    assert_eq!(
        call(Request::ExtendPCR {
            index: 16,
            data: vec![1]
        }),
        Response::ExtendPCR {
            data: extend(&[0; 48], &[1]).to_vec()
        }
    );
    assert_eq!(call(Request::LockPCR { index: 16 }), Response::LockPCR);
    assert_eq!(
        call(Request::LockPCRs { range: 33 }),
        Response::Error(ErrorCode::InvalidIndex)
    );
    assert_eq!(call(Request::LockPCRs { range: 18 }), Response::LockPCRs);
    match call(Request::DescribeNSM) {
        Response::DescribeNSM {
            module_id,
            max_pcrs,
            locked_pcrs,
            digest,
            version_major,
            ..
        } => {
            assert_eq!(module_id, "enc-00000000000000bb");
            assert_eq!((max_pcrs, digest, version_major), (32, Digest::SHA384, 1));
            assert_eq!(locked_pcrs, (0..18).collect());
        }
        other => panic!("{other:?}"),
    }
    match call(Request::GetRandom) {
        Response::GetRandom { random } => assert_eq!(random.len(), 256),
        other => panic!("{other:?}"),
    }
    let Response::Attestation { document } = call(Request::Attestation {
        user_data: Some(b"ud".to_vec()),
        nonce: Some(b"n".to_vec()),
        public_key: None,
    }) else {
        panic!("no document")
    };
    let v = verify(
        &document,
        &Policy::new(ca.root_der().to_vec())
            .expect_nonce(b"n".to_vec())
            .expect_pcr(0, vec![1; 48]),
    )
    .unwrap();
    assert_eq!(v.document.pcrs.len(), 18, "locked PCRs are reported");
    assert_eq!(v.document.pcrs[&16], extend(&[0; 48], &[1]).to_vec());
    assert_eq!(v.document.user_data.as_deref(), Some(&b"ud"[..]));

    // Malformed request → InvalidArgument; tiny caller buffer → BufferTooSmall.
    assert_eq!(
        decode_response(&handle(b"\xff", &mut bank, &att)).unwrap(),
        Response::Error(ErrorCode::InvalidArgument)
    );
    let small = handle_with_limit(&encode_request(&Request::GetRandom), &mut bank, &att, 64);
    assert_eq!(
        decode_response(&small).unwrap(),
        Response::Error(ErrorCode::BufferTooSmall)
    );
}

/// xorshift64*: deterministic, dependency-free randomness for the hostile-input sweep.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % u64::try_from(n.max(1)).unwrap()).unwrap()
    }
    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

/// Mutates `seed`: flip, insert, delete, truncate or splice.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(5) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(b.len() + 1);
                b.insert(i, rng.byte());
            }
            2 if !b.is_empty() => {
                let i = rng.below(b.len());
                b.remove(i);
            }
            3 => b.truncate(rng.below(b.len() + 1)),
            _ => {
                let i = rng.below(b.len() + 1);
                b.splice(i..i, [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
            }
        }
    }
    b
}

#[test]
fn hostile_requests_never_panic() {
    let (_ca, att) = attester();
    let mut bank = PcrBank::at_boot(&BootPcrs::default(), false);
    let seeds: Vec<Vec<u8>> = all_requests().iter().map(encode_request).collect();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for i in 0..2000 {
        let input = if i % 4 == 0 {
            (0..rng.below(64)).map(|_| rng.byte()).collect()
        } else {
            let seed = &seeds[rng.below(seeds.len())];
            mutate(&mut rng, seed)
        };
        let out = handle(&input, &mut bank, &att);
        assert!(decode_response(&out).is_ok(), "response must always decode");
    }
    // Deep nesting and huge declared lengths are refused, not followed.
    let deep: Vec<u8> = std::iter::repeat_n(0x81u8, 3000).chain([0]).collect();
    assert!(decode_request(&deep).is_err());
    assert!(decode_request(b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff").is_err());
    assert!(decode_request(b"\x9b\xff\xff\xff\xff\xff\xff\xff\xff").is_err());
}
