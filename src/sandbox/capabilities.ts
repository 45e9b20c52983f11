// Capability check at upload: every import of a module must be satisfied by what the plugin
// was granted. Nothing else of the host is reachable, so this list is the whole attack surface.
import type { ImportEntry } from './binary'
import { matchesSignature, WASI_SIGNATURES } from './wasi/signatures'
import { EXTISM_MODULE, EXTISM_SIGNATURES, matchesExtismSignature } from './extism/types'

/** The functions of wasi_snapshot_preview1 (witx), all provided by sandbox/wasi. */
export const WASI_PREVIEW1_FUNCTIONS: ReadonlySet<string> = new Set(Object.keys(WASI_SIGNATURES))

export const WASI_MODULE = 'wasi_snapshot_preview1'

export interface Grant {
  /** WASI preview1 functions (stdio, clocks, random always; files only through preopens). */
  wasi: boolean
  /** The Extism kernel (extism:host/env): granted to every extism-ABI plugin. */
  extism?: boolean
}

export interface DeniedImport { module: string, name: string, kind: string, reason: string }

/**
 * Returns the imports the grant does not cover, each with the reason. The host memory import
 * (`host.memory`, produced by the rewriter) is always satisfied.
 */
export function deniedImports (imports: readonly ImportEntry[], grant: Grant): DeniedImport[] {
  const denied: DeniedImport[] = []
  for (const imp of imports) {
    if (imp.kind === 'memory') continue // turned into the host-provided memory by the rewriter
    if (imp.module === WASI_MODULE && imp.kind === 'func') {
      if (!WASI_PREVIEW1_FUNCTIONS.has(imp.name)) {
        denied.push({ ...pick(imp), reason: 'not a wasi_snapshot_preview1 function' })
      } else if (imp.type !== undefined && !matchesSignature(imp.name, imp.type.params, imp.type.results)) {
        // JS host functions accept any signature; the witx types are enforced here instead.
        denied.push({ ...pick(imp), reason: 'imported with a type other than the witx signature' })
      } else if (!grant.wasi) {
        denied.push({ ...pick(imp), reason: 'WASI is not granted (add "capabilities": {"wasi": {}} to the manifest)' })
      }
      continue
    }
    if (imp.module === EXTISM_MODULE && imp.kind === 'func') {
      if (!Object.hasOwn(EXTISM_SIGNATURES, imp.name)) {
        denied.push({ ...pick(imp), reason: 'not an Extism kernel function' })
      } else if (imp.type !== undefined && !matchesExtismSignature(imp.name, imp.type.params, imp.type.results)) {
        denied.push({ ...pick(imp), reason: 'imported with a type other than the kernel\'s' })
      } else if (grant.extism !== true) {
        denied.push({ ...pick(imp), reason: 'the Extism kernel is only for extism-ABI plugins' })
      }
      continue
    }
    denied.push({ ...pick(imp), reason: 'no such host capability' })
  }
  return denied
}

function pick (imp: ImportEntry): { module: string, name: string, kind: string } {
  return { module: imp.module, name: imp.name, kind: imp.kind }
}
