// Process entry: config -> app -> listen; graceful close on SIGTERM/SIGINT (stop accepting,
// let calls in flight finish, close the pool). A bad configuration stops here with a message.
import { buildApp } from './app'
import { ConfigError, loadConfig } from './config'
import type { Config } from './config'

export async function start (config: Config = loadConfig()): Promise<void> {
  const app = await buildApp(config)
  let closing = false
  const shutdown = (signal: string): void => {
    if (closing) return
    closing = true
    app.log.info({ signal }, 'shutting down')
    app.close().then(() => process.exit(0), (err: unknown) => {
      app.log.error({ err }, 'error while shutting down')
      process.exit(1)
    })
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
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
