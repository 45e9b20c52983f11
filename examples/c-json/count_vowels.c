// count-vowels for the `json` ABI, in C, freestanding: no libc, no imports, so it needs no
// WASI grant.
//
//   input  {"text":"Hello World"}   ->   output {"vowels":3}
//
// The contract: export `memory`, `alloc(len) -> ptr` (the host asks it for room and writes
// the input JSON there) and `execute(ptr, len)`. C cannot return two values, so `execute`
// returns one i64: the answer's address in the high 32 bits, its length in the low 32. The
// answer must be JSON. Every call runs in a fresh instance: `alloc` is a bump allocator
// that never frees.
//
// Counts a, e, i, o, u in either case (ASCII: "é" is not a vowel here) in the top-level
// member "text" (escapes decoded, so "\u0041" counts). Anything else -- no such member, a
// member that is not a string, input that is not an object -- answers
// {"error":"text must be a string"}.
#include <stdint.h>

#define EXPORT(name) __attribute__((export_name(name)))

// ---- memory: a bump allocator above the linker's heap base ---------------------------------

extern unsigned char __heap_base;
static uintptr_t heap_top = (uintptr_t)&__heap_base;

EXPORT("alloc") void *alloc(uint32_t len) {
  uintptr_t at = (heap_top + 7) & ~(uintptr_t)7;
  uintptr_t end = at + len;
  uintptr_t have = __builtin_wasm_memory_size(0) * 65536;
  if (end > have) {
    uintptr_t pages = (end - have + 65535) / 65536;
    if (__builtin_wasm_memory_grow(0, pages) == (uintptr_t)-1) return 0;  // over the memory limit
  }
  heap_top = end;
  return (void *)at;
}

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
static int32_t count_vowels(reader *r) {
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
      int32_t n = 0;
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

// ---- the entry ---------------------------------------------------------------------------

static const char error[] = "{\"error\":\"text must be a string\"}";
static char answer[32] = "{\"vowels\":";

static uint64_t result(const char *ptr, uint32_t len) {
  return (uint64_t)(uintptr_t)ptr << 32 | len;
}

EXPORT("execute") uint64_t execute(const unsigned char *input, uint32_t len) {
  reader r = {input, input + len};
  int32_t n = count_vowels(&r);
  if (n < 0) return result(error, sizeof error - 1);
  char digits[10];
  int d = 0;
  do {
    digits[d++] = (char)('0' + n % 10);
    n /= 10;
  } while (n > 0);
  uint32_t at = 10;  // after {"vowels":
  while (d > 0) answer[at++] = digits[--d];
  answer[at++] = '}';
  return result(answer, at);
}
