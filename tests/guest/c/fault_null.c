/* Writes through a NULL pointer: #PF, SIGSEGV natively. */
#include <stdio.h>
int main(void) {
    volatile int *p = (volatile int *)0;
    *p = 1;
    puts("FAIL: survived NULL write");
    return 0;
}
