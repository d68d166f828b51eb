/* Executes ud2: #UD, SIGILL natively. */
#include <stdio.h>
int main(void) {
    __asm__ volatile("ud2");
    puts("FAIL: survived ud2");
    return 0;
}
