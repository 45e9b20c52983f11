// The plugin index: descriptors in memory, backed by the store. Mutations of one name are
// serialized; a replace swaps the entry in one step, so calls already holding the old entry
// finish on the old version and later calls see the new one.
import { basename } from 'node:path'
import type { Config } from '../config'
import { isServiceError, serviceError } from '../errors'
import { describePlugin, describeReset } from './descriptor'
import { descriptorSizeProblem, MAX_DESCRIPTOR_FILE_BYTES } from './descriptor-bounds'
import type { PluginDescriptor } from './descriptor'
import { inspectModule } from './inspect'
import type { Inspection } from './inspect'
import { checkSchemas, nameRegExp, parseManifest } from './manifest'
import type { Manifest } from './manifest'
import { estimateCompiledBytes } from './module-cache'
import { schemaRef } from './schema'
import type { SchemaRef } from '../workers/protocol'
import type { ModuleCache } from './module-cache'
import type { PluginStore } from './store'
import { isValidVersion, pluginVersion } from './version'
import { createQuotaBlock, retireQuotaBlock, VOLUME_ENTRIES } from '../sandbox/wasi/volume'
import { measureVolumeAsync } from '../sandbox/wasi/volume-usage'

export type { PluginDescriptor } from './descriptor'

/** A registered plugin as the execute path needs it. Immutable once published. */
export interface PluginEntry {
  readonly descriptor: PluginDescriptor
  /** The manifest it was uploaded with (a PUT without a manifest part keeps it). */
  readonly manifest: Manifest
  readonly memory: Inspection['memory']
  /** How calls get the state of a new instance: a kept instance reset in place, or a new one. */
  readonly reset: Inspection['reset']
  /** The schemas as the workers compile and cache them (validation runs there, in the deadline). */
  readonly inputSchema: SchemaRef | undefined
  readonly outputSchema: SchemaRef | undefined
  /** extism ABI: the manifest's config (what config_get answers); never in the descriptor. */
  readonly config: Readonly<Record<string, string>>
  /** The compiled (rewritten) module, from the bounded cache. */
  module: () => Promise<WebAssembly.Module>
}

export interface Upload {
  bytes: Buffer
  manifest?: string | undefined
  filename?: string | undefined
  /** The name asked for outside the manifest (POST /plugins?name=). */
  name?: string | undefined
}

export interface RegistryEvents {
  onChange?: (count: number) => void
  /** A plugin was replaced or deleted: state kept about its old version must go. */
  onRetire?: (name: string) => void
  /** Something went wrong that does not fail the request (logged as a warning). */
  warn?: (msg: string, err?: unknown) => void
}

interface StoredRecord { descriptor: PluginDescriptor, manifest: Manifest }

function nameFromFilename (filename: string | undefined): string | undefined {
  if (filename === undefined || filename === '') return undefined
  const stem = basename(filename).replace(/\.wasm$/i, '').toLowerCase()
  return nameRegExp.test(stem) ? stem : undefined
}

export class PluginRegistry {
  readonly #config: Config
  readonly #store: PluginStore
  readonly #cache: ModuleCache
  readonly #events: RegistryEvents
  readonly #plugins = new Map<string, PluginEntry>()
  readonly #locks = new Map<string, Promise<unknown>>()
  /** The quota block of each `@plugin` volume measured since start (see volumeQuota). */
  readonly #quotas = new Map<string, Promise<SharedArrayBuffer>>()
  /**
   * Module files are shared by content: publishes hold this lock shared from writing a module
   * until their entry is visible; collecting unreferenced modules holds it alone. Otherwise a
   * collection that listed a module as garbage could delete it just after a publish of the
   * same bytes found it already on disk, leaving a descriptor without its module.
   */
  readonly #modules = new SharedLock()

  constructor (config: Config, store: PluginStore, cache: ModuleCache, events: RegistryEvents = {}) {
    this.#config = config
    this.#store = store
    this.#cache = cache
    this.#events = events
  }

  /**
   * Loads every stored plugin. One that no longer loads (unreadable descriptor, corrupt module,
   * no longer valid) is logged and quarantined with its volume (store.quarantine), so that a
   * new upload of its name starts empty instead of inheriting the old plugin's files.
   */
  async load (log: (msg: string, err?: unknown) => void): Promise<void> {
    await this.#store.init()
    const described = new Set<string>()
    for (const { name, record, error } of await this.#store.listDescriptors(MAX_DESCRIPTOR_FILE_BYTES)) {
      described.add(name)
      try {
        if (error !== undefined) throw error
        const { descriptor, manifest } = record as StoredRecord
        // Stored before descriptors were bounded: kept on disk, but not loaded.
        const tooBig = descriptorSizeProblem(descriptor)
        if (tooBig !== undefined) throw new Error(tooBig)
        await checkSchemas(manifest) // stored before the schema rules: refused now, skipped
        const bytes = await this.#store.readModule(descriptor.sha256)
        const inspection = inspectModule(bytes, descriptor.limits, descriptor.abi, descriptor.capabilities.wasi !== undefined)
        // Stored before versions were checked, a version may not be a valid header value:
        // derived again as an upload now would.
        if (!isValidVersion(descriptor.version)) {
          log(`plugin '${name}': stored version ${JSON.stringify(descriptor.version)} is not valid; derived again`)
          descriptor.version = pluginVersion(manifest.version, inspection.info.version)
        }
        this.#plugins.set(name, this.#entry(descriptor, manifest, inspection))
      } catch (err) {
        try {
          log(`plugin '${name}' no longer loads: moved with its volume to quarantine ${await this.#store.quarantine(name)}`, err)
          described.delete(name)
        } catch (failed) {
          // Left where it is: still described, so its volume is neither swept nor reused.
          log(`plugin '${name}' no longer loads and could not be quarantined (${String(failed)})`, err)
        }
      }
    }
    await this.#collect()
    await this.#store.sweepVolumes(described)
    this.#events.onChange?.(this.#plugins.size)
  }

  list (): PluginDescriptor[] {
    return [...this.#plugins.values()].map(p => p.descriptor)
  }

  get (name: string): PluginEntry | undefined {
    return this.#plugins.get(name)
  }

  get size (): number {
    return this.#plugins.size
  }

  /** POST /plugins: a new plugin; PLUGIN_EXISTS when the name is taken. */
  async create (upload: Upload): Promise<PluginDescriptor> {
    const manifest = parseManifest(upload.manifest)
    if (manifest.name !== undefined && upload.name !== undefined && manifest.name !== upload.name) {
      throw serviceError('INVALID_MANIFEST', [`manifest name '${manifest.name}' does not match ?name=${upload.name}`])
    }
    const name = manifest.name ?? upload.name ?? nameFromFilename(upload.filename)
    if (name === undefined) {
      throw serviceError('INVALID_MANIFEST', [`cannot derive a plugin name from the file name '${upload.filename ?? ''}'; set "name" in the manifest or ?name= (${nameRegExp.source})`])
    }
    await checkSchemas(manifest)
    return this.#exclusive(name, async () => {
      if (this.#plugins.has(name)) throw serviceError('PLUGIN_EXISTS', [name, name])
      if (this.#plugins.size >= this.#config.maxPlugins) {
        throw serviceError('INSUFFICIENT_STORAGE', [], { details: { reason: `the registry holds MAX_PLUGINS=${this.#config.maxPlugins} plugins` } })
      }
      return this.#publish(name, manifest, upload.bytes, undefined)
    })
  }

  /**
   * PUT /plugins/:name: replaces atomically; PLUGIN_NOT_FOUND when there is none. Without a
   * manifest part the current manifest is kept (limits, grants, schemas: a new build of the
   * same plugin should not lose them), except its version: the new module's `version` section
   * names it when it has a valid one, else the kept manifest's version (else 0.0.0) stays.
   */
  async replace (name: string, upload: Upload): Promise<PluginDescriptor> {
    const given = upload.manifest !== undefined ? parseManifest(upload.manifest) : undefined
    if (given?.name !== undefined && given.name !== name) {
      throw serviceError('INVALID_MANIFEST', [`manifest name '${given.name}' does not match the URL's '${name}'`])
    }
    if (given !== undefined) await checkSchemas(given)
    return this.#exclusive(name, async () => {
      const current = this.#plugins.get(name)
      if (current === undefined) throw serviceError('PLUGIN_NOT_FOUND', [name])
      if (given !== undefined) return this.#publish(name, given, upload.bytes, current.descriptor)
      const { version, ...kept } = current.manifest
      return this.#publish(name, kept, upload.bytes, current.descriptor, version)
    })
  }

  /** DELETE /plugins/:name: calls in flight finish; later lookups miss. */
  async remove (name: string): Promise<void> {
    return this.#exclusive(name, async () => {
      const current = this.#plugins.get(name)
      if (current === undefined) throw serviceError('PLUGIN_NOT_FOUND', [name])
      await this.#store.deleteDescriptor(name)
      this.#plugins.delete(name)
      this.#events.onChange?.(this.#plugins.size)
      this.#events.onRetire?.(name)
      // Calls still running may hold the volume: from now on their writes are EROFS, so the
      // removal below is not racing a writer (and the files of a deleted plugin stop growing).
      const quota = this.#quotas.get(name)
      this.#quotas.delete(name)
      // (A measurement that failed left no block: no call got one to write through.)
      const block = await quota?.catch(() => undefined)
      if (block !== undefined) retireQuotaBlock(block)
      await this.#store.removeVolume(name)
      await this.#collect()
    })
  }

  async #publish (name: string, given: Manifest, bytes: Buffer, previous: PluginDescriptor | undefined, keptVersion?: string): Promise<PluginDescriptor> {
    const { descriptor, inspection } = describePlugin(name, bytes, given, this.#config, previous?.createdAt, keptVersion)
    // A kept version that was used is stored with the manifest, so a restart derives the same.
    const manifest = keptVersion !== undefined && descriptor.version === keptVersion ? { ...given, version: keptVersion } : given
    const { sha256, capabilities } = descriptor
    let compiled: WebAssembly.Module
    try {
      compiled = await this.#cache.compile(inspection.rewritten)
    } catch (err) {
      throw serviceError('INVALID_MODULE', [(err as Error).message.replace(/^WebAssembly\.compile\(\): /, '')])
    }
    const entry = this.#entry(descriptor, manifest, inspection)
    try {
      if (capabilities.wasi?.preopens.some(p => p.volume === '@plugin') === true) await this.#store.ensureVolume(name)
      await this.#modules.shared(async () => {
        // Module first, then the descriptor that points at it: a crash between the two leaves
        // only an unreferenced module, which the next start collects.
        await this.#store.putModule(sha256, bytes)
        await this.#store.putDescriptor(name, { descriptor, manifest } satisfies StoredRecord)
        this.#cache.set(cacheKey(descriptor), compiled, compiledCost(inspection))
        this.#plugins.set(name, entry)
      })
    } catch (err) {
      // A full disk refuses with "nothing was written", and leaves nothing behind: not the
      // module it wrote before the descriptor failed (unless another plugin uses it), nor
      // the volume a new plugin would have had. (Other errors may come after the descriptor's
      // rename: the disk is left as it is, and the next start collects what is unreferenced.)
      if (isServiceError(err) && err.code === 'INSUFFICIENT_STORAGE') {
        await this.#collect().catch(() => {})
        if (previous === undefined) await this.#store.removeVolume(name).catch(() => {})
      }
      throw err
    }
    this.#events.onChange?.(this.#plugins.size)
    if (previous !== undefined) this.#events.onRetire?.(name)
    if (previous !== undefined && previous.sha256 !== sha256) await this.#collect()
    return descriptor
  }

  #entry (descriptor: PluginDescriptor, manifest: Manifest, inspection: Inspection): PluginEntry {
    const key = cacheKey(descriptor)
    const cost = compiledCost(inspection)
    const wasi = descriptor.capabilities.wasi !== undefined
    // On a cache miss the module is read back and rewritten again rather than kept in memory.
    const load = async (): Promise<Uint8Array> =>
      inspectModule(await this.#store.readModule(descriptor.sha256), descriptor.limits, descriptor.abi, wasi).rewritten
    return Object.freeze({
      // The reset plan is derived from the module, so descriptors stored before it existed get it too.
      descriptor: Object.freeze({ ...descriptor, reset: describeReset(inspection.reset) }),
      manifest,
      memory: inspection.memory,
      reset: inspection.reset,
      inputSchema: manifest.inputSchema !== undefined ? schemaRef(manifest.inputSchema) : undefined,
      outputSchema: manifest.outputSchema !== undefined ? schemaRef(manifest.outputSchema) : undefined,
      config: Object.freeze({ ...manifest.config }),
      module: () => this.#cache.get(key, cost, load)
    })
  }

  async #collect (): Promise<void> {
    await this.#modules.exclusive(async () => {
      await this.#store.collectModules(new Set([...this.#plugins.values()].map(p => p.descriptor.sha256)))
    })
  }

  /** Runs `fn` after every earlier mutation of `name` has finished. */
  async #exclusive<T> (name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name) ?? Promise.resolve()
    const run = previous.then(fn, fn)
    const tail = run.catch(() => {})
    this.#locks.set(name, tail)
    try {
      return await run
    } finally {
      if (this.#locks.get(name) === tail) this.#locks.delete(name)
    }
  }

  /**
   * The module bytes of a plugin as uploaded, and their sha256; PLUGIN_NOT_FOUND when there is
   * none. Read under the module lock, so a replace or delete cannot collect them mid-read.
   */
  async moduleBytes (name: string): Promise<{ bytes: Buffer, sha256: string }> {
    return this.#modules.shared(async () => {
      const entry = this.#plugins.get(name)
      if (entry === undefined) throw serviceError('PLUGIN_NOT_FOUND', [name])
      const { sha256 } = entry.descriptor
      return { bytes: await this.#store.readModule(sha256), sha256 }
    })
  }

  /** The host directory of a plugin's `@plugin` volume. */
  volumePath (name: string): string {
    return this.#store.volumePath(name)
  }

  /**
   * The quota block of a plugin's `@plugin` volume, shared by all its calls (in every worker
   * thread) so that they draw on one account. Measured once per process, on the first call,
   * by a walk that never blocks the event loop and works at any depth; kept across PUT,
   * retired by DELETE. A walk that fails makes this one call see the volume as full.
   */
  async volumeQuota (name: string): Promise<SharedArrayBuffer> {
    let quota = this.#quotas.get(name)
    if (quota === undefined) {
      quota = measureVolumeAsync(this.volumePath(name)).then(usage => createQuotaBlock(usage, VOLUME_ENTRIES))
      this.#quotas.set(name, quota)
    }
    try {
      return await quota
    } catch (err) {
      if (this.#quotas.get(name) === quota) this.#quotas.delete(name)
      this.#events.warn?.(`could not measure the volume of '${name}'; this call sees it full`, err)
      return createQuotaBlock({ bytes: Infinity, entries: 0 }, VOLUME_ENTRIES)
    }
  }
}

/** A fair readers-writer lock: holders of `shared` run together, `exclusive` runs alone; FIFO. */
class SharedLock {
  #shared = 0
  #exclusive = false
  readonly #waiting: Array<{ exclusive: boolean, grant: () => void }> = []

  async shared<T> (fn: () => Promise<T>): Promise<T> {
    await this.#acquire(false)
    try { return await fn() } finally { this.#shared--; this.#drain() }
  }

  async exclusive<T> (fn: () => Promise<T>): Promise<T> {
    await this.#acquire(true)
    try { return await fn() } finally { this.#exclusive = false; this.#drain() }
  }

  async #acquire (exclusive: boolean): Promise<void> {
    await new Promise<void>(resolve => {
      this.#waiting.push({ exclusive, grant: resolve })
      this.#drain()
    })
  }

  #drain (): void {
    while (this.#waiting.length > 0 && !this.#exclusive) {
      const next = this.#waiting[0] as { exclusive: boolean, grant: () => void }
      if (next.exclusive && this.#shared > 0) return
      this.#waiting.shift()
      if (next.exclusive) this.#exclusive = true; else this.#shared++
      next.grant()
    }
  }
}

function compiledCost (inspection: Inspection): number {
  return estimateCompiledBytes({ size: inspection.rewritten.length, functions: inspection.info.counts.functions, codeBytes: inspection.info.codeBytes })
}

function cacheKey (d: PluginDescriptor): string {
  return `${d.sha256}:${d.limits.memoryBytes}:${d.limits.tableElements}`
}
