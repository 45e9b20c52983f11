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
  --function NAME    json ABI: the export to call (default execute, run, main)
  --volume-dir DIR   host directory for the plugin's "@plugin" volume (default: a temp dir, removed after)

Prints the output (stdout of a wasi plugin) on standard output; errors as JSON on standard error.
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
    // Local: the author sees what failed inside (the service only logs it).
    if (err.code === 'INTERNAL' && err.cause !== undefined) return JSON.stringify({ code: err.code, message: `${err.message}: ${String(err.cause)}` })
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

function loadPlugin (file: string | undefined, manifestFile: string | undefined, config: Config): ReturnType<typeof describePlugin> & { bytes: Buffer } {
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
  const stem = basename(file).replace(/\.wasm$/i, '').toLowerCase()
  const name = manifest.name ?? (nameRegExp.test(stem) ? stem : 'plugin')
  return { ...describePlugin(name, bytes, manifest, config), bytes }
}

async function runCommand (args: string[], config: Config): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      input: { type: 'string' },
      manifest: { type: 'string' },
      function: { type: 'string' },
      'volume-dir': { type: 'string' },
      help: { type: 'boolean' }
    }
  })
  if (values.help === true) { process.stdout.write(`${HELP.run ?? ''}\n`); return 0 }
  let plugin: ReturnType<typeof loadPlugin>
  try {
    plugin = loadPlugin(positionals[0], values.manifest, config)
  } catch (err) {
    process.stderr.write(`${errorJson(err)}\n`)
    return 3
  }
  const { descriptor, inspection } = plugin
  const input = values.input !== undefined ? Buffer.from(values.input) : await readStdin()
  const volumeDir = values['volume-dir'] ?? mkdtempSync(join(tmpdir(), 'wph-volume-'))
  const pool = new WorkerPool({ workers: 1, queueMax: 1, queueTimeoutMs: 60_000, pluginConcurrency: 1 })
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
      wasi: wasiSpec(descriptor, config, volumeDir)
    })
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
