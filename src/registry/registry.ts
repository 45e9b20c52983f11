// The plugin index: descriptors in memory, backed by the store. Mutations of one name are
// serialized; a replace swaps the entry in one step, so calls already holding the old entry
// finish on the old version and later calls see the new one.
import { basename } from 'node:path'
import type { Config } from '../config'
import { isServiceError, serviceError } from '../errors'
import { describePlugin } from './descriptor'
import type { PluginDescriptor } from './descriptor'
import { inspectModule } from './inspect'
import type { Inspection } from './inspect'
import { compileSchema, nameRegExp, parseManifest } from './manifest'
import type { Manifest } from './manifest'
import type { ModuleCache } from './module-cache'
import type { PluginStore } from './store'

export type { PluginDescriptor } from './descriptor'

/** A registered plugin as the execute path needs it. Immutable once published. */
export interface PluginEntry {
  readonly descriptor: PluginDescriptor
  readonly memory: Inspection['memory']
  readonly validateInput: ((data: unknown) => string | undefined) | undefined
  readonly validateOutput: ((data: unknown) => string | undefined) | undefined
  /** extism ABI: the manifest's config (what config_get answers); never in the descriptor. */
  readonly config: Readonly<Record<string, string>>
  /** The compiled (rewritten) module, from the bounded cache. */
  module: () => Promise<WebAssembly.Module>
}

export interface Upload {
  bytes: Buffer
  manifest?: string | undefined
  filename?: string | undefined
}

export interface RegistryEvents {
  onChange?: (count: number) => void
  /** A plugin was replaced or deleted: state kept about its old version must go. */
  onRetire?: (name: string) => void
}

interface StoredRecord { descriptor: PluginDescriptor, manifest: Manifest }

const EMPTY_SCHEMA_ERROR = undefined

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

  /** Loads every stored plugin; one that no longer validates is logged and skipped. */
  async load (log: (msg: string, err?: unknown) => void): Promise<void> {
    await this.#store.init()
    const described = new Set<string>()
    for (const { name, record, error } of await this.#store.listDescriptors()) {
      described.add(name)
      if (error !== undefined) { log(`skipping unreadable descriptor of '${name}'`, error); continue }
      try {
        const { descriptor, manifest } = record as StoredRecord
        const bytes = await this.#store.readModule(descriptor.sha256)
        const inspection = inspectModule(bytes, descriptor.limits, descriptor.abi, descriptor.capabilities.wasi !== undefined)
        this.#plugins.set(name, this.#entry(descriptor, manifest, inspection))
      } catch (err) {
        log(`skipping plugin '${name}' that no longer loads`, err)
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
    const name = manifest.name ?? nameFromFilename(upload.filename)
    if (name === undefined) {
      throw serviceError('INVALID_MANIFEST', [`cannot derive a plugin name from the file name '${upload.filename ?? ''}'; set "name" in the manifest (${nameRegExp.source})`])
    }
    return this.#exclusive(name, async () => {
      if (this.#plugins.has(name)) throw serviceError('PLUGIN_EXISTS', [name, name])
      if (this.#plugins.size >= this.#config.maxPlugins) {
        throw serviceError('INSUFFICIENT_STORAGE', [], { details: { reason: `the registry holds MAX_PLUGINS=${this.#config.maxPlugins} plugins` } })
      }
      return this.#publish(name, manifest, upload.bytes, undefined)
    })
  }

  /** PUT /plugins/:name: replaces atomically; PLUGIN_NOT_FOUND when there is none. */
  async replace (name: string, upload: Upload): Promise<PluginDescriptor> {
    const manifest = parseManifest(upload.manifest)
    if (manifest.name !== undefined && manifest.name !== name) {
      throw serviceError('INVALID_MANIFEST', [`manifest name '${manifest.name}' does not match the URL's '${name}'`])
    }
    return this.#exclusive(name, async () => {
      const current = this.#plugins.get(name)
      if (current === undefined) throw serviceError('PLUGIN_NOT_FOUND', [name])
      return this.#publish(name, manifest, upload.bytes, current.descriptor)
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
      await this.#store.removeVolume(name)
      await this.#collect()
    })
  }

  async #publish (name: string, manifest: Manifest, bytes: Buffer, previous: PluginDescriptor | undefined): Promise<PluginDescriptor> {
    const { descriptor, inspection } = describePlugin(name, bytes, manifest, this.#config, previous?.createdAt)
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
        this.#cache.set(cacheKey(descriptor), compiled)
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
    const wasi = descriptor.capabilities.wasi !== undefined
    // On a cache miss the module is read back and rewritten again rather than kept in memory.
    const load = async (): Promise<Uint8Array> =>
      inspectModule(await this.#store.readModule(descriptor.sha256), descriptor.limits, descriptor.abi, wasi).rewritten
    return Object.freeze({
      descriptor: Object.freeze(descriptor),
      memory: inspection.memory,
      validateInput: manifest.inputSchema !== undefined ? compileSchema(manifest.inputSchema) : EMPTY_SCHEMA_ERROR,
      validateOutput: manifest.outputSchema !== undefined ? compileSchema(manifest.outputSchema) : EMPTY_SCHEMA_ERROR,
      config: Object.freeze({ ...manifest.config }),
      module: () => this.#cache.get(key, load)
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

  /** The host directory of a plugin's `@plugin` volume. */
  volumePath (name: string): string {
    return this.#store.volumePath(name)
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

function cacheKey (d: PluginDescriptor): string {
  return `${d.sha256}:${d.limits.memoryBytes}:${d.limits.tableElements}`
}
