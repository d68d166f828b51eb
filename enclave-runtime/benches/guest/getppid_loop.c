/* The system-call benchmark's program: no libc, raw system calls only.
 * Built by the bench with `gcc -static -nostdlib -O2 -fno-stack-protector`.
 *
 * `/init N` runs `syscall` with rax = 110 (getppid) N times, then exit_group(0); it exits 1
 * if argv[1] is missing or not a decimal number, 2 if a getppid returned an error. */

#define NR_GETPPID 110
#define NR_EXIT_GROUP 231

static long raw_syscall0(long nr) {
    long ret;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(nr) : "rcx", "r11", "memory");
    return ret;
}

static __attribute__((noreturn)) void exit_group(long status) {
    for (;;) {
        __asm__ volatile("syscall" : : "a"((long)NR_EXIT_GROUP), "D"(status) : "rcx", "r11", "memory");
    }
}

/* Parses a decimal count; -1 when `s` is not one. */
static long parse_count(const char *s) {
    long n = 0;
    if (s == 0 || *s == 0) {
        return -1;
    }
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || n > 100000000000L) {
            return -1;
        }
        n = n * 10 + (*s - '0');
    }
    return n;
}

/* Called from _start with the initial stack pointer: argc, argv[0], argv[1], ... */
__attribute__((noreturn, used)) void start_c(long *sp) {
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    long n = argc > 1 ? parse_count(argv[1]) : -1;
    if (n < 0) {
        exit_group(1);
    }
    long failed = 0;
    for (long i = 0; i < n; i++) {
        long r = raw_syscall0(NR_GETPPID);
        /* -4095..-1 is an errno. */
        failed |= (unsigned long)r > (unsigned long)-4096L;
    }
    exit_group(failed ? 2 : 0);
}

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "  xor %ebp, %ebp\n"
        "  mov %rsp, %rdi\n"
        "  and $-16, %rsp\n"
        "  call start_c\n"
        "  ud2\n");
