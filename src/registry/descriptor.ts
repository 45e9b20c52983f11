// Turns upload bytes + manifest into a descriptor, under the operator's config: the one
// place that resolves limits and grants and inspects the module. The registry publishes
// what it returns; the CLI's `inspect` and `run` show and use the same thing.
import type { Config } from '../config'
import { serviceError } from '../errors'
import { checkDescriptorSize } from './descriptor-bounds'
import { describeExports, describeImports, inspectModule } from './inspect'
import type { Inspection } from './inspect'
import type { ResetPlan } from '../sandbox/reset-plan'
import { resolveCapabilities, resolveExtismLimits, resolveLimits } from './manifest'
import type { Abi, Capabilities, InstancePolicy, Manifest, PluginLimits } from './manifest'
import { sha } from './store'
import { pluginVersion } from './version'

/** What the API returns for a plugin (and what is stored on disk). */
export interface PluginDescriptor {
  name: string
  version: string
  sha256: string
  abi: Abi
  /**
   * "fresh" (default): a new instance per call, nothing survives a call. "reuse" (opt-in, for
   * trusted json and extism plugins): each worker keeps one instance per plugin version, replaced
   * after 1000 calls or any failed call. Descriptors stored before this field read as "fresh".
   */
  instance: InstancePolicy
  /**
   * How a "fresh" call gets the state of a new instance: "reset" (a kept instance is put back to
   * its state right after instantiation) or "new-instance" (the module has something a reset
   * cannot undo; `reason` and `detail` say what). Derived from the module at load.
   */
  reset: ResetDescription
  size: number
  exports: Array<{ name: string, kind: string }>
  imports: Array<{ module: string, name: string, kind: string }>
  /** Exports callable with `?function=`: json entries, or an extism plugin's functions. */
  entries: string[]
  /** extism ABI: the export run when `?function=` is absent (the manifest's `entry`). */
  entry?: string
  limits: PluginLimits
  capabilities: Capabilities
  inputSchema?: Record<string, unknown> | boolean
  outputSchema?: Record<string, unknown> | boolean
  createdAt: string
  updatedAt: string
}

export type ResetDescription = { mode: 'reset' } | { mode: 'new-instance', reason: string, detail: string }

/** The descriptor's view of a reset plan. */
export function describeReset (plan: ResetPlan): ResetDescription {
  return plan.mode === 'reset' ? { mode: 'reset' } : { mode: 'new-instance', reason: plan.reason, detail: plan.detail }
}

/**
 * Validates `bytes` under `manifest` and `config` and describes the plugin. Throws the
 * catalogue errors INVALID_MODULE, INVALID_MANIFEST or CAPABILITY_DENIED. `fallbackVersion`
 * is the version when neither the manifest nor the module's section names one (0.0.0).
 */
export function describePlugin (name: string, bytes: Uint8Array, manifest: Manifest, config: Config, createdAt?: string, fallbackVersion?: string): { descriptor: PluginDescriptor, inspection: Inspection } {
  const limits = resolveLimits(manifest.limits, config)
  const capabilities = resolveCapabilities(manifest, config)
  const inspection = inspectModule(bytes, limits, manifest.abi, capabilities.wasi !== undefined)
  if (inspection.abi === 'extism') {
    Object.assign(limits, resolveExtismLimits(limits, manifest.limits))
    if (manifest.entry !== undefined && !inspection.entries.includes(manifest.entry)) {
      throw serviceError('INVALID_MANIFEST', [`entry '${manifest.entry}' is not an exported function of type () -> i32 or () -> (); the plugin has [${inspection.entries.join(', ')}]`])
    }
  } else if (manifest.entry !== undefined || manifest.config !== undefined || capabilities.http !== undefined) {
    throw serviceError('INVALID_MANIFEST', ['"entry", "config" and "capabilities.http" are for extism-ABI plugins only'])
  }
  const instance = manifest.instance ?? 'fresh'
  // A kept instance's WASI would outlive the call it was made for (stdin, fds, deadline), and a
  // wasi command's _start runs once per instance: reuse is for json and extism plugins without
  // WASI.
  if (instance === 'reuse' && (inspection.abi === 'wasi' || capabilities.wasi !== undefined)) {
    throw serviceError('INVALID_MANIFEST', ['"instance": "reuse" is only for json-ABI and extism-ABI plugins without WASI (capabilities.wasi)'])
  }
  const now = new Date().toISOString()
  const descriptor: PluginDescriptor = {
    name,
    version: pluginVersion(manifest.version, inspection.info.version, fallbackVersion),
    sha256: sha(bytes),
    abi: inspection.abi,
    instance,
    reset: describeReset(inspection.reset),
    size: bytes.length,
    exports: describeExports(inspection.info.exports),
    imports: describeImports(inspection.info.imports),
    entries: inspection.entries,
    ...(manifest.entry !== undefined ? { entry: manifest.entry } : {}),
    limits,
    capabilities,
    ...(manifest.inputSchema !== undefined ? { inputSchema: manifest.inputSchema } : {}),
    ...(manifest.outputSchema !== undefined ? { outputSchema: manifest.outputSchema } : {}),
    createdAt: createdAt ?? now,
    updatedAt: now
  }
  checkDescriptorSize(descriptor)
  return { descriptor, inspection }
}
