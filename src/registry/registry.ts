// The plugin index: descriptors in memory, backed by a RegistryBackend (backend.ts: DATA_DIR
// or PostgreSQL). Mutations of one name are serialized; a replace swaps the entry in one step,
// so calls already holding the old entry finish on the old version and later calls see the
// new one. Changes committed by other replicas arrive from the backend's feed and are applied
// the same way (refetch, compile, swap), so routes never know which backend runs.
import { existsSync } from 'node:fs'
import { basename } from 'node:path'
import type { Config } from '../config'
import { isServiceError, serviceError } from '../errors'
import type { Change, ChangeFeed, IfMatch, RegistryBackend, StoredPlugin, StoredRecord } from './backend'
import { describePlugin } from './descriptor'
import type { PluginDescriptor } from './descriptor'
import { inspectModule } from './inspect'
import type { Inspection } from './inspect'
import { compileSchema, nameRegExp, parseManifest } from './manifest'
import type { Manifest } from './manifest'
import type { ModuleCache } from './module-cache'
import type { PluginStore } from './store'
import { FsBackend } from './fs-backend'

export type { PluginDescriptor } from './descriptor'

/** A registered plugin as the execute path needs it. Immutable once published. */
export interface PluginEntry {
  readonly descriptor: PluginDescriptor
  readonly memory: Inspection['memory']
  readonly validateInput: ((data: unknown) => string | undefined) | undefined
  readonly validateOutput: ((data: unknown) => string | undefined) | undefined
  /** The compiled (rewritten) module, from the bounded cache. */
  module: () => Promise<WebAssembly.Module>
}

export interface Upload {
  bytes: Buffer
  manifest?: string | undefined
  filename?: string | undefined
}

/** Options of a write to an existing plugin (PUT, DELETE). */
export interface WriteOptions {
  /** The parsed `If-Match` header: the write happens only if the plugin still has one of these. */
  ifMatch?: IfMatch | undefined
}

export interface RegistryEvents {
  onChange?: (count: number) => void
  /** A plugin was replaced or deleted: state kept about its old version must go. */
  onRetire?: (name: string) => void
  /** A change made elsewhere is served here: seconds since its commit. */
  onSync?: (seconds: number) => void
  /** Whether the shared registry can be written (always true for DATA_DIR). */
  onConnected?: (up: boolean) => void
  /** A full resync started (after a lost connection came back). */
  onResync?: () => void
  /** Something failed in the background (applying a change): logged, never thrown. */
  onError?: (msg: string, err: unknown) => void
}

const EMPTY_SCHEMA_ERROR = undefined

function nameFromFilename (filename: string | undefined): string | undefined {
  if (filename === undefined || filename === '') return undefined
  const stem = basename(filename).replace(/\.wasm$/i, '').toLowerCase()
  return nameRegExp.test(stem) ? stem : undefined
}

export class PluginRegistry {
  readonly #config: Config
  readonly #store: PluginStore
  readonly #backend: RegistryBackend
  readonly #cache: ModuleCache
  readonly #events: RegistryEvents
  readonly #plugins = new Map<string, PluginEntry>()
  /** The backend generation each entry was built from: a change at or below it is applied already. */
  readonly #generations = new Map<string, number>()
  readonly #locks = new Map<string, Promise<unknown>>()
  /**
   * Module files are shared by content: publishes hold this lock shared from writing a module
   * until their entry is visible; collecting unreferenced modules holds it alone. Otherwise a
   * collection that listed a module as garbage could delete it just after a publish of the
   * same bytes found it already on disk, leaving a descriptor without its module.
   */
  readonly #modules = new SharedLock()
  #synced = false
  #resyncing: Promise<void> | undefined
  #resyncAgain = false

  /**
   * `store` holds what stays on this replica's disk whatever the backend: the `@plugin`
   * volumes (and, for PostgreSQL, local copies of module bytes).
   */
  constructor (config: Config, store: PluginStore, cache: ModuleCache, events: RegistryEvents = {}, backend?: RegistryBackend) {
    this.#config = config
    this.#store = store
    this.#cache = cache
    this.#events = events
    this.#backend = backend ?? new FsBackend(store)
  }

  /** Loads every stored plugin; one that no longer validates is logged and skipped. */
  async load (log: (msg: string, err?: unknown) => void): Promise<void> {
    await this.#backend.init(this.#feed())
    const described = new Set<string>()
    for (const { name, generation, record, error } of await this.#backend.list()) {
      described.add(name)
      if (error !== undefined) { log(`skipping unreadable descriptor of '${name}'`, error); continue }
      try {
        const { descriptor, manifest } = record as StoredRecord
        const bytes = await this.#backend.readModule(descriptor.sha256)
        const inspection = inspectModule(bytes, descriptor.limits, descriptor.abi, descriptor.capabilities.wasi !== undefined)
        this.#plugins.set(name, this.#entry(descriptor, manifest, inspection))
        this.#generations.set(name, generation)
      } catch (err) {
        log(`skipping plugin '${name}' that no longer loads`, err)
      }
    }
    await this.#collect()
    await this.#store.sweepVolumes(described)
    this.#synced = true
    this.#events.onChange?.(this.#plugins.size)
  }

  /** True once the first load finished (readiness). */
  get synced (): boolean {
    return this.#synced
  }

  /** Which backend runs: `fs` (DATA_DIR) or `postgres` (shared by replicas). */
  get backendKind (): RegistryBackend['kind'] {
    return this.#backend.kind
  }

  async close (): Promise<void> {
    await this.#backend.close()
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

  /** POST /plugins: a new plugin; PLUGIN_EXISTS when the name is taken (on any replica). */
  async create (upload: Upload): Promise<PluginDescriptor> {
    const manifest = parseManifest(upload.manifest)
    const name = manifest.name ?? nameFromFilename(upload.filename)
    if (name === undefined) {
      throw serviceError('INVALID_MANIFEST', [`cannot derive a plugin name from the file name '${upload.filename ?? ''}'; set "name" in the manifest (${nameRegExp.source})`])
    }
    return this.#exclusive(name, async () => {
      // Known here: refused without a round trip. Otherwise the backend decides, atomically.
      if (this.#plugins.has(name) && this.#backend.kind === 'fs') throw serviceError('PLUGIN_EXISTS', [name, name])
      return this.#publish(name, manifest, upload.bytes, undefined, {})
    })
  }

  /** PUT /plugins/:name: replaces atomically; PLUGIN_NOT_FOUND when there is none. */
  async replace (name: string, upload: Upload, options: WriteOptions = {}): Promise<PluginDescriptor> {
    const manifest = parseManifest(upload.manifest)
    if (manifest.name !== undefined && manifest.name !== name) {
      throw serviceError('INVALID_MANIFEST', [`manifest name '${manifest.name}' does not match the URL's '${name}'`])
    }
    return this.#exclusive(name, async () => {
      // Another replica may have created it a moment ago: ask the backend before refusing.
      const current = this.#plugins.get(name)?.descriptor ?? (await this.#backend.get(name))?.record?.descriptor
      if (current === undefined) throw serviceError('PLUGIN_NOT_FOUND', [name])
      return this.#publish(name, manifest, upload.bytes, current, options)
    })
  }

  /** DELETE /plugins/:name: calls in flight finish; later lookups miss. */
  async remove (name: string, options: WriteOptions = {}): Promise<void> {
    return this.#exclusive(name, async () => {
      if (!this.#plugins.has(name) && this.#backend.kind === 'fs') throw serviceError('PLUGIN_NOT_FOUND', [name])
      const { generation } = await this.#backend.delete(name, { kind: 'existing', ifMatch: options.ifMatch })
      await this.#drop(name, generation)
    })
  }

  /** Forgets `name` here once its delete committed: entry, breaker state, volume, module. */
  async #drop (name: string, generation: number): Promise<void> {
    const had = this.#plugins.delete(name)
    this.#generations.set(name, generation)
    if (had) {
      this.#events.onChange?.(this.#plugins.size)
      this.#events.onRetire?.(name)
    }
    await this.#store.removeVolume(name)
    await this.#collect()
  }

  async #publish (name: string, manifest: Manifest, bytes: Buffer, previous: PluginDescriptor | undefined, options: WriteOptions): Promise<PluginDescriptor> {
    const { descriptor, inspection } = describePlugin(name, bytes, manifest, this.#config, previous?.createdAt)
    const { sha256, capabilities } = descriptor
    let compiled: WebAssembly.Module
    try {
      compiled = await this.#cache.compile(inspection.rewritten)
    } catch (err) {
      throw serviceError('INVALID_MODULE', [(err as Error).message.replace(/^WebAssembly\.compile\(\): /, '')])
    }
    const entry = this.#entry(descriptor, manifest, inspection)
    const condition = previous === undefined
      ? { kind: 'create' as const, maxPlugins: this.#config.maxPlugins }
      : { kind: 'existing' as const, ifMatch: options.ifMatch }
    let newVolume = false
    try {
      if (capabilities.wasi?.preopens.some(p => p.volume === '@plugin') === true) {
        newVolume = !existsSync(this.#store.volumePath(name))
        await this.#store.ensureVolume(name)
      }
      await this.#modules.shared(async () => {
        const { generation } = await this.#backend.put(name, { descriptor, manifest } satisfies StoredRecord, bytes, condition)
        this.#cache.set(cacheKey(descriptor), compiled)
        this.#plugins.set(name, entry)
        this.#generations.set(name, generation)
      })
    } catch (err) {
      // A refused write leaves nothing behind: not the module it wrote before the descriptor
      // failed (unless another plugin uses it), nor the volume it made for a new plugin.
      // (Other errors may come after the descriptor's rename: the disk is left as it is, and
      // the next start collects what is unreferenced.)
      if (isServiceError(err) && err.statusCode !== 500) {
        await this.#collect().catch(() => {})
        if (newVolume) await this.#store.removeVolume(name).catch(() => {})
      }
      throw err
    }
    this.#events.onChange?.(this.#plugins.size)
    if (previous !== undefined) this.#events.onRetire?.(name)
    if (previous !== undefined && previous.sha256 !== sha256) await this.#collect()
    return descriptor
  }

  /** The backend's feed, applied to this index. */
  #feed (): ChangeFeed {
    return {
      change: (change) => { this.#apply(change).catch(err => this.#events.onError?.(`applying a change of '${change.name}' failed`, err)) },
      resync: () => { this.#resync().catch(err => this.#events.onError?.('resync failed', err)) },
      connected: (up) => this.#events.onConnected?.(up)
    }
  }

  /** A change committed by some replica: refetch the plugin, unless it is applied already. */
  async #apply (change: Change): Promise<void> {
    if ((this.#generations.get(change.name) ?? -1) >= change.generation) return
    await this.#refresh(change.name)
    if (change.committedAt !== undefined) this.#events.onSync?.(Math.max(0, Date.now() - change.committedAt) / 1000)
  }

  /** Changes may have been missed: every plugin whose generation differs is refetched. */
  async #resync (): Promise<void> {
    // One at a time; a resync asked for while one runs runs again after it.
    if (this.#resyncing !== undefined) { this.#resyncAgain = true; return this.#resyncing }
    this.#events.onResync?.()
    this.#resyncing = (async () => {
      do {
        this.#resyncAgain = false
        const stored = await this.#backend.list()
        const names = new Set(stored.map(p => p.name))
        const stale = stored.filter(p => this.#generations.get(p.name) !== p.generation).map(p => p.name)
        for (const name of this.#plugins.keys()) if (!names.has(name)) stale.push(name)
        for (const name of stale) await this.#refresh(name)
      } while (this.#resyncAgain)
    })().finally(() => { this.#resyncing = undefined })
    return this.#resyncing
  }

  /** Makes the local entry of `name` what the backend holds now. */
  async #refresh (name: string): Promise<void> {
    await this.#exclusive(name, async () => {
      const stored = await this.#backend.get(name)
      if (stored === undefined) {
        if (this.#plugins.has(name)) await this.#drop(name, this.#generations.get(name) ?? 0)
        return
      }
      if ((this.#generations.get(name) ?? -1) >= stored.generation) return
      await this.#install(stored)
    })
  }

  /** Builds and swaps in the entry of a plugin written by another replica, compiled here. */
  async #install (stored: StoredPlugin): Promise<void> {
    const { name, generation } = stored
    const previous = this.#plugins.get(name)
    try {
      if (stored.record === undefined) throw stored.error ?? new Error('no record')
      const { descriptor, manifest } = stored.record
      await this.#modules.shared(async () => {
        const bytes = await this.#backend.readModule(descriptor.sha256)
        const inspection = inspectModule(bytes, descriptor.limits, descriptor.abi, descriptor.capabilities.wasi !== undefined)
        this.#cache.set(cacheKey(descriptor), await this.#cache.compile(inspection.rewritten))
        if (descriptor.capabilities.wasi?.preopens.some(p => p.volume === '@plugin') === true) await this.#store.ensureVolume(name)
        this.#plugins.set(name, this.#entry(descriptor, manifest, inspection))
        this.#generations.set(name, generation)
      })
    } catch (err) {
      // Not servable here (this replica's limits are lower, the module vanished): an old
      // version must not be served in its place.
      this.#events.onError?.(`plugin '${name}' (generation ${generation}) does not load here`, err)
      this.#plugins.delete(name)
      this.#generations.set(name, generation)
    }
    this.#events.onChange?.(this.#plugins.size)
    if (previous !== undefined) this.#events.onRetire?.(name)
    if (previous !== undefined && previous.descriptor.sha256 !== this.#plugins.get(name)?.descriptor.sha256) await this.#collect()
  }

  #entry (descriptor: PluginDescriptor, manifest: Manifest, inspection: Inspection): PluginEntry {
    const key = cacheKey(descriptor)
    const wasi = descriptor.capabilities.wasi !== undefined
    // On a cache miss the module is read back and rewritten again rather than kept in memory.
    const load = async (): Promise<Uint8Array> =>
      inspectModule(await this.#backend.readModule(descriptor.sha256), descriptor.limits, descriptor.abi, wasi).rewritten
    return Object.freeze({
      descriptor: Object.freeze(descriptor),
      memory: inspection.memory,
      validateInput: manifest.inputSchema !== undefined ? compileSchema(manifest.inputSchema) : EMPTY_SCHEMA_ERROR,
      validateOutput: manifest.outputSchema !== undefined ? compileSchema(manifest.outputSchema) : EMPTY_SCHEMA_ERROR,
      module: () => this.#cache.get(key, load)
    })
  }

  async #collect (): Promise<void> {
    await this.#modules.exclusive(async () => {
      await this.#backend.collect(new Set([...this.#plugins.values()].map(p => p.descriptor.sha256)))
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
