/* Hostile guest: calls system calls directly with wild arguments (bad pointers, huge
 * lengths, bad fds, unterminated and oversized paths) and checks that each one fails
 * with a negative errno instead of succeeding or crashing. The host Linux kernel is the
 * reference: this program must print the same lines natively and inside an enclave.
 *
 * Output: one line per system call, "ok <name>", or "FAIL <name> ret=<r> (<case>)" per
 * failed case, then "hostile done". HOSTILE_VERBOSE=1 also prints every case's result.
 * Exit status 0 when nothing failed, 1 otherwise. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define NULLP 0L
#define LOW1 1L                                /* unaligned low address, never mapped */
#define FAR ((long)0x7fff00000000L)            /* far-away unmapped page */
#define KERN ((long)0xffff800000000000UL)      /* kernel half */
#define NONCANON ((long)0x8000000000000000UL)  /* non-canonical */
#define HUGE ((long)SIZE_MAX)
#define HUGE1 ((long)(SIZE_MAX - 1))
#define BIGFD 1000000L
#define MIB (1L << 20)

/* Raw system call without glibc's errno translation: returns the kernel's value. */
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
#define SC(nr, ...) raw6_args(nr, __VA_ARGS__, 0, 0, 0, 0, 0, 0)
#define raw6_args(nr, a, b, c, d, e, f, ...) \
    raw6((long)(nr), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), (long)(f))

static int total_fails;
static int group_fails;
static const char *group;

static void begin(const char *name) {
    group = name;
    group_fails = 0;
}

static void end(void) {
    if (group_fails == 0) printf("ok %s\n", group);
}

/* maxok < 0: the call must fail with -errno. maxok >= 0: a result in [0, maxok] is also
 * accepted (a short transfer that stopped at the end of valid memory, as Linux does). */
static int verbose;

static void check(long ret, long maxok, const char *what) {
    if (verbose) printf("  %s = %ld\n", what, ret);
    int is_errno = ret < 0 && ret >= -4095;
    int ok = is_errno || (maxok >= 0 && ret >= 0 && ret <= maxok);
    if (!ok) {
        printf("FAIL %s ret=%ld (%s)\n", group, ret, what);
        group_fails++;
        total_fails++;
    }
}

#define NEG(nr, ...) check(SC(nr, __VA_ARGS__), -1, #nr "(" #__VA_ARGS__ ")")
#define UPTO(max, nr, ...) check(SC(nr, __VA_ARGS__), (max), #nr "(" #__VA_ARGS__ ")")

/* Maps two pages and unmaps the second: returns the first, the second is a hole. */
static unsigned char *page_before_hole(int fill) {
    unsigned char *p = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        printf("FAIL setup mmap\n");
        exit(1);
    }
    if (munmap(p + PAGE, PAGE) != 0) {
        printf("FAIL setup munmap\n");
        exit(1);
    }
    memset(p, fill, PAGE);
    return p;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    verbose = getenv("HOSTILE_VERBOSE") != NULL;
    (void)argc;

    /* A readable file and a directory that exist both natively and in the enclave. */
    const char *file = getenv("HOSTILE_FILE");
    int fd = file ? open(file, O_RDONLY) : -1;
    if (fd < 0) file = argv[0], fd = open(file, O_RDONLY);
    if (fd < 0) file = "/init", fd = open(file, O_RDONLY);
    if (fd < 0) {
        printf("FAIL setup open test file\n");
        return 1;
    }
    /* The write cases need an fd 2 whose kernel path reads the buffer (a pipe or the
     * console): /dev/null accepts any pointer and would turn them into false failures. */
    struct stat st2;
    if (fstat(2, &st2) == 0 && S_ISCHR(st2.st_mode) && st2.st_rdev == makedev(1, 3)) {
        printf("FAIL setup stderr is /dev/null\n");
        return 1;
    }
    int dfd = open("/", O_RDONLY | O_DIRECTORY);
    if (dfd < 0) {
        printf("FAIL setup open /\n");
        return 1;
    }

    /* A 1 MiB path, a path page with no NUL before a hole, a buffer page before a hole. */
    char *longpath = mmap(NULL, MIB + PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (longpath == MAP_FAILED) {
        printf("FAIL setup mmap long path\n");
        return 1;
    }
    memset(longpath, 'a', MIB);
    longpath[MIB] = 0;
    unsigned char *pathpage = page_before_hole('a');
    unsigned char *bufpage = page_before_hole(0);
    long lastbyte = (long)(bufpage + PAGE - 1);
    long unterm = (long)pathpage;            /* 4096 'a', then a hole */
    long unterm_mid = (long)(pathpage + 100); /* 3996 'a', then a hole */
    long lp = (long)longpath;
    long fpath = (long)file;
    static char buf[4096] __attribute__((aligned(64)));
    long b = (long)buf;

    begin("read");
    NEG(SYS_read, -1, b, 16);
    NEG(SYS_read, BIGFD, b, 16);
    NEG(SYS_read, INT_MIN, b, 16);
    NEG(SYS_read, fd, NULLP, 16);
    NEG(SYS_read, fd, LOW1, 16);
    NEG(SYS_read, fd, FAR, 16);
    NEG(SYS_read, fd, KERN, 16);
    NEG(SYS_read, fd, NONCANON, 16);
    NEG(SYS_read, fd, NULLP, HUGE);
    NEG(SYS_read, fd, b, HUGE);
    NEG(SYS_read, fd, b, HUGE1);
    UPTO(1, SYS_read, fd, lastbyte, MIB);
    NEG(SYS_read, dfd, b, 16);
    end();

    begin("write");
    bufpage[PAGE - 1] = '\n';
    NEG(SYS_write, -1, b, 1);
    NEG(SYS_write, BIGFD, b, 1);
    NEG(SYS_write, fd, b, 1); /* read-only fd */
    NEG(SYS_write, 2, NULLP, 16);
    NEG(SYS_write, 2, LOW1, 16);
    NEG(SYS_write, 2, FAR, 16);
    NEG(SYS_write, 2, KERN, 16);
    NEG(SYS_write, 2, NONCANON, 16);
    NEG(SYS_write, 2, b, HUGE);
    NEG(SYS_write, 2, b, HUGE1);
    UPTO(1, SYS_write, 2, lastbyte, MIB);
    end();

    begin("pread64");
    NEG(SYS_pread64, -1, b, 16, 0);
    NEG(SYS_pread64, BIGFD, b, 16, 0);
    NEG(SYS_pread64, fd, b, 16, -1);
    NEG(SYS_pread64, fd, b, 16, LONG_MIN);
    NEG(SYS_pread64, fd, NULLP, 16, 0);
    NEG(SYS_pread64, fd, KERN, 16, 0);
    NEG(SYS_pread64, fd, FAR, 16, 0);
    NEG(SYS_pread64, fd, b, HUGE, 0);
    UPTO(1, SYS_pread64, fd, lastbyte, MIB, 0);
    NEG(SYS_pread64, dfd, b, 16, 0);
    end();

    struct iovec iov_bad_null[2] = {{NULL, 16}, {NULL, 16}};
    struct iovec iov_bad_kern[1] = {{(void *)KERN, 16}};
    struct iovec iov_bad_far[1] = {{(void *)FAR, 16}};
    struct iovec iov_huge_len[1] = {{buf, SIZE_MAX}};
    struct iovec iov_overflow[2] = {{buf, (size_t)LONG_MAX}, {buf, (size_t)LONG_MAX}};
    struct iovec iov_ok_then_bad[2] = {{buf, 8}, {(void *)KERN, 16}};
    struct iovec iov_ok_then_null[2] = {{buf, 2}, {NULL, 16}};
    struct iovec iov_lastbyte[1] = {{(void *)lastbyte, MIB}};
    /* An iovec array whose second entry lies in the hole. */
    struct iovec *iov_edge = (struct iovec *)(bufpage + PAGE - sizeof(struct iovec));
    iov_edge->iov_base = buf;
    iov_edge->iov_len = 8;

    begin("readv");
    NEG(SYS_readv, -1, iov_bad_null, 1);
    NEG(SYS_readv, BIGFD, iov_bad_null, 1);
    NEG(SYS_readv, fd, NULLP, 1);
    NEG(SYS_readv, fd, KERN, 1);
    NEG(SYS_readv, fd, FAR, 1);
    NEG(SYS_readv, fd, iov_edge, 2);
    NEG(SYS_readv, fd, iov_bad_null, 2);
    NEG(SYS_readv, fd, iov_bad_kern, 1);
    NEG(SYS_readv, fd, iov_bad_far, 1);
    NEG(SYS_readv, fd, iov_huge_len, 1);
    NEG(SYS_readv, fd, iov_overflow, 2);
    NEG(SYS_readv, fd, iov_bad_null, 1L << 30);
    NEG(SYS_readv, fd, iov_bad_null, -1);
    NEG(SYS_readv, fd, iov_bad_null, 1025);
    UPTO(8, SYS_readv, fd, iov_ok_then_bad, 2);
    UPTO(1, SYS_readv, fd, iov_lastbyte, 1);
    end();

    buf[0] = '\n';
    buf[1] = '\n';
    bufpage[PAGE - 1] = '\n';
    begin("writev");
    NEG(SYS_writev, -1, iov_bad_null, 1);
    NEG(SYS_writev, BIGFD, iov_bad_null, 1);
    NEG(SYS_writev, 2, NULLP, 1);
    NEG(SYS_writev, 2, KERN, 1);
    NEG(SYS_writev, 2, FAR, 1);
    NEG(SYS_writev, 2, iov_bad_null, 2);
    NEG(SYS_writev, 2, iov_bad_kern, 1);
    NEG(SYS_writev, 2, iov_bad_far, 1);
    NEG(SYS_writev, 2, iov_huge_len, 1);
    NEG(SYS_writev, 2, iov_overflow, 2);
    NEG(SYS_writev, 2, iov_bad_null, 1L << 30);
    NEG(SYS_writev, 2, iov_bad_null, -1);
    UPTO(2, SYS_writev, 2, iov_ok_then_null, 2);
    UPTO(1, SYS_writev, 2, iov_lastbyte, 1);
    end();

    begin("openat");
    NEG(SYS_openat, AT_FDCWD, NULLP, O_RDONLY);
    NEG(SYS_openat, AT_FDCWD, LOW1, O_RDONLY);
    NEG(SYS_openat, AT_FDCWD, FAR, O_RDONLY);
    NEG(SYS_openat, AT_FDCWD, KERN, O_RDONLY);
    NEG(SYS_openat, AT_FDCWD, NONCANON, O_RDONLY);
    NEG(SYS_openat, AT_FDCWD, unterm, O_RDONLY);
    NEG(SYS_openat, AT_FDCWD, unterm_mid, O_RDONLY);
    NEG(SYS_openat, AT_FDCWD, lp, O_RDONLY);
    NEG(SYS_openat, AT_FDCWD, "", O_RDONLY);
    NEG(SYS_openat, BIGFD, "relative", O_RDONLY);
    NEG(SYS_openat, -5, "relative", O_RDONLY);
    NEG(SYS_openat, fd, "relative", O_RDONLY); /* not a directory */
    end();

    begin("newfstatat");
    NEG(SYS_newfstatat, AT_FDCWD, NULLP, b, 0);
    NEG(SYS_newfstatat, AT_FDCWD, KERN, b, 0);
    NEG(SYS_newfstatat, AT_FDCWD, unterm, b, 0);
    NEG(SYS_newfstatat, AT_FDCWD, unterm_mid, b, 0);
    NEG(SYS_newfstatat, AT_FDCWD, lp, b, 0);
    NEG(SYS_newfstatat, AT_FDCWD, fpath, NULLP, 0);
    NEG(SYS_newfstatat, AT_FDCWD, fpath, KERN, 0);
    NEG(SYS_newfstatat, AT_FDCWD, fpath, FAR, 0);
    NEG(SYS_newfstatat, AT_FDCWD, fpath, lastbyte, 0);
    NEG(SYS_newfstatat, AT_FDCWD, fpath, b, 0x7fff0000);
    NEG(SYS_newfstatat, BIGFD, "relative", b, 0);
    end();

    begin("fstat");
    NEG(SYS_fstat, -1, b);
    NEG(SYS_fstat, BIGFD, b);
    NEG(SYS_fstat, fd, NULLP);
    NEG(SYS_fstat, fd, LOW1);
    NEG(SYS_fstat, fd, KERN);
    NEG(SYS_fstat, fd, FAR);
    NEG(SYS_fstat, fd, lastbyte);
    end();

    begin("statx");
    NEG(SYS_statx, AT_FDCWD, fpath, 0, 0x7ff, NULLP);
    NEG(SYS_statx, AT_FDCWD, fpath, 0, 0x7ff, KERN);
    NEG(SYS_statx, AT_FDCWD, fpath, 0, 0x7ff, lastbyte);
    NEG(SYS_statx, AT_FDCWD, NULLP, 0, 0x7ff, b);
    NEG(SYS_statx, AT_FDCWD, unterm, 0, 0x7ff, b);
    NEG(SYS_statx, AT_FDCWD, lp, 0, 0x7ff, b);
    NEG(SYS_statx, AT_FDCWD, fpath, 0x7fff0000, 0x7ff, b);
    NEG(SYS_statx, AT_FDCWD, fpath, 0, 0x80000000L, b);
    NEG(SYS_statx, BIGFD, "relative", 0, 0x7ff, b);
    end();

    begin("getdents64");
    NEG(SYS_getdents64, -1, b, sizeof buf);
    NEG(SYS_getdents64, BIGFD, b, sizeof buf);
    NEG(SYS_getdents64, fd, b, sizeof buf); /* not a directory */
    NEG(SYS_getdents64, dfd, b, 0);
    NEG(SYS_getdents64, dfd, b, 1);
    NEG(SYS_getdents64, dfd, NULLP, sizeof buf);
    NEG(SYS_getdents64, dfd, KERN, sizeof buf);
    NEG(SYS_getdents64, dfd, FAR, sizeof buf);
    NEG(SYS_getdents64, dfd, NULLP, HUGE);
    NEG(SYS_getdents64, dfd, lastbyte, MIB);
    end();

    begin("lseek");
    NEG(SYS_lseek, -1, 0, SEEK_SET);
    NEG(SYS_lseek, BIGFD, 0, SEEK_SET);
    NEG(SYS_lseek, fd, 0, 99);
    NEG(SYS_lseek, fd, -1, SEEK_SET);
    NEG(SYS_lseek, fd, LONG_MIN, SEEK_END);
    if (SC(SYS_lseek, fd, 1, SEEK_SET) != 1) check(-1 - 1000000, -1, "lseek to 1");
    NEG(SYS_lseek, fd, LONG_MAX, SEEK_CUR);
    end();

    begin("clock_gettime");
    NEG(SYS_clock_gettime, CLOCK_MONOTONIC, NULLP);
    NEG(SYS_clock_gettime, CLOCK_REALTIME, LOW1);
    NEG(SYS_clock_gettime, CLOCK_MONOTONIC, KERN);
    NEG(SYS_clock_gettime, CLOCK_MONOTONIC, FAR);
    NEG(SYS_clock_gettime, CLOCK_MONOTONIC, lastbyte);
    NEG(SYS_clock_gettime, 9999, b);
    NEG(SYS_clock_gettime, INT_MAX, b);
    end();

    begin("gettimeofday");
    NEG(SYS_gettimeofday, LOW1, NULLP);
    NEG(SYS_gettimeofday, KERN, NULLP);
    NEG(SYS_gettimeofday, FAR, NULLP);
    NEG(SYS_gettimeofday, lastbyte, NULLP);
    NEG(SYS_gettimeofday, NULLP, KERN);
    end();

    struct timespec ts_neg_ns = {0, -1}, ts_big_ns = {0, 1000000000}, ts_neg_s = {-1, 0};
    begin("nanosleep");
    NEG(SYS_nanosleep, NULLP, NULLP);
    NEG(SYS_nanosleep, KERN, NULLP);
    NEG(SYS_nanosleep, FAR, NULLP);
    NEG(SYS_nanosleep, lastbyte, NULLP);
    NEG(SYS_nanosleep, &ts_neg_ns, NULLP);
    NEG(SYS_nanosleep, &ts_big_ns, NULLP);
    NEG(SYS_nanosleep, &ts_neg_s, NULLP);
    end();

    begin("clock_nanosleep");
    NEG(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, NULLP, NULLP);
    NEG(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, KERN, NULLP);
    NEG(SYS_clock_nanosleep, CLOCK_MONOTONIC, 0, &ts_neg_ns, NULLP);
    NEG(SYS_clock_nanosleep, CLOCK_MONOTONIC, TIMER_ABSTIME, &ts_big_ns, NULLP);
    NEG(SYS_clock_nanosleep, 9999, 0, &ts_neg_s, NULLP);
    NEG(SYS_clock_nanosleep, CLOCK_THREAD_CPUTIME_ID, 0, &ts_big_ns, NULLP);
    end();

    begin("getrandom");
    NEG(SYS_getrandom, NULLP, 32, 0);
    NEG(SYS_getrandom, LOW1, 32, 0);
    NEG(SYS_getrandom, KERN, 32, 0);
    NEG(SYS_getrandom, FAR, 32, 0);
    NEG(SYS_getrandom, NULLP, HUGE, 0);
    NEG(SYS_getrandom, KERN, HUGE1, 0);
    NEG(SYS_getrandom, b, 32, 0xffff);
    UPTO(1, SYS_getrandom, lastbyte, MIB, 0);
    end();

    begin("uname");
    NEG(SYS_uname, NULLP);
    NEG(SYS_uname, LOW1);
    NEG(SYS_uname, KERN);
    NEG(SYS_uname, FAR);
    NEG(SYS_uname, lastbyte);
    end();

    /* brk never fails with an errno: a refused request returns the current break. */
    begin("brk");
    {
        long cur = SC(SYS_brk, 0);
        long wild[] = {LOW1, KERN, NONCANON, HUGE, HUGE1, FAR + 0x100000000L};
        for (size_t i = 0; i < sizeof wild / sizeof wild[0]; i++) {
            long r = SC(SYS_brk, wild[i]);
            if (r != cur) check(r == 0 ? -1000000 : r, -1, "brk(wild) moved the break");
        }
    }
    end();

    begin("mmap");
    NEG(SYS_mmap, 0, HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    NEG(SYS_mmap, 0, HUGE1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    NEG(SYS_mmap, 0, 1L << 62, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    NEG(SYS_mmap, 0, 0, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    NEG(SYS_mmap, LOW1, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    NEG(SYS_mmap, KERN, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    NEG(SYS_mmap, NONCANON, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    NEG(SYS_mmap, 0, PAGE, PROT_READ | PROT_WRITE, MAP_ANONYMOUS, -1, 0);
    NEG(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, BIGFD, 0);
    NEG(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, -1, 0);
    NEG(SYS_mmap, 0, PAGE, PROT_READ, MAP_PRIVATE, fd, 1);
    end();

    begin("munmap");
    NEG(SYS_munmap, LOW1, PAGE);
    NEG(SYS_munmap, KERN, PAGE);
    NEG(SYS_munmap, NONCANON, PAGE);
    NEG(SYS_munmap, 0, 0);
    NEG(SYS_munmap, bufpage, HUGE);
    NEG(SYS_munmap, bufpage, 0);
    end();

    begin("mprotect");
    NEG(SYS_mprotect, LOW1, PAGE, PROT_READ);
    NEG(SYS_mprotect, FAR, PAGE, PROT_READ);
    NEG(SYS_mprotect, KERN, PAGE, PROT_READ);
    NEG(SYS_mprotect, bufpage, HUGE, PROT_READ);
    NEG(SYS_mprotect, bufpage, 2 * PAGE, PROT_READ); /* second page is a hole */
    NEG(SYS_mprotect, bufpage, PAGE, 0x7fff0000);
    end();

    begin("mremap");
    NEG(SYS_mremap, LOW1, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0);
    NEG(SYS_mremap, FAR, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0);
    NEG(SYS_mremap, KERN, PAGE, 2 * PAGE, MREMAP_MAYMOVE, 0);
    NEG(SYS_mremap, bufpage, PAGE, HUGE, MREMAP_MAYMOVE, 0);
    NEG(SYS_mremap, bufpage, PAGE, 2 * PAGE, 0x7fff0000, 0);
    NEG(SYS_mremap, bufpage, PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, KERN);
    end();

    begin("arch_prctl");
    NEG(SYS_arch_prctl, 0x1002 /* ARCH_SET_FS */, KERN);
    NEG(SYS_arch_prctl, 0x1002, NONCANON);
    NEG(SYS_arch_prctl, 0x1002, HUGE);
    NEG(SYS_arch_prctl, 0x1001 /* ARCH_SET_GS */, KERN);
    NEG(SYS_arch_prctl, 0x1003 /* ARCH_GET_FS */, NULLP);
    NEG(SYS_arch_prctl, 0x1003, KERN);
    NEG(SYS_arch_prctl, 0x1003, FAR);
    NEG(SYS_arch_prctl, 0x1004 /* ARCH_GET_GS */, KERN);
    NEG(SYS_arch_prctl, 0x9999, b);
    end();

    /* set_tid_address only records the pointer and returns the thread id. */
    begin("set_tid_address");
    {
        static int tid_slot;
        long r1 = SC(SYS_set_tid_address, KERN);
        long r2 = SC(SYS_set_tid_address, &tid_slot);
        if (r1 <= 0 || r2 != r1) check(r1 <= 0 ? (r1 == 0 ? -1000000 : r1) : r2, -1, "set_tid_address returns tid");
    }
    end();

    begin("set_robust_list");
    NEG(SYS_set_robust_list, KERN, 0);
    NEG(SYS_set_robust_list, NULLP, HUGE);
    NEG(SYS_set_robust_list, b, 23);
    end();

    begin("rseq");
    NEG(SYS_rseq, NULLP, 32, 0, 0x53053053);
    NEG(SYS_rseq, KERN, 32, 0, 0x53053053);
    NEG(SYS_rseq, LOW1, 32, 0, 0x53053053);
    NEG(SYS_rseq, b, HUGE, 0, 0x53053053);
    NEG(SYS_rseq, KERN, 32, 1 /* RSEQ_FLAG_UNREGISTER */, 0x53053053);
    NEG(SYS_rseq, b, 32, 0x7fff0000, 0);
    end();

    begin("prlimit64");
    NEG(SYS_prlimit64, 0, 7 /* RLIMIT_NOFILE */, KERN, NULLP);
    NEG(SYS_prlimit64, 0, 7, FAR, NULLP);
    NEG(SYS_prlimit64, 0, 3 /* RLIMIT_STACK */, NULLP, KERN);
    NEG(SYS_prlimit64, 0, 3, NULLP, lastbyte);
    NEG(SYS_prlimit64, 0, 1000, NULLP, b);
    NEG(SYS_prlimit64, 0, -1, NULLP, b);
    NEG(SYS_prlimit64, INT_MAX, 3, NULLP, b);
    end();

    begin("rt_sigaction");
    NEG(SYS_rt_sigaction, SIGUSR1, KERN, NULLP, 8);
    NEG(SYS_rt_sigaction, SIGUSR1, FAR, NULLP, 8);
    NEG(SYS_rt_sigaction, SIGUSR1, lastbyte, NULLP, 8);
    NEG(SYS_rt_sigaction, SIGUSR1, NULLP, KERN, 8);
    NEG(SYS_rt_sigaction, SIGUSR1, NULLP, LOW1, 8);
    NEG(SYS_rt_sigaction, SIGUSR1, NULLP, b, HUGE);
    NEG(SYS_rt_sigaction, 0, NULLP, b, 8);
    NEG(SYS_rt_sigaction, 65, NULLP, b, 8);
    NEG(SYS_rt_sigaction, -1, NULLP, b, 8);
    NEG(SYS_rt_sigaction, SIGKILL, b, NULLP, 8);
    end();

    begin("rt_sigprocmask");
    NEG(SYS_rt_sigprocmask, SIG_BLOCK, KERN, NULLP, 8);
    NEG(SYS_rt_sigprocmask, SIG_BLOCK, FAR, NULLP, 8);
    NEG(SYS_rt_sigprocmask, SIG_BLOCK, lastbyte, NULLP, 8);
    NEG(SYS_rt_sigprocmask, SIG_BLOCK, NULLP, KERN, 8);
    NEG(SYS_rt_sigprocmask, SIG_BLOCK, NULLP, LOW1, 8);
    NEG(SYS_rt_sigprocmask, 99, b, NULLP, 8);
    NEG(SYS_rt_sigprocmask, SIG_BLOCK, b, NULLP, HUGE);
    NEG(SYS_rt_sigprocmask, SIG_BLOCK, b, NULLP, 0);
    end();

    begin("sigaltstack");
    NEG(SYS_sigaltstack, KERN, NULLP);
    NEG(SYS_sigaltstack, FAR, NULLP);
    NEG(SYS_sigaltstack, lastbyte, NULLP);
    NEG(SYS_sigaltstack, NULLP, KERN);
    NEG(SYS_sigaltstack, NULLP, LOW1);
    {
        stack_t bad_flags = {.ss_sp = buf, .ss_flags = 0x7fff, .ss_size = sizeof buf};
        stack_t too_small = {.ss_sp = buf, .ss_flags = 0, .ss_size = 16};
        NEG(SYS_sigaltstack, &bad_flags, NULLP);
        NEG(SYS_sigaltstack, &too_small, NULLP);
    }
    end();

    begin("poll");
    NEG(SYS_poll, NULLP, 1, 0);
    NEG(SYS_poll, KERN, 1, 0);
    NEG(SYS_poll, FAR, 1, 0);
    NEG(SYS_poll, lastbyte, 1, 0);
    NEG(SYS_poll, b, HUGE, 0);
    NEG(SYS_poll, b, 1L << 30, 0);
    end();

    begin("ioctl");
    NEG(SYS_ioctl, -1, 0x5401 /* TCGETS */, b);
    NEG(SYS_ioctl, BIGFD, 0x5401, b);
    NEG(SYS_ioctl, 1, 0x5401, KERN);
    NEG(SYS_ioctl, 1, 0x5401, NULLP);
    NEG(SYS_ioctl, fd, 0x5401, b);
    NEG(SYS_ioctl, fd, 0xdeadbeefL, KERN);
    NEG(SYS_ioctl, 1, 0x5413 /* TIOCGWINSZ */, KERN);
    end();

    begin("sched_getaffinity");
    NEG(SYS_sched_getaffinity, 0, 0, b);
    NEG(SYS_sched_getaffinity, 0, 3, b);
    NEG(SYS_sched_getaffinity, 0, HUGE, b);
    NEG(SYS_sched_getaffinity, 0, 1L << 20, NULLP);
    NEG(SYS_sched_getaffinity, 0, 1L << 20, KERN);
    NEG(SYS_sched_getaffinity, 0, 1L << 20, FAR);
    NEG(SYS_sched_getaffinity, 0, 1L << 20, lastbyte);
    NEG(SYS_sched_getaffinity, INT_MAX, sizeof buf, b);
    end();

    begin("close");
    NEG(SYS_close, -1);
    NEG(SYS_close, BIGFD);
    NEG(SYS_close, INT_MAX);
    NEG(SYS_close, INT_MIN);
    NEG(SYS_close, HUGE);
    end();

    printf("hostile done\n");
    SC(SYS_exit_group, total_fails == 0 ? 0 : 1);
    return 2; /* not reached */
}
