//! `/dev/nsm` driven through `Kernel::dispatch` against plain guest memory: the ioctl ABI of
//! Linux's nsm driver, the PCR bank, and documents the verifier accepts.

use std::sync::{Arc, Mutex};

use attestation::ca::{Ca, LeafAttester};
use attestation::nsm::{decode_response, encode_request, ErrorCode, Request, Response};
use attestation::pcr::{extend, Measurements, PCR_ZERO};
use attestation::verify::{verify, Policy, VerifyError};

use super::{NsmDevice, NSM_IOCTL_RAW};
use crate::attest::Attestation;
use crate::kernel::console::{ConsoleSink, Stream};
use crate::kernel::fs::ImageTree;
use crate::kernel::sys_file::nr;
use crate::kernel::{mm, Cpu, Ctx, Kernel, KernelConfig, ThreadState};
use crate::layout;
use crate::memory::{Backing, GuestRam, UserMemory};

const PATH: u64 = 0x20_0000;
/// The `struct nsm_raw`.
const RAW: u64 = 0x21_0000;
const REQ: u64 = 0x22_0000;
const RESP: u64 = 0x30_0000;
/// A read-only page (as a program's text segment).
const RO: u64 = 0x40_0000;
const RESP_CAP: u64 = 0x3000;

const IMAGE: Measurements = Measurements {
    pcr0: [0xa0; 48],
    pcr1: [0xa1; 48],
    pcr2: [0xa2; 48],
    pcr8: Some([0xa8; 48]),
};
const PCR4: [u8; 48] = [0x44; 48];
const MODULE_ID: &str = "enc-00000000000000aa:enclave-runtime-test";

struct NoCpu;

impl Cpu for NoCpu {
    fn fs_base(&self) -> u64 {
        0
    }
    fn set_fs_base(&mut self, _: u64) {}
    fn gs_base(&self) -> u64 {
        0
    }
    fn set_gs_base(&mut self, _: u64) {}
}

#[derive(Default)]
struct Discard(Mutex<Vec<u8>>);

impl ConsoleSink for Discard {
    fn write(&self, _stream: Stream, data: &[u8]) {
        self.0.lock().unwrap().extend_from_slice(data);
    }
}

fn neg(e: i32) -> i64 {
    -i64::from(e)
}

/// A CA made in memory, once per test.
fn attestation(ca: &Ca, debug: bool) -> Attestation {
    let leaf = ca
        .issue_leaf("enc-00000000000000aa", std::time::Duration::from_secs(3600))
        .unwrap();
    Attestation::with_attester(LeafAttester::new(leaf, MODULE_ID, debug), MODULE_ID, PCR4)
}

struct Env {
    ram: GuestRam,
    kernel: Kernel,
    device: Option<Arc<NsmDevice>>,
}

impl Env {
    fn new(device: Option<NsmDevice>) -> Self {
        let device = device.map(Arc::new);
        let ram = GuestRam::new(layout::MIN_GUEST_MEMORY, Backing::Anonymous).unwrap();
        let config = KernelConfig {
            debug: false,
            cpu_count: 1,
            console: Some(Arc::new(Discard::default())),
            hostname: "enclave".into(),
            bare: false,
            vsock: None,
            nsm: device.clone(),
        };
        let mm = mm::AddressSpace::new(0x80_0000, 0xc0_0000).unwrap();
        let tree = ImageTree::new(vec![]).unwrap();
        let kernel = Kernel::new(config, ram.size(), mm, Arc::new(tree));
        Self {
            ram,
            kernel,
            device,
        }
    }

    fn with_ca(ca: &Ca, debug: bool) -> Self {
        Self::new(Some(attestation(ca, debug).device(&IMAGE, debug)))
    }

    fn call(&self, n: libc::c_long, args: &[u64]) -> i64 {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        let ro = [(RO, RO + 0x1000)];
        let mem = UserMemory::new(&self.ram, &ro);
        let mut cpu = NoCpu;
        let mut thread = ThreadState {
            tid: 1,
            clear_child_tid: 0,
        };
        let mut ctx = Ctx {
            mem: &mem,
            cpu: &mut cpu,
            thread: &mut thread,
            exit: None,
        };
        self.kernel.dispatch(&mut ctx, nr(n), &a).cast_signed()
    }

    fn open(&self, path: &str, flags: i32) -> i64 {
        let mut b = path.as_bytes().to_vec();
        b.push(0);
        self.ram.write(PATH, &b).unwrap();
        self.call(libc::SYS_open, &[PATH, u64::from(flags.cast_unsigned())])
    }

    /// Writes `struct nsm_raw` at `at`.
    fn raw(&self, at: u64, req: (u64, u64), resp: (u64, u64)) {
        for (i, v) in [req.0, req.1, resp.0, resp.1].into_iter().enumerate() {
            self.ram.write_u64(at + 8 * i as u64, v).unwrap();
        }
    }

    /// One ioctl with `request` (CBOR) and a response buffer of `cap` bytes; the raw result
    /// and the response bytes the driver reported.
    fn ioctl_bytes(&self, fd: i64, request: &[u8], cap: u64) -> (i64, Vec<u8>) {
        self.ram.write(REQ, request).unwrap();
        self.raw(RAW, (REQ, request.len() as u64), (RESP, cap));
        let r = self.call(libc::SYS_ioctl, &[fd.cast_unsigned(), NSM_IOCTL_RAW, RAW]);
        let len = self.ram.read_u64(RAW + 24).unwrap();
        let mut out = vec![0u8; usize::try_from(len.min(cap)).unwrap()];
        self.ram.read(RESP, &mut out).unwrap();
        (r, out)
    }

    fn request(&self, fd: i64, req: &Request) -> Response {
        let (r, bytes) = self.ioctl_bytes(fd, &encode_request(req), RESP_CAP);
        assert_eq!(r, 0, "ioctl failed for {req:?}");
        decode_response(&bytes).unwrap()
    }

    fn nsm_fd(&self) -> i64 {
        let fd = self.open("/dev/nsm", libc::O_RDWR);
        assert!(fd >= 3, "open /dev/nsm: {fd}");
        fd
    }
}

#[test]
fn dev_nsm_and_dev_null_are_character_devices() {
    let ca = Ca::generate().unwrap().ca;
    let e = Env::with_ca(&ca, false);
    let fd = e.nsm_fd();
    assert_eq!(e.call(libc::SYS_fstat, &[fd.cast_unsigned(), RESP]), 0);
    let mut mode = [0u8; 4];
    e.ram.read(RESP + 24, &mut mode).unwrap();
    let mode = u32::from_le_bytes(mode);
    assert_eq!(mode & libc::S_IFMT, libc::S_IFCHR);
    // Path stat agrees; the node is listed in /dev.
    assert_eq!(e.call(libc::SYS_stat, &[PATH, RESP]), 0);
    assert_eq!(e.ram.read_u64(RESP + 40).unwrap(), libc::makedev(10, 124));
    // The device has no read or write, as the Linux driver.
    assert_eq!(
        e.call(libc::SYS_read, &[fd.cast_unsigned(), RESP, 16]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        e.call(libc::SYS_write, &[fd.cast_unsigned(), RESP, 16]),
        neg(libc::EINVAL)
    );
    // /dev/null swallows writes and reads end-of-file, and opens for writing.
    let null = e.open("/dev/null", libc::O_RDWR);
    assert!(null >= 3);
    assert_eq!(
        e.call(libc::SYS_write, &[null.cast_unsigned(), RESP, 100]),
        100
    );
    assert_eq!(
        e.call(libc::SYS_read, &[null.cast_unsigned(), RESP, 100]),
        0
    );
    // The rest of the tree stays read-only.
    assert_eq!(
        e.open("/dev/other", libc::O_RDWR | libc::O_CREAT),
        neg(libc::EROFS)
    );
}

#[test]
fn without_a_device_dev_nsm_is_enxio() {
    let e = Env::new(None);
    assert_eq!(e.open("/dev/nsm", libc::O_RDWR), neg(libc::ENXIO));
    assert!(e.device.is_none());
}

#[test]
fn describe_extend_and_lock_pcrs() {
    let ca = Ca::generate().unwrap().ca;
    let e = Env::with_ca(&ca, false);
    let fd = e.nsm_fd();
    match e.request(fd, &Request::DescribeNSM) {
        Response::DescribeNSM {
            module_id,
            max_pcrs,
            locked_pcrs,
            ..
        } => {
            assert_eq!(module_id, MODULE_ID);
            assert_eq!(max_pcrs, 32);
            assert_eq!(locked_pcrs, (0..16).collect());
        }
        other => panic!("{other:?}"),
    }
    for (index, value) in [
        (0, IMAGE.pcr0),
        (1, IMAGE.pcr1),
        (2, IMAGE.pcr2),
        (3, PCR_ZERO),
        (4, PCR4),
        (8, [0xa8; 48]),
        (16, PCR_ZERO),
    ] {
        let want = Response::DescribePCR {
            lock: index < 16,
            data: value.to_vec(),
        };
        assert_eq!(
            e.request(fd, &Request::DescribePCR { index }),
            want,
            "PCR{index}"
        );
    }
    // 16 extends; 0 is locked at boot.
    let data = b"measured".to_vec();
    let want = extend(&PCR_ZERO, &data);
    assert_eq!(
        e.request(
            fd,
            &Request::ExtendPCR {
                index: 16,
                data: data.clone()
            }
        ),
        Response::ExtendPCR {
            data: want.to_vec()
        }
    );
    assert_eq!(
        e.request(
            fd,
            &Request::ExtendPCR {
                index: 0,
                data: data.clone()
            }
        ),
        Response::Error(ErrorCode::ReadOnlyIndex)
    );
    assert_eq!(
        e.request(
            fd,
            &Request::ExtendPCR {
                index: 32,
                data: data.clone()
            }
        ),
        Response::Error(ErrorCode::InvalidIndex)
    );
    // Locking 16 freezes it.
    assert_eq!(
        e.request(fd, &Request::LockPCR { index: 16 }),
        Response::LockPCR
    );
    assert_eq!(
        e.request(fd, &Request::ExtendPCR { index: 16, data }),
        Response::Error(ErrorCode::ReadOnlyIndex)
    );
    assert_eq!(
        e.request(fd, &Request::DescribePCR { index: 16 }),
        Response::DescribePCR {
            lock: true,
            data: want.to_vec()
        }
    );
    assert_eq!(
        e.request(fd, &Request::LockPCRs { range: 33 }),
        Response::Error(ErrorCode::InvalidIndex)
    );
    assert_eq!(
        e.request(fd, &Request::LockPCRs { range: 20 }),
        Response::LockPCRs
    );
    assert_eq!(
        e.request(
            fd,
            &Request::ExtendPCR {
                index: 19,
                data: vec![1]
            }
        ),
        Response::Error(ErrorCode::ReadOnlyIndex)
    );
    match e.request(fd, &Request::GetRandom) {
        Response::GetRandom { random } => assert_eq!(random.len(), 256),
        other => panic!("{other:?}"),
    }
    // Garbage is answered in CBOR, not with an errno.
    let (r, bytes) = e.ioctl_bytes(fd, b"\xff\x00garbage", RESP_CAP);
    assert_eq!(r, 0);
    assert!(matches!(
        decode_response(&bytes).unwrap(),
        Response::Error(_)
    ));
}

#[test]
fn attestation_documents_verify_against_the_ca_root() {
    let ca = Ca::generate().unwrap().ca;
    let e = Env::with_ca(&ca, false);
    let fd = e.nsm_fd();
    let extended = match e.request(
        fd,
        &Request::ExtendPCR {
            index: 16,
            data: b"app".to_vec(),
        },
    ) {
        Response::ExtendPCR { data } => data,
        other => panic!("{other:?}"),
    };
    let nonce = b"nonce-1234".to_vec();
    let doc = match e.request(
        fd,
        &Request::Attestation {
            user_data: Some(b"user data".to_vec()),
            nonce: Some(nonce.clone()),
            public_key: Some(vec![7; 97]),
        },
    ) {
        Response::Attestation { document } => document,
        other => panic!("{other:?}"),
    };
    let policy = Policy::new(ca.root_der().to_vec())
        .expect_nonce(nonce.clone())
        .expect_pcr(0, IMAGE.pcr0.to_vec())
        .expect_pcr(1, IMAGE.pcr1.to_vec())
        .expect_pcr(2, IMAGE.pcr2.to_vec())
        .expect_pcr(4, PCR4.to_vec())
        .expect_pcr(8, vec![0xa8; 48]);
    let v = verify(&doc, &policy).unwrap();
    assert!(!v.debug);
    assert_eq!(v.document.module_id, MODULE_ID);
    assert_eq!(v.document.user_data.as_deref(), Some(&b"user data"[..]));
    assert_eq!(v.document.public_key.as_deref(), Some(&[7u8; 97][..]));
    // Only locked PCRs are attested: 16 is not yet.
    assert_eq!(v.document.pcrs.len(), 16);
    assert!(!v.document.pcrs.contains_key(&16));
    assert_eq!(
        e.request(fd, &Request::LockPCR { index: 16 }),
        Response::LockPCR
    );
    let Response::Attestation { document } = e.request(
        fd,
        &Request::Attestation {
            user_data: None,
            nonce: None,
            public_key: None,
        },
    ) else {
        panic!("no document");
    };
    let v = verify(
        &document,
        &Policy::new(ca.root_der().to_vec()).expect_pcr(16, extended),
    )
    .unwrap();
    assert_eq!(v.document.pcrs.len(), 17);
    // A wrong expectation, nonce or root fails.
    let wrong = Policy::new(ca.root_der().to_vec()).expect_pcr(0, vec![0; 48]);
    assert!(matches!(
        verify(&doc, &wrong),
        Err(VerifyError::PcrMismatch { index: 0, .. })
    ));
    let stale_nonce = Policy::new(ca.root_der().to_vec()).expect_nonce(b"other".to_vec());
    assert!(matches!(
        verify(&doc, &stale_nonce),
        Err(VerifyError::NonceMismatch)
    ));
    let other_ca = Ca::generate().unwrap().ca;
    assert!(verify(&doc, &Policy::new(other_ca.root_der().to_vec())).is_err());
    // Oversized user fields are refused as the NSM does.
    let big = Request::Attestation {
        user_data: Some(vec![0; 1025]),
        nonce: None,
        public_key: None,
    };
    assert_eq!(
        e.request(fd, &big),
        Response::Error(ErrorCode::InputTooLarge)
    );
}

#[test]
fn debug_mode_reads_and_attests_zero_image_pcrs() {
    let ca = Ca::generate().unwrap().ca;
    let e = Env::with_ca(&ca, true);
    let fd = e.nsm_fd();
    for index in [0, 1, 2, 8] {
        assert_eq!(
            e.request(fd, &Request::DescribePCR { index }),
            Response::DescribePCR {
                lock: true,
                data: PCR_ZERO.to_vec()
            }
        );
    }
    assert_eq!(
        e.request(fd, &Request::DescribePCR { index: 4 }),
        Response::DescribePCR {
            lock: true,
            data: PCR4.to_vec()
        }
    );
    let Response::Attestation { document } = e.request(
        fd,
        &Request::Attestation {
            user_data: None,
            nonce: Some(vec![1]),
            public_key: None,
        },
    ) else {
        panic!("no document");
    };
    let policy = Policy::new(ca.root_der().to_vec()).expect_nonce(vec![1]);
    assert!(matches!(
        verify(&document, &policy),
        Err(VerifyError::DebugDocument)
    ));
    let v = verify(
        &document,
        &policy.allow_debug(true).expect_pcr(0, PCR_ZERO.to_vec()),
    )
    .unwrap();
    assert!(v.debug);
    assert_eq!(
        v.document.pcrs.get(&8).map(Vec::as_slice),
        Some(&PCR_ZERO[..])
    );
}

#[test]
fn without_a_ca_attestation_is_an_internal_error() {
    let dev = Attestation::unavailable("enc-00000000000000bb", "no CA").device(&IMAGE, false);
    assert!(!dev.attestation_available());
    let e = Env::new(Some(dev));
    let fd = e.nsm_fd();
    assert_eq!(
        e.request(
            fd,
            &Request::Attestation {
                user_data: None,
                nonce: None,
                public_key: None
            }
        ),
        Response::Error(ErrorCode::InternalError)
    );
    assert_eq!(
        e.request(fd, &Request::DescribePCR { index: 0 }),
        Response::DescribePCR {
            lock: true,
            data: IMAGE.pcr0.to_vec()
        }
    );
}

#[test]
fn ioctl_abi_errors_as_the_linux_driver() {
    let ca = Ca::generate().unwrap().ca;
    let e = Env::with_ca(&ca, false);
    let fd = e.nsm_fd();
    let ufd = fd.cast_unsigned();
    let req = encode_request(&Request::ExtendPCR {
        index: 17,
        data: b"x".to_vec(),
    });
    e.ram.write(REQ, &req).unwrap();
    let n = req.len() as u64;
    let pcr17 = |e: &Env| e.device.as_ref().unwrap().pcrs().describe(17).unwrap().1;
    // Another command: EINVAL (also _IOWR with another size, and terminal ioctls: ENOTTY).
    e.raw(RAW, (REQ, n), (RESP, RESP_CAP));
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, 0xC018_0A00, RAW]),
        neg(libc::EINVAL)
    );
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, 0x5401, RAW]),
        neg(libc::ENOTTY)
    );
    // The struct, the request and the response buffer must be user memory.
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, NSM_IOCTL_RAW, 0x1000]),
        neg(libc::EFAULT)
    );
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, NSM_IOCTL_RAW, u64::MAX - 8]),
        neg(libc::EFAULT)
    );
    e.raw(RAW, (0x1000, n), (RESP, RESP_CAP));
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, NSM_IOCTL_RAW, RAW]),
        neg(libc::EFAULT)
    );
    e.raw(RAW, (REQ, u64::MAX), (RESP, RESP_CAP));
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, NSM_IOCTL_RAW, RAW]),
        neg(libc::EMSGSIZE)
    );
    e.raw(RAW, (REQ, 4097), (RESP, RESP_CAP));
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, NSM_IOCTL_RAW, RAW]),
        neg(libc::EMSGSIZE)
    );
    // A read-only struct faults before the request has any effect.
    e.raw(RO, (REQ, n), (RESP, RESP_CAP));
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, NSM_IOCTL_RAW, RO]),
        neg(libc::EFAULT)
    );
    assert_eq!(pcr17(&e), PCR_ZERO);
    // A response buffer outside user memory: EFAULT (the request ran, as on Linux).
    e.raw(RAW, (REQ, n), (e.ram.size() - 8, RESP_CAP));
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, NSM_IOCTL_RAW, RAW]),
        neg(libc::EFAULT)
    );
    // A request of 0 bytes is malformed CBOR, answered in CBOR.
    let (r, bytes) = e.ioctl_bytes(fd, b"", RESP_CAP);
    assert_eq!(r, 0);
    assert_eq!(
        decode_response(&bytes).unwrap(),
        Response::Error(ErrorCode::InvalidArgument)
    );
    // A buffer too small for the response: BufferTooSmall, length reported.
    let attest = encode_request(&Request::Attestation {
        user_data: None,
        nonce: None,
        public_key: None,
    });
    let (r, bytes) = e.ioctl_bytes(fd, &attest, 64);
    assert_eq!(r, 0);
    assert_eq!(
        decode_response(&bytes).unwrap(),
        Response::Error(ErrorCode::BufferTooSmall)
    );
    // Smaller than even that: truncated, as the Linux driver truncates.
    let (r, bytes) = e.ioctl_bytes(fd, &attest, 5);
    assert_eq!((r, bytes.len()), (0, 5));
    let (r, bytes) = e.ioctl_bytes(fd, &attest, 0);
    assert_eq!((r, bytes.len()), (0, 0));
    // A closed descriptor.
    assert_eq!(e.call(libc::SYS_close, &[ufd]), 0);
    assert_eq!(
        e.call(libc::SYS_ioctl, &[ufd, NSM_IOCTL_RAW, RAW]),
        neg(libc::EBADF)
    );
}

#[test]
fn threads_share_one_bank_without_losing_extends() {
    let ca = Ca::generate().unwrap().ca;
    let dev = Arc::new(attestation(&ca, false).device(&IMAGE, false));
    let req = encode_request(&Request::ExtendPCR {
        index: 20,
        data: b"t".to_vec(),
    });
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    let r = decode_response(&dev.request(&req, 0x3000)).unwrap();
                    assert!(matches!(r, Response::ExtendPCR { .. }));
                }
            });
        }
    });
    let want = (0..200).fold(PCR_ZERO, |v, _| extend(&v, b"t"));
    assert_eq!(dev.pcrs().describe(20).unwrap(), (false, want));
}
