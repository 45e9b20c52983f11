// count-vowels as an Extism plugin in C, freestanding (no libc, no PDK): the input is the text
// itself (any bytes), the output {"vowels":N}. The config key "vowels" changes which bytes
// count (default aeiouAEIOU); the count is logged at info.
#include "extism.h"

static char vowels[256];
static uint64_t vowels_len;

static uint64_t format(char *out, const char *prefix, uint64_t n, const char *suffix) {
  uint64_t at = 0;
  while (*prefix) out[at++] = *prefix++;
  char digits[20];
  int d = 0;
  do { digits[d++] = (char)('0' + n % 10); n /= 10; } while (n > 0);
  while (d > 0) out[at++] = digits[--d];
  while (*suffix) out[at++] = *suffix++;
  return at;
}

__attribute__((export_name("count_vowels"))) int32_t count_vowels(void) {
  static const char key[] = "vowels";
  ExtismHandle configured = extism_config_get(extism_store(key, sizeof key - 1));
  if (configured != 0) {
    vowels_len = extism_load(configured, vowels, sizeof vowels);
  } else {
    static const char fallback[] = "aeiouAEIOU";
    for (vowels_len = 0; fallback[vowels_len]; vowels_len++) vowels[vowels_len] = fallback[vowels_len];
  }
  uint8_t is_vowel[256] = {0};
  for (uint64_t i = 0; i < vowels_len; i++) is_vowel[(uint8_t)vowels[i]] = 1;

  uint64_t n = extism_input_length();
  uint64_t count = 0;
  uint64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word = extism_input_load_u64(i);
    for (int b = 0; b < 8; b++) count += is_vowel[(word >> (8 * b)) & 0xff];
  }
  for (; i < n; i++) count += is_vowel[extism_input_load_u8(i)];

  char text[64];
  uint64_t len = format(text, "{\"vowels\":", count, "}");
  ExtismHandle out = extism_store(text, len);
  if (out == 0) {
    static const char oom[] = "out of memory";
    extism_error_set(extism_store(oom, sizeof oom - 1));
    return 1;
  }
  char line[64];
  uint64_t line_len = format(line, "counted ", count, " vowels");
  extism_log_info(extism_store(line, line_len));
  extism_output_set(out, len);
  return 0;
}
