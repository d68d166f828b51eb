/* The vsock transmit fast path (the syscall stub's own `write`/`sendto` into a ring) seen from
 * a program. Connects to the parent (CID 3) on the port in argv[1] and sends numbered records
 * the parent checks byte for byte and in order:
 *   - 2000 small writes through inline `syscall`, each checking that every register but
 *     rax/rcx/r11 survived (the stub saves what it uses) and rax is the length;
 *   - records of 1 byte to 96 KiB (the ring wraps many times), alternating write(2) and
 *     send(2) with MSG_NOSIGNAL, then through a dup of the socket (the ring moves to it);
 *   - 3 threads, each with its own connection, 2 MiB of records each;
 *   - bad buffers (below user memory, past its end, a null pointer): EFAULT, nothing sent;
 *   - the last record written right before exit_group: it must still arrive.
 * Record: u32 sequence, u32 payload length, payload[i] = (seq * 31 + i) & 0xff.
 * Prints "fastpath: ok" and exits 0, or prints what failed and exits 1. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static unsigned port;

static int connect_parent(void) {
    int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (fd < 0) {
        perror("fastpath: socket");
        exit(1);
    }
    struct sockaddr_vm a;
    memset(&a, 0, sizeof a);
    a.svm_family = AF_VSOCK;
    a.svm_cid = 3;
    a.svm_port = port;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("fastpath: connect");
        exit(1);
    }
    return fd;
}

static void fail(const char *what, long got) {
    printf("fastpath: FAILED %s (%ld)\n", what, got);
    fflush(stdout);
    _exit(1);
}

/* write(2) through `syscall` with sentinels in every register the caller keeps; returns
 * the result and sets *bad to the number of the first clobbered register (0: none). */
/* Copies for the checks, in globals (RIP-relative operands stay valid while rbp and the
 * stack pointer are in use); only the main thread calls checked_write. */
static long g_fd, g_len, g_rbp;
static const void *g_buf;

static long checked_write(long fd, const void *buf, long len, long *bad) {
    long ret, flag;
    g_fd = fd;
    g_buf = buf;
    g_len = len;
    __asm__ volatile(
        "mov %%rbp, %[rbp]\n"
        "mov $0x1111111111111111, %%r8\n"
        "mov $0x2222222222222222, %%r9\n"
        "mov $0x3333333333333333, %%r10\n"
        "mov $0x4444444444444444, %%r12\n"
        "mov $0x5555555555555555, %%r13\n"
        "mov $0x6666666666666666, %%r14\n"
        "mov $0x7777777777777777, %%r15\n"
        "mov $0x8888888888888888, %%rbx\n"
        "mov $0x9999999999999999, %%rbp\n"
        "mov $1, %%eax\n"
        "syscall\n"
        "xor %%ecx, %%ecx\n"
        "mov $0x1111111111111111, %%r11\n cmp %%r11, %%r8\n jne 1f\n inc %%ecx\n"
        "mov $0x2222222222222222, %%r11\n cmp %%r11, %%r9\n jne 1f\n inc %%ecx\n"
        "mov $0x3333333333333333, %%r11\n cmp %%r11, %%r10\n jne 1f\n inc %%ecx\n"
        "mov $0x4444444444444444, %%r11\n cmp %%r11, %%r12\n jne 1f\n inc %%ecx\n"
        "mov $0x5555555555555555, %%r11\n cmp %%r11, %%r13\n jne 1f\n inc %%ecx\n"
        "mov $0x6666666666666666, %%r11\n cmp %%r11, %%r14\n jne 1f\n inc %%ecx\n"
        "mov $0x7777777777777777, %%r11\n cmp %%r11, %%r15\n jne 1f\n inc %%ecx\n"
        "mov $0x8888888888888888, %%r11\n cmp %%r11, %%rbx\n jne 1f\n inc %%ecx\n"
        "mov $0x9999999999999999, %%r11\n cmp %%r11, %%rbp\n jne 1f\n inc %%ecx\n"
        "cmp %[fd], %%rdi\n jne 1f\n inc %%ecx\n"
        "cmp %[buf], %%rsi\n jne 1f\n inc %%ecx\n"
        "cmp %[len], %%rdx\n jne 1f\n inc %%ecx\n"
        "mov $-1, %%rcx\n"
        "1:\n"
        "mov %[rbp], %%rbp\n"
        : "=a"(ret), "=c"(flag), [rbp] "+m"(g_rbp)
        : "D"(fd), "S"(buf), "d"(len), [fd] "m"(g_fd), [buf] "m"(g_buf), [len] "m"(g_len)
        : "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rbx", "memory", "cc");
    *bad = flag == -1 ? 0 : flag + 1;
    return ret;
}

static void fill(unsigned char *p, uint32_t seq, uint32_t len) {
    memcpy(p, &seq, 4);
    memcpy(p + 4, &len, 4);
    for (uint32_t i = 0; i < len; i++) {
        p[8 + i] = (unsigned char)((seq * 31 + i) & 0xff);
    }
}

/* Sends one record with `how`: 0 write, 1 send(MSG_NOSIGNAL); loops on short counts. */
static void record(int fd, uint32_t seq, uint32_t len, int how, unsigned char *buf) {
    fill(buf, seq, len);
    size_t total = 8 + (size_t)len, off = 0;
    while (off < total) {
        ssize_t n = how ? send(fd, buf + off, total - off, MSG_NOSIGNAL)
                        : write(fd, buf + off, total - off);
        if (n <= 0) {
            fail(how ? "send" : "write", n < 0 ? -errno : 0);
        }
        off += (size_t)n;
    }
}

static void *worker(void *arg) {
    long id = (long)arg;
    int fd = connect_parent();
    unsigned char *buf = malloc(8 + 70000);
    uint32_t sent = 0, seq = 0;
    while (sent < (2u << 20)) {
        uint32_t len = 1 + (uint32_t)((seq * 7919 + id * 13) % 65536);
        record(fd, seq, len, (int)(seq & 1), buf);
        seq++;
        sent += len;
    }
    close(fd);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    port = argc > 1 ? (unsigned)atoi(argv[1]) : 7100;
    unsigned char *buf = malloc(8 + (96 << 10));
    int fd = connect_parent();
    uint32_t seq = 0;

    /* 1: registers survive, small records through inline syscall. */
    for (int i = 0; i < 2000; i++) {
        uint32_t len = 1 + (uint32_t)(i % 200);
        fill(buf, seq++, len);
        long bad;
        long n = checked_write(fd, buf, 8 + len, &bad);
        if (bad) {
            fail("register clobbered (1-based: r8 r9 r10 r12 r13 r14 r15 rbx rbp rdi rsi rdx)",
                 bad);
        }
        if (n != 8 + (long)len) {
            fail("inline write length", n);
        }
    }

    /* 2: sizes up to 96 KiB, write and send alternating. */
    for (uint32_t i = 0; i < 400; i++) {
        uint32_t len = 1 + (i * 2654435761u) % (96 << 10);
        record(fd, seq++, len, (int)(i & 1), buf);
    }

    /* 3: through a dup, then back through the original. */
    int d = dup(fd);
    if (d < 0) {
        fail("dup", -errno);
    }
    for (uint32_t i = 0; i < 200; i++) {
        record(i < 100 ? d : fd, seq++, 1 + (i * 40503u) % 20000, (int)(i % 3 == 0), buf);
    }
    close(d);

    /* 4: bad buffers fail with EFAULT and send nothing. */
    const void *bad_bufs[] = {(void *)0, (void *)0x10, (void *)0x7000, (void *)-4096L};
    for (unsigned i = 0; i < sizeof bad_bufs / sizeof bad_bufs[0]; i++) {
        long r = syscall(SYS_write, fd, bad_bufs[i], 64);
        if (r != -1 || errno != EFAULT) {
            fail("bad buffer not EFAULT", r < 0 ? -errno : r);
        }
    }

    /* 5: threads, each on its own connection. */
    pthread_t t[3];
    for (long i = 0; i < 3; i++) {
        if (pthread_create(&t[i], 0, worker, (void *)i) != 0) {
            fail("pthread_create", i);
        }
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], 0);
    }

    /* 6: a last record, then straight to exit_group: it must arrive. */
    printf("fastpath: ok %u records\n", seq + 1);
    fflush(stdout);
    record(fd, seq, 4000, 0, buf);
    syscall(SYS_exit_group, 0);
    return 0;
}
