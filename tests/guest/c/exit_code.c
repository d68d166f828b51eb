/* Exits with status 42 and prints nothing. */
#include <stdlib.h>
int main(void) { exit(42); }
