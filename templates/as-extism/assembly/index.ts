// {{name}}: an Extism plugin in AssemblyScript, with @extism/as-pdk. It exports `greet`:
// the input (any bytes, as text) -> "<greeting>, <input>!", where the greeting comes from the
// manifest's config (`--config greeting=Hi` on the command line), "Hello" by default.
// Return 0 for success; anything else is PLUGIN_ERROR with the text given to Host.outputString
// or the error set.
import { Config, Host } from '@extism/as-pdk'

// Called by AssemblyScript on a failed assertion or an uncaught error (--use abort=...).
function myAbort (message: string | null, fileName: string | null, lineNumber: u32, columnNumber: u32): void {}

export function greet (): i32 {
  const name = Host.inputString()
  const greeting = Config.get('greeting')
  Host.outputString((greeting === null ? 'Hello' : greeting) + ', ' + name + '!')
  return 0
}
