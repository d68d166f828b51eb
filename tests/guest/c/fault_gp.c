/* Dereferences a non-canonical address: #GP, SIGSEGV natively. */
#include <stdint.h>
#include <stdio.h>
int main(void) {
    volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)0x8000000000000000ull;
    uint64_t v = *p;
    printf("FAIL: survived non-canonical read (%llu)\n", (unsigned long long)v);
    return 0;
}
