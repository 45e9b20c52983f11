// {{name}}: a wasi-ABI plugin in C, an ordinary program. The request body is stdin, stdout
// is the response, stderr goes to the log; exit code 0 is success, any other is PLUGIN_EXIT.
#include <stdio.h>

int main(void) {
  char buf[4096];
  size_t n, total = 0;
  while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) total += n;
  fprintf(stderr, "{{name}}: read %zu bytes\n", total);
  printf("{\"plugin\":\"{{name}}\",\"bytes\":%zu}\n", total);
  return 0;
}
