// The shared registry backend: PostgreSQL, one database for every replica.
//
//   wph_modules  (sha256 PK, bytes)                       module bytes, once per sha256
//   wph_plugins  (name PK, generation, sha256 FK, record)  one row per plugin
//   wph_generation                                         sequence: every write's generation
//
// Each write is one transaction that also NOTIFYs `wph_registry` with {n: name, g: generation,
// t: commit time}; NOTIFY is delivered on commit, to every listening replica, in commit order.
// A write is one call of the wph_write function (one statement: one transaction, one round
// trip). It takes a transaction-scoped advisory lock: registry writes are rare (uploads), and
// serializing them makes "check the condition, write, collect the old module" race-free
// across replicas without relying on isolation subtleties (20 simultaneous POSTs of one
// name: one commits, the others see it and answer 409).
//
// Replicas keep a local copy of the bytes of the modules they serve under DATA_DIR/modules,
// so a replica that loses the database keeps executing (and recompiling on a cache miss).
// A lost connection: writes answer REGISTRY_UNAVAILABLE at once, the listener reconnects
// with backoff, then LISTENs again and asks the registry for a full resync.
//
// Client: `pg` (node-postgres), the maintained pure-JS driver with LISTEN/NOTIFY support and
// no native build step; its Pool gives bounded connections with connect timeouts.
import { Client, Pool } from 'pg'
import type { ClientConfig, Notification } from 'pg'
import { isServiceError, serviceError } from '../errors'
import type { ChangeFeed, Committed, RegistryBackend, StoredPlugin, StoredRecord, WriteCondition } from './backend'
import { maxPluginsError, preconditionFailed } from './fs-backend'
import { sha } from './store'
import type { PluginStore } from './store'

export const CHANNEL = 'wph_registry'
/** Modules up to this size are sent with the write; bigger ones only when not stored yet. */
const INLINE_BYTES = 256 * 1024
/** pg_advisory_lock keys (arbitrary constants, "wph" + purpose). */
const MIGRATION_LOCK = 0x77706801
const WRITE_LOCK = 0x77706802

/** Schema migrations, applied in order once each (wph_schema_migrations records them). */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE wph_modules (
     sha256 text PRIMARY KEY CHECK (sha256 ~ '^[0-9a-f]{64}$'),
     bytes bytea NOT NULL,
     created_at timestamptz NOT NULL DEFAULT now()
   );
   CREATE SEQUENCE wph_generation;
   CREATE TABLE wph_plugins (
     name text PRIMARY KEY,
     generation bigint NOT NULL,
     sha256 text NOT NULL REFERENCES wph_modules (sha256),
     record json NOT NULL,
     updated_at timestamptz NOT NULL DEFAULT clock_timestamp()
   );`,
  // Every write in one statement, so one round trip (and the write lock is held for
  // microseconds, not for a conversation with the client): check, write, collect, notify.
  // Outcomes: ok | exists | full | not_found | precondition | need_bytes (the module is not
  // stored yet and the call left its bytes out: sent again with them).
  `CREATE FUNCTION wph_write (p_kind text, p_name text, p_sha text, p_bytes bytea, p_record json, p_max bigint, p_if_match text[])
   RETURNS TABLE (outcome text, generation bigint, current_sha text) LANGUAGE plpgsql AS $$
   DECLARE
     cur text;
     g bigint;
   BEGIN
     PERFORM pg_advisory_xact_lock(${WRITE_LOCK});
     SELECT p.sha256 INTO cur FROM wph_plugins p WHERE p.name = p_name;
     IF p_kind = 'create' THEN
       IF cur IS NOT NULL THEN RETURN QUERY SELECT 'exists', NULL::bigint, cur; RETURN; END IF;
       IF (SELECT count(*) FROM wph_plugins) >= p_max THEN RETURN QUERY SELECT 'full', NULL::bigint, cur; RETURN; END IF;
     ELSE
       IF cur IS NULL THEN RETURN QUERY SELECT 'not_found', NULL::bigint, cur; RETURN; END IF;
       IF p_if_match IS NOT NULL AND NOT (cur = ANY (p_if_match)) THEN RETURN QUERY SELECT 'precondition', NULL::bigint, cur; RETURN; END IF;
     END IF;
     IF p_kind = 'delete' THEN
       DELETE FROM wph_plugins WHERE name = p_name;
     ELSE
       IF NOT EXISTS (SELECT 1 FROM wph_modules WHERE sha256 = p_sha) THEN
         IF p_bytes IS NULL THEN RETURN QUERY SELECT 'need_bytes', NULL::bigint, cur; RETURN; END IF;
         INSERT INTO wph_modules (sha256, bytes) VALUES (p_sha, p_bytes);
       END IF;
       INSERT INTO wph_plugins AS t (name, generation, sha256, record) VALUES (p_name, 0, p_sha, p_record)
         ON CONFLICT (name) DO UPDATE SET sha256 = EXCLUDED.sha256, record = EXCLUDED.record, updated_at = clock_timestamp();
     END IF;
     g := nextval('wph_generation');
     UPDATE wph_plugins SET generation = g WHERE name = p_name;
     -- Module bytes go with the last plugin that used them (the write lock excludes a new user).
     IF cur IS NOT NULL AND cur IS DISTINCT FROM (CASE WHEN p_kind = 'delete' THEN NULL ELSE p_sha END) THEN
       DELETE FROM wph_modules WHERE sha256 = cur AND NOT EXISTS (SELECT 1 FROM wph_plugins WHERE sha256 = cur);
     END IF;
     PERFORM pg_notify('${CHANNEL}', json_build_object('n', p_name, 'g', g, 't', floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)::text);
     RETURN QUERY SELECT 'ok', g, cur;
   END $$;`
]

export interface PgBackendOptions {
  /** postgres:// or postgresql:// URL (REGISTRY_URL). */
  url: string
  /** This replica's disk: local copies of module bytes. */
  store: PluginStore
  log: (msg: string, err?: unknown) => void
  /** Connections for reads and writes (the listener has its own). */
  poolSize?: number
  /** How long a connect or a statement may take before the write is refused with 503. */
  timeoutMs?: number
  /** Listener heartbeat: how soon a silently dead connection is noticed. */
  heartbeatMs?: number
  /** Reconnect backoff bounds. */
  backoffMs?: { min: number, max: number }
}

interface PluginRow { name: string, generation: string, record: StoredRecord }

export class PgBackend implements RegistryBackend {
  readonly kind = 'postgres'
  readonly #options: Required<PgBackendOptions>
  readonly #client: ClientConfig
  readonly #pool: Pool
  #feed: ChangeFeed | undefined
  #listener: Client | undefined
  #up = false
  #closed = false
  #heartbeat: NodeJS.Timeout | undefined
  #retry: NodeJS.Timeout | undefined
  #backoff: number

  constructor (options: PgBackendOptions) {
    this.#options = { poolSize: 4, timeoutMs: 5000, heartbeatMs: 1000, backoffMs: { min: 100, max: 5000 }, ...options }
    this.#backoff = this.#options.backoffMs.min
    this.#client = {
      connectionString: options.url,
      application_name: 'wasm-plugin-host',
      connectionTimeoutMillis: this.#options.timeoutMs,
      statement_timeout: this.#options.timeoutMs,
      query_timeout: this.#options.timeoutMs + 1000,
      keepAlive: true
    }
    this.#pool = new Pool({ ...this.#client, max: this.#options.poolSize, idleTimeoutMillis: 30_000 })
    // An idle pooled connection that dies (database restart) emits here; the next query reconnects.
    this.#pool.on('error', (err) => this.#options.log('registry database: idle connection lost', err))
  }

  /**
   * Migrates the schema (under an advisory lock: replicas may start together) and starts
   * listening. Retries with backoff until the database answers: a replica is not ready
   * before its first sync.
   */
  async init (feed: ChangeFeed): Promise<void> {
    this.#feed = feed
    await this.#options.store.init()
    for (let delay = this.#options.backoffMs.min; ; delay = Math.min(delay * 2, this.#options.backoffMs.max)) {
      if (this.#closed) throw new Error('closed')
      try {
        await migrate(this.#client)
        await this.#listen()
        break
      } catch (err) {
        this.#options.log(`registry database unreachable at start; retrying in ${delay} ms`, err)
        await new Promise(resolve => setTimeout(resolve, delay))
      }
    }
    this.#heartbeat = setInterval(() => { this.#beat() }, this.#options.heartbeatMs)
    this.#heartbeat.unref()
  }

  async list (): Promise<StoredPlugin[]> {
    const { rows } = await this.#pool.query<PluginRow>('SELECT name, generation, record FROM wph_plugins ORDER BY name')
    return rows.map(toPlugin)
  }

  async get (name: string): Promise<StoredPlugin | undefined> {
    const { rows } = await this.#pool.query<PluginRow>('SELECT name, generation, record FROM wph_plugins WHERE name = $1', [name])
    return rows[0] === undefined ? undefined : toPlugin(rows[0])
  }

  async readModule (sha256: string): Promise<Buffer> {
    try {
      return await this.#options.store.readModule(sha256)
    } catch {
      // Not on this replica's disk yet (written by another replica), or corrupt: fetch it.
    }
    const { rows } = await this.#pool.query<{ bytes: Buffer }>('SELECT bytes FROM wph_modules WHERE sha256 = $1', [sha256])
    const bytes = rows[0]?.bytes
    if (bytes === undefined) throw new Error(`module ${sha256} is not in the registry database`)
    if (sha(bytes) !== sha256) throw new Error(`module ${sha256} is corrupt in the registry database`)
    await this.#options.store.putModule(sha256, bytes)
    return bytes
  }

  async put (name: string, record: StoredRecord, bytes: Uint8Array, condition: WriteCondition): Promise<Committed> {
    this.#requireUp()
    const { sha256 } = record.descriptor
    // The local copy first: this replica serves the plugin from it, even without the database.
    await this.#options.store.putModule(sha256, bytes)
    const kind = condition.kind === 'create' ? 'create' : 'replace'
    // Small modules go along at once; big ones only when the database does not have them.
    const inline = bytes.length <= INLINE_BYTES
    const first = await this.#write(kind, name, sha256, inline ? bytes : null, record, condition)
    return first !== 'need_bytes' ? first : committed(await this.#write(kind, name, sha256, bytes, record, condition))
  }

  async delete (name: string, condition: WriteCondition & { kind: 'existing' }): Promise<Committed> {
    this.#requireUp()
    return committed(await this.#write('delete', name, null, null, null, condition))
  }

  async collect (referenced: ReadonlySet<string>): Promise<void> {
    await this.#options.store.collectModules(referenced)
  }

  async close (): Promise<void> {
    this.#closed = true
    clearInterval(this.#heartbeat)
    clearTimeout(this.#retry)
    const listener = this.#listener
    this.#listener = undefined
    await listener?.end().catch(() => {})
    await this.#pool.end().catch(() => {})
  }

  #requireUp (): void {
    if (!this.#up) throw unavailable('not connected')
  }

  /** One write: one statement (wph_write), one transaction; refusals become catalogue errors. */
  async #write (kind: 'create' | 'replace' | 'delete', name: string, sha256: string | null, bytes: Uint8Array | null, record: StoredRecord | null, condition: WriteCondition): Promise<Committed | 'need_bytes'> {
    let row: WriteRow | undefined
    try {
      const maxPlugins = condition.kind === 'create' ? condition.maxPlugins : null
      const ifMatch = condition.kind === 'existing' && condition.ifMatch !== undefined && condition.ifMatch !== '*' ? [...condition.ifMatch] : null
      const { rows } = await this.#pool.query<WriteRow>('SELECT outcome, generation, current_sha FROM wph_write($1, $2, $3, $4, $5, $6, $7)',
        [kind, name, sha256, bytes === null ? null : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length), record === null ? null : JSON.stringify(record), maxPlugins, ifMatch])
      row = rows[0]
    } catch (err) {
      this.#beat()
      throw toServiceError(err, this.#options.log)
    }
    if (row === undefined) throw unavailable('no answer to a write')
    if (row.outcome === 'need_bytes') return 'need_bytes'
    return check(name, row, condition)
  }

  async #listen (): Promise<void> {
    const client = new Client(this.#client)
    client.on('error', (err) => this.#lost(client, err))
    client.on('end', () => this.#lost(client))
    client.on('notification', (msg) => this.#notified(msg))
    try {
      await client.connect()
      await client.query(`LISTEN ${CHANNEL}`)
    } catch (err) {
      client.removeAllListeners('end')
      await client.end().catch(() => {})
      throw err
    }
    this.#listener = client
    this.#up = true
    this.#backoff = this.#options.backoffMs.min
    this.#feed?.connected(true)
  }

  #notified (msg: Notification): void {
    if (msg.channel !== CHANNEL || msg.payload === undefined) return
    try {
      const { n, g, t } = JSON.parse(msg.payload) as { n: string, g: number | string, t?: number | string }
      this.#feed?.change({ name: n, generation: Number(g), committedAt: t === undefined ? undefined : Number(t) })
    } catch (err) {
      this.#options.log('registry database: unreadable notification', err)
    }
  }

  /** Checks the listener; a failed check counts as a lost connection. */
  #beat (): void {
    const client = this.#listener
    if (client === undefined) return
    client.query('SELECT 1').catch((err: unknown) => this.#lost(client, err))
  }

  #lost (client: Client, err?: unknown): void {
    if (client !== this.#listener || this.#closed) return
    this.#listener = undefined
    this.#up = false
    this.#feed?.connected(false)
    this.#options.log('registry database connection lost; executing what is loaded, refusing writes, reconnecting', err)
    client.removeAllListeners('end')
    client.on('error', () => {})
    client.end().catch(() => {})
    this.#reconnect()
  }

  #reconnect (): void {
    if (this.#closed) return
    const delay = this.#backoff * (0.5 + Math.random() / 2)
    this.#backoff = Math.min(this.#backoff * 2, this.#options.backoffMs.max)
    this.#retry = setTimeout(() => {
      this.#listen().then(() => {
        this.#options.log('registry database connection back; resyncing')
        this.#feed?.resync()
      }, () => this.#reconnect())
    }, delay)
    this.#retry.unref()
  }
}

function toPlugin (row: PluginRow): StoredPlugin {
  return { name: row.name, generation: Number(row.generation), record: row.record }
}

interface WriteRow { outcome: string, generation: string | null, current_sha: string | null }

/** A write sent with its bytes cannot need them, unless the module went in between. */
function committed (result: Committed | 'need_bytes'): Committed {
  if (result === 'need_bytes') throw unavailable('the module was collected during the write; retry')
  return result
}

/** What wph_write answered, as a generation or the catalogue error it means. */
function check (name: string, r: WriteRow, condition: WriteCondition): Committed {
  switch (r.outcome) {
    case 'ok': return { generation: Number(r.generation) }
    case 'exists': throw serviceError('PLUGIN_EXISTS', [name, name])
    case 'full': throw maxPluginsError(condition.kind === 'create' ? condition.maxPlugins : 0)
    case 'not_found': throw serviceError('PLUGIN_NOT_FOUND', [name])
    case 'precondition': throw preconditionFailed(name, r.current_sha ?? undefined)
    default: throw unavailable(`unexpected write outcome ${r.outcome}`)
  }
}

/** Creates or migrates the schema; replicas starting together wait on the advisory lock. */
export async function migrate (config: ClientConfig): Promise<void> {
  const client = new Client(config)
  client.on('error', () => {})
  await client.connect()
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK])
    // Nothing is written when the schema is current: a replica starts on a read-only database.
    const { rows: exists } = await client.query<{ t: string | null }>("SELECT to_regclass('wph_schema_migrations')::text AS t")
    if (exists[0]?.t == null) await client.query('CREATE TABLE IF NOT EXISTS wph_schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())')
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM wph_schema_migrations')
    for (let version = (rows[0]?.v ?? 0) + 1; version <= MIGRATIONS.length; version++) {
      await client.query('BEGIN')
      try {
        await client.query(MIGRATIONS[version - 1] as string)
        await client.query('INSERT INTO wph_schema_migrations (version) VALUES ($1)', [version])
        await client.query('COMMIT')
      } catch (err) {
        await client.query('ROLLBACK').catch(() => {})
        throw err
      }
    }
  } finally {
    await client.end().catch(() => {})
  }
}

function unavailable (reason: string): Error {
  return serviceError('REGISTRY_UNAVAILABLE', [reason], { retryAfterSeconds: 1 })
}

/**
 * A database refusal as a documented error, never a 500: a full disk is INSUFFICIENT_STORAGE
 * (the transaction rolled back: nothing was written), a value over a PostgreSQL limit is
 * PAYLOAD_TOO_LARGE, a lost or read-only database (or anything else it refuses) is
 * REGISTRY_UNAVAILABLE. A lost connection during COMMIT cannot tell whether the write
 * committed: the client gets 503 and may check with GET (the sha256) before retrying.
 */
export function toServiceError (err: unknown, log: (msg: string, err?: unknown) => void): Error {
  if (isServiceError(err)) return err
  const code = (err as { code?: unknown } | undefined)?.code
  const sqlstate = typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
  if (sqlstate === '53100') return serviceError('INSUFFICIENT_STORAGE', [], { details: { reason: 'the registry database is out of disk space' } })
  if (sqlstate === '54000') return serviceError('PAYLOAD_TOO_LARGE', ['the module is over a limit of the registry database'])
  if (sqlstate === '23505') return unavailable('a concurrent write conflicted; retry')
  log('registry database refused a write', err)
  return unavailable(sqlstate !== undefined ? `database error ${sqlstate}` : 'connection failed')
}
