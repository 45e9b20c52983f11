// count-vowels for the `wasi` ABI, in C: a WASI preview1 command built with wasi-libc.
//
//   stdin  {"text":"Hello World"}   ->   stdout {"vowels":3}\n   (exit code 0)
//
// The contract: a program with a `main`. The request body is its stdin, what it writes to
// stdout is the response body (served as application/json when it parses), stderr goes to
// the service's log. Exit code 0 (or returning from main) is success; any other exit code
// makes the call fail with 422 PLUGIN_EXIT, whose details carry the tails of stdout and
// stderr. No files, no environment unless the manifest grants them.
//
// Counts a, e, i, o, u in either case (ASCII: "é" is not a vowel here) in the top-level
// member "text" (escapes decoded, so "\u0041" counts). Anything else -- no such member, a
// member that is not a string, input that is not an object, no input at all -- prints
// {"error":"text must be a string"} and still exits 0, so that every count-vowels example
// answers alike, whatever its ABI.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

// ---- a tiny JSON reader: just enough to find one string member -----------------------------

typedef struct {
  const unsigned char *p, *end;
} reader;

enum { STR_END = -1, STR_ERROR = -2 };

static int peek(const reader *r) { return r->p < r->end ? *r->p : -1; }

static void skip_ws(reader *r) {
  while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')) r->p++;
}

static int hex(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c |= 32;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Inside a string: the next character (a byte, or the code unit of an escape), STR_END after
// the closing quote, STR_ERROR when the input ends or an escape is bad.
static int str_next(reader *r) {
  int c = peek(r);
  if (c < 0) return STR_ERROR;
  r->p++;
  if (c == '"') return STR_END;
  if (c != '\\') return c;
  c = peek(r);
  if (c < 0) return STR_ERROR;
  r->p++;
  switch (c) {
    case '"': case '\\': case '/': return c;
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    case 'u': {
      int v = 0;
      for (int i = 0; i < 4; i++) {
        int h = hex(peek(r));
        if (h < 0) return STR_ERROR;
        r->p++;
        v = v << 4 | h;
      }
      return v;
    }
    default: return STR_ERROR;
  }
}

static int skip_string(reader *r) {
  for (;;) {
    int u = str_next(r);
    if (u == STR_END) return 1;
    if (u == STR_ERROR) return 0;
  }
}

// Skips one value: a string, an array or object (nested), or a scalar. 0 on an error.
static int skip_value(reader *r) {
  skip_ws(r);
  int c = peek(r);
  if (c == '"') {
    r->p++;
    return skip_string(r);
  }
  if (c == '{' || c == '[') {
    int depth = 0;
    for (;;) {
      c = peek(r);
      if (c < 0) return 0;
      r->p++;
      if (c == '"') {
        if (!skip_string(r)) return 0;
      } else if (c == '{' || c == '[') {
        depth++;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return 1;
      }
    }
  }
  const unsigned char *start = r->p;  // a number, true, false or null
  while ((c = peek(r)) >= 0 && c != ',' && c != '}' && c != ']' && c > ' ') r->p++;
  return r->p != start;
}

static int is_vowel(int u) {
  u |= 32;  // A..Z -> a..z
  return u == 'a' || u == 'e' || u == 'i' || u == 'o' || u == 'u';
}

// The vowels of the first top-level member "text", or -1.
static long count_vowels(reader *r) {
  skip_ws(r);
  if (peek(r) != '{') return -1;
  r->p++;
  for (;;) {
    skip_ws(r);
    if (peek(r) != '"') return -1;  // a key, or "}": no "text"
    r->p++;
    static const char want[] = "text";
    int i = 0, match = 1, u;
    while ((u = str_next(r)) != STR_END) {
      if (u == STR_ERROR) return -1;
      if (i >= 4 || u != want[i]) match = 0;
      i++;
    }
    match = match && i == 4;
    skip_ws(r);
    if (peek(r) != ':') return -1;
    r->p++;
    skip_ws(r);
    if (match) {
      if (peek(r) != '"') return -1;
      r->p++;
      long n = 0;
      while ((u = str_next(r)) != STR_END) {
        if (u == STR_ERROR) return -1;
        n += is_vowel(u);
      }
      return n;
    }
    if (!skip_value(r)) return -1;
    skip_ws(r);
    int c = peek(r);
    r->p++;
    if (c != ',') return -1;
  }
}

// ---- the program -----------------------------------------------------------------------------

int main(void) {
  // all of stdin, into a buffer that grows
  size_t len = 0, cap = 4096;
  unsigned char *input = malloc(cap);
  size_t got;
  while (input != NULL && (got = fread(input + len, 1, cap - len, stdin)) > 0) {
    len += got;
    if (len == cap) input = realloc(input, cap *= 2);
  }
  if (input == NULL || ferror(stdin)) {
    fprintf(stderr, "count-vowels: cannot read stdin\n");
    return 1;
  }

  reader r = {input, input + len};
  long n = count_vowels(&r);
  if (n < 0) {
    fputs("{\"error\":\"text must be a string\"}\n", stdout);
  } else {
    printf("{\"vowels\":%ld}\n", n);
  }
  return 0;
}
