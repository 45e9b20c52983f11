// The SSRF rules' building blocks: host patterns and the private-address check.
import { hostMatches, patternCovers } from '../../src/registry/host-patterns'
import { isPrivateAddress } from '../../src/server/outbound-http'

test('host patterns: names, and globs where * is any characters; case-insensitive', () => {
  expect(hostMatches('api.example.com', 'API.example.com')).toBe(true)
  expect(hostMatches('api.example.com', 'api.example.com.evil.com')).toBe(false)
  expect(hostMatches('*.example.org', 'a.b.example.org')).toBe(true)
  expect(hostMatches('*.example.org', 'example.org')).toBe(false)
  expect(hostMatches('*.example.org', 'evilexample.org')).toBe(false)
  expect(hostMatches('*', 'anything')).toBe(true)
  expect(hostMatches('a.b', 'axb')).toBe(false) // dots are literal
})

test('an operator pattern covers a plugin pattern only if it matches every host the plugin\'s does', () => {
  expect(patternCovers('*', '*')).toBe(true)
  expect(patternCovers('*.example.org', 'a.example.org')).toBe(true)
  expect(patternCovers('*.example.org', '*.a.example.org')).toBe(true)
  expect(patternCovers('*.example.org', '*example.org')).toBe(false)
  expect(patternCovers('*.example.org', '*')).toBe(false)
  expect(patternCovers('api.example.com', '*.example.com')).toBe(false)
})

test('private, loopback, link-local, unspecified and mapped addresses are refused; public ones are not', () => {
  for (const a of ['127.0.0.1', '127.255.0.9', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '0.0.0.0', '100.64.0.1',
    '::1', '::', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::ffff:10.0.0.1', 'not an ip']) {
    expect({ a, private: isPrivateAddress(a) }).toEqual({ a, private: true })
  }
  for (const a of ['8.8.8.8', '172.32.0.1', '1.1.1.1', '2606:4700::1111', '::ffff:8.8.8.8']) {
    expect({ a, private: isPrivateAddress(a) }).toEqual({ a, private: false })
  }
})
