//! Entry points of the runtime's cargo-fuzz targets in `fuzz/`: each takes arbitrary bytes and
//! must never panic. They live here so `cargo test` runs the exact code the fuzzers run
//! (`enclave-runtime/tests/fuzz_logic.rs`).

use std::sync::{Mutex, OnceLock, PoisonError};

use crate::kernel::fs::ImageTree;
use crate::memory::{Backing, GuestRam};
use crate::program::ProgramImage;
use crate::{boot, elf, image, layout, stack, vsock_host};

/// Guest memory the ELF target loads into: the smallest the layout allows, mapped once.
fn ram() -> Option<&'static Mutex<GuestRam>> {
    static RAM: OnceLock<Option<Mutex<GuestRam>>> = OnceLock::new();
    RAM.get_or_init(|| {
        GuestRam::new(layout::MIN_GUEST_MEMORY, Backing::Anonymous)
            .ok()
            .map(Mutex::new)
    })
    .as_ref()
}

/// `elf_loader` target: plan the load; a plan that fits the guest is carried out as the VMM
/// does at launch (system area with page tables, segments, initial stack). Every segment of an
/// accepted plan lies inside the image area, above the system area.
pub fn elf_loader(data: &[u8]) {
    // As an interpreter (or a dynamic program) at a chosen base: inside the small-page area.
    if let Ok((p, _)) = elf::plan_at(data, layout::DYNAMIC_ALIGN * 4) {
        for s in &p.segments {
            assert!(s.addr >= layout::IMAGE_MIN, "segment below the image area");
            assert!(
                s.addr
                    .checked_add(s.mem_len)
                    .is_some_and(|e| e <= layout::SMALL_PAGE_AREA_END),
                "segment past the small-page area"
            );
        }
    }
    let Ok(plan) = elf::plan(data) else {
        return;
    };
    for s in &plan.segments {
        let end = s.addr.checked_add(s.mem_len);
        assert!(s.addr >= layout::IMAGE_MIN, "segment below the image area");
        assert!(
            end.is_some_and(|e| e <= plan.image_end),
            "segment past the image end"
        );
        assert!(
            u64::try_from(s.file_len).is_ok_and(|f| f <= s.mem_len),
            "file part larger than segment"
        );
    }
    let size = layout::MIN_GUEST_MEMORY;
    if plan.image_end >= layout::mmap_top(size) {
        return;
    }
    let Some(ram) = ram() else {
        return;
    };
    let ram = ram.lock().unwrap_or_else(PoisonError::into_inner);
    let _ = boot::write_system_area(&ram, &plan);
    let _ = boot::load_program(&ram, data, &plan);
    let argv = vec!["/init".to_owned()];
    if let Ok(st) = stack::build(
        layout::stack_top(size),
        layout::STACK_STRINGS_MAX,
        &argv,
        &[],
        &plan,
        0,
        [0; 16],
        0,
    ) {
        let _ = ram.write(st.base, &st.bytes);
    }
}

/// `image_unpack` target: the VMM's whole image reader (EIF, guest ABI, init spec, every
/// ramdisk's cpio, signature check).
pub fn image_unpack(data: &[u8]) {
    if let Ok(img) = image::unpack(data) {
        // The VMM's view: /init and, for a dynamic program, its interpreter from the tree.
        if let Ok(tree) = ImageTree::new(img.tree.clone()) {
            if let Ok(p) = ProgramImage::plan(img.init(), &tree) {
                let end = p.end();
                assert!(
                    p.exec_area
                        .is_none_or(|(_, e)| e == end && e <= layout::SMALL_PAGE_AREA_END),
                    "exec area past the small-page area"
                );
            }
        }
        if let Ok(plan) = elf::plan(img.init()) {
            let _ = stack::build(
                layout::stack_top(layout::MIN_GUEST_MEMORY),
                layout::STACK_STRINGS_MAX,
                &img.spec.argv,
                &img.spec.env,
                &plan,
                0,
                [0; 16],
                0,
            );
        }
    }
}

/// `vsock_handshake` target: the parent-side handshake parser over a byte stream. An
/// accepted handshake is `CONNECT <digits>\n` within the line limit.
pub fn vsock_handshake(data: &[u8]) {
    let mut stream = data;
    if let Some(port) = vsock_host::read_handshake(&mut stream) {
        let line = data.get(..data.len() - stream.len()).unwrap_or_default();
        assert!(
            line.starts_with(b"CONNECT ") && line.ends_with(b"\n"),
            "{line:?}"
        );
        let digits = line.get(8..line.len() - 1).unwrap_or_default();
        assert!(digits.iter().all(u8::is_ascii_digit), "{line:?}");
        assert_eq!(
            std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse().ok()),
            Some(port)
        );
    }
}

/// A minimal static x86_64 program (`exit(0)`), a seed for the ELF target.
pub fn seed_elf() -> Vec<u8> {
    const EHDR: u64 = 64;
    const PHDR: u64 = 56;
    let code = [0xb8, 0x3c, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05]; // mov eax, 60; xor edi, edi; syscall
    let base = layout::IMAGE_MIN;
    let size = EHDR + PHDR + code.len() as u64;
    let mut b = Vec::new();
    b.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    b.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&(base + EHDR + PHDR).to_le_bytes()); // entry
    b.extend_from_slice(&EHDR.to_le_bytes()); // phoff
    b.extend_from_slice(&0u64.to_le_bytes()); // shoff
    b.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 0, 0, 0] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    b.extend_from_slice(&5u32.to_le_bytes()); // R+X
    for v in [0, base, base, size, size, 0x1000u64] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&code);
    b
}

/// An EIF of [`seed_elf`] built for this runtime, a seed for the image target.
pub fn seed_image() -> Vec<u8> {
    use attestation::cpio::{self, CpioEntry};
    use attestation::eif::EifWriter;
    use attestation::image::InitSpec;
    let spec = InitSpec {
        argv: vec!["/init".into(), "arg".into()],
        env: vec!["K=V".into()],
        cwd: None,
    };
    let root = cpio::write(&[CpioEntry::file("init", 0o755, seed_elf())]).unwrap_or_default();
    let mut w = EifWriter::new(crate::guest_abi::kernel_blob(), spec.to_bytes());
    w.ramdisks.push(root);
    w.to_bytes().unwrap_or_default()
}
