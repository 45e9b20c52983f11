// Host functions for an instance that outlives a call. Imports are bound when an instance is
// created, but what they act on (an Extism call's kernel: its input, output, memory blocks and
// vars) is per call: a kept instance imports these forwarders instead, and each call points
// them at its own functions. Between calls nothing is bound, and a forwarder that is called
// then throws. (WASI has its own, which also checks the arguments: wasi/index.ts wasiForwarders.)

type HostFunction = (...args: unknown[]) => unknown

export class LateImports {
  /** The import module's name (e.g. `extism:host/env`). */
  readonly module: string
  /** The namespace to import: one forwarder per name. */
  readonly namespace: Readonly<Record<string, HostFunction>>
  #target: Readonly<Record<string, HostFunction>> | undefined

  /** Forwarders for the functions `module` imports from `name`; undefined when it imports none. */
  static of (module: WebAssembly.Module, name: string): LateImports | undefined {
    const names = WebAssembly.Module.imports(module).filter(i => i.module === name && i.kind === 'function').map(i => i.name)
    return names.length > 0 ? new LateImports(name, names) : undefined
  }

  constructor (module: string, names: Iterable<string>) {
    this.module = module
    const namespace: Record<string, HostFunction> = {}
    for (const name of names) {
      // A method of an object literal with a computed key gets its name (for stack traces).
      namespace[name] = {
        [name]: (...args: unknown[]): unknown => {
          const target = this.#target
          if (target === undefined) throw new Error(`host function ${name} called outside a call`)
          return (target[name] as HostFunction)(...args)
        }
      }[name] as HostFunction
    }
    this.namespace = Object.freeze(namespace)
  }

  /**
   * Points every forwarder at the function of the same name in the call's own imports of this
   * module (what runOn's `instantiate` is handed), for one call.
   */
  bindFrom (imports: WebAssembly.Imports | undefined): void {
    const target = imports?.[this.module]
    if (target !== undefined) this.#target = target as Readonly<Record<string, HostFunction>>
  }

  unbind (): void {
    this.#target = undefined
  }
}
