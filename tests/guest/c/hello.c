/* Guest program for the enclave integration tests: exercises the common system calls
 * of a static glibc program and prints a deterministic transcript.
 * Any failed check prints "FAIL: <what>" and exits 99. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void fail(const char *what) {
    printf("FAIL: %s\n", what);
    fflush(stdout);
    exit(99);
}

static void check_file(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) fail("open READ_FILE");
    struct stat st;
    if (fstat(fd, &st) != 0) fail("fstat READ_FILE");
    off_t end = lseek(fd, 0, SEEK_END);
    if (end != st.st_size) fail("lseek SEEK_END");
    if (lseek(fd, 0, SEEK_SET) != 0) fail("lseek SEEK_SET");
    uint32_t sum = 0;
    long total = 0;
    unsigned char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) fail("read READ_FILE");
        if (n == 0) break;
        for (ssize_t i = 0; i < n; i++) sum += buf[i];
        total += n;
    }
    if (total != st.st_size) fail("read size");
    if (st.st_size > 0) {
        unsigned char last;
        if (pread(fd, &last, 1, st.st_size - 1) != 1) fail("pread");
        if (lseek(fd, 0, SEEK_CUR) != st.st_size) fail("pread moved offset");
    }
    close(fd);
    printf("size=%ld\n", (long)st.st_size);
    printf("sum=%u\n", sum);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_dir(const char *path) {
    DIR *d = opendir(path);
    if (!d) fail("opendir LIST_DIR");
    char **names = NULL;
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        names = realloc(names, (n + 1) * sizeof *names);
        if (!names) fail("realloc");
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        printf("dir:%s\n", names[i]);
        free(names[i]);
    }
    free(names);
}

static void check_time(void) {
    struct timespec m0, m1, rt;
    if (clock_gettime(CLOCK_MONOTONIC, &m0) != 0) fail("clock_gettime monotonic");
    if (clock_gettime(CLOCK_REALTIME, &rt) != 0) fail("clock_gettime realtime");
    struct timeval tv;
    if (gettimeofday(&tv, NULL) != 0) fail("gettimeofday");
    if (tv.tv_sec < 1600000000) fail("gettimeofday plausible");
    struct timespec req = {0, 1000000};
    if (nanosleep(&req, NULL) != 0) fail("nanosleep");
    if (clock_gettime(CLOCK_MONOTONIC, &m1) != 0) fail("clock_gettime monotonic 2");
    int64_t d = (int64_t)(m1.tv_sec - m0.tv_sec) * 1000000000 + (m1.tv_nsec - m0.tv_nsec);
    if (d < 1000000) fail("monotonic advanced by nanosleep");
    printf("time ok\n");
}

static void check_random(void) {
    unsigned char buf[32];
    memset(buf, 0, sizeof buf);
    if (getrandom(buf, sizeof buf, 0) != (ssize_t)sizeof buf) fail("getrandom");
    int nonzero = 0;
    for (size_t i = 0; i < sizeof buf; i++) nonzero |= buf[i];
    if (!nonzero) fail("getrandom all zero");
    printf("random ok\n");
}

static void check_memory(void) {
    size_t big = 16u << 20;
    volatile unsigned char *p = malloc(big);
    if (!p) fail("malloc 16 MiB");
    for (size_t i = 0; i < big; i += 4096) p[i] = (unsigned char)(i >> 12);
    for (size_t i = 0; i < big; i += 4096)
        if (p[i] != (unsigned char)(i >> 12)) fail("16 MiB buffer readback");
    free((void *)p);
    void *small[100];
    for (int i = 0; i < 100; i++) {
        small[i] = malloc(64 + (size_t)i * 16);
        if (!small[i]) fail("small malloc");
        memset(small[i], i, 64 + (size_t)i * 16);
    }
    for (int i = 0; i < 100; i++) {
        if (((unsigned char *)small[i])[63] != (unsigned char)i) fail("small readback");
        free(small[i]);
    }
    printf("memory ok\n");
}

int main(int argc, char **argv) {
    printf("hello from enclave\n");
    printf("argc=%d\n", argc);
    for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e; e++) printf("env:%s\n", *e);

    const char *rf = getenv("READ_FILE");
    if (rf && *rf) check_file(rf);
    const char *ld = getenv("LIST_DIR");
    if (ld && *ld) list_dir(ld);

    check_time();
    check_random();
    check_memory();

    struct utsname u;
    if (uname(&u) != 0) fail("uname");
    printf("sysname=%s\n", u.sysname);

    fflush(stdout);
    fprintf(stderr, "stderr works\n");

    const char *ec = getenv("EXIT_CODE");
    int code = ec ? atoi(ec) : 0;
    printf("exiting with %d\n", code);
    fflush(stdout);
    exit(code);
}
