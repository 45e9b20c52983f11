// The plugin index: descriptors in memory, backed by a RegistryBackend (backend.ts: DATA_DIR
// or PostgreSQL). Mutations of one name are serialized; a replace swaps the entry in one step,
// so calls already holding the old entry finish on the old version and later calls see the
// new one. Changes committed by other replicas arrive from the backend's feed and are applied
// the same way (refetch, check, compile, swap), so routes never know which backend runs.
import { existsSync } from 'node:fs'
import { basename } from 'node:path'
import type { Config } from '../config'
import { isServiceError, serviceError } from '../errors'
import type { Change, ChangeFeed, IfMatch, RegistryBackend, StoredPlugin, StoredRecord } from './backend'
import { describePlugin, describeReset } from './descriptor'
import { descriptorSizeProblem } from './descriptor-bounds'
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
import { FsBackend } from './fs-backend'
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
  /**
   * Something went wrong that does not fail a request (a volume not measured, a change from
   * another replica that does not apply here): logged as a warning, never thrown.
   */
  onError?: (msg: string, err?: unknown) => void
}

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
  /** The quota block of each `@plugin` volume measured since start (see volumeQuota). */
  readonly #quotas = new Map<string, Promise<SharedArrayBuffer>>()
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
   * volumes, the quarantine (and, for PostgreSQL, local copies of module bytes).
   */
  constructor (config: Config, store: PluginStore, cache: ModuleCache, events: RegistryEvents = {}, backend?: RegistryBackend) {
    this.#config = config
    this.#store = store
    this.#cache = cache
    this.#events = events
    this.#backend = backend ?? new FsBackend(store)
  }

  /**
   * Loads every stored plugin. One that no longer loads (unreadable descriptor, corrupt module,
   * no longer valid) is logged and quarantined with its volume (store.quarantine), so that a
   * new upload of its name starts empty instead of inheriting the old plugin's files. With
   * PostgreSQL the shared row is left alone (other replicas may load it, and only a client's
   * PUT or DELETE changes it): the plugin is skipped here and only this replica's volume of
   * it moves to the quarantine; a later version written by anyone is applied as usual.
   */
  async load (log: (msg: string, err?: unknown) => void): Promise<void> {
    await this.#backend.init(this.#feed())
    const described = new Set<string>()
    for (const { name, generation, record, error } of await this.#backend.list()) {
      described.add(name)
      // Applied, even when it fails below: a resync does not retry the same generation.
      this.#generations.set(name, generation)
      try {
        if (error !== undefined) throw error
        const { descriptor, manifest } = record as StoredRecord
        const inspection = await this.#check(name, descriptor, manifest, log)
        this.#plugins.set(name, this.#entry(descriptor, manifest, inspection))
      } catch (err) {
        try {
          const place = await this.#store.quarantine(name)
          log(this.#backend.kind === 'fs'
            ? `plugin '${name}' no longer loads: moved with its volume to quarantine ${place}`
            : `plugin '${name}' does not load on this replica: skipped (the shared registry keeps it), its local volume moved to quarantine ${place}`, err)
          described.delete(name)
        } catch (failed) {
          // Left where it is: still described, so its volume is neither swept nor reused.
          log(`plugin '${name}' no longer loads and could not be quarantined (${String(failed)})`, err)
        }
      }
    }
    await this.#collect()
    await this.#store.sweepVolumes(described)
    this.#synced = true
    this.#events.onChange?.(this.#plugins.size)
  }

  /**
   * The checks a stored record passes before it is served (at start, and when another replica
   * wrote it): stored before descriptors were bounded or before the schema rules, it is
   * refused now; its module must inspect under its limits. Returns the inspection.
   */
  async #check (name: string, descriptor: PluginDescriptor, manifest: Manifest, log: (msg: string, err?: unknown) => void): Promise<Inspection> {
    const tooBig = descriptorSizeProblem(descriptor)
    if (tooBig !== undefined) throw new Error(tooBig)
    await checkSchemas(manifest)
    const bytes = await this.#backend.readModule(descriptor.sha256)
    const inspection = inspectModule(bytes, descriptor.limits, descriptor.abi, descriptor.capabilities.wasi !== undefined)
    // Stored before versions were checked, a version may not be a valid header value:
    // derived again as an upload now would.
    if (!isValidVersion(descriptor.version)) {
      log(`plugin '${name}': stored version ${JSON.stringify(descriptor.version)} is not valid; derived again`)
      descriptor.version = pluginVersion(manifest.version, inspection.info.version)
    }
    return inspection
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
    if (manifest.name !== undefined && upload.name !== undefined && manifest.name !== upload.name) {
      throw serviceError('INVALID_MANIFEST', [`manifest name '${manifest.name}' does not match ?name=${upload.name}`])
    }
    const name = manifest.name ?? upload.name ?? nameFromFilename(upload.filename)
    if (name === undefined) {
      throw serviceError('INVALID_MANIFEST', [`cannot derive a plugin name from the file name '${upload.filename ?? ''}'; set "name" in the manifest or ?name= (${nameRegExp.source})`])
    }
    await checkSchemas(manifest)
    return this.#exclusive(name, async () => {
      // Known here: refused without a round trip. Otherwise the backend decides, atomically
      // (name taken, MAX_PLUGINS reached).
      if (this.#plugins.has(name) && this.#backend.kind === 'fs') throw serviceError('PLUGIN_EXISTS', [name, name])
      return this.#publish(name, manifest, upload.bytes, undefined, {})
    })
  }

  /**
   * PUT /plugins/:name: replaces atomically; PLUGIN_NOT_FOUND when there is none. Without a
   * manifest part the current manifest is kept (limits, grants, schemas: a new build of the
   * same plugin should not lose them), except its version: the new module's `version` section
   * names it when it has a valid one, else the kept manifest's version (else 0.0.0) stays.
   */
  async replace (name: string, upload: Upload, options: WriteOptions = {}): Promise<PluginDescriptor> {
    const given = upload.manifest !== undefined ? parseManifest(upload.manifest) : undefined
    if (given?.name !== undefined && given.name !== name) {
      throw serviceError('INVALID_MANIFEST', [`manifest name '${given.name}' does not match the URL's '${name}'`])
    }
    if (given !== undefined) await checkSchemas(given)
    return this.#exclusive(name, async () => {
      // Another replica may have created it a moment ago (or it does not load here): ask the
      // backend before refusing.
      const local = this.#plugins.get(name)
      const current = local !== undefined ? { descriptor: local.descriptor, manifest: local.manifest } : (await this.#backend.get(name))?.record
      if (current === undefined) throw serviceError('PLUGIN_NOT_FOUND', [name])
      if (given !== undefined) return this.#publish(name, given, upload.bytes, current.descriptor, options)
      const { version, ...kept } = current.manifest
      return this.#publish(name, kept, upload.bytes, current.descriptor, options, version)
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

  /**
   * Forgets `name` here once its delete committed (here, or on another replica through the
   * feed): entry, breaker state, quota block, volume, module.
   */
  async #drop (name: string, generation: number): Promise<void> {
    const had = this.#plugins.delete(name)
    this.#generations.set(name, generation)
    if (had) {
      this.#events.onChange?.(this.#plugins.size)
      this.#events.onRetire?.(name)
    }
    // Calls still running may hold the volume: from now on their writes are EROFS, so the
    // removal below is not racing a writer (and the files of a deleted plugin stop growing).
    const quota = this.#quotas.get(name)
    this.#quotas.delete(name)
    // (A measurement that failed left no block: no call got one to write through.)
    const block = await quota?.catch(() => undefined)
    if (block !== undefined) retireQuotaBlock(block)
    await this.#store.removeVolume(name)
    await this.#collect()
  }

  async #publish (name: string, given: Manifest, bytes: Buffer, previous: PluginDescriptor | undefined, options: WriteOptions, keptVersion?: string): Promise<PluginDescriptor> {
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
        this.#cache.set(cacheKey(descriptor), compiled, compiledCost(inspection))
        this.#plugins.set(name, entry)
        this.#generations.set(name, generation)
      })
    } catch (err) {
      // A refused write (a full disk, a taken name, a failed If-Match) leaves nothing behind:
      // not the module it wrote before the descriptor failed (unless another plugin uses it),
      // nor the volume it made for a new plugin. (Other errors may come after the
      // descriptor's rename: the disk is left as it is, and the next start collects what is
      // unreferenced.)
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
        // Deleted elsewhere: retired here as a local DELETE would (quota block, volume).
        if (this.#plugins.has(name) || this.#quotas.has(name) || existsSync(this.#store.volumePath(name))) {
          await this.#drop(name, this.#generations.get(name) ?? 0)
        }
        return
      }
      if ((this.#generations.get(name) ?? -1) >= stored.generation) return
      await this.#install(stored)
    })
  }

  /** Builds and swaps in the entry of a plugin written by another replica, checked and compiled here. */
  async #install (stored: StoredPlugin): Promise<void> {
    const { name, generation } = stored
    const previous = this.#plugins.get(name)
    try {
      if (stored.record === undefined) throw stored.error ?? new Error('no record')
      const { descriptor, manifest } = stored.record
      await this.#modules.shared(async () => {
        const inspection = await this.#check(name, descriptor, manifest, (msg, err) => this.#events.onError?.(msg, err))
        this.#cache.set(cacheKey(descriptor), await this.#cache.compile(inspection.rewritten), compiledCost(inspection))
        if (descriptor.capabilities.wasi?.preopens.some(p => p.volume === '@plugin') === true) await this.#store.ensureVolume(name)
        this.#plugins.set(name, this.#entry(descriptor, manifest, inspection))
        this.#generations.set(name, generation)
      })
    } catch (err) {
      // Not servable here (this replica's limits are lower, the module vanished, a record
      // this version refuses): an old version must not be served in its place. The shared
      // row is left alone; this replica's volume stays for a later version that loads.
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
    const cost = compiledCost(inspection)
    const wasi = descriptor.capabilities.wasi !== undefined
    // On a cache miss the module is read back and rewritten again rather than kept in memory.
    const load = async (): Promise<Uint8Array> =>
      inspectModule(await this.#backend.readModule(descriptor.sha256), descriptor.limits, descriptor.abi, wasi).rewritten
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

  /**
   * The module bytes of a plugin as uploaded, and their sha256; PLUGIN_NOT_FOUND when there is
   * none. Read under the module lock, so a replace or delete cannot collect them mid-read.
   */
  async moduleBytes (name: string): Promise<{ bytes: Buffer, sha256: string }> {
    return this.#modules.shared(async () => {
      const entry = this.#plugins.get(name)
      if (entry === undefined) throw serviceError('PLUGIN_NOT_FOUND', [name])
      const { sha256 } = entry.descriptor
      return { bytes: await this.#backend.readModule(sha256), sha256 }
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
      this.#events.onError?.(`could not measure the volume of '${name}'; this call sees it full`, err)
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
