//! Fuzzes the ELF loader: load plan, system area, segments and initial stack.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    enclave_runtime::fuzzing::elf_loader(data);
});
