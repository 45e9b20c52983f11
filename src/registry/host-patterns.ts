// Host patterns of ALLOWED_HOSTS and of a manifest's capabilities.http.allowedHosts, as Extism
// writes them: a host name, or a glob where `*` stands for any characters (`*.example.org`:
// every subdomain of example.org, not example.org itself; `*`: every host). Case-insensitive.

const cache = new Map<string, RegExp>()

function regexOf (pattern: string): RegExp {
  let re = cache.get(pattern)
  if (re === undefined) {
    const body = pattern.toLowerCase().split('*').map(part => part.replace(/[.+?^${}()|[\]\\-]/g, '\\$&')).join('.*')
    re = new RegExp(`^${body}$`)
    if (cache.size < 10_000) cache.set(pattern, re)
  }
  return re
}

/** Whether `host` (a URL's hostname) matches `pattern`. */
export function hostMatches (pattern: string, host: string): boolean {
  return regexOf(pattern).test(host.toLowerCase())
}

/**
 * Whether every host `inner` matches is also matched by `outer`: the operator's pattern must
 * cover the plugin's. Read with `inner`'s `*` as a literal character, which only a `*` of
 * `outer` can absorb, so whatever `inner`'s wildcards stand for, `outer`'s absorb it too.
 */
export function patternCovers (outer: string, inner: string): boolean {
  return regexOf(outer).test(inner.toLowerCase())
}
