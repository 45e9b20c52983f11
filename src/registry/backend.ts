// Where the registry persists plugins and learns of changes made elsewhere. Two
// implementations, chosen once in app.ts: FsBackend (DATA_DIR, one replica, the embedded
// default) and PgBackend (PostgreSQL, shared by every replica, changes fed by LISTEN/NOTIFY).
// The registry above keeps the in-memory index, compiles, and applies changes; a backend
// only stores, checks write conditions atomically with the write, and reports changes.
import type { PluginDescriptor } from './descriptor'
import type { Manifest } from './manifest'

/** What is stored per plugin besides its module bytes. */
export interface StoredRecord { descriptor: PluginDescriptor, manifest: Manifest }

/** One stored plugin. `generation` grows with every write (per backend, never reused). */
export interface StoredPlugin {
  name: string
  generation: number
  record?: StoredRecord
  /** The record could not be read or parsed: reported, not fatal. */
  error?: Error
}

/**
 * What must hold, atomically with the write, for it to happen:
 * - `create`: no plugin of that name (else PLUGIN_EXISTS), fewer than `maxPlugins`
 *   (else INSUFFICIENT_STORAGE);
 * - `existing`: the plugin exists (else PLUGIN_NOT_FOUND) and, with `ifMatch`, its sha256 is
 *   one of them (`'*'`: any) (else PRECONDITION_FAILED).
 */
export type WriteCondition =
  | { kind: 'create', maxPlugins: number }
  | { kind: 'existing', ifMatch?: IfMatch | undefined }

/** The parsed `If-Match` header: `*`, or the sha256 values it lists. */
export type IfMatch = '*' | readonly string[]

/** A change committed by some replica, as the feed reports it. */
export interface Change {
  name: string
  generation: number
  /** Commit time (ms since the epoch, the database's clock), for registry_sync_seconds. */
  committedAt?: number | undefined
}

export interface ChangeFeed {
  /** A plugin changed: refetch it. */
  change: (change: Change) => void
  /** Changes may have been missed (a lost connection came back): refetch everything. */
  resync: () => void
  /** Whether writes can reach the shared store now (registry_connected). */
  connected: (up: boolean) => void
}

/** The outcome of a committed write: the plugin's new generation. */
export interface Committed { generation: number }

export interface RegistryBackend {
  /** `postgres` when other replicas share the store (and changes arrive by the feed). */
  readonly kind: 'fs' | 'postgres'
  /** Prepares the store (layout, schema migrations) and starts the change feed. */
  init: (feed: ChangeFeed) => Promise<void>
  /** Every plugin, for the first load and for resyncs. */
  list: () => Promise<StoredPlugin[]>
  /** One plugin as stored now, or undefined. */
  get: (name: string) => Promise<StoredPlugin | undefined>
  /** Module bytes, checked against their sha256 (a corrupt copy is never returned). */
  readModule: (sha256: string) => Promise<Buffer>
  /** Stores `bytes` (once per sha256) and the record of `name`, if `condition` holds. */
  put: (name: string, record: StoredRecord, bytes: Uint8Array, condition: WriteCondition) => Promise<Committed>
  /** Deletes `name`, if `condition` holds. */
  delete: (name: string, condition: WriteCondition & { kind: 'existing' }) => Promise<Committed>
  /** Drops module bytes kept on this replica's disk that no plugin in `referenced` uses. */
  collect: (referenced: ReadonlySet<string>) => Promise<void>
  close: () => Promise<void>
}

/** True when `sha256` satisfies `ifMatch` (absent: always). */
export function matches (ifMatch: IfMatch | undefined, sha256: string): boolean {
  return ifMatch === undefined || ifMatch === '*' || ifMatch.includes(sha256)
}
