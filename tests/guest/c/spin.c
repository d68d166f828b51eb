/* Prints "spinning" and then loops forever without system calls. */
#include <stdio.h>
int main(void) {
    puts("spinning");
    fflush(stdout);
    for (;;) __asm__ volatile("" ::: "memory");
}
