// Structural limits every module is held to at upload, before anything is instantiated.
// They bound what compilation and instantiation can cost, independent of a plugin's own
// memory/table/time limits (which come from its manifest and the operator's config).
import type { ParseLimits } from './binary'

export const WASM_PAGE = 65536

/** Longest import or export name accepted, in UTF-8 bytes (C++ mangled names fit). */
export const MAX_NAME_BYTES = 1024

/** Counts above these are refused by the section parser with a message naming the count. */
export function parseLimitsFor (memoryBytes: number): ParseLimits {
  return {
    maxTypes: 10_000,
    maxFunctions: 100_000,
    maxImports: 1_000,
    maxExports: 10_000,
    maxGlobals: 10_000,
    maxDataSegments: 100_000,
    maxElementSegments: 100_000,
    // Data is copied into memory at instantiation; more than fits is a module that cannot run.
    maxDataBytes: memoryBytes,
    maxCustomSectionBytes: 16 * 1024 * 1024,
    // Every descriptor lists import and export names (exports twice when they are entries):
    // unbounded, 10,000 names of 4,900 characters made 98 MB descriptors (security issue 16).
    maxNameBytes: MAX_NAME_BYTES
  }
}

export function pagesOf (bytes: number): number {
  return Math.floor(bytes / WASM_PAGE)
}

/**
 * V8's process-wide backstops: no module can make V8 allocate a table or memory past these,
 * even if a check above them is wrong. `--no-liftoff` makes `Worker.terminate()` stop every
 * kind of guest loop within milliseconds: measured on Node 24.21, a loop of 16 MiB
 * `memory.fill` took 31 s to stop under the default tiering and 5-8 ms with `--no-liftoff`
 * (set at run time; `--liftoff-only` works only on the command line).
 */
export function v8SandboxFlags (maxMemoryBytes: number, maxTableElements: number): string[] {
  return [
    '--no-liftoff',
    `--wasm-max-table-size=${Math.max(1, maxTableElements)}`,
    `--wasm-max-mem-pages=${Math.max(1, pagesOf(maxMemoryBytes))}`
  ]
}
