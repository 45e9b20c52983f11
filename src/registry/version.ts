// A plugin's version: the manifest's, else the module's `version` custom section, else 0.0.0.
// Every execute answer sends it as `x-plugin-version`, so it must be a valid header value:
// a section with CRLF or a control character made every call fail with node's ERR_INVALID_CHAR
// (security issue 16). A section is used only when it is what the manifest would accept;
// otherwise it is ignored, as one that is not UTF-8 or is over 64 bytes always was.
import { manifestSchema } from './manifest'

const VERSION = new RegExp(manifestSchema.properties.version.pattern)
const MAX_LENGTH = manifestSchema.properties.version.maxLength

export const DEFAULT_VERSION = '0.0.0'

/** True for a version the manifest schema accepts (and so a safe header value). */
export function isValidVersion (version: unknown): version is string {
  return typeof version === 'string' && version.length <= MAX_LENGTH && VERSION.test(version)
}

/**
 * The version a descriptor gets from a (validated) manifest version and the module's section
 * text; `fallback` when neither is there (0.0.0, or a kept manifest's version: see replace).
 */
export function pluginVersion (manifestVersion: string | undefined, section: string | undefined, fallback = DEFAULT_VERSION): string {
  if (isValidVersion(manifestVersion)) return manifestVersion
  return isValidVersion(section) ? section : fallback
}
