/**
 * A version as a string whose byte order is Semantic Versioning's precedence, so that SQL can
 * sort versions with an index ("1.9.0" before "1.10.0", "1.0.0-rc.2" before "1.0.0"). Versions
 * that are not semver sort before every semver one, by their bytes; build metadata is ignored,
 * as precedence ignores it. Compare keys bytewise (SQLite's BINARY, PostgreSQL's "C").
 */

const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$/;

// Marks below every identifier character ('-' is 0x2d): a shorter pre-release sorts first.
const PRERELEASE_END = '!';
const NUMERIC_IDENTIFIER = '#';
const ALPHANUMERIC_IDENTIFIER = '%';
// Above every pre-release mark: 1.0.0 after all of 1.0.0-*.
const RELEASE = '~';

/** A decimal number (no leading zeros) as its length, two digits, then its digits. */
function numberKey(digits: string): string {
  return `${String(digits.length).padStart(2, '0')}${digits}`;
}

export function versionSortKey(version: string): string {
  const match = SEMVER.exec(version);
  if (!match) return `0${version}`;
  const [, major = '', minor = '', patch = '', prerelease] = match;
  const release = `1${numberKey(major)}${numberKey(minor)}${numberKey(patch)}`;
  if (prerelease === undefined) return `${release}${RELEASE}`;
  const identifiers = prerelease
    .split('.')
    .map((identifier) =>
      /^\d+$/.test(identifier)
        ? `${NUMERIC_IDENTIFIER}${numberKey(identifier)}`
        : `${ALPHANUMERIC_IDENTIFIER}${identifier}`,
    );
  return `${release}${identifiers.join('')}${PRERELEASE_END}`;
}
