#!/usr/bin/env node
// The command line: `serve` (the service), `run` (load and execute one plugin with the same
// sandbox, limits and ABIs as the service: what a plugin author uses before uploading), and
// `inspect` (the descriptor, or what the service would refuse and why).
//
// Exit codes: 0 ok; 1 the plugin failed at run time (trap, exit, deadline, bad output; for a
// wasi plugin that exited non-zero, its own exit code); 2 usage or configuration error;
// 3 the service would refuse the module or manifest.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from './config'
import type { Config } from './config'
import { isServiceError } from './errors'
import { pickEntry, wasiSpec } from './registry/call'
import { describePlugin } from './registry/descriptor'
import { parseManifest, nameRegExp } from './registry/manifest'
import { applyV8SandboxFlags } from './sandbox/v8-flags'
import { WorkerPool } from './workers/pool'
import { randomUUID } from 'node:crypto'
import pino from 'pino'
import type { Manifest } from './registry/manifest'
import { PluginVars } from './registry/plugin-vars'
import { ExtismCalls } from './server/extism-calls'
import { createMetrics } from './server/metrics'
import { OutboundHttp } from './server/outbound-http'
import { serveHttpBridge } from './workers/http-bridge'
import { start } from './main'

const HELP: Record<string, string> = {
  main: `usage: wasm-plugin-host <command> [options]

commands:
  serve                 run the HTTP service (configured by environment variables, see README)
  run <plugin.wasm>     load and execute a plugin once, as the service would
  inspect <plugin.wasm> print the plugin's descriptor, or why the service would refuse it

wasm-plugin-host <command> --help for the options of a command.
exit codes: 0 ok, 1 plugin failed at run time, 2 usage/configuration error, 3 refused module/manifest`,
  serve: `usage: wasm-plugin-host serve

Runs the service on HOST:PORT (default 127.0.0.1:8080) with data in DATA_DIR (./data).
Every setting is an environment variable; see the README's configuration table.`,
  run: `usage: wasm-plugin-host run <plugin.wasm> [--input JSON | < input] [options]

  --input TEXT       the call's input (default: standard input; empty when stdin is a terminal)
  --manifest FILE    a manifest JSON file, as uploaded with the plugin
  --function NAME    the export to call (json ABI default: execute, run, main; extism ABI: the
                     manifest's entry, else the only function)
  --config KEY=VALUE extism ABI: a config value (config_get), repeatable; over the manifest's
  --allow-host HOST  extism ABI: let http_request reach HOST (a name or a glob with *), repeatable;
                     adds it to the manifest's allowedHosts and to ALLOWED_HOSTS for this run
  --volume-dir DIR   host directory for the plugin's "@plugin" volume (default: a temp dir, removed after)

Prints the output (stdout of a wasi plugin) on standard output; errors as JSON on standard error,
and an extism plugin's log lines (PLUGIN_LOG_LEVEL) as JSON lines on standard error.
Limits, grants and ABI detection follow the same environment variables as the service.`,
  inspect: `usage: wasm-plugin-host inspect <plugin.wasm> [--manifest FILE]

Prints the descriptor the service would store ({name, abi, exports, imports, entries, limits, ...}),
or, with exit code 3, the error it would answer ({code, message, details}).`
}

function fail (code: number, message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(code)
}

function errorJson (err: unknown): string {
  if (isServiceError(err)) {
    return JSON.stringify({ code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) })
  }
  return JSON.stringify({ code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) })
}

async function readStdin (): Promise<Buffer> {
  if (process.stdin.isTTY === true) return Buffer.alloc(0)
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

interface Overrides { config: Record<string, string>, allowHosts: string[] }

function loadPlugin (file: string | undefined, manifestFile: string | undefined, config: Config, overrides?: Overrides): ReturnType<typeof describePlugin> & { bytes: Buffer, manifest: Manifest } {
  if (file === undefined) fail(2, 'missing <plugin.wasm>; see --help')
  let bytes: Buffer
  let manifestText: string | undefined
  try {
    bytes = readFileSync(file)
    manifestText = manifestFile !== undefined ? readFileSync(manifestFile, 'utf8') : undefined
  } catch (err) {
    fail(2, `cannot read: ${(err as Error).message}`)
  }
  const manifest = parseManifest(manifestText)
  if (overrides !== undefined && Object.keys(overrides.config).length > 0) manifest.config = { ...manifest.config, ...overrides.config }
  if (overrides !== undefined && overrides.allowHosts.length > 0) {
    const http = manifest.capabilities?.http
    manifest.capabilities = { ...manifest.capabilities, http: { ...http, allowedHosts: [...(http?.allowedHosts ?? []), ...overrides.allowHosts] } }
  }
  const stem = basename(file).replace(/\.wasm$/i, '').toLowerCase()
  const name = manifest.name ?? (nameRegExp.test(stem) ? stem : 'plugin')
  return { ...describePlugin(name, bytes, manifest, config), bytes, manifest }
}

async function runCommand (args: string[], config: Config): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      input: { type: 'string' },
      manifest: { type: 'string' },
      function: { type: 'string' },
      config: { type: 'string', multiple: true },
      'allow-host': { type: 'string', multiple: true },
      'volume-dir': { type: 'string' },
      help: { type: 'boolean' }
    }
  })
  if (values.help === true) { process.stdout.write(`${HELP.run ?? ''}\n`); return 0 }
  const overrides: Overrides = { config: {}, allowHosts: values['allow-host'] ?? [] }
  for (const kv of values.config ?? []) {
    const eq = kv.indexOf('=')
    if (eq <= 0) fail(2, `--config '${kv}' is not KEY=VALUE`)
    overrides.config[kv.slice(0, eq)] = kv.slice(eq + 1)
  }
  // The one who runs the CLI is its operator: --allow-host widens ALLOWED_HOSTS for this run.
  if (overrides.allowHosts.length > 0) config = Object.freeze({ ...config, allowedHosts: [...config.allowedHosts, ...overrides.allowHosts] })
  let plugin: ReturnType<typeof loadPlugin>
  try {
    plugin = loadPlugin(positionals[0], values.manifest, config, overrides)
  } catch (err) {
    process.stderr.write(`${errorJson(err)}\n`)
    return 3
  }
  const { descriptor, inspection } = plugin
  const input = values.input !== undefined ? Buffer.from(values.input) : await readStdin()
  const volumeDir = values['volume-dir'] ?? mkdtempSync(join(tmpdir(), 'wph-volume-'))
  const pool = new WorkerPool({ workers: 1, queueMax: 1, queueTimeoutMs: 60_000, pluginConcurrency: 1 })
  const outbound = new OutboundHttp({ operatorHosts: config.allowedHosts, allowPrivate: config.httpAllowPrivate })
  const channel = `wph-http-${randomUUID()}`
  const closeBridge = serveHttpBridge(channel, async (m) => await outbound.request({ ...m.request, allowedHosts: m.allowedHosts, responseBytes: m.responseBytes, deadline: m.deadline }))
  const log = pino({ level: 'trace', base: undefined }, pino.destination({ dest: 2, sync: true }))
  const ext = descriptor.abi === 'extism'
    ? new ExtismCalls(config, new PluginVars(), createMetrics(() => undefined), channel).prepare(descriptor, plugin.manifest.config ?? {}, log, 'cli')
    : undefined
  try {
    const module = await WebAssembly.compile(inspection.rewritten as Uint8Array<ArrayBuffer>)
    const result = await pool.execute({
      plugin: descriptor.name,
      module,
      abi: descriptor.abi,
      entry: pickEntry(descriptor, values.function),
      input,
      memory: inspection.memory,
      timeoutMs: descriptor.limits.timeoutMs,
      outputBytes: descriptor.limits.outputBytes,
      wasi: wasiSpec(descriptor, config, volumeDir),
      extism: ext?.task
    }, ext !== undefined ? { onEffects: ext.onEffects } : {})
    if (result.stderr !== undefined) process.stderr.write(result.stderr)
    process.stdout.write(result.output)
    return 0
  } catch (err) {
    process.stderr.write(`${errorJson(err)}\n`)
    if (isServiceError(err) && err.code === 'PLUGIN_EXIT' && typeof err.details?.exitCode === 'number') {
      return err.details.exitCode === 0 ? 1 : err.details.exitCode
    }
    if (isServiceError(err) && ['FUNCTION_NOT_FOUND', 'CAPABILITY_DENIED', 'INVALID_INPUT', 'PAYLOAD_TOO_LARGE'].includes(err.code)) return 2
    return 1
  } finally {
    await pool.close()
    closeBridge()
    await outbound.close()
    log.flush()
    if (values['volume-dir'] === undefined) rmSync(volumeDir, { recursive: true, force: true })
  }
}

function inspectCommand (args: string[], config: Config): number {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { manifest: { type: 'string' }, help: { type: 'boolean' } } })
  if (values.help === true) { process.stdout.write(`${HELP.inspect ?? ''}\n`); return 0 }
  try {
    const { descriptor, inspection } = loadPlugin(positionals[0], values.manifest, config)
    const { createdAt: _c, updatedAt: _u, ...rest } = descriptor
    process.stdout.write(`${JSON.stringify({ ...rest, memory: inspection.memory ?? null }, null, 2)}\n`)
    return 0
  } catch (err) {
    process.stdout.write(`${errorJson(err)}\n`)
    return 3
  }
}

export async function cli (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP.main ?? ''}\n`)
    return command === undefined ? 2 : 0
  }
  let config: Config
  try {
    config = loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) fail(2, err.message)
    throw err
  }
  applyV8SandboxFlags(config.maxMemoryBytes, config.maxTableElements)
  try {
    switch (command) {
      case 'serve':
        if (rest.includes('--help')) { process.stdout.write(`${HELP.serve ?? ''}\n`); return 0 }
        await start(config)
        return -1 // keeps running
      case 'run': return await runCommand(rest, config)
      case 'inspect': return inspectCommand(rest, config)
      default: fail(2, `unknown command '${command}'; see --help`)
    }
  } catch (err) {
    if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') === true) fail(2, `${err.message}; see ${command} --help`)
    throw err
  }
}

if (require.main === module) {
  cli(process.argv.slice(2)).then(code => { if (code >= 0) process.exitCode = code }, (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exitCode = 1
  })
}
