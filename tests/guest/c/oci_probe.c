/* Guest program for the OCI image tests: prints its argv, one environment variable, its
 * working directory, and a file read by a relative path (so the working directory matters).
 * Any failed check prints "FAIL: <what>" and exits 99. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
    char buf[512];
    for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    const char *greeting = getenv("GREETING");
    printf("GREETING=%s\n", greeting ? greeting : "(unset)");
    if (!getcwd(buf, sizeof buf)) {
        printf("FAIL: getcwd\n");
        return 99;
    }
    printf("cwd=%s\n", buf);
    FILE *f = fopen("data.txt", "r");
    if (!f || !fgets(buf, sizeof buf, f)) {
        printf("FAIL: read data.txt\n");
        return 99;
    }
    printf("data=%s", buf);
    fclose(f);
    return 0;
}
