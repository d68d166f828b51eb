//! The VMM's half of the vsock fast path: transmit rings in guest memory that the syscall stub
//! fills (see `crate::syscall_stub`) and a `vsock-tx` thread drains into the host sockets.
//!
//! A connected vsock stream gets a ring when its descriptor number is below
//! `layout::fastio::FASTIO_FDS`, a ring is free and the gate is open (the stub runs at CPL 3,
//! i.e. kvm_pvm). From then on the stub copies the program's `write`s into the ring and kicks an
//! eventfd registered with `KVM_IOEVENTFD`; this thread wakes and sends the bytes on,
//! straight from guest memory. Order and semantics stay those of the socket: every host-side
//! write, send or shutdown of the stream first sends what is in its ring (`HostFile` calls
//! [`TxRing::drain`]), a descriptor is unbound before its number is reused (`FdTable`), an
//! unbound ring keeps draining until empty before its socket may close, and the enclave
//! flushes every ring (bounded) when its program ends.
//!
//! The program can write the shared page (locks and heads): every head read here is checked
//! against the ring's size, and a lock held forever only delays an unbind by a bounded wait.
//! What the stub reads to decide where to copy lives in a page the program cannot write.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};
use vmm_sys_util::eventfd::EventFd;

use super::errno::Errno;
use super::hostfd::{last_errno, poll_fds, HostFile};
use crate::layout::{self, fastio as fl};
use crate::memory::GuestRam;
use crate::pool::HostCpus;

/// How long an unbind waits for a stub that holds the descriptor's lock.
const UNBIND_LOCK_WAIT: Duration = Duration::from_millis(100);
/// Longest sleep of the drain thread before it looks at the stop flag again.
const DRAIN_SLICE_MS: i32 = 50;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn slot(array: u64, fd: u64) -> u64 {
    array + fd * 8
}

/// Where a ring's consumer stands.
#[derive(Debug, Default)]
struct RingState {
    /// Bytes sent on so far.
    tail: u64,
    /// The descriptor whose stub writes this ring, while bound.
    fd: Option<u64>,
    /// The producer position frozen at unbind: nothing is written after it.
    final_head: Option<u64>,
    /// The send error that broke the stream, reported to later writes.
    error: Option<Errno>,
}

/// One transmit ring in guest memory.
pub struct TxRing {
    index: usize,
    ram: Arc<GuestRam>,
    base: u64,
    size: u64,
    state: Mutex<RingState>,
}

/// What one drain pass left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Everything the program wrote so far is sent.
    Empty,
    /// The socket is full; bytes remain.
    Pending,
}

impl TxRing {
    /// Sends what the ring holds on `sock` without blocking; the head is read from guest memory
    /// (checked) unless frozen by an unbind.
    pub fn drain(&self, sock: RawFd) -> Result<Drained, Errno> {
        let ram = &*self.ram;
        let mut st = lock(&self.state);
        if let Some(e) = st.error {
            return Err(e);
        }
        loop {
            let head = match (st.final_head, st.fd) {
                (Some(h), _) => h,
                (None, Some(fd)) => ram
                    .load_u64_acquire(slot(fl::HEAD, fd))
                    .map_err(|_| Errno::EFAULT)?,
                (None, None) => st.tail,
            };
            if head == st.tail {
                return Ok(Drained::Empty);
            }
            if head.wrapping_sub(st.tail) > self.size {
                // The program overwrote its head: the stream's bytes are not trustworthy.
                tracing::debug!(
                    ring = self.index,
                    head,
                    tail = st.tail,
                    "corrupt vsock ring head"
                );
                st.error = Some(Errno::EPIPE);
                return Err(Errno::EPIPE);
            }
            if self.send_to(&mut st, sock, head)? == Drained::Pending {
                return Ok(Drained::Pending);
            }
            // The tail is stored; the fence orders it before the head is read again, against
            // the stub's store-head/fence/read-tail (see `syscall_stub`): either this pass sees
            // the program's newest head or the stub sees this tail and kicks.
            std::sync::atomic::fence(Ordering::SeqCst);
        }
    }

    /// Sends `tail..head` (wrapping) from the ring, advancing and publishing the tail.
    fn send_to(&self, st: &mut RingState, sock: RawFd, head: u64) -> Result<Drained, Errno> {
        let ram = &*self.ram;
        while st.tail != head {
            let pos = st.tail & (self.size - 1);
            let n = (head - st.tail).min(self.size - pos);
            let sent = ram
                .with_host_range(self.base + pos, n, |ptr, len| {
                    // SAFETY: `ptr..ptr+len` lies inside guest memory (checked by
                    // `with_host_range`) and stays mapped during the closure; the kernel only
                    // reads it. `sock` is a socket the caller keeps open.
                    unsafe {
                        libc::send(
                            sock,
                            ptr.cast(),
                            len,
                            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                        )
                    }
                })
                .map_err(|_| Errno::EFAULT)?;
            match u64::try_from(sent) {
                Ok(k) => {
                    st.tail += k;
                    if let Some(fd) = st.fd {
                        // The stub reads the tail for its free room.
                        let _ = ram.store_u64(slot(fl::TAIL, fd), st.tail, Ordering::SeqCst);
                    }
                }
                Err(_) => {
                    let e = last_errno();
                    if e == Errno::EAGAIN {
                        return Ok(Drained::Pending);
                    }
                    let e = if e == Errno(libc::ECONNRESET) {
                        Errno::EPIPE
                    } else {
                        e
                    };
                    st.error = Some(e);
                    return Err(e);
                }
            }
        }
        Ok(Drained::Empty)
    }

    fn unbound(&self) -> bool {
        lock(&self.state).fd.is_none()
    }
}

/// A ring in use: the stream it feeds and the ring.
struct Entry {
    file: Arc<HostFile>,
    ring: Arc<TxRing>,
    /// The last drain found the socket full.
    pending: bool,
}

/// Registers the kick eventfd with the VM.
pub type RegisterKick = dyn Fn(&EventFd) -> Result<(), kvm_ioctls::Error> + Send + Sync;

/// The registration of the kick with `vm` (`KVM_IOEVENTFD` at the kick address, any length).
pub fn register_with(vm: Arc<VmFd>) -> Box<RegisterKick> {
    Box::new(move |kick| {
        vm.register_ioevent(kick, &IoEventAddress::Mmio(fl::DOORBELL_KICK), NoDatamatch)
    })
}

/// The enclave's fast-I/O state.
pub struct FastIo {
    ram: Arc<GuestRam>,
    register: Box<RegisterKick>,
    kick: EventFd,
    /// The privilege level the syscall stub runs at, seen at the first system call.
    stub_cpl: OnceLock<u16>,
    /// The kick is registered with KVM and the gate byte written (`false`: that, or starting
    /// the drainer, failed; no stream is bound from then on).
    gate: OnceLock<bool>,
    entries: Mutex<Vec<Entry>>,
    free: Mutex<Vec<usize>>,
    rings_start: u64,
    stop: Arc<AtomicBool>,
    drainer: OnceLock<()>,
    host_cpus: HostCpus,
}

impl FastIo {
    /// Fast I/O for guest memory `ram`; `register` registers the kick eventfd with the VM at
    /// `layout::fastio::DOORBELL_KICK` (see [`register_with`]). Writes the read-only
    /// configuration the stub checks, with the gate closed until the first stream is bound.
    pub fn new(
        ram: Arc<GuestRam>,
        register: Box<RegisterKick>,
        stop: Arc<AtomicBool>,
        host_cpus: HostCpus,
    ) -> Result<Self, Errno> {
        let kick = EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC)
            .map_err(|e| Errno(e.raw_os_error().unwrap_or(libc::EIO)))?;
        let size = ram.size();
        let (guard_start, guard_end) = layout::stack_guard(size);
        let config = [
            (fl::USER_MIN, layout::IMAGE_MIN),
            (fl::MEM_TOP, size),
            (fl::GUARD_START, guard_start),
            (fl::GUARD_END, guard_end),
        ];
        for (addr, value) in config {
            ram.store_u64(addr, value, Ordering::Relaxed)
                .map_err(|_| Errno::EFAULT)?;
        }
        let rings = usize::try_from(fl::TX_RINGS).unwrap_or(0);
        Ok(Self {
            rings_start: layout::tx_rings(size).0,
            ram,
            register,
            kick,
            stub_cpl: OnceLock::new(),
            gate: OnceLock::new(),
            entries: Mutex::new(Vec::new()),
            free: Mutex::new((0..rings).rev().collect()),
            stop,
            host_cpus,
            drainer: OnceLock::new(),
        })
    }

    /// Notes the privilege level the syscall stub runs at (the first call counts): at `cpl` 3
    /// (kvm_pvm) it may return by itself and the fast path can be used; at CPL 0 (hardware
    /// KVM) it never is.
    pub fn note_stub_cpl(&self, cpl: u16) {
        let _ = self.stub_cpl.set(cpl);
    }

    /// True once [`FastIo::note_stub_cpl`] was called.
    pub fn stub_cpl_known(&self) -> bool {
        self.stub_cpl.get().is_some()
    }

    /// True when streams may be bound: the stub runs at CPL 3 and neither the registration
    /// of the kick nor the drainer failed.
    pub fn usable(&self) -> bool {
        self.stub_cpl.get() == Some(&3) && self.gate.get() != Some(&false)
    }

    /// A kick that reached the VMM as an exit (the program wrote the kick address itself, or
    /// the eventfd is not registered with KVM): wake the drainer.
    pub fn kick_exit(&self) {
        let _ = self.kick.write(1);
    }

    /// Registers the kick with KVM and opens the gate, once; false when that failed (then no
    /// stream is bound any more: the bound rings stay empty, the stub never takes them).
    ///
    /// Done by the `vsock-tx` thread when it starts, not at launch: registering it before the
    /// first `KVM_RUN` made every launch ~9 ms slower on kvm_pvm (measured, though the ioctl
    /// itself takes µs), a cost enclaves without vsock traffic should not pay. Until the gate
    /// opens every write exits as before.
    fn open_gate(&self) -> bool {
        *self.gate.get_or_init(|| {
            if let Err(e) = (self.register)(&self.kick) {
                tracing::debug!("no vsock fast path: KVM_IOEVENTFD failed: {e}");
                return false;
            }
            if self.ram.write(fl::GATE, &[1]).is_err() {
                return false;
            }
            tracing::debug!("vsock fast path enabled (syscall stub at CPL 3)");
            true
        })
    }

    /// Puts descriptor `fd` (a connected vsock stream, `file`) on the fast path: gives the
    /// stream a ring when one is free, or moves the stream's ring to `fd` when the program now
    /// writes through another descriptor of the same stream (a `dup`/`try_clone` writer).
    pub fn bind(self: &Arc<Self>, fd: u64, file: &Arc<HostFile>) {
        if !self.usable() || fd >= fl::FASTIO_FDS {
            return;
        }
        if let Some(ring) = file.tx_ring() {
            if lock(&ring.state).fd != Some(fd) {
                self.rebind(&ring, fd);
            }
            return;
        }
        let Some(index) = lock(&self.free).pop() else {
            return;
        };
        let base = self.rings_start + u64::try_from(index).unwrap_or(0) * fl::TX_RING_SIZE;
        let ring = Arc::new(TxRing {
            index,
            ram: self.ram.clone(),
            base,
            size: fl::TX_RING_SIZE,
            state: Mutex::new(RingState::default()),
        });
        let mut entries = lock(&self.entries);
        if !self.publish(&ring, fd, 0, 0) {
            drop(entries);
            lock(&self.free).push(index);
            return;
        }
        file.set_tx_ring(Some(ring.clone()));
        entries.push(Entry {
            file: file.clone(),
            ring,
            pending: false,
        });
        drop(entries);
        self.start_drainer();
    }

    /// Moves `ring` to descriptor `fd`: the producer position carries on where the previous
    /// descriptor left it, so no byte changes order.
    fn rebind(&self, ring: &Arc<TxRing>, fd: u64) {
        // Under the entries lock throughout, so the drainer cannot free the ring meanwhile.
        let entries = lock(&self.entries);
        if !entries.iter().any(|e| Arc::ptr_eq(&e.ring, ring)) {
            return;
        }
        let old = lock(&ring.state).fd;
        if let Some(old) = old {
            self.freeze(ring, old);
        }
        let (head, tail) = {
            let st = lock(&ring.state);
            if st.error.is_some() {
                return;
            }
            (st.final_head.unwrap_or(st.tail), st.tail)
        };
        self.publish(ring, fd, head, tail);
        drop(entries);
    }

    /// Binds `ring` to `fd` with the given positions and opens the descriptor to the stub.
    fn publish(&self, ring: &TxRing, fd: u64, head: u64, tail: u64) -> bool {
        let setup = [
            (fl::HEAD, head),
            (fl::LOCK, 0),
            (fl::TAIL, tail),
            (fl::BASE, ring.base),
            (fl::MASK, ring.size - 1),
        ];
        for (array, value) in setup {
            if self
                .ram
                .store_u64(slot(array, fd), value, Ordering::Relaxed)
                .is_err()
            {
                return false;
            }
        }
        {
            let mut st = lock(&ring.state);
            st.fd = Some(fd);
            st.final_head = None;
        }
        // Last: the stub may use the ring from here on.
        self.ram
            .store_u64(slot(fl::ENABLED, fd), 1, Ordering::SeqCst)
            .is_ok()
    }

    /// Takes descriptor `fd` off the fast path (it is closed or replaced): no stub writes its
    /// ring after this returns; what the ring holds is still sent, then the ring is freed.
    pub fn unbind(&self, fd: u64) {
        if fd >= fl::FASTIO_FDS {
            return;
        }
        let ring = lock(&self.entries)
            .iter()
            .find(|e| lock(&e.ring.state).fd == Some(fd))
            .map(|e| e.ring.clone());
        let Some(ring) = ring else { return };
        self.freeze(&ring, fd);
        let _ = self.kick.write(1);
    }

    /// Closes descriptor `fd` to the stub and freezes `ring`'s producer position.
    fn freeze(&self, ring: &TxRing, fd: u64) {
        let _ = self
            .ram
            .store_u64(slot(fl::ENABLED, fd), 0, Ordering::SeqCst);
        // A stub that took the lock before it saw the descriptor disabled finishes its copy;
        // one that takes it later sees it disabled. A program holding the lock forever only
        // corrupts its own stream.
        let deadline = Instant::now() + UNBIND_LOCK_WAIT;
        while self
            .ram
            .load_u64_acquire(slot(fl::LOCK, fd))
            .is_ok_and(|l| l & 1 != 0)
            && Instant::now() < deadline
        {
            std::thread::yield_now();
        }
        let head = self.ram.load_u64_acquire(slot(fl::HEAD, fd)).unwrap_or(0);
        let mut st = lock(&ring.state);
        st.final_head = Some(head);
        st.fd = None;
    }

    /// Sends what every ring holds, waiting for full sockets until `deadline` (the program
    /// ended: its last writes must still reach the parent, as they would from Linux).
    pub fn flush_all(&self, deadline: Instant) {
        loop {
            let entries: Vec<(Arc<HostFile>, Arc<TxRing>)> = lock(&self.entries)
                .iter()
                .map(|e| (e.file.clone(), e.ring.clone()))
                .collect();
            let mut waiting = Vec::new();
            for (file, ring) in &entries {
                let Some(sock) = file.host_socket() else {
                    continue;
                };
                if ring.drain(sock) == Ok(Drained::Pending) {
                    waiting.push(libc::pollfd {
                        fd: sock,
                        events: libc::POLLOUT,
                        revents: 0,
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if waiting.is_empty() || left.is_zero() {
                return;
            }
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX).max(1);
            poll_fds(&mut waiting, ms.min(DRAIN_SLICE_MS));
        }
    }

    /// Forgets every ring (the enclave ended, after [`FastIo::flush_all`]): their sockets close.
    pub fn clear(&self) {
        let entries = std::mem::take(&mut *lock(&self.entries));
        for e in &entries {
            e.file.set_tx_ring(None);
        }
    }

    fn start_drainer(self: &Arc<Self>) {
        self.drainer.get_or_init(|| {
            let me = self.clone();
            let spawned = std::thread::Builder::new()
                .name("vsock-tx".into())
                // Created by a vCPU thread, it carries the vCPU's seccomp filter (which allows
                // what it does: poll, read the eventfd, send, and pin itself). It runs on the
                // parent's CPUs, so that its copy out of the rings runs beside the program's
                // copy into them.
                .spawn(move || {
                    me.host_cpus.enter();
                    if me.open_gate() {
                        me.drain_loop();
                    }
                });
            if let Err(e) = spawned {
                // Without the thread the rings drain only when the program's own calls flush
                // them; close the gate so no new ring is handed out.
                tracing::warn!("cannot start the vsock transmit thread: {e}");
                let _ = self.gate.set(false);
            }
        });
    }

    fn drain_loop(&self) {
        while !self.stop.load(Ordering::Acquire) {
            let mut fds = vec![libc::pollfd {
                fd: self.kick.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            for e in lock(&self.entries).iter().filter(|e| e.pending) {
                if let Some(sock) = e.file.host_socket() {
                    fds.push(libc::pollfd {
                        fd: sock,
                        events: libc::POLLOUT,
                        revents: 0,
                    });
                }
            }
            poll_fds(&mut fds, DRAIN_SLICE_MS);
            if fds[0].revents & libc::POLLIN != 0 {
                let _ = self.kick.read();
            }
            self.drain_once();
        }
    }

    /// One pass over every ring: send what it holds; free the rings that are unbound and
    /// empty (or broken).
    fn drain_once(&self) {
        let mut entries = lock(&self.entries);
        let mut freed = Vec::new();
        entries.retain_mut(|e| {
            let result = match e.file.host_socket() {
                Some(sock) => e.ring.drain(sock),
                None => Err(Errno::EPIPE),
            };
            e.pending = result == Ok(Drained::Pending);
            let done = match result {
                Ok(Drained::Empty) => e.ring.unbound(),
                Ok(Drained::Pending) => false,
                Err(_) => {
                    // A broken stream: later writes take the slow path and see the error.
                    if let Some(fd) = lock(&e.ring.state).fd {
                        let _ = self
                            .ram
                            .store_u64(slot(fl::ENABLED, fd), 0, Ordering::SeqCst);
                    }
                    e.ring.unbound()
                }
            };
            if done {
                e.file.set_tx_ring(None);
                freed.push(e.ring.index);
            }
            !done
        });
        drop(entries);
        lock(&self.free).extend(freed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::file::FileOps;
    use crate::kernel::hostfd::HostKind;
    use crate::memory::Backing;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;

    struct Rig {
        ram: Arc<GuestRam>,
        fio: Arc<FastIo>,
        file: Arc<HostFile>,
        peer: UnixStream,
        stop: Arc<AtomicBool>,
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Release);
        }
    }

    fn rig(cpl: u16) -> Rig {
        let ram = Arc::new(GuestRam::new(32 << 20, Backing::Anonymous).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let fio = Arc::new(
            FastIo::new(
                ram.clone(),
                Box::new(|_| Ok(())),
                stop.clone(),
                HostCpus::default(),
            )
            .unwrap(),
        );
        fio.note_stub_cpl(cpl);
        let (a, peer) = UnixStream::pair().unwrap();
        let file = Arc::new(
            HostFile::new(
                OwnedFd::from(a),
                HostKind::Socket,
                libc::O_RDWR,
                stop.clone(),
            )
            .unwrap(),
        );
        Rig {
            ram,
            fio,
            file,
            peer,
            stop,
        }
    }

    fn wait_for(mut done: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn get(ram: &GuestRam, array: u64, fd: u64) -> u64 {
        ram.load_u64_acquire(slot(array, fd)).unwrap()
    }

    /// What the syscall stub does for `write(fd, data)` on the fast path.
    fn stub_write(ram: &GuestRam, fd: u64, data: &[u8]) {
        assert_eq!(get(ram, fl::ENABLED, fd), 1, "fd {fd} not on the fast path");
        let (head, tail) = (get(ram, fl::HEAD, fd), get(ram, fl::TAIL, fd));
        let (base, mask) = (get(ram, fl::BASE, fd), get(ram, fl::MASK, fd));
        assert!(head - tail + data.len() as u64 <= mask + 1, "ring full");
        for (i, b) in data.iter().enumerate() {
            ram.write(base + ((head + i as u64) & mask), &[*b]).unwrap();
        }
        ram.store_u64(
            slot(fl::HEAD, fd),
            head + data.len() as u64,
            Ordering::SeqCst,
        )
        .unwrap();
    }

    fn read_n(peer: &mut UnixStream, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        peer.read_exact(&mut v).unwrap();
        v
    }

    #[test]
    fn the_gate_stays_closed_at_cpl_0_and_for_high_descriptors() {
        let r = rig(0);
        assert_eq!(r.ram.read_u64(fl::GATE).unwrap() & 0xff, 0);
        r.fio.bind(5, &r.file);
        assert!(r.file.tx_ring().is_none(), "hardware KVM: no fast path");
        assert_eq!(r.ram.read_u64(fl::GATE).unwrap() & 0xff, 0);
        let r = rig(3);
        assert_eq!(
            r.ram.read_u64(fl::GATE).unwrap() & 0xff,
            0,
            "opened only by the first stream"
        );
        r.fio.bind(fl::FASTIO_FDS, &r.file);
        assert!(r.file.tx_ring().is_none());
        r.fio.bind(5, &r.file);
        assert!(r.file.tx_ring().is_some());
        wait_for(
            || r.ram.read_u64(fl::GATE).unwrap() & 0xff == 1,
            "the gate to open",
        );
        assert_eq!(get(&r.ram, fl::MASK, 5), fl::TX_RING_SIZE - 1);
        let (start, end) = layout::tx_rings(32 << 20);
        let base = get(&r.ram, fl::BASE, 5);
        assert!(base >= start && base + fl::TX_RING_SIZE <= end);
    }

    #[test]
    fn ring_bytes_go_first_and_in_order_across_wraps() {
        let mut r = rig(3);
        r.fio.bind(5, &r.file);
        let chunk: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut want = Vec::new();
        // Several times the ring size, so positions wrap.
        for round in 0..30u8 {
            let piece: Vec<u8> = chunk.iter().map(|b| b.wrapping_add(round)).collect();
            stub_write(&r.ram, 5, &piece);
            want.extend_from_slice(&piece);
            // A write that exits (the slow path) comes after what the ring holds.
            let direct = [round; 3];
            assert_eq!(r.file.write(&direct), Ok(3));
            want.extend_from_slice(&direct);
            assert_eq!(
                read_n(&mut r.peer, piece.len() + 3),
                want[want.len() - piece.len() - 3..]
            );
        }
    }

    #[test]
    fn a_failed_registration_keeps_the_gate_closed() {
        let ram = Arc::new(GuestRam::new(32 << 20, Backing::Anonymous).unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let refuse: Box<RegisterKick> = Box::new(|_| Err(kvm_ioctls::Error::new(libc::ENOSPC)));
        let fio =
            Arc::new(FastIo::new(ram.clone(), refuse, stop.clone(), HostCpus::default()).unwrap());
        fio.note_stub_cpl(3);
        let (a, _peer) = UnixStream::pair().unwrap();
        let file = Arc::new(HostFile::new(OwnedFd::from(a), HostKind::Socket, 0, stop).unwrap());
        fio.bind(3, &file);
        wait_for(|| !fio.usable(), "the failure to be noted");
        fio.note_stub_cpl(3);
        assert!(!fio.usable(), "a later system call does not undo it");
        assert_eq!(ram.read_u64(fl::GATE).unwrap() & 0xff, 0);
        let (b, _peer_b) = UnixStream::pair().unwrap();
        let other = Arc::new(
            HostFile::new(
                OwnedFd::from(b),
                HostKind::Socket,
                0,
                Arc::new(AtomicBool::new(false)),
            )
            .unwrap(),
        );
        fio.bind(4, &other);
        assert!(
            other.tx_ring().is_none(),
            "no more rings once registration failed"
        );
    }

    #[test]
    fn a_corrupt_head_breaks_the_stream_instead_of_sending_garbage() {
        let r = rig(3);
        r.fio.bind(5, &r.file);
        r.ram
            .store_u64(slot(fl::HEAD, 5), fl::TX_RING_SIZE * 3, Ordering::SeqCst)
            .unwrap();
        assert_eq!(r.file.write(b"x"), Err(Errno::EPIPE));
    }

    #[test]
    fn unbind_freezes_the_ring_and_it_still_drains() {
        let mut r = rig(3);
        r.fio.bind(5, &r.file);
        stub_write(&r.ram, 5, b"last words");
        r.fio.unbind(5);
        assert_eq!(get(&r.ram, fl::ENABLED, 5), 0);
        // Whatever the program writes to the old head afterwards is ignored.
        r.ram
            .store_u64(slot(fl::HEAD, 5), 12_345, Ordering::SeqCst)
            .unwrap();
        r.file.flush_tx().unwrap();
        assert_eq!(read_n(&mut r.peer, 10), b"last words");
    }

    #[test]
    fn a_dup_takes_the_ring_over_where_the_first_descriptor_left_it() {
        let mut r = rig(3);
        r.fio.bind(5, &r.file);
        stub_write(&r.ram, 5, b"ab");
        r.fio.bind(9, &r.file);
        assert_eq!(get(&r.ram, fl::ENABLED, 5), 0);
        assert_eq!(get(&r.ram, fl::ENABLED, 9), 1);
        assert_eq!(get(&r.ram, fl::HEAD, 9), 2);
        stub_write(&r.ram, 9, b"cd");
        r.fio.flush_all(Instant::now() + Duration::from_secs(1));
        assert_eq!(read_n(&mut r.peer, 4), b"abcd");
    }

    #[test]
    fn closing_the_last_descriptor_frees_the_ring_once_drained() {
        let r = rig(3);
        for round in 0..(fl::TX_RINGS * 3) {
            let (a, mut peer) = UnixStream::pair().unwrap();
            let file = Arc::new(
                HostFile::new(OwnedFd::from(a), HostKind::Socket, 0, r.stop.clone()).unwrap(),
            );
            r.fio.bind(7, &file);
            stub_write(&r.ram, 7, &[u8::try_from(round).unwrap()]);
            r.fio.unbind(7);
            drop(file);
            // The drainer sends the byte, then frees the ring (else binds run out).
            assert_eq!(read_n(&mut peer, 1), [u8::try_from(round).unwrap()]);
            let deadline = Instant::now() + Duration::from_secs(5);
            while lock(&r.fio.free).len() < usize::try_from(fl::TX_RINGS).unwrap() {
                assert!(Instant::now() < deadline, "ring {round} never freed");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        r.fio.clear();
    }
}
