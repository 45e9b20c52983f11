// Host functions for an instance that outlives a call. Imports are bound when an instance is
// created, but what they act on (an Extism call's kernel: its input, output, memory blocks and
// vars) is per call: a kept instance imports these forwarders instead, and each call points
// them at its own functions. Between calls nothing is bound, and a forwarder that is called
// then throws. (WASI has its own, which also checks the arguments: wasi/index.ts wasiForwarders.)

type HostFunction = (...args: unknown[]) => unknown

export class LateImports {
  /** The namespace to import: one forwarder per name. */
  readonly namespace: Readonly<Record<string, HostFunction>>
  #target: Readonly<Record<string, HostFunction>> | undefined

  constructor (names: Iterable<string>) {
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

  /** Points every forwarder at the function of the same name in `target`, for one call. */
  bind (target: Readonly<Record<string, HostFunction>>): void {
    this.#target = target
  }

  unbind (): void {
    this.#target = undefined
  }
}
