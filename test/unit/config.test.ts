import { ConfigError, loadConfig, redactUrl } from '../../src/config'

describe('loadConfig', () => {
  test('defaults match DESIGN.md and the result is frozen', () => {
    const c = loadConfig({})
    expect(c).toMatchObject({
      port: 8080,
      maxUploadBytes: 50 * 1024 * 1024,
      maxInputBytes: 10 * 1024 * 1024,
      defaultTimeoutMs: 5000,
      defaultMemoryBytes: 16 * 1024 * 1024,
      maxTableElements: 10000,
      authToken: undefined,
      executeTokens: [],
      metricsToken: undefined
    })
    expect(c.dataDir).toMatch(/\/data$/)
    expect(c.workers).toBeGreaterThanOrEqual(1)
    expect(Object.isFrozen(c)).toBe(true)
  })

  test('coerces numbers and parses VOLUMES and ALLOWED_ENV', () => {
    const c = loadConfig({ PORT: '9000', VOLUMES: 'fixtures=/srv/fixtures:ro, scratch=/tmp/scratch', ALLOWED_ENV: 'MODE, LANG' })
    expect(c.port).toBe(9000)
    expect(c.volumes.get('fixtures')).toEqual({ name: 'fixtures', hostPath: '/srv/fixtures', readOnly: true })
    expect(c.volumes.get('scratch')).toEqual({ name: 'scratch', hostPath: '/tmp/scratch', readOnly: false })
    expect([...c.allowedEnv]).toEqual(['MODE', 'LANG'])
  })

  test('IDLE_RELEASE_MS: 30 s by default, 0 (never) and a day accepted', () => {
    expect(loadConfig({}).idleReleaseMs).toBe(30_000)
    expect(loadConfig({ IDLE_RELEASE_MS: '0' }).idleReleaseMs).toBe(0)
    expect(loadConfig({ IDLE_RELEASE_MS: '86400000' }).idleReleaseMs).toBe(86_400_000)
  })

  test('ignores variables it does not know (nothing of the host leaks in)', () => {
    expect(loadConfig({ HOME: '/root', SECRET: 'x' })).not.toHaveProperty('SECRET')
  })

  test.each([
    [{ PORT: 'eighty' }, /PORT/],
    [{ PORT: '65536' }, /PORT/],
    [{ WORKERS: '0' }, /WORKERS/],
    [{ DEFAULT_MEMORY_BYTES: '100000' }, /DEFAULT_MEMORY_BYTES/],
    [{ DEFAULT_TIMEOUT_MS: '6000', MAX_TIMEOUT_MS: '5999' }, /DEFAULT_TIMEOUT_MS/],
    [{ VOLUMES: 'fixtures' }, /VOLUMES/],
    [{ VOLUMES: 'fixtures=relative' }, /absolute/],
    [{ VOLUMES: 'a=/x,a=/y' }, /twice/],
    [{ VOLUMES: 'Bad Name=/x' }, /VOLUMES/],
    [{ ALLOWED_ENV: 'NOT-A-NAME' }, /ALLOWED_ENV/],
    [{ AUTH_TOKEN: 'short' }, /AUTH_TOKEN/],
    [{ METRICS_TOKEN: 'short' }, /METRICS_TOKEN/],
    [{ EXECUTE_TOKENS: 'exec-token-0123456789' }, /needs AUTH_TOKEN/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL/],
    [{ IDLE_RELEASE_MS: '-1' }, /IDLE_RELEASE_MS/],
    [{ IDLE_RELEASE_MS: '86400001' }, /IDLE_RELEASE_MS/]
  ])('refuses %p', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError)
    expect(() => loadConfig(env)).toThrow(message)
  })
})

test('ALLOWED_HOSTS, HTTP_ALLOW_PRIVATE and PLUGIN_LOG_LEVEL: parsed, defaulted, refused when malformed', () => {
  const d = loadConfig({})
  expect(d.allowedHosts).toEqual([])
  expect(d.httpAllowPrivate).toBe(false)
  expect(d.pluginLogLevel).toBe('info')
  const c = loadConfig({ ALLOWED_HOSTS: 'API.example.com, *.example.org', HTTP_ALLOW_PRIVATE: 'true', PLUGIN_LOG_LEVEL: 'debug' })
  expect(c.allowedHosts).toEqual(['api.example.com', '*.example.org'])
  expect(c.httpAllowPrivate).toBe(true)
  expect(c.pluginLogLevel).toBe('debug')
  expect(() => loadConfig({ ALLOWED_HOSTS: 'http://x.com/' })).toThrow(/ALLOWED_HOSTS/)
  expect(() => loadConfig({ PLUGIN_LOG_LEVEL: 'loud' })).toThrow(/PLUGIN_LOG_LEVEL/)
  expect(() => loadConfig({ HTTP_ALLOW_PRIVATE: 'maybe' })).toThrow(/HTTP_ALLOW_PRIVATE/)
})

describe('REGISTRY_URL', () => {
  test('unset: the DATA_DIR registry', () => {
    expect(loadConfig({}).registryUrl).toBeUndefined()
  })
  test('postgres:// and postgresql:// are taken as they are', () => {
    expect(loadConfig({ REGISTRY_URL: 'postgres://u:p@db:5432/wph' }).registryUrl).toBe('postgres://u:p@db:5432/wph')
    expect(loadConfig({ REGISTRY_URL: 'postgresql://u@/wph?host=/run/postgresql' }).registryUrl).toBe('postgresql://u@/wph?host=/run/postgresql')
  })
  test('another scheme stops the start, and the message never shows the value (it may hold a password)', () => {
    expect(() => loadConfig({ REGISTRY_URL: 'mysql://u:hunter2@db/wph' })).toThrow(/REGISTRY_URL/)
    try { loadConfig({ REGISTRY_URL: 'mysql://u:hunter2@db/wph' }) } catch (err) { expect((err as Error).message).not.toMatch(/hunter2/) }
    expect(() => loadConfig({ REGISTRY_URL: 'postgres://u:hunter2@/wph' })).toThrow(/names no host/)
  })
  test('redactUrl hides the password', () => {
    expect(redactUrl('postgres://u:hunter2@db:5432/wph')).toBe('postgres://u:***@db:5432/wph')
  })
})
