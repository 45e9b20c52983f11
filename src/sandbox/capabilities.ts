// Capability check at upload: every import of a module must be satisfied by what the plugin
// was granted. Nothing else of the host is reachable, so this list is the whole attack surface.
import type { ImportEntry } from './binary'

/** The functions of wasi_snapshot_preview1 (witx), all provided by sandbox/wasi. */
export const WASI_PREVIEW1_FUNCTIONS: ReadonlySet<string> = new Set([
  'args_get', 'args_sizes_get', 'environ_get', 'environ_sizes_get', 'clock_res_get', 'clock_time_get',
  'fd_advise', 'fd_allocate', 'fd_close', 'fd_datasync', 'fd_fdstat_get', 'fd_fdstat_set_flags',
  'fd_fdstat_set_rights', 'fd_filestat_get', 'fd_filestat_set_size', 'fd_filestat_set_times', 'fd_pread',
  'fd_prestat_get', 'fd_prestat_dir_name', 'fd_pwrite', 'fd_read', 'fd_readdir', 'fd_renumber', 'fd_seek',
  'fd_sync', 'fd_tell', 'fd_write', 'path_create_directory', 'path_filestat_get', 'path_filestat_set_times',
  'path_link', 'path_open', 'path_readlink', 'path_remove_directory', 'path_rename', 'path_symlink',
  'path_unlink_file', 'poll_oneoff', 'proc_exit', 'proc_raise', 'sched_yield', 'random_get',
  'sock_accept', 'sock_recv', 'sock_send', 'sock_shutdown'
])

export const WASI_MODULE = 'wasi_snapshot_preview1'

export interface Grant {
  /** WASI preview1 functions (stdio, clocks, random always; files only through preopens). */
  wasi: boolean
}

export interface DeniedImport { module: string, name: string, kind: string, reason: string }

/**
 * Returns the imports the grant does not cover, each with the reason. The host memory import
 * (`host.memory`, produced by the rewriter) is always satisfied.
 */
export function deniedImports (imports: readonly ImportEntry[], grant: Grant): DeniedImport[] {
  const denied: DeniedImport[] = []
  for (const imp of imports) {
    if (imp.kind === 'memory') continue // turned into the host-provided memory by the rewriter
    if (imp.module === WASI_MODULE && imp.kind === 'func') {
      if (!WASI_PREVIEW1_FUNCTIONS.has(imp.name)) {
        denied.push({ ...pick(imp), reason: 'not a wasi_snapshot_preview1 function' })
      } else if (!grant.wasi) {
        denied.push({ ...pick(imp), reason: 'WASI is not granted (add "capabilities": {"wasi": {}} to the manifest)' })
      }
      continue
    }
    denied.push({ ...pick(imp), reason: 'no such host capability' })
  }
  return denied
}

function pick (imp: ImportEntry): { module: string, name: string, kind: string } {
  return { module: imp.module, name: imp.name, kind: imp.kind }
}
