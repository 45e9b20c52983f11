// Which methods the service answers on a path, learned from the routes as they are registered,
// so a known path called with another method is 405 with `allow` (GET on an execute route says
// to POST) instead of a 404 that suggests the path is wrong.

/** Methods named in `allow`: HEAD (implied by GET) and OPTIONS are left out. */
const LISTED = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE']

interface RoutePattern { segments: string[], methods: Set<string> }

export class RouteMethods {
  readonly #routes = new Map<string, RoutePattern>()

  /** Records a route (`url` as registered: `/plugins/:name`). */
  add (url: string, method: string | string[]): void {
    let route = this.#routes.get(url)
    if (route === undefined) {
      route = { segments: url.split('/'), methods: new Set() }
      this.#routes.set(url, route)
    }
    for (const m of Array.isArray(method) ? method : [method]) route.methods.add(m.toUpperCase())
  }

  /** The methods some route answers on `path` (no query string), in a fixed order; [] for none. */
  allowed (path: string): string[] {
    const parts = path.split('/')
    const methods = new Set<string>()
    for (const route of this.#routes.values()) {
      if (matches(route.segments, parts)) for (const m of route.methods) methods.add(m)
    }
    return LISTED.filter(m => methods.has(m))
  }
}

function matches (pattern: readonly string[], parts: readonly string[]): boolean {
  if (pattern.length !== parts.length) return false
  return pattern.every((seg, i) => {
    const part = parts[i] as string
    return seg.startsWith(':') ? part !== '' : seg === part
  })
}
