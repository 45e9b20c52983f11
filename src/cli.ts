#!/usr/bin/env node
// The command line: `serve` (the service), `run` (load and execute one plugin with the same
// sandbox, limits and ABIs as the service: what a plugin author uses before uploading),
// `inspect` (the descriptor, or what the service would refuse and why) and `new` (a plugin
// scaffold that builds and runs at once). bin/wasm-plugin-host.js starts it on Node 24.
//
// Exit codes: 0 ok; 1 the plugin failed at run time (trap, exit, deadline, bad output; for a
// wasi plugin that exited non-zero, its own exit code); 2 usage or configuration error;
// 3 the service would refuse the module or manifest.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs } from 'node:util'
import { fileStem, readModuleFile } from './cli/module-source'
import { UsageError, parseGrants, requireDirectory } from './cli/run-options'
import type { Grants } from './cli/run-options'
import { scaffold, templatesHelp } from './cli/scaffold'
import { loopSummary } from './cli/timing'
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
  run <plugin.wasm|.wat>     load and execute a plugin, as the service would
  inspect <plugin.wasm|.wat> print the plugin's descriptor, or why the service would refuse it
  new <template> <name>      create ./<name>/: a plugin that builds (./build.sh) and runs at once
  serve                      run the HTTP service (configured by environment variables, see README)

wasm-plugin-host <command> --help for the options of a command; --version for the version.
exit codes: 0 ok, 1 plugin failed at run time, 2 usage/configuration error, 3 refused module/manifest`,
  serve: `usage: wasm-plugin-host serve

Runs the service on HOST:PORT (default 127.0.0.1:8080) with data in DATA_DIR (./data).
Every setting is an environment variable; see the README's configuration table.`,
  run: `usage: wasm-plugin-host run <plugin.wasm|plugin.wat> [--input TEXT | < input] [options]

  --input TEXT         the call's input (default: standard input; empty, with a note, when it is a terminal)
  --manifest FILE      a manifest JSON file, as uploaded with the plugin; the flags below are merged into it
  --function NAME      the export to call (json ABI: default execute, run, main; extism ABI: the
                       manifest's entry, else the only function)
  --loop N             run N calls, print the last output and a timing summary on standard error
  --volume-dir DIR     an existing host directory for the plugin's "@plugin" volume (default: a temp dir, removed after)
grants and limits (the author is the operator here: each flag also allows what it asks for):
  --wasi               grant WASI preview1 (a json plugin built as a WASI reactor needs it)
  --dir HOST[::GUEST][:ro]
                       preopen the host directory HOST at GUEST (default: HOST's absolute path), read-write
                       unless :ro; repeatable; implies --wasi
  --env K=V            set an environment variable for the plugin; repeatable; implies --wasi
  --timeout MS         limits.timeoutMs (500, 500ms, 2s); at most MAX_TIMEOUT_MS, as on the service
  --memory SIZE        limits.memoryBytes (bytes, or 64MiB, 512KiB, 1GiB: whole 64 KiB pages); at most MAX_MEMORY_BYTES
  --config K=V         extism ABI: a config entry (config_get); repeatable
  --allow-host HOST    extism ABI: a host http_request may reach (capabilities.http.allowedHosts); repeatable

A .wat file is compiled with wabt first. Prints the output (stdout of a wasi plugin) on standard
output; errors as JSON on standard error, and an extism plugin's log lines (PLUGIN_LOG_LEVEL) as
JSON lines on standard error. Other limits, and ABI detection, follow the same environment
variables as the service.`,
  inspect: `usage: wasm-plugin-host inspect <plugin.wasm|plugin.wat> [--manifest FILE]

Prints the descriptor the service would store ({name, abi, exports, imports, entries, limits, ...}),
or, with exit code 3, the error it would answer ({code, message, details}).`,
  new: `usage: wasm-plugin-host new <template> <name> [--dir DIR]

Creates ./<name>/ (or DIR): a plugin named <name> with its source, build.sh and manifest.json,
that builds and runs at once. Templates:
${templatesHelp()}`
}

function fail (code: number, message: string): never {
  process.stderr.write(`${message}\n`)
  process.exit(code)
}

function errorJson (err: unknown): string {
  if (isServiceError(err)) {
    // Local: the author sees what failed inside (the service only logs it).
    if (err.code === 'INTERNAL' && err.cause !== undefined) return JSON.stringify({ code: err.code, message: `${err.message}: ${String(err.cause)}` })
    return JSON.stringify({ code: err.code, message: err.message, ...(err.details !== undefined ? { details: err.details } : {}) })
  }
  return JSON.stringify({ code: 'INTERNAL', message: err instanceof Error ? err.message : String(err) })
}

function version (): string {
  const pkg = JSON.parse(readFileSync(resolve(__dirname, '..', 'package.json'), 'utf8')) as { version: string }
  return `wasm-plugin-host ${pkg.version} (Node.js ${process.version})`
}

async function readStdin (): Promise<Buffer> {
  if (process.stdin.isTTY === true) {
    // Reading a terminal would wait for Ctrl-D with no prompt: an author would think it hung.
    process.stderr.write('wasm-plugin-host: no input: standard input is a terminal and --input is not given; ' +
      "running with empty input (pass --input TEXT, or pipe it: echo '{}' | wasm-plugin-host run ...)\n")
    return Buffer.alloc(0)
  }
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

/** The configuration from the environment, plus what the run flags allow as the operator. */
function loadCliConfig (grants?: Grants): Config {
  const env = { ...process.env }
  if (grants !== undefined && grants.allowedHosts.length > 0) {
    env.ALLOWED_HOSTS = [env.ALLOWED_HOSTS ?? '', ...grants.allowedHosts].filter(Boolean).join(',')
  }
  let config: Config
  try {
    config = loadConfig(env)
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message)
    throw err
  }
  applyV8SandboxFlags(config.maxMemoryBytes, config.maxTableElements)
  if (grants === undefined) return config
  return Object.freeze({
    ...config,
    volumes: new Map([...config.volumes, ...grants.volumes.map(v => [v.name, v] as const)]),
    allowedEnv: new Set([...config.allowedEnv, ...grants.allowedEnv])
  })
}

async function loadPlugin (file: string | undefined, manifestFile: string | undefined, config: Config, grants?: Grants): Promise<ReturnType<typeof describePlugin> & { bytes: Buffer, manifest: Manifest }> {
  if (file === undefined) throw new UsageError('missing <plugin.wasm>; see --help')
  let manifestText: string | undefined
  try {
    manifestText = manifestFile !== undefined ? readFileSync(manifestFile, 'utf8') : undefined
  } catch (err) {
    throw new UsageError(`cannot read: ${(err as Error).message}`)
  }
  let bytes: Buffer
  try {
    bytes = await readModuleFile(file)
  } catch (err) {
    if (isServiceError(err)) throw err
    throw new UsageError(`cannot read: ${(err as Error).message}`)
  }
  let manifest = parseManifest(manifestText)
  // The flags' additions pass the same schema as a manifest file would.
  if (grants !== undefined) manifest = parseManifest(JSON.stringify(grants.apply(manifest as Record<string, unknown>)))
  const stem = fileStem(basename(file))
  const name = manifest.name ?? (nameRegExp.test(stem) ? stem : 'plugin')
  return { ...describePlugin(name, bytes, manifest, config), bytes, manifest }
}

const RUN_OPTIONS = {
  input: { type: 'string' },
  manifest: { type: 'string' },
  function: { type: 'string' },
  loop: { type: 'string' },
  'volume-dir': { type: 'string' },
  wasi: { type: 'boolean' },
  dir: { type: 'string', multiple: true },
  env: { type: 'string', multiple: true },
  timeout: { type: 'string' },
  memory: { type: 'string' },
  config: { type: 'string', multiple: true },
  'allow-host': { type: 'string', multiple: true },
  help: { type: 'boolean' }
} as const

async function runCommand (args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: RUN_OPTIONS })
  if (values.help === true) { process.stdout.write(`${HELP.run ?? ''}\n`); return 0 }
  const loops = values.loop === undefined ? 1 : Number(values.loop)
  if (!Number.isInteger(loops) || loops < 1) throw new UsageError(`--loop '${values.loop ?? ''}': expected a whole number of calls, at least 1`)
  if (values['volume-dir'] !== undefined) requireDirectory('--volume-dir', values['volume-dir'])
  const grants = parseGrants(values)
  const config = loadCliConfig(grants)
  let plugin: Awaited<ReturnType<typeof loadPlugin>>
  try {
    plugin = await loadPlugin(positionals[0], values.manifest, config, grants)
  } catch (err) {
    if (err instanceof UsageError) throw err
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
    const compileStart = performance.now()
    const module = await WebAssembly.compile(inspection.rewritten as Uint8Array<ArrayBuffer>)
    const compileMs = performance.now() - compileStart
    const request = {
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
    }
    const hooks = ext !== undefined ? { onEffects: ext.onEffects } : {}
    const workerMs: number[] = []
    const roundTripMs: number[] = []
    let result: Awaited<ReturnType<WorkerPool['execute']>> | undefined
    for (let i = 0; i < loops; i++) {
      const started = performance.now()
      result = await pool.execute(request, hooks)
      roundTripMs.push(performance.now() - started)
      workerMs.push(result.durationMs)
    }
    if (result?.stderr !== undefined) process.stderr.write(result.stderr)
    if (result !== undefined) process.stdout.write(result.output)
    if (values.loop !== undefined) process.stderr.write(`${loopSummary(workerMs, roundTripMs, compileMs)}\n`)
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

async function inspectCommand (args: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { manifest: { type: 'string' }, help: { type: 'boolean' } } })
  if (values.help === true) { process.stdout.write(`${HELP.inspect ?? ''}\n`); return 0 }
  const config = loadCliConfig()
  try {
    const { descriptor, inspection } = await loadPlugin(positionals[0], values.manifest, config)
    const { createdAt: _c, updatedAt: _u, ...rest } = descriptor
    process.stdout.write(`${JSON.stringify({ ...rest, memory: inspection.memory ?? null }, null, 2)}\n`)
    return 0
  } catch (err) {
    if (err instanceof UsageError) throw err
    process.stdout.write(`${errorJson(err)}\n`)
    return 3
  }
}

function newCommand (args: string[]): number {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { dir: { type: 'string' }, help: { type: 'boolean' } } })
  if (values.help === true) { process.stdout.write(`${HELP.new ?? ''}\n`); return 0 }
  if (positionals.length > 2) throw new UsageError(`unexpected '${positionals[2] ?? ''}'; see new --help`)
  const { next } = scaffold(positionals[0], positionals[1], values.dir)
  process.stdout.write(`${next}\n`)
  return 0
}

export async function cli (argv: string[]): Promise<number> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(`${HELP.main ?? ''}\n`)
    return command === undefined ? 2 : 0
  }
  try {
    switch (command) {
      case '--version': case '-v': case 'version':
        process.stdout.write(`${version()}\n`)
        return 0
      case 'serve':
        if (rest.includes('--help')) { process.stdout.write(`${HELP.serve ?? ''}\n`); return 0 }
        await start(loadCliConfig())
        return -1 // keeps running
      case 'run': return await runCommand(rest)
      case 'inspect': return await inspectCommand(rest)
      case 'new': return newCommand(rest)
      default: throw new UsageError(`unknown command '${command}'; see --help`)
    }
  } catch (err) {
    if (err instanceof UsageError) fail(2, err.message)
    if (err instanceof TypeError && (err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS') === true) fail(2, `${err.message}; see ${command} --help`)
    throw err
  }
}

/** Runs the command line and sets the exit code (bin/wasm-plugin-host.js calls this). */
export function main (argv: string[]): void {
  cli(argv).then(code => { if (code >= 0) process.exitCode = code }, (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exitCode = 1
  })
}

if (require.main === module) main(process.argv.slice(2))
