// A real PostgreSQL for the tests of the shared registry. `.ci/run` starts a throw-away
// cluster (scripts/pg-test-cluster.sh) and exports TEST_DATABASE_URL (a database on it the
// tests may create others from), TEST_PG_DIR and TEST_PG_BIN (to restart it). Without it the
// tests that need PostgreSQL skip with a message, unless REQUIRE_POSTGRES=1 (CI sets it).
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { Client } from 'pg'

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

/** Whether this test run may stop and start the cluster (it knows where it is). */
export const canRestartPostgres = process.env.TEST_PG_DIR !== undefined && process.env.TEST_PG_BIN !== undefined

/** `pg_ctl stop` (fast) or `start` on the test cluster, as its owner. */
export function pgCtl (action: 'stop' | 'start'): void {
  const dir = process.env.TEST_PG_DIR as string
  // scripts/pg-test-cluster.sh wrote the address and port into postgresql.conf.
  const args = [`${process.env.TEST_PG_BIN as string}/pg_ctl`, '-D', `${dir}/data`, '-w', '-t', '60', ...(action === 'stop' ? ['-m', 'fast', 'stop'] : ['-l', `${dir}/server.log`, 'start'])]
  const cmd = process.getuid?.() === 0 ? ['runuser', '-u', 'postgres', '--', ...args] : args
  execFileSync(cmd[0] as string, cmd.slice(1), { stdio: 'ignore' })
}
