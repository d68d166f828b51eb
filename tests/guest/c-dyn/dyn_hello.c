/* Dynamically linked (gcc without -static, -lm): prints its arguments, a libm result and a
 * string built with libc, then exits with the status given as argv[1] (default 0). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    volatile double two = 2.0;
    char buf[64];
    printf("hello from dynamic C\n");
    printf("argc=%d\n", argc);
    printf("sqrt2=%.4f\n", sqrt(two));
    snprintf(buf, sizeof buf, "%s-%d", "heap", 42);
    char *copy = strdup(buf);
    if (!copy) {
        printf("FAIL: strdup\n");
        return 99;
    }
    printf("copy=%s\n", copy);
    free(copy);
    fflush(stdout);
    return argc > 1 ? atoi(argv[1]) : 0;
}
