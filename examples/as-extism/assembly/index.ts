// count-vowels as an Extism plugin in AssemblyScript, with the Extism PDK (@extism/as-pdk):
// the input is the text itself, the output {"vowels":N}. The config key "vowels" changes
// which characters count (default aeiouAEIOU); each call adds its count to the var "total"
// (kept by the host across calls) and logs both.
import { Config, Host, LogLevel, Var } from '@extism/as-pdk'

// AssemblyScript's abort goes here (build.sh: --use abort=assembly/index/myAbort): a trap.
export function myAbort (message: string | null, fileName: string | null, line: u32, column: u32): void {
  unreachable()
}

// The export name is the function's name in Extism (?function=count_vowels), as in the C example.
// eslint-disable-next-line camelcase
export function count_vowels (): i32 {
  const configured = Config.get('vowels')
  const vowels = configured == null ? 'aeiouAEIOU' : configured
  const text = Host.inputString()
  let count = 0
  for (let i = 0; i < text.length; i++) {
    if (vowels.includes(text.charAt(i))) count++
  }
  const previous = Var.getString('total')
  const total = (previous == null ? 0 : I64.parseInt(previous)) + count
  Var.set('total', Uint8Array.wrap(String.UTF8.encode(total.toString())))
  Host.log(LogLevel.Info, 'counted ' + count.toString() + ' vowels, ' + total.toString() + ' in all')
  Host.outputString('{"vowels":' + count.toString() + '}')
  return 0
}
