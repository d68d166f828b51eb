/* sysfuzz: calls system call numbers 0..SYSFUZZ_NR_MAX (every number the enclave kernel
 * implements, and every other one) with random and adversarial arguments: wild pointers, 0,
 * -1, kernel and non-canonical addresses, the enclave's system pages and doorbell, pointers
 * into its own stack and code, buffers that straddle a hole, overlapping buffers, lengths
 * near 2^64. A seeded xorshift generator makes every run reproducible.
 *
 * Usage: sysfuzz <seed> <iterations>   (SYSFUZZ_VERBOSE=1 prints each call before it runs)
 * Output: "sysfuzz seed=<seed> iterations=<n>", a progress line every 1000 calls, then
 * "sysfuzz done calls=<n> ok=<successes> errors=<errno results>" and it sleeps until it is
 * terminated (so the host can measure the VMM's peak memory), or exits with SYSFUZZ_EXIT=1.
 *
 * Calls that would end or wedge the program itself are excluded or tamed, since those
 * test nothing about the VMM: exit/exit_group/execve, clone/fork (see the thread bomb in
 * abuse.c), signals that would kill it, arch_prctl(SET_FS), memory calls on its own image,
 * stack or heap, timeouts of blocking calls (always short), blocking descriptors (every
 * descriptor it gets is made non-blocking), and stdout/stderr (kept for the report). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SYSFUZZ_NR_MAX 450
#define PAGE 4096UL
#define ARENA_SIZE (256UL << 10)
#define STACK_SIZE (512UL << 10)
#define STACK_SCRATCH (64UL << 10)
#define MAXFD 256

/* Addresses of the enclave's guest layout (enclave-runtime/src/layout.rs). */
#define GDT_ADDR 0x1000UL
#define IDT_ADDR 0x2000UL
#define STUB_PAGE 0x3000UL
#define PAGE_TABLES 0x10000UL
#define DOORBELL 0x1000000000UL

static uint64_t rng;
static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}
static uint64_t below(uint64_t n) { return n ? next() % n : 0; }

static long raw6(long nr, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}

static unsigned char *arena;      /* random bytes, a hole after it */
static unsigned char *scratch;    /* the top of the fuzzing stack, a hole after it */
static unsigned char *fuzz_stack; /* the fuzzing stack */
static struct timespec *short_ts; /* {0, 1000} for every timeout */
static const char *paths[] = {"/init", "/", "/dev/nsm", "/dev/null", "/etc", "/dev",
                              "/nonexistent", "", "init", "..", "/init/x", "/proc/self/mem"};
static uint64_t last_ptr;

/* An address: wild, system, doorbell, own code/stack, arena, or a path string. */
static uint64_t pointer(int own) {
    uint64_t off = below(ARENA_SIZE);
    switch (below(own ? 20 : 13)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return (uint64_t)-1 - below(PAGE);
    case 3: return 0xffff800000000000UL + below(1UL << 40);
    case 4: return 0x8000000000000000UL + next() % (1UL << 62);
    case 5: return 0x7fff00000000UL + below(1UL << 30);
    case 6: return 0x7ffffffff000UL - below(8) * PAGE;
    case 7: return (GDT_ADDR + below(0x5000)) & ~(uint64_t)below(2);
    case 8: return PAGE_TABLES + below(0x1f0000);
    case 9: return DOORBELL + below(16);
    case 10: return arena + off <= arena + ARENA_SIZE ? (uint64_t)(arena + off) : 0;
    case 11: return (uint64_t)(arena + ARENA_SIZE - below(64)); /* straddles the hole */
    case 12: return last_ptr + below(64);                      /* overlaps the last one */
    case 13: return (uint64_t)(scratch + below(STACK_SCRATCH));
    case 14: return (uint64_t)(scratch + STACK_SCRATCH - below(64));
    case 15: return (uint64_t)&pointer + below(256); /* own code */
    case 16: return (uint64_t)paths[below(sizeof paths / sizeof paths[0])];
    case 17: return (uint64_t)paths[below(sizeof paths / sizeof paths[0])];
    case 18: return (uint64_t)short_ts;
    default: return STUB_PAGE + below(PAGE);
    }
}

/* An address no program memory is at. */
static uint64_t wild(void) {
    static const uint64_t w[] = {0, 1, 0xffff800000000000UL, (uint64_t)-1, 0x7fff00000000UL, DOORBELL};
    return w[below(6)];
}

static uint64_t integer(void) {
    switch (below(14)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return (uint64_t)-1;
    case 3: return below(64);
    case 4: return below(4096);
    case 5: return next() & 0xffffffffUL;
    case 6: return next();
    case 7: return 1UL << 63;
    case 8: return (uint64_t)-1 - below(4096);
    case 9: return 1UL << below(64);
    case 10: return 0x7fffffffUL;
    case 11: return 0x80000000UL;
    case 12: return (uint64_t)(int64_t)(int32_t)next(); /* sign-extended int */
    default: return PAGE * below(64);
    }
}

static int fds[MAXFD];
static int nfds;

static uint64_t an_fd(void) {
    switch (below(8)) {
    case 0: return (uint64_t)-1;
    case 1: return 1000000;
    case 2: return 0;
    case 3: return 3 + below(60);
    default: return nfds ? (uint64_t)fds[below((uint64_t)nfds)] : 0;
    }
}

static uint64_t any_arg(int own) {
    switch (below(3)) {
    case 0: return pointer(own);
    case 1: return integer();
    default: return an_fd();
    }
}

static int is_mm(long nr) {
    switch (nr) {
    case SYS_mmap: case SYS_mprotect: case SYS_munmap: case SYS_brk: case SYS_mremap:
    case SYS_msync: case SYS_mincore: case SYS_madvise: case SYS_mlock: case SYS_munlock:
    case SYS_mlock2: case SYS_remap_file_pages: case SYS_pkey_mprotect: case SYS_shmat:
    case SYS_process_madvise: case 462 /* mseal */:
        return 1;
    default: return 0;
    }
}

/* Memory calls may only touch the arena: anything else could unmap the fuzzer itself. */
static uint64_t mm_addr(void) {
    switch (below(4)) {
    case 0: return (uint64_t)(arena + (below(ARENA_SIZE / PAGE) * PAGE));
    case 1: return (uint64_t)(arena + below(ARENA_SIZE));
    case 2: return 0xffff800000000000UL + below(1UL << 40) * PAGE;
    default: return integer() | (1UL << 62); /* far above user space */
    }
}
static uint64_t mm_len(uint64_t addr) {
    uint64_t a = (uint64_t)arena;
    if (addr >= a && addr < a + ARENA_SIZE)
        return below(4) ? below(a + ARENA_SIZE - addr + 1) : (uint64_t)-1 - below(PAGE);
    switch (below(3)) {
    case 0: return (uint64_t)-1 - below(PAGE);
    case 1: return 1UL << 63;
    default: return PAGE * below(256);
    }
}

static int skipped(long nr) {
    switch (nr) {
    case SYS_exit: case SYS_exit_group: case SYS_execve: case SYS_execveat:
    case SYS_clone: case SYS_clone3: case SYS_fork: case SYS_vfork:
    case SYS_rt_sigreturn: case SYS_pause: case SYS_rt_sigsuspend: case SYS_rt_sigtimedwait:
    case SYS_wait4: case SYS_waitid: case SYS_vhangup: case SYS_reboot:
        return 1;
    default: return 0;
    }
}

/* Turns a random argument vector into one that cannot end or wedge the fuzzer. */
static void tame(long nr, uint64_t a[6]) {
    if (is_mm(nr)) {
        a[0] = mm_addr();
        a[1] = mm_len(a[0]);
        if (nr == SYS_mremap) {
            a[2] = mm_len(a[0]);
            a[4] = mm_addr();
        }
        if (nr == SYS_brk) a[0] = below(2) ? integer() | (1UL << 62) : a[0];
        if (nr == SYS_mmap && (a[3] & (MAP_FIXED | MAP_FIXED_NOREPLACE)) == 0 && below(2))
            a[0] = integer(); /* a hint only */
    }
    /* stdout and stderr carry the report. */
    if (a[0] == 1 || a[0] == 2) a[0] = 0;
    if ((nr == SYS_dup2 || nr == SYS_dup3) && (a[1] == 1 || a[1] == 2)) a[1] = 0;
    switch (nr) {
    case SYS_kill: case SYS_tkill: a[1] = below(2) ? 0 : 65 + below(1000); break;
    case SYS_tgkill: a[2] = below(2) ? 0 : 65 + below(1000); break;
    case SYS_arch_prctl: {
        static const uint64_t codes[] = {0x1003, 0x1004, 0x1005, 0x3001, 0, 0xffff};
        a[0] = codes[below(6)];
        break;
    }
    case SYS_poll: case SYS_epoll_wait: case SYS_epoll_pwait: a[2] = below(2); a[3] = below(2); break;
    case SYS_ppoll: a[2] = (uint64_t)short_ts; break;
    case SYS_select: case SYS_pselect6: a[4] = (uint64_t)short_ts; break;
    case SYS_nanosleep: a[0] = below(4) ? (uint64_t)short_ts : wild(); break;
    case SYS_clock_nanosleep: a[2] = below(4) ? (uint64_t)short_ts : wild(); break;
    case SYS_futex: case SYS_futex_waitv: a[3] = (uint64_t)short_ts; break;
    case SYS_epoll_pwait2: a[3] = (uint64_t)short_ts; break;
    case SYS_io_getevents: a[4] = (uint64_t)short_ts; break;
    case SYS_fcntl: if (a[1] == F_SETFL) a[2] |= O_NONBLOCK; break;
    case SYS_ioctl: if (a[1] == 0x5421 /* FIONBIO */) a[1] = 0x5422; break;
    case SYS_socket: case SYS_socketpair: a[1] |= SOCK_NONBLOCK; break;
    case SYS_accept4: a[3] |= SOCK_NONBLOCK; break;
    case SYS_pipe2: a[1] |= O_NONBLOCK; break;
    case SYS_eventfd2: a[1] |= O_NONBLOCK; break;
    case SYS_open: a[1] |= O_NONBLOCK; break;
    case SYS_openat: a[2] |= O_NONBLOCK; break;
    case SYS_prlimit64: case SYS_setrlimit: if (below(2)) a[2] = 0; break;
    case SYS_rseq: if (a[0] == 0) a[0] = 1; break; /* no unregistering glibc's area */
    default: break;
    }
}

static void remember_fd(long fd) {
    if (fd < 0 || fd == 1 || fd == 2 || fd >= 100000) return;
    raw6(SYS_fcntl, fd, F_SETFL, O_NONBLOCK | O_RDWR, 0, 0, 0);
    for (int i = 0; i < nfds; i++)
        if (fds[i] == fd) return;
    if (nfds < MAXFD) fds[nfds++] = (int)fd;
}

static int returns_fd(long nr) {
    switch (nr) {
    case SYS_open: case SYS_openat: case SYS_creat: case SYS_socket: case SYS_accept:
    case SYS_accept4: case SYS_eventfd: case SYS_eventfd2: case SYS_epoll_create:
    case SYS_epoll_create1: case SYS_dup: case SYS_dup2: case SYS_dup3: case SYS_fcntl:
    case SYS_memfd_create: case SYS_timerfd_create: case SYS_signalfd4: case SYS_inotify_init1:
        return 1;
    default: return 0;
    }
}

/* pipe/socketpair write their descriptors through a pointer: sweep for new ones. */
static void sweep_fds(void) {
    for (long fd = 0; fd < 128; fd++)
        if (raw6(SYS_fcntl, fd, F_GETFD, 0, 0, 0, 0) >= 0) remember_fd(fd);
}

static unsigned long seed, iterations, calls, oks, errs;
static int verbose;

static void fuzz(void) {
    for (unsigned long i = 0; i < iterations; i++) {
        if (i % 1000 == 0) {
            printf("sysfuzz at %lu\n", i);
            for (unsigned long j = 0; j < ARENA_SIZE; j += 8) *(uint64_t *)(arena + j) = next();
        }
        long nr;
        uint64_t pick = below(100);
        if (pick < 94) nr = (long)below(SYSFUZZ_NR_MAX + 1);
        else if (pick < 97) nr = SYSFUZZ_NR_MAX + 1 + (long)below(600);
        else nr = (long)integer();
        if (skipped(nr)) continue;
        uint64_t a[6];
        for (int k = 0; k < 6; k++) {
            a[k] = any_arg(1);
            if (a[k] > PAGE && a[k] < (1UL << 47)) last_ptr = a[k];
        }
        tame(nr, a);
        short_ts->tv_sec = 0;
        short_ts->tv_nsec = 1000;
        if (verbose) printf("call %lu nr=%ld %lx %lx %lx %lx %lx %lx\n", i, nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        long r = raw6(nr, (long)a[0], (long)a[1], (long)a[2], (long)a[3], (long)a[4], (long)a[5]);
        calls++;
        if (r < 0 && r >= -4095) {
            errs++;
        } else {
            oks++;
            if (returns_fd(nr)) remember_fd(r);
            if (nr == SYS_pipe || nr == SYS_pipe2 || nr == SYS_socketpair) sweep_fds();
            if (nr == SYS_mmap || nr == SYS_mremap) {
                /* Keep the holes holes: a new mapping there would let a wild length run on. */
                raw6(SYS_munmap, (long)(scratch + STACK_SCRATCH), PAGE, 0, 0, 0, 0);
                raw6(SYS_munmap, (long)(arena + ARENA_SIZE), PAGE, 0, 0, 0, 0);
            }
        }
    }
}

/* Runs fuzz() on fuzz_stack, so that "pointers into its own stack" can aim at the top of a
 * live stack without overwriting the frames that must survive. */
static void run_on_fuzz_stack(void) {
    void *top = fuzz_stack + STACK_SIZE;
    __asm__ volatile("mov %%rsp, %%rbx\n\t"
                     "mov %0, %%rsp\n\t"
                     "call *%1\n\t"
                     "mov %%rbx, %%rsp\n\t"
                     :
                     : "r"(top), "r"(fuzz)
                     : "rbx", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory", "cc");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc < 3) {
        printf("usage: sysfuzz <seed> <iterations>\n");
        return 2;
    }
    seed = strtoul(argv[1], NULL, 0);
    iterations = strtoul(argv[2], NULL, 0);
    verbose = getenv("SYSFUZZ_VERBOSE") != NULL;
    rng = seed * 0x9e3779b97f4a7c15UL + 1;
    printf("sysfuzz seed=%lu iterations=%lu\n", seed, iterations);

    /* [stack | scratch | hole] and [arena | hole]. */
    unsigned char *s = mmap(NULL, STACK_SIZE + STACK_SCRATCH + PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    arena = mmap(NULL, ARENA_SIZE + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    short_ts = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (s == MAP_FAILED || arena == MAP_FAILED || short_ts == MAP_FAILED ||
        munmap(s + STACK_SIZE + STACK_SCRATCH, PAGE) || munmap(arena + ARENA_SIZE, PAGE)) {
        printf("sysfuzz setup failed\n");
        return 1;
    }
    fuzz_stack = s;
    scratch = s + STACK_SIZE;
    short_ts->tv_sec = 0;
    short_ts->tv_nsec = 1000;
    run_on_fuzz_stack();
    printf("sysfuzz done calls=%lu ok=%lu errors=%lu\n", calls, oks, errs);
    if (getenv("SYSFUZZ_EXIT")) return 0;
    for (;;) {
        struct timespec t = {1, 0};
        nanosleep(&t, NULL);
    }
}
