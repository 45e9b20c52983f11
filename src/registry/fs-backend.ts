// The embedded registry backend: DATA_DIR on this replica's disk (store.ts), no other writer.
// Conditions are checked against the descriptor files; the registry serializes the writes
// of one name, so a check and its write are not interleaved with another write of that name.
import { serviceError } from '../errors'
import { matches } from './backend'
import { MAX_DESCRIPTOR_FILE_BYTES } from './descriptor-bounds'
import type { ChangeFeed, Committed, RegistryBackend, StoredPlugin, StoredRecord, WriteCondition } from './backend'
import type { PluginStore } from './store'

export class FsBackend implements RegistryBackend {
  readonly kind = 'fs'
  readonly #store: PluginStore
  /** Generations only need to grow within this process: nobody else writes DATA_DIR. */
  #generation = 0

  constructor (store: PluginStore) {
    this.#store = store
  }

  async init (feed: ChangeFeed): Promise<void> {
    await this.#store.init()
    feed.connected(true)
  }

  /** A descriptor file over MAX_DESCRIPTOR_FILE_BYTES is reported as an error, not read. */
  async list (): Promise<StoredPlugin[]> {
    return (await this.#store.listDescriptors(MAX_DESCRIPTOR_FILE_BYTES)).map(({ name, record, error }) =>
      error !== undefined ? { name, generation: 0, error } : { name, generation: 0, record: record as StoredRecord })
  }

  async get (name: string): Promise<StoredPlugin | undefined> {
    const record = await this.#store.readDescriptor(name) as StoredRecord | undefined
    return record === undefined ? undefined : { name, generation: this.#generation, record }
  }

  async readModule (sha256: string): Promise<Buffer> {
    return this.#store.readModule(sha256)
  }

  async put (name: string, record: StoredRecord, bytes: Uint8Array, condition: WriteCondition): Promise<Committed> {
    await this.#check(name, condition)
    // Module first, then the descriptor that points at it: a crash between the two leaves
    // only an unreferenced module, which the next start collects.
    await this.#store.putModule(record.descriptor.sha256, bytes)
    await this.#store.putDescriptor(name, record)
    return { generation: ++this.#generation }
  }

  async delete (name: string, condition: WriteCondition & { kind: 'existing' }): Promise<Committed> {
    await this.#check(name, condition)
    await this.#store.deleteDescriptor(name)
    return { generation: ++this.#generation }
  }

  async collect (referenced: ReadonlySet<string>): Promise<void> {
    await this.#store.collectModules(referenced)
  }

  async close (): Promise<void> {}

  async #check (name: string, condition: WriteCondition): Promise<void> {
    const current = await this.#store.readDescriptor(name).catch(() => null) as StoredRecord | null | undefined
    if (condition.kind === 'create') {
      // An unreadable descriptor (null) still holds the name.
      if (current !== undefined) throw serviceError('PLUGIN_EXISTS', [name, name])
      if (await this.#store.countDescriptors() >= condition.maxPlugins) throw maxPluginsError(condition.maxPlugins)
      return
    }
    if (current === undefined) throw serviceError('PLUGIN_NOT_FOUND', [name])
    if (!matches(condition.ifMatch, current?.descriptor.sha256 ?? '')) throw preconditionFailed(name, current?.descriptor.sha256)
  }
}

export function maxPluginsError (max: number): Error {
  return serviceError('INSUFFICIENT_STORAGE', [], { details: { reason: `the registry holds MAX_PLUGINS=${max} plugins` } })
}

export function preconditionFailed (name: string, sha256: string | undefined): Error {
  return serviceError('PRECONDITION_FAILED', [name], { details: { sha256: sha256 ?? null } })
}
