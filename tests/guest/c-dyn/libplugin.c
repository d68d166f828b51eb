/* A shared library dyn_dlopen loads at run time. */
int plugin_twice(int x) { return 2 * x; }
