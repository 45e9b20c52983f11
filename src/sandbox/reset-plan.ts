// Whether a module's instance can be put back into the state it had right after instantiation
// (sandbox/instance-state.ts), decided at upload from the parsed module. Everything an instance
// holds (WebAssembly spec, "module instance") is either immutable after instantiation
// (functions, types, exports, tags) or one of: its memory, its mutable globals, its tables, and
// the dropped/not-dropped state of its data and element segments. Memory, globals and tables are
// snapshotted and restored; a segment drop cannot be undone from outside, and a few other
// things cannot be snapshotted from JavaScript: a module with any of them gets a new instance
// per call instead, and says why (descriptor `reset`, metric plugin_instance_fallbacks_total).
import type { ModuleInfo } from './binary'

/** Why a module cannot be reset in place; the values are label values of a metric. */
export type ResetFallback =
  | 'passive_data_segments'
  | 'passive_element_segments'
  | 'start_function_imports'
  | 'v128_global'
  | 'imported_global'
  | 'imported_table'
  | 'json_without_alloc'

/** How a call gets the state of a new instance. */
export type ResetPlan = { mode: 'reset' } | { mode: 'new-instance', reason: ResetFallback, detail: string }

const DETAIL: Record<ResetFallback, string> = {
  passive_data_segments: 'the module has passive data segments and data.drop, which changes the instance in a way that cannot be undone',
  passive_element_segments: 'the module has passive element segments and elem.drop, which changes the instance in a way that cannot be undone',
  start_function_imports: 'the module has a start function that can call an imported function: what the start function gets from the host is per call',
  v128_global: 'the module has a mutable v128 global, which JavaScript can neither read nor write',
  imported_global: 'the module imports a global, which the instance does not own',
  imported_table: 'the module imports a table, which the instance does not own',
  json_without_alloc: 'a json plugin without alloc: the host writes each input by growing memory, and a grown memory cannot be reset'
}

/** Decides how calls of this module get the state of a new instance (see the file comment). */
export function planReset (info: ModuleInfo, abi: string): ResetPlan {
  // An extism plugin's kernel lives on the host, a new one per call: a kept instance imports
  // forwarders to it (reset-instances.ts), so the kernel needs no reset of its own.
  const reason = fallbackOf(info) ??
    // abi-json.ts writes the input past the end of memory, growing it, when there is no alloc:
    // every call would leave an instance that cannot be reset, after paying for its snapshot.
    (abi === 'json' && !info.exports.some(e => e.kind === 'func' && e.name === 'alloc') ? 'json_without_alloc' : undefined)
  return reason === undefined ? { mode: 'reset' } : { mode: 'new-instance', reason, detail: DETAIL[reason] }
}

function fallbackOf (info: ModuleInfo): ResetFallback | undefined {
  // Refused at upload anyway (capabilities, rewriter); checked here so the plan never relies on it.
  if (info.imports.some(i => i.kind === 'global')) return 'imported_global'
  if (info.imports.some(i => i.kind === 'table')) return 'imported_table'
  // A passive segment changes only through data.drop/elem.drop; when the code scan could not
  // tell whether those occur, assume they do.
  if (info.passiveDataSegments > 0 && info.code?.dataDrop !== false) return 'passive_data_segments'
  if (info.passiveElementSegments > 0 && info.code?.elemDrop !== false) return 'passive_element_segments'
  // The start function runs once, at instantiation: its effects on memory, globals and tables
  // are in the snapshot, but anything it asked the host (clock, random, stdout) would be asked
  // once instead of once per call. When it cannot call an import (the code scan follows its
  // calls; an indirect call counts as reaching anything), it is a pure function of the module:
  // AssemblyScript's start function, which initialises its globals and heap, is one.
  if (info.startFunction !== undefined && info.imports.some(i => i.kind === 'func') && info.code?.startCallsImports !== false) return 'start_function_imports'
  if (info.globals.some(g => g.mutable && g.type === 'v128')) return 'v128_global'
  return undefined
}
