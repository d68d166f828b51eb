/* Integer division by zero: #DE, SIGFPE natively. */
#include <stdio.h>
int main(void) {
    volatile int a = 1, b = 0;
    volatile int c = a / b;
    printf("FAIL: survived divide by zero (%d)\n", c);
    return 0;
}
