// Process entry: config -> app -> listen; graceful close on SIGTERM/SIGINT (stop accepting,
// let calls in flight finish, close the pool). A bad configuration stops here with a message.
import { buildApp } from './app'
import { ConfigError, loadConfig } from './config'
import type { Config } from './config'

export async function start (config: Config = loadConfig()): Promise<void> {
  // Handlers first: as PID 1 in a container, node ignores SIGTERM until one is installed,
  // and loading the registry can take a while.
  const state: { app?: Awaited<ReturnType<typeof buildApp>>, closing: boolean } = { closing: false }
  const shutdown = (signal: string): void => {
    if (state.closing) return
    state.closing = true
    const app = state.app
    if (app === undefined) process.exit(0) // nothing accepted yet, nothing to drain
    app.log.info({ signal }, 'shutting down')
    app.close().then(() => process.exit(0), (err: unknown) => {
      app.log.error({ err }, 'error while shutting down')
      process.exit(1)
    })
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
  // Node's default for a rejection nobody handles is to end the process: one forgotten promise
  // (an asynchronous schema validator did this) would then take every plugin down, again after
  // each restart. It is a bug of ours: logged at error level, never fatal.
  process.on('unhandledRejection', (reason: unknown) => {
    if (state.app !== undefined) state.app.log.error({ err: reason }, 'unhandled promise rejection')
    else process.stderr.write(`wasm-plugin-host: unhandled promise rejection: ${reason instanceof Error ? reason.stack ?? reason.message : String(reason)}\n`)
  })
  const app = await buildApp(config)
  state.app = app
  await app.listen({ host: config.host, port: config.port })
}

if (require.main === module) {
  let config: Config
  try {
    config = loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`wasm-plugin-host: ${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
  start(config).catch((err: unknown) => {
    process.stderr.write(`wasm-plugin-host: failed to start: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
    process.exit(1)
  })
}
