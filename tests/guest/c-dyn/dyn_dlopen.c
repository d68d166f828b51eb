/* Dynamically linked: dlopen()s libplugin.so (found by ld.so's search path in the image),
 * calls plugin_twice(21) through dlsym and prints the result. Exits 1 when dlopen fails,
 * 2 when dlsym fails, printing dlerror(). */
#include <dlfcn.h>
#include <stdio.h>

int main(void) {
    void *h = dlopen("libplugin.so", RTLD_NOW);
    if (!h) {
        printf("dlopen failed: %s\n", dlerror());
        return 1;
    }
    int (*twice)(int) = (int (*)(int))dlsym(h, "plugin_twice");
    if (!twice) {
        printf("dlsym failed: %s\n", dlerror());
        return 2;
    }
    printf("plugin_twice(21)=%d\n", twice(21));
    dlclose(h);
    return 0;
}
