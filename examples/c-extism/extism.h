// The Extism kernel ABI (module "extism:host/env") as C declarations, for plugins built
// without a PDK: what wasm-plugin-host (and every Extism host) provides to an extism-ABI
// plugin. Offsets are 64-bit handles to blocks of kernel memory, never pointers into the
// plugin's own memory: bytes move in and out with the load/store functions. 0 means "none".
#ifndef EXTISM_H
#define EXTISM_H

#include <stdint.h>

typedef uint64_t ExtismHandle;

#define EXTISM_IMPORT(name) __attribute__((import_module("extism:host/env"), import_name(name)))

// Memory blocks
EXTISM_IMPORT("alloc") ExtismHandle extism_alloc(uint64_t length);   // 0 when the memory limit is reached
EXTISM_IMPORT("free") void extism_free(ExtismHandle offset);
EXTISM_IMPORT("length") uint64_t extism_length(ExtismHandle offset); // 0 for an unknown offset
EXTISM_IMPORT("length_unsafe") uint64_t extism_length_unsafe(ExtismHandle offset);
EXTISM_IMPORT("load_u8") uint8_t extism_load_u8(ExtismHandle offset);
EXTISM_IMPORT("load_u64") uint64_t extism_load_u64(ExtismHandle offset);
EXTISM_IMPORT("store_u8") void extism_store_u8(ExtismHandle offset, uint8_t value);
EXTISM_IMPORT("store_u64") void extism_store_u64(ExtismHandle offset, uint64_t value);

// Input, output, error
EXTISM_IMPORT("input_offset") ExtismHandle extism_input_offset(void);
EXTISM_IMPORT("input_length") uint64_t extism_input_length(void);
EXTISM_IMPORT("input_load_u8") uint8_t extism_input_load_u8(uint64_t index);
EXTISM_IMPORT("input_load_u64") uint64_t extism_input_load_u64(uint64_t index);
EXTISM_IMPORT("output_set") void extism_output_set(ExtismHandle offset, uint64_t length);
EXTISM_IMPORT("error_set") void extism_error_set(ExtismHandle offset);
EXTISM_IMPORT("error_get") ExtismHandle extism_error_get(void);

// Host functions: config, vars, HTTP, logs
EXTISM_IMPORT("config_get") ExtismHandle extism_config_get(ExtismHandle key); // 0: absent
EXTISM_IMPORT("var_get") ExtismHandle extism_var_get(ExtismHandle key);       // 0: absent
EXTISM_IMPORT("var_set") void extism_var_set(ExtismHandle key, ExtismHandle value); // value 0 removes
EXTISM_IMPORT("http_request") ExtismHandle extism_http_request(ExtismHandle request_json, ExtismHandle body);
EXTISM_IMPORT("http_status_code") int32_t extism_http_status_code(void);
EXTISM_IMPORT("http_headers") ExtismHandle extism_http_headers(void);
EXTISM_IMPORT("log_trace") void extism_log_trace(ExtismHandle text);
EXTISM_IMPORT("log_debug") void extism_log_debug(ExtismHandle text);
EXTISM_IMPORT("log_info") void extism_log_info(ExtismHandle text);
EXTISM_IMPORT("log_warn") void extism_log_warn(ExtismHandle text);
EXTISM_IMPORT("log_error") void extism_log_error(ExtismHandle text);
EXTISM_IMPORT("get_log_level") int32_t extism_get_log_level(void);

// Copies plugin memory into a new block; 0 when the memory limit is reached.
static inline ExtismHandle extism_store(const void *bytes, uint64_t length) {
  ExtismHandle block = extism_alloc(length);
  if (block == 0) return 0;
  const uint8_t *p = (const uint8_t *)bytes;
  for (uint64_t i = 0; i < length; i++) extism_store_u8(block + i, p[i]);
  return block;
}

// Copies a block into plugin memory (at most `capacity` bytes); returns the bytes copied.
static inline uint64_t extism_load(ExtismHandle block, void *bytes, uint64_t capacity) {
  uint64_t length = extism_length(block);
  if (length > capacity) length = capacity;
  uint8_t *p = (uint8_t *)bytes;
  for (uint64_t i = 0; i < length; i++) p[i] = extism_load_u8(block + i);
  return length;
}

#endif
