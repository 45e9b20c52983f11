// Builds the worker request for one call of a plugin: the entry to run (json ABI fallbacks,
// `?function=`) and the WASI grant resolved to host directories. Shared by the execute route
// and the CLI's `run`.
import type { Config } from '../config'
import { serviceError } from '../errors'
import type { WasiSpec } from '../workers/protocol'
import type { PluginDescriptor } from './descriptor'
import { JSON_ENTRY_FALLBACKS } from './inspect'
import { VOLUME_ENTRIES } from '../sandbox/wasi/volume'

/** The export a call runs: `?function=` or the first of execute, run, main (json); `_start` (wasi). */
export function pickEntry (d: PluginDescriptor, requested: string | undefined): string {
  if (d.abi === 'wasi') {
    if (requested !== undefined && requested !== '_start') {
      throw serviceError('FUNCTION_NOT_FOUND', [`'${requested}': a wasi plugin runs only _start`])
    }
    return '_start'
  }
  if (d.abi === 'extism') return pickExtismEntry(d, requested)
  if (requested !== undefined) {
    if (d.entries.includes(requested)) return requested
    const exported = d.exports.some(e => e.name === requested && e.kind === 'func')
    throw serviceError('FUNCTION_NOT_FOUND', [exported
      ? `export '${requested}' is not a json entry: expected (i32, i32) -> (i32, i32) or (i32, i32) -> i64`
      : `plugin '${d.name}' has no exported function '${requested}'; callable with ?function=: ${d.entries.join(', ')}`])
  }
  const fallback = JSON_ENTRY_FALLBACKS.find(name => d.entries.includes(name))
  if (fallback === undefined) {
    throw serviceError('FUNCTION_NOT_FOUND', [`plugin '${d.name}' exports none of ${JSON_ENTRY_FALLBACKS.join(', ')}; pick one of [${d.entries.join(', ')}] with ?function=`])
  }
  return fallback
}

/**
 * extism ABI: `?function=`, else the manifest's `entry`, else the only exported function;
 * FUNCTION_NOT_FOUND lists the functions (`details.functions`).
 */
function pickExtismEntry (d: PluginDescriptor, requested: string | undefined): string {
  const name = requested ?? d.entry ?? (d.entries.length === 1 ? d.entries[0] : undefined)
  if (name !== undefined && d.entries.includes(name)) return name
  const why = name === undefined
    ? `plugin '${d.name}' exports ${d.entries.length} functions; pick one with ?function=`
    : `plugin '${d.name}' has no exported function '${name}' of type () -> i32 or () -> ()`
  throw serviceError('FUNCTION_NOT_FOUND', [why], { details: { functions: d.entries } })
}

/** Whether the plugin preopens its `@plugin` volume. */
export function usesPluginVolume (d: PluginDescriptor): boolean {
  return d.capabilities.wasi?.preopens.some(p => p.volume === '@plugin') === true
}

/**
 * The WASI grant with volumes resolved to host paths, or undefined when WASI is not granted.
 * `quotaState`: the `@plugin` volume's quota block (PluginRegistry.volumeQuota); without it
 * (the CLI) the worker measures the volume for this call alone.
 */
export function wasiSpec (d: PluginDescriptor, config: Config, pluginVolume: string, quotaState?: SharedArrayBuffer): WasiSpec | undefined {
  const grant = d.capabilities.wasi
  if (grant === undefined) return undefined
  return {
    args: grant.args,
    env: grant.env,
    preopens: grant.preopens.map(p => {
      if (p.volume === '@plugin') {
        return {
          guestPath: p.guest,
          hostPath: pluginVolume,
          readOnly: p.mode === 'ro',
          quotaBytes: config.pluginDiskBytes,
          quotaEntries: VOLUME_ENTRIES,
          ...(quotaState !== undefined ? { quotaState } : {})
        }
      }
      const volume = config.volumes.get(p.volume)
      if (volume === undefined) throw serviceError('CAPABILITY_DENIED', [`volume '${p.volume}' is no longer declared by the operator`])
      return { guestPath: p.guest, hostPath: volume.hostPath, readOnly: p.mode === 'ro' || volume.readOnly }
    })
  }
}
