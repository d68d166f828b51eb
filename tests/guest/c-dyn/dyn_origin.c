/* Dynamically linked against libplugin.so, found through DT_RUNPATH $ORIGIN/lib (the test
 * links it with -L and -Wl,-rpath,'$ORIGIN/lib'); prints plugin_twice(4). */
#include <stdio.h>

int plugin_twice(int x);

int main(void) {
    printf("plugin_twice(4)=%d\n", plugin_twice(4));
    return 0;
}
