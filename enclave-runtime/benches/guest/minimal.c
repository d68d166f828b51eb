/* The launch benchmark's program: a static glibc program that does nothing and exits 0.
 * Built by the bench with `gcc -static -O2`; what it measures is the cost of starting and
 * ending a program (natively: fork+exec+exit; in an enclave: prepare, glibc start-up, exit). */
int main(void) { return 0; }
