// How big a descriptor may be. Every descriptor is held in memory for the life of the process
// and sent whole by GET /plugins/:name and within GET /plugins, so its size is bounded at
// upload (and checked again when the registry loads what is on disk): unbounded, a probe's
// 49 MB modules made 98 MB descriptors, GET /plugins failed after 7 of them and the heap ran
// out after 84, at every restart too (security issue 16).
import { serviceError } from '../errors'
import type { PluginDescriptor } from './descriptor'

/**
 * Most bytes of a descriptor's JSON. MAX_PLUGINS (1000 by default) of them is 256 MiB of
 * JSON at worst. The manifest field is at most 64 KiB, so the module's names keep ~190 KiB:
 * some 2,500 exports of 40-character names (each export is listed once in `exports`, and a
 * json entry once more in `entries`).
 */
export const MAX_DESCRIPTOR_BYTES = 256 * 1024

/**
 * Largest descriptor file read at start-up. A file holds the descriptor and the manifest,
 * indented, so it is larger than the descriptor's compact JSON; a file over this is skipped
 * unread (it cannot hold a descriptor within MAX_DESCRIPTOR_BYTES).
 */
export const MAX_DESCRIPTOR_FILE_BYTES = 8 * MAX_DESCRIPTOR_BYTES

/** The compact JSON size of `d`, in bytes (what GET /plugins/:name sends). */
export function descriptorBytes (d: PluginDescriptor): number {
  return Buffer.byteLength(JSON.stringify(d))
}

function listBytes (items: readonly unknown[] | undefined): number {
  // A descriptor read from disk may lack a list (stored by an older version).
  return Buffer.byteLength(JSON.stringify(items ?? []))
}

/** Why `d` is over the bound, naming what takes the room, or undefined when it fits. */
export function descriptorSizeProblem (d: PluginDescriptor): string | undefined {
  const total = descriptorBytes(d)
  if (total <= MAX_DESCRIPTOR_BYTES) return undefined
  return `the plugin's descriptor would take ${total} bytes (export names ${listBytes(d.exports)}, json entries ${listBytes(d.entries)}, ` +
    `imports ${listBytes(d.imports)}); at most ${MAX_DESCRIPTOR_BYTES} allowed: export or import fewer or shorter names`
}

/** Throws INVALID_MODULE when `d` is over MAX_DESCRIPTOR_BYTES. */
export function checkDescriptorSize (d: PluginDescriptor): void {
  const problem = descriptorSizeProblem(d)
  if (problem !== undefined) throw serviceError('INVALID_MODULE', [problem])
}
