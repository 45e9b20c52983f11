// The core-wasm signature of every wasi_snapshot_preview1 function (from the witx: pointers,
// sizes, fds and u8/u16/u32 flags are i32; u64 values are i64; every function returns an
// errno i32 except proc_exit). The import wrappers use it to check the argument types at run
// time, and upload validation can use it to refuse a module that imports a WASI name with
// another type (JS host functions would otherwise accept any signature).

/** A core wasm value type used by preview1. */
export type WasmType = 'i32' | 'i64'

/** Parameter types of each preview1 function. Results: `[i32]`, except `proc_exit`: `[]`. */
export const WASI_SIGNATURES = {
  args_get: ['i32', 'i32'],
  args_sizes_get: ['i32', 'i32'],
  environ_get: ['i32', 'i32'],
  environ_sizes_get: ['i32', 'i32'],
  clock_res_get: ['i32', 'i32'],
  clock_time_get: ['i32', 'i64', 'i32'],
  fd_advise: ['i32', 'i64', 'i64', 'i32'],
  fd_allocate: ['i32', 'i64', 'i64'],
  fd_close: ['i32'],
  fd_datasync: ['i32'],
  fd_fdstat_get: ['i32', 'i32'],
  fd_fdstat_set_flags: ['i32', 'i32'],
  fd_fdstat_set_rights: ['i32', 'i64', 'i64'],
  fd_filestat_get: ['i32', 'i32'],
  fd_filestat_set_size: ['i32', 'i64'],
  fd_filestat_set_times: ['i32', 'i64', 'i64', 'i32'],
  fd_pread: ['i32', 'i32', 'i32', 'i64', 'i32'],
  fd_prestat_get: ['i32', 'i32'],
  fd_prestat_dir_name: ['i32', 'i32', 'i32'],
  fd_pwrite: ['i32', 'i32', 'i32', 'i64', 'i32'],
  fd_read: ['i32', 'i32', 'i32', 'i32'],
  fd_readdir: ['i32', 'i32', 'i32', 'i64', 'i32'],
  fd_renumber: ['i32', 'i32'],
  fd_seek: ['i32', 'i64', 'i32', 'i32'],
  fd_sync: ['i32'],
  fd_tell: ['i32', 'i32'],
  fd_write: ['i32', 'i32', 'i32', 'i32'],
  path_create_directory: ['i32', 'i32', 'i32'],
  path_filestat_get: ['i32', 'i32', 'i32', 'i32', 'i32'],
  path_filestat_set_times: ['i32', 'i32', 'i32', 'i32', 'i64', 'i64', 'i32'],
  path_link: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
  path_open: ['i32', 'i32', 'i32', 'i32', 'i32', 'i64', 'i64', 'i32', 'i32'],
  path_readlink: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
  path_remove_directory: ['i32', 'i32', 'i32'],
  path_rename: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
  path_symlink: ['i32', 'i32', 'i32', 'i32', 'i32'],
  path_unlink_file: ['i32', 'i32', 'i32'],
  poll_oneoff: ['i32', 'i32', 'i32', 'i32'],
  proc_exit: ['i32'],
  proc_raise: ['i32'],
  sched_yield: [],
  random_get: ['i32', 'i32'],
  sock_accept: ['i32', 'i32', 'i32'],
  sock_recv: ['i32', 'i32', 'i32', 'i32', 'i32', 'i32'],
  sock_send: ['i32', 'i32', 'i32', 'i32', 'i32'],
  sock_shutdown: ['i32', 'i32']
} as const satisfies Record<string, readonly WasmType[]>

/** A preview1 function name. */
export type WasiName = keyof typeof WASI_SIGNATURES

type JsValue<T> = T extends 'i64' ? bigint : number
type JsParams<T extends readonly WasmType[]> = { -readonly [K in keyof T]: JsValue<T[K]> }

/**
 * The JS type of each import as the guest calls it: i32 arrive as numbers, i64 as bigints;
 * the result is the errno (proc_exit never returns: it throws WasiExit).
 */
export type WasiImports = {
  readonly [N in WasiName]: (...args: JsParams<typeof WASI_SIGNATURES[N]>) => N extends 'proc_exit' ? never : number
}

/** Whether a function type of a module (params/results) matches preview1's `name`. */
export function matchesSignature (name: string, params: readonly string[], results: readonly string[]): boolean {
  if (!Object.hasOwn(WASI_SIGNATURES, name)) return false
  const expected: readonly WasmType[] = WASI_SIGNATURES[name as WasiName]
  const expectedResults = name === 'proc_exit' ? [] : ['i32']
  return params.length === expected.length && params.every((p, i) => p === expected[i]) &&
    results.length === expectedResults.length && results.every((r, i) => r === expectedResults[i])
}
