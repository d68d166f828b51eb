/* abuse: one hostile behaviour per run, chosen by argv[1]. Each mode prints what it did and
 * then either ends with a fault (the crash report is the expected outcome) or prints
 * "<mode> done" and sleeps until it is terminated, so the host can look at the VMM meanwhile.
 *
 *   fds            open, socket, eventfd, pipe, epoll_create1 until EMFILE, for each kind
 *   memory         mmap 1 MiB chunks (touched) until ENOMEM, free, again; brk until it fails
 *   threads        pthread_create (clone) until it fails; every thread sleeps
 *   spin_threads   three threads and main spin without system calls
 *   smc_text       writes to its own code page, then calls it
 *   smc_heap       writes code into PROT_EXEC anonymous memory and calls it
 *   stack_overflow unbounded recursion
 *   vsock_flood    listens on port 7000 and never accepts; connects to the parent (CID 3)
 *                  port 7001 VSOCK_CONNS times and sends on each until it would block
 *   doorbell_args  system calls with pointers into the system pages and the doorbell
 *   doorbell_read  reads the doorbell page
 *   doorbell_write writes to an unused offset of the doorbell page
 *   fake_exception writes a vector to the exception doorbell from user code
 *   gdt_write      writes to the GDT page */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
struct vm_addr {
    unsigned short family;
    unsigned short reserved;
    unsigned int port;
    unsigned int cid;
    unsigned char zero[4];
};

#define MIB (1UL << 20)
#define PAGE 4096UL
/* Addresses of the enclave's guest layout (enclave-runtime/src/layout.rs). */
#define GDT_ADDR 0x1000UL
#define IDT_ADDR 0x2000UL
#define STUB_PAGE 0x3000UL
#define PAGE_TABLES 0x10000UL
#define DOORBELL 0x1000000000UL
#define DOORBELL_EXCEPTION (DOORBELL + 8)

static void sleep_forever(void) {
    for (;;) {
        struct timespec t = {1, 0};
        nanosleep(&t, NULL);
    }
}

static void done(const char *mode) {
    printf("%s done\n", mode);
    if (getenv("ABUSE_EXIT")) exit(0);
    sleep_forever();
}

static int fds_of(const char *kind) {
    static int opened[4096];
    int n = 0, err = 0;
    for (;;) {
        int fd;
        if (!strcmp(kind, "open")) fd = open("/init", O_RDONLY);
        else if (!strcmp(kind, "socket")) fd = socket(AF_VSOCK, SOCK_STREAM, 0);
        else if (!strcmp(kind, "eventfd")) fd = eventfd(0, 0);
        else if (!strcmp(kind, "epoll")) fd = epoll_create1(0);
        else {
            int p[2];
            fd = pipe(p) == 0 ? p[0] : -1;
            if (fd >= 0 && n < 4095) opened[n++] = p[1];
        }
        if (fd < 0) {
            err = errno;
            break;
        }
        if (n >= 4095) break;
        opened[n++] = fd;
    }
    printf("fds %s n=%d errno=%d\n", kind, n, err);
    for (int i = 0; i < n; i++) close(opened[i]);
    return err;
}

static void mode_fds(void) {
    const char *kinds[] = {"open", "socket", "eventfd", "pipe", "epoll"};
    for (int i = 0; i < 5; i++) fds_of(kinds[i]);
    /* Everything was given back: one more open works. */
    int fd = open("/init", O_RDONLY);
    printf("fds reopen %s\n", fd >= 0 ? "ok" : "failed");
    done("fds");
}

static int map_until_enomem(void **chunks, int max, int *err) {
    int n = 0;
    while (n < max) {
        void *p = mmap(NULL, MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            *err = errno;
            return n;
        }
        for (unsigned long o = 0; o < MIB; o += PAGE) ((volatile char *)p)[o] = 1;
        chunks[n++] = p;
    }
    *err = 0;
    return n;
}

static void mode_memory(void) {
    static void *chunks[1 << 16];
    int err, err2;
    int n = map_until_enomem(chunks, 1 << 16, &err);
    printf("memory mmap n=%d errno=%d\n", n, err);
    for (int i = 0; i < n; i++) munmap(chunks[i], MIB);
    int m = map_until_enomem(chunks, 1 << 16, &err2);
    printf("memory again n=%d errno=%d\n", m, err2);
    for (int i = 0; i < m; i++) munmap(chunks[i], MIB);
    void *huge = mmap(NULL, 1UL << 40, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("memory huge %s errno=%d\n", huge == MAP_FAILED ? "refused" : "mapped", errno);
    int b = 0;
    while (sbrk(MIB) != (void *)-1) b++;
    printf("memory brk n=%d errno=%d\n", b, errno);
    done("memory");
}

static void *sleeper(void *arg) {
    (void)arg;
    sleep_forever();
    return NULL;
}

static void mode_threads(void) {
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 << 10);
    int n = 0, err = 0;
    for (;;) {
        pthread_t t;
        err = pthread_create(&t, &attr, sleeper, NULL);
        if (err) break;
        n++;
        if (n >= 100000) break;
    }
    printf("threads created=%d errno=%d\n", n, err);
    done("threads");
}

static void *spinner(void *arg) {
    (void)arg;
    for (;;) __asm__ volatile("" ::: "memory");
    return NULL;
}

static void mode_spin_threads(void) {
    for (int i = 0; i < 3; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, spinner, NULL)) printf("spin thread %d failed\n", i);
    }
    printf("spinning threads\n");
    spinner(NULL);
}

static int __attribute__((noinline)) victim(void) { return 7; }

static void mode_smc_text(void) {
    printf("smc text at %p\n", (void *)victim);
    /* mov eax, 42; ret */
    volatile unsigned char *code = (volatile unsigned char *)victim;
    code[0] = 0xb8, code[1] = 42, code[2] = 0, code[3] = 0, code[4] = 0, code[5] = 0xc3;
    printf("smc text writable ran=%d\n", victim());
    done("smc_text");
}

static void mode_smc_heap(void) {
    unsigned char *p = mmap(NULL, PAGE, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("smc heap mmap errno=%d\n", errno);
        done("smc_heap");
    }
    static const unsigned char code[] = {0xb8, 42, 0, 0, 0, 0xc3};
    memcpy(p, code, sizeof code);
    printf("smc heap at %p\n", (void *)p);
    int (*fn)(void) = (int (*)(void))p;
    printf("smc heap executable ran=%d\n", fn());
    done("smc_heap");
}

static volatile long depth_limit = 1L << 62;
static long __attribute__((noinline)) recurse(long depth) {
    volatile char pad[4096];
    if (depth > depth_limit) return 0;
    pad[0] = (char)depth;
    pad[4095] = (char)depth;
    return recurse(depth + 1) + pad[0] + pad[4095];
}

static void mode_stack_overflow(void) {
    printf("stack overflow\n");
    printf("never %ld\n", recurse(0));
}

static void mode_vsock_flood(void) {
    int conns = getenv("VSOCK_CONNS") ? atoi(getenv("VSOCK_CONNS")) : 16;
    int l = socket(AF_VSOCK, SOCK_STREAM, 0);
    struct vm_addr me = {AF_VSOCK, 0, 7000, 0xffffffffU, {0}};
    if (l < 0 || bind(l, (struct sockaddr *)&me, sizeof me) || listen(l, 4))
        printf("vsock listen errno=%d\n", errno);
    else
        printf("vsock listening 7000\n");
    static char chunk[64 << 10];
    memset(chunk, 'x', sizeof chunk);
    unsigned long total = 0;
    int ok = 0, last = 0;
    for (int i = 0; i < conns; i++) {
        int s = socket(AF_VSOCK, SOCK_STREAM, 0);
        struct vm_addr parent = {AF_VSOCK, 0, 7001, 3, {0}};
        if (s < 0 || connect(s, (struct sockaddr *)&parent, sizeof parent)) {
            last = errno;
            continue;
        }
        ok++;
        fcntl(s, F_SETFL, O_NONBLOCK);
        for (int k = 0; k < 4096; k++) {
            ssize_t w = send(s, chunk, sizeof chunk, 0);
            if (w < 0) {
                last = errno;
                break;
            }
            total += (unsigned long)w;
        }
    }
    printf("vsock flood conns=%d bytes=%lu errno=%d\n", ok, total, last);
    done("vsock_flood");
}

static int fails;
static void expect_error(long r, const char *what) {
    if (!(r < 0 && r >= -4095)) {
        printf("FAIL %s ret=%ld\n", what, r);
        fails++;
    }
}
#define BAD(what, nr, a, b, c) expect_error(syscall(nr, a, b, c) < 0 ? -errno : 0, what)

static void mode_doorbell_args(void) {
    int fd = open("/init", O_RDONLY);
    const unsigned long targets[] = {GDT_ADDR, IDT_ADDR, STUB_PAGE, PAGE_TABLES, PAGE_TABLES + 0x1000,
                                     DOORBELL, DOORBELL_EXCEPTION, DOORBELL + 0x1ff000, 0};
    for (int i = 0; targets[i]; i++) {
        unsigned long t = targets[i];
        BAD("read", SYS_read, fd, t, 64);
        BAD("pread64", SYS_pread64, fd, t, 64);
        BAD("getrandom", SYS_getrandom, t, 64, 0);
        BAD("clock_gettime", SYS_clock_gettime, CLOCK_MONOTONIC, t, 0);
        BAD("uname", SYS_uname, t, 0, 0);
        BAD("openat", SYS_openat, AT_FDCWD, t, O_RDONLY);
        BAD("fstat", SYS_fstat, fd, t, 0);
        BAD("pipe", SYS_pipe, t, 0, 0);
        if (t != STUB_PAGE) BAD("write", SYS_write, 2, t, 64); /* the stub page is user-readable */
    }
    printf("doorbell args %s\n", fails ? "FAILED" : "ok");
    done("doorbell_args");
}

static void mode_poke(const char *mode, unsigned long addr, int write, unsigned char value) {
    printf("%s at 0x%lx\n", mode, addr);
    volatile unsigned char *p = (volatile unsigned char *)addr;
    if (write) *p = value;
    else printf("%s read %u\n", mode, *p);
    printf("%s survived\n", mode);
    done(mode);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "fds")) mode_fds();
    if (!strcmp(m, "memory")) mode_memory();
    if (!strcmp(m, "threads")) mode_threads();
    if (!strcmp(m, "spin_threads")) mode_spin_threads();
    if (!strcmp(m, "smc_text")) mode_smc_text();
    if (!strcmp(m, "smc_heap")) mode_smc_heap();
    if (!strcmp(m, "stack_overflow")) mode_stack_overflow();
    if (!strcmp(m, "vsock_flood")) mode_vsock_flood();
    if (!strcmp(m, "doorbell_args")) mode_doorbell_args();
    if (!strcmp(m, "doorbell_read")) mode_poke(m, DOORBELL + 0x40, 0, 0);
    if (!strcmp(m, "doorbell_write")) mode_poke(m, DOORBELL + 0x40, 1, 0x55);
    if (!strcmp(m, "fake_exception")) mode_poke(m, DOORBELL_EXCEPTION, 1, 14);
    if (!strcmp(m, "gdt_write")) mode_poke(m, GDT_ADDR, 1, 0);
    printf("unknown mode %s\n", m);
    return 2;
}
