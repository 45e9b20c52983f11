// A real PostgreSQL for the tests of the shared registry. `.ci/run` starts a throw-away
// cluster (scripts/pg-test-cluster.sh) and exports TEST_DATABASE_URL (a database on it the
// tests may create others from), and TEST_PG_BIN (where the server binaries are, for tests that start a cluster of their own). Without it the
// tests that need PostgreSQL skip with a message, unless REQUIRE_POSTGRES=1 (CI sets it).
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Client } from 'pg'
import { freePort } from './http'

export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL
export const hasPostgres = TEST_DATABASE_URL !== undefined && TEST_DATABASE_URL !== ''

if (!hasPostgres && process.env.REQUIRE_POSTGRES === '1') {
  throw new Error('REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set: start one with scripts/pg-test-cluster.sh')
}

/** `describe` when PostgreSQL is there; otherwise a skipped suite and a message saying why. */
export function describePostgres (title: string, fn: () => void): void {
  if (hasPostgres) {
    describe(title, fn)
  } else {
    console.warn(`skipping '${title}': no PostgreSQL (set TEST_DATABASE_URL, e.g. eval "$(scripts/pg-test-cluster.sh start)")`)
    describe.skip(title, fn)
  }
}

async function admin<T> (fn: (client: Client) => Promise<T>): Promise<T> {
  const client = new Client({ connectionString: TEST_DATABASE_URL })
  await client.connect()
  try {
    return await fn(client)
  } finally {
    await client.end()
  }
}

/** A new, empty database on the test cluster; its URL. */
export async function createDatabase (): Promise<string> {
  const name = `wph_${randomBytes(5).toString('hex')}`
  await admin(c => c.query(`CREATE DATABASE ${name}`))
  const url = new URL(TEST_DATABASE_URL as string)
  url.pathname = `/${name}`
  return url.toString()
}

export async function dropDatabase (url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1)
  await admin(c => c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`))
}

/** Runs SQL on `url` (a test's own database). */
export async function sql<R extends Record<string, unknown> = Record<string, unknown>> (url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new Client({ connectionString: url })
  await client.connect()
  try {
    return (await client.query<R>(text, values)).rows
  } finally {
    await client.end()
  }
}

/** Terminates every connection of the service to `url`'s database (pg_terminate_backend). */
export async function terminateBackends (url: string): Promise<number> {
  const name = new URL(url).pathname.slice(1)
  const rows = await admin(c => c.query(
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'wasm-plugin-host'", [name]))
  return rows.rowCount ?? 0
}

/**
 * Whether a test may start a cluster of its own (TEST_PG_BIN: the server binaries .ci/run
 * found). A test that stops PostgreSQL must stop its own: stopping the shared one would
 * cut off every other suite running beside it.
 */
export const canRestartPostgres = process.env.TEST_PG_BIN !== undefined

export interface PrivateCluster {
  /** A database on it (the cluster's own `wph_test`). */
  url: string
  /** `pg_ctl stop` (fast) or `start`, as the cluster's owner. */
  ctl: (action: 'stop' | 'start') => void
  /** Stops it and removes its directory. */
  remove: () => void
}

const CLUSTER_SCRIPT = resolve(__dirname, '..', '..', 'scripts', 'pg-test-cluster.sh')

/** A throw-away cluster on its own port and directory (scripts/pg-test-cluster.sh). */
export async function startPrivateCluster (): Promise<PrivateCluster> {
  const bin = process.env.TEST_PG_BIN as string
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), 'wph-pg-own-'))
  const out = execFileSync('bash', [CLUSTER_SCRIPT, 'start', dir, String(port)], { env: { ...process.env, PG_BIN: bin }, encoding: 'utf8' })
  const url = /TEST_DATABASE_URL=(\S+)/.exec(out)?.[1]
  if (url === undefined) throw new Error(`pg-test-cluster.sh printed no URL: ${out}`)
  const ctl = (action: 'stop' | 'start'): void => {
    // scripts/pg-test-cluster.sh wrote the address and port into postgresql.conf.
    const args = [`${bin}/pg_ctl`, '-D', `${dir}/data`, '-w', '-t', '60', ...(action === 'stop' ? ['-m', 'fast', 'stop'] : ['-l', `${dir}/server.log`, 'start'])]
    const cmd = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', ...args] : args
    execFileSync(cmd[0] as string, cmd.slice(1), { stdio: 'ignore' })
  }
  const remove = (): void => {
    execFileSync('bash', [CLUSTER_SCRIPT, 'stop', dir], { env: { ...process.env, PG_BIN: bin }, stdio: 'ignore' })
  }
  return { url, ctl, remove }
}
