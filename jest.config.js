'use strict'
// ts-jest transpiles only (tsconfig has isolatedModules): `npm run typecheck` is the type
// gate, and the worker threads load the compiled dist/ files, which `npm test` builds first.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: 'node',
  roots: ['<rootDir>/test'],
  testMatch: ['**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json' }],
    // light-my-request (fastify.inject) requires `cookie`, which is ESM-only since v2; Node
    // loads it natively, jest's module system needs it transpiled.
    '/node_modules/cookie/.+\\.js$': ['ts-jest', { tsconfig: { allowJs: true, module: 'commonjs', isolatedModules: true } }]
  },
  transformIgnorePatterns: ['/node_modules/(?!cookie/)'],
  testTimeout: 30000,
  maxWorkers: 2
}
