// Differential runs of Extism plugins: the same module, input and config through the service
// and through the Extism JS SDK (@extism/extism, a devDependency), reduced to one comparable
// shape: the output bytes, or the kind of error (and the plugin's error message).
import createPlugin from '@extism/extism'
import type { Plugin } from '@extism/extism'
import type { FastifyInstance } from 'fastify'

export type Outcome =
  | { ok: true, output: string }
  | { ok: false, kind: 'PLUGIN_ERROR', message: string }
  | { ok: false, kind: string }

export interface LogLine { level: string, msg: string }

/** An SDK plugin whose log lines are captured. */
export async function sdkPlugin (wasm: Buffer, config: Record<string, string>, useWasi = false): Promise<{ plugin: Plugin, logs: LogLine[] }> {
  const logs: LogLine[] = []
  const capture = (level: string) => (msg: unknown) => { logs.push({ level, msg: String(msg) }) }
  const logger = { trace: capture('trace'), debug: capture('debug'), info: capture('info'), warn: capture('warn'), error: capture('error'), log: capture('info') }
  const plugin = await createPlugin({ wasm: [{ data: new Uint8Array(wasm) }], config }, { useWasi, config, logger: logger as unknown as Console })
  return { plugin, logs }
}

/** What the SDK's call came to. Its thrown errors are classified by what raised them. */
export async function viaSdk (plugin: Plugin, fn: string, input: Buffer): Promise<Outcome> {
  try {
    const out = await plugin.call(fn, input.length === 0 ? undefined : new Uint8Array(input))
    return { ok: true, output: out === null ? '' : Buffer.from(out.bytes()).toString('hex') }
  } catch (err) {
    const message = (err as Error).message
    const originated = /^Plugin-originated error: ([\s\S]*)$/.exec(message)
    if (originated !== null) return { ok: false, kind: 'PLUGIN_ERROR', message: originated[1] as string }
    // A DataView access outside a block, an unknown block, or a wasm trap: the guest's fault.
    if (err instanceof RangeError || err instanceof WebAssembly.RuntimeError || /cannot assign to this block|length longer than target block/.test(message)) {
      return { ok: false, kind: 'PLUGIN_TRAP' }
    }
    return { ok: false, kind: `SDK: ${message}` }
  }
}

/** What the service answered for the same call. */
export async function viaService (app: FastifyInstance, name: string, fn: string, input: Buffer): Promise<Outcome> {
  const res = await app.inject({
    method: 'POST',
    url: `/plugins/${name}/execute?function=${encodeURIComponent(fn)}`,
    payload: input,
    headers: { 'content-type': 'application/octet-stream' }
  })
  if (res.statusCode === 200) return { ok: true, output: res.rawPayload.toString('hex') }
  const body = res.json() as { code: string, details?: { message?: string } }
  if (body.code === 'PLUGIN_ERROR') return { ok: false, kind: 'PLUGIN_ERROR', message: body.details?.message ?? '' }
  return { ok: false, kind: body.code }
}
