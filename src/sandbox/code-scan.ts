// What a module's code can do to its instance besides memory and globals: write a table, drop
// a data or element segment. Decides whether an instance reset must restore tables (a restore
// checks every slot: measured ~170 ns a slot, 0.5 ms for a 3,000-entry Rust dispatch table, so
// tables no instruction can write are left alone) and whether passive segments can be dropped.
// A linear decode of every function body: each opcode's immediates are skipped by their
// encoding. An opcode it does not know makes the answer "unknown", and the caller assumes the
// worst; so only the immediates of known opcodes must be right (V8 validated the code already).

export interface CodeFacts {
  /** table.set, table.grow, table.fill, table.copy or table.init occurs. */
  tableWrites: boolean
  /** data.drop occurs. */
  dataDrop: boolean
  /** elem.drop occurs. */
  elemDrop: boolean
  /**
   * The start function (when there is one) can call an imported function: directly, through
   * functions it calls, or through any indirect call on the way (assumed to reach anything).
   * False when it provably cannot: its effects are then a pure function of the module.
   */
  startCallsImports: boolean
}

export interface CodeScanContext {
  /** Imported functions: they take the first function indices. */
  importedFunctions: number
  startFunction?: number | undefined
}

class Unknown extends Error {}

/**
 * Scans the code section's payload `bytes[start, end)`. Returns undefined when it meets
 * something it cannot decode (an unknown opcode, a body that does not end where declared).
 */
export function scanCode (bytes: Uint8Array, start: number, end: number, context: CodeScanContext = { importedFunctions: 0 }): CodeFacts | undefined {
  const facts: CodeFacts = { tableWrites: false, dataDrop: false, elemDrop: false, startCallsImports: false }
  // The direct callees of each defined function, and whether it makes an indirect call; only
  // when there is a start function to follow.
  const follow = context.startFunction !== undefined
  const callees: number[][] = []
  const indirect: boolean[] = []
  let current: number[] = []
  let p = start
  const leb = (): number => {
    let result = 0
    let shift = 0
    for (;;) {
      if (p >= end) throw new Unknown()
      const b = bytes[p++] as number
      if (shift < 28) result |= (b & 0x7f) << shift
      if (b < 0x80) return result >>> 0
      shift += 7
      if (shift > 70) throw new Unknown()
    }
  }
  const skip = (n: number): void => {
    p += n
    if (p > end) throw new Unknown()
  }
  const memarg = (): void => {
    const align = leb()
    if ((align & 0x40) !== 0) leb() // multi-memory: a memory index follows
    leb() // offset
  }
  const blockType = (): void => {
    const b = bytes[p]
    // 0x40 (empty) or a one-byte value type; else a type index, a signed LEB (s33).
    if (b === 0x40 || (b !== undefined && b >= 0x6f && b <= 0x7f)) skip(1)
    else leb()
  }
  try {
    const functions = leb()
    for (let f = 0; f < functions; f++) {
      const size = leb()
      const bodyEnd = p + size
      if (bodyEnd > end) return undefined
      const groups = leb()
      for (let g = 0; g < groups; g++) { leb(); skip(1) }
      current = []
      callees.push(current)
      indirect.push(false)
      while (p < bodyEnd) instruction()
      if (p !== bodyEnd) return undefined
    }
    if (p !== end) return undefined
    if (follow) facts.startCallsImports = reachesImports(context.startFunction as number, context.importedFunctions, callees, indirect)
    return facts
  } catch (err) {
    if (err instanceof Unknown) return undefined
    throw err
  }

  function instruction (): void {
    const op = bytes[p++] as number
    if (op >= 0x45 && op <= 0xc4) return // numeric, no immediates
    if (op >= 0x28 && op <= 0x3e) return memarg() // loads and stores
    switch (op) {
      case 0x00: case 0x01: case 0x05: case 0x0b: case 0x0f: case 0x1a: case 0x1b: case 0x19: case 0x0a:
      case 0xd1: case 0xd3: case 0xd6:
        return
      case 0x02: case 0x03: case 0x04: case 0x06: return blockType()
      case 0x10: case 0x12: { const callee = leb(); if (follow) current.push(callee); return } // call, return_call
      case 0x14: case 0x15: if (follow) indirect[indirect.length - 1] = true; leb(); return // call_ref, return_call_ref
      case 0x07: case 0x08: case 0x09: case 0x18: case 0x0c: case 0x0d:
      case 0x20: case 0x21: case 0x22: case 0x23: case 0x24: case 0x25: case 0xd2: case 0xd4: case 0xd5:
        leb(); return
      case 0x26: facts.tableWrites = true; leb(); return // table.set
      case 0x0e: { const n = leb(); for (let i = 0; i <= n; i++) leb(); return } // br_table
      case 0x11: case 0x13: if (follow) indirect[indirect.length - 1] = true; leb(); leb(); return // call_indirect, return_call_indirect
      case 0x1c: { const n = leb(); skip(n); return } // select t*
      case 0x1f: { // try_table
        blockType()
        const n = leb()
        for (let i = 0; i < n; i++) {
          const kind = bytes[p++] as number
          if (kind <= 1) leb()
          else if (kind > 3) throw new Unknown()
          leb()
        }
        return
      }
      case 0x3f: case 0x40: leb(); return // memory.size, memory.grow
      case 0x41: case 0x42: leb(); return // i32.const, i64.const (skipped like unsigned)
      case 0x43: skip(4); return
      case 0x44: skip(8); return
      case 0xd0: blockType(); return // ref.null: a heap type, encoded like a block type
      case 0xfc: return prefixed(leb())
      case 0xfd: return simd(leb())
      case 0xfe: return atomic(leb())
    }
    throw new Unknown()
  }

  function prefixed (sub: number): void {
    if (sub <= 7) return // saturating truncations
    switch (sub) {
      case 8: leb(); leb(); return // memory.init
      case 9: facts.dataDrop = true; leb(); return
      case 10: leb(); leb(); return // memory.copy
      case 11: leb(); return // memory.fill
      case 12: facts.tableWrites = true; leb(); leb(); return // table.init
      case 13: facts.elemDrop = true; leb(); return
      case 14: facts.tableWrites = true; leb(); leb(); return // table.copy
      case 15: facts.tableWrites = true; leb(); return // table.grow
      case 16: leb(); return // table.size
      case 17: facts.tableWrites = true; leb(); return // table.fill
    }
    throw new Unknown()
  }

  function simd (sub: number): void {
    if (sub <= 11 || sub === 92 || sub === 93) return memarg() // loads, stores, load_zero
    if (sub === 12 || sub === 13) return skip(16) // v128.const, i8x16.shuffle
    if (sub >= 21 && sub <= 34) return skip(1) // extract/replace lane
    if (sub >= 84 && sub <= 91) { memarg(); skip(1); return } // load/store lane
    if (sub <= 0x113) return // everything else, relaxed SIMD included, has no immediates
    throw new Unknown()
  }

  function atomic (sub: number): void {
    if (sub === 0x03) return skip(1) // atomic.fence
    if (sub <= 0x02 || (sub >= 0x10 && sub <= 0x4e)) return memarg()
    throw new Unknown()
  }
}

/** Whether `from` reaches an imported function (index < imported) through calls. */
function reachesImports (from: number, imported: number, callees: number[][], indirect: boolean[]): boolean {
  const seen = new Set<number>()
  const stack = [from]
  while (stack.length > 0) {
    const f = stack.pop() as number
    if (f < imported) return true
    if (seen.has(f)) continue
    seen.add(f)
    const d = f - imported
    if (d >= callees.length || indirect[d] === true) return true
    for (const c of callees[d] as number[]) if (!seen.has(c)) stack.push(c)
  }
  return false
}
