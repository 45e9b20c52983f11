// `new <template> <name>`: copies templates/<template>/ to ./<name>/, with `{{name}}` replaced
// by the plugin's name in every file. Each template is a plugin that builds (its build.sh) and
// runs at once, with the manifest the service needs; the author edits from there.
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join, relative, resolve } from 'node:path'
import { nameRegExp } from '../registry/manifest'
import { UsageError } from './run-options'

export const TEMPLATES_DIR = resolve(__dirname, '..', '..', 'templates')

/** The templates `new` knows, with what each needs and an input to try it with. */
export const TEMPLATES: Record<string, { about: string, input: string, runFlags?: string }> = {
  'c-json': { about: 'json ABI in C (a WASI reactor with wasi-libc; clang-14, lld-14, wasi-libc)', input: '{"hello":"world"}' },
  'rust-json': { about: 'json ABI in Rust (a cdylib for wasm32-unknown-unknown; rustc)', input: '{"hello":"world"}' },
  'as-json': { about: 'json ABI in AssemblyScript (npm assemblyscript)', input: '{"hello":"world"}' },
  'c-wasi': { about: 'wasi ABI in C (a WASI command with wasi-libc; clang-14, lld-14, wasi-libc)', input: '{"hello":"world"}' },
  'rust-wasi': { about: 'wasi ABI in Rust (a WASI command, wasm32-wasip1 or wasm32-wasi; rustc)', input: '{"hello":"world"}' },
  'as-extism': { about: 'extism ABI in AssemblyScript (npm assemblyscript, @extism/as-pdk)', input: 'world', runFlags: ' --config greeting=Hi' }
}

export function templatesHelp (): string {
  const width = Math.max(...Object.keys(TEMPLATES).map(t => t.length))
  return Object.entries(TEMPLATES).map(([t, { about }]) => `  ${t.padEnd(width)}  ${about}`).join('\n')
}

function files (dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap(e =>
    e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)])
}

/** Writes the scaffold into `target` (default ./<name>); returns the directory and next steps. */
export function scaffold (template: string | undefined, name: string | undefined, target?: string): { dir: string, next: string } {
  if (template === undefined || name === undefined) throw new UsageError(`usage: wasm-plugin-host new <template> <name>; templates:\n${templatesHelp()}`)
  const info = TEMPLATES[template]
  if (info === undefined) throw new UsageError(`unknown template '${template}'; templates:\n${templatesHelp()}`)
  if (!nameRegExp.test(name)) throw new UsageError(`plugin name '${name}' must match ${nameRegExp.source} (it names the plugin on the service)`)
  const dir = resolve(target ?? name)
  if (existsSync(dir) && (!statSync(dir).isDirectory() || readdirSync(dir).length > 0)) {
    throw new UsageError(`'${dir}' exists and is not an empty directory`)
  }
  const source = join(TEMPLATES_DIR, template)
  for (const file of files(source)) {
    const out = join(dir, relative(source, file))
    mkdirSync(resolve(out, '..'), { recursive: true })
    writeFileSync(out, readFileSync(file, 'utf8').replaceAll('{{name}}', name))
    if (file.endsWith('.sh')) chmodSync(out, 0o755)
  }
  const shown = relative(process.cwd(), dir) || '.'
  const next = [
    `created ${shown}/ (${template}: ${info.about})`,
    'next:',
    `  cd ${shown}`,
    '  ./build.sh',
    `  wasm-plugin-host run build/${name}.wasm --manifest manifest.json --input '${info.input}'${info.runFlags ?? ''}`
  ].join('\n')
  return { dir, next }
}
