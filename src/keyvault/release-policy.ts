/**
 * Key Vault secure key release policies: a strict parser of the policy JSON and an evaluator that explains
 * itself clause by clause. The vault emulator uses both to decide a release; clients use the evaluator to
 * debug a refused release locally against the claims of their own attestation token.
 *
 * Grammar (Key Vault "secure key release policy grammar"): a policy is `{version: "1.0.0", anyOf: [authority]}`
 * (a top-level `allOf` is accepted too); an authority is `{authority: url, anyOf|allOf: [condition]}`; a
 * condition is `{claim, <operator>: value}`, `{anyOf: [...]}` or `{allOf: [...]}`, nestable. Property names
 * match case-insensitively, as in Azure Policy from which the grammar is derived.
 * (https://learn.microsoft.com/azure/key-vault/keys/policy-grammar: the seven operators, nesting, "1.0.0".)
 *
 * Two older spellings the service still accepted in a real recording, and stored rewritten: `"version": "1.0"`
 * and a claim condition written `{claim, condition: "<operator>", value}`. A Managed HSM given
 * `{"anyOf":[{"anyOf":[{"claim":"sdk-test","condition":"equals","value":"true"}],"authority":...}],"version":"1.0"}`
 * answered with `{"anyOf":[{"anyOf":[{"claim":"sdk-test","equals":"true"}],"authority":...}],"version":"1.0.0"}`
 * (Azure/azure-sdk-for-js @3357deb7, sdk/keyvault/keyvault-keys/recordings/node/
 * keys_client__create_read_update_and_delete_operations_for_managed_hsm_releasekey/
 * recording_can_import_an_exportable_key_and_release_it.js). Both parse to the current form.
 */
import { ReleasePolicyParseError } from '../errors.js';

export const RELEASE_POLICY_VERSION = '1.0.0';
/** Versions the service accepts (the older "1.0" is stored as "1.0.0"; see above). */
const ACCEPTED_VERSIONS: readonly string[] = [RELEASE_POLICY_VERSION, '1.0'];
/** Content type Key Vault stores with a release policy. */
export const RELEASE_POLICY_CONTENT_TYPE = 'application/json; charset=utf-8';

/** Largest policy document accepted; far above any real policy, low enough to bound parse cost. */
export const MAX_RELEASE_POLICY_BYTES = 64 * 1024;
/** Deepest `anyOf`/`allOf` nesting accepted below an authority. */
export const MAX_RELEASE_POLICY_DEPTH = 32;

export const CLAIM_OPERATORS = [
  'equals',
  'notEquals',
  'less',
  'lessOrEquals',
  'greater',
  'greaterOrEquals',
  'exists',
] as const;
export type ClaimOperator = (typeof CLAIM_OPERATORS)[number];
export type ClaimValue = string | number | boolean;

export interface ClaimCondition {
  kind: 'claim';
  claim: string;
  operator: ClaimOperator;
  value: ClaimValue;
}

export interface GroupCondition {
  kind: 'anyOf' | 'allOf';
  conditions: Condition[];
}

export type Condition = ClaimCondition | GroupCondition;

export interface AuthorityClause {
  authority: string;
  kind: 'anyOf' | 'allOf';
  conditions: Condition[];
}

export interface ReleasePolicy {
  version: string;
  /** How the authorities combine; the documented grammar only has `anyOf`. */
  kind: 'anyOf' | 'allOf';
  authorities: AuthorityClause[];
}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Looks a property up case-insensitively; two spellings of one property are ambiguous and refused. */
function pick(obj: JsonObject, name: string, path: string): unknown {
  let found: unknown;
  let seen = false;
  for (const [k, v] of Object.entries(obj)) {
    if (k.toLowerCase() === name.toLowerCase()) {
      if (seen) throw new ReleasePolicyParseError(`property "${name}" appears twice`, path);
      seen = true;
      found = v;
    }
  }
  return found;
}

function checkKeys(obj: JsonObject, allowed: readonly string[], path: string): void {
  const lower = allowed.map((a) => a.toLowerCase());
  for (const k of Object.keys(obj)) {
    if (!lower.includes(k.toLowerCase())) {
      throw new ReleasePolicyParseError(
        `unknown property "${k}"; expected one of ${allowed.map((a) => `"${a}"`).join(', ')}`,
        path,
      );
    }
  }
}

function groupOf(obj: JsonObject, path: string): { kind: 'anyOf' | 'allOf'; items: unknown[] } | undefined {
  const any = pick(obj, 'anyOf', path);
  const all = pick(obj, 'allOf', path);
  if (any !== undefined && all !== undefined) {
    throw new ReleasePolicyParseError('a node has either "anyOf" or "allOf", not both', path);
  }
  if (any === undefined && all === undefined) return undefined;
  const kind = any !== undefined ? 'anyOf' : 'allOf';
  const items = any ?? all;
  if (!Array.isArray(items))
    throw new ReleasePolicyParseError(`"${kind}" must be an array`, `${path}.${kind}`);
  if (items.length === 0) {
    throw new ReleasePolicyParseError(`"${kind}" must list at least one entry`, `${path}.${kind}`);
  }
  return { kind, items };
}

function parseValue(v: unknown, operator: ClaimOperator, path: string): ClaimValue {
  if (operator === 'exists') {
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') return v === 'true';
    throw new ReleasePolicyParseError('"exists" takes true or false', path);
  }
  if (typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  throw new ReleasePolicyParseError(`"${operator}" takes a string, number or boolean`, path);
}

function parseCondition(node: unknown, path: string, depth: number): Condition {
  if (depth > MAX_RELEASE_POLICY_DEPTH) {
    throw new ReleasePolicyParseError(`conditions nest deeper than ${MAX_RELEASE_POLICY_DEPTH} levels`, path);
  }
  if (!isObject(node)) throw new ReleasePolicyParseError('a condition must be a JSON object', path);
  const group = groupOf(node, path);
  if (group) {
    checkKeys(node, [group.kind], path);
    return {
      kind: group.kind,
      conditions: group.items.map((c, i) => parseCondition(c, `${path}.${group.kind}[${i}]`, depth + 1)),
    };
  }
  const claim = pick(node, 'claim', path);
  if (claim === undefined) {
    throw new ReleasePolicyParseError('a condition needs "claim" with an operator, or "anyOf"/"allOf"', path);
  }
  if (typeof claim !== 'string' || claim.length === 0) {
    throw new ReleasePolicyParseError('"claim" must be a non-empty string', `${path}.claim`);
  }
  const named = pick(node, 'condition', path);
  if (named !== undefined) return parseNamedOperatorCondition(node, claim, named, path);
  checkKeys(node, ['claim', ...CLAIM_OPERATORS], path);
  const ops = CLAIM_OPERATORS.filter((op) => pick(node, op, path) !== undefined);
  if (ops.length !== 1) {
    throw new ReleasePolicyParseError(
      `a claim condition needs exactly one operator (${CLAIM_OPERATORS.join(', ')}), found ${ops.length}`,
      path,
    );
  }
  const operator = ops[0]!;
  return {
    kind: 'claim',
    claim,
    operator,
    value: parseValue(pick(node, operator, path), operator, `${path}.${operator}`),
  };
}

/** The older `{claim, condition: "<operator>", value}` spelling of a claim condition. */
function parseNamedOperatorCondition(node: JsonObject, claim: string, named: unknown, path: string): Condition {
  checkKeys(node, ['claim', 'condition', 'value'], path);
  const operator = CLAIM_OPERATORS.find((op) => typeof named === 'string' && op.toLowerCase() === named.toLowerCase());
  if (operator === undefined) {
    throw new ReleasePolicyParseError(
      `"condition" must name an operator (${CLAIM_OPERATORS.join(', ')})`,
      `${path}.condition`,
    );
  }
  const value = pick(node, 'value', path);
  if (value === undefined) throw new ReleasePolicyParseError('"condition" needs a "value"', path);
  return { kind: 'claim', claim, operator, value: parseValue(value, operator, `${path}.value`) };
}

function parseAuthority(node: unknown, path: string): AuthorityClause {
  if (!isObject(node)) throw new ReleasePolicyParseError('an authority entry must be a JSON object', path);
  const authority = pick(node, 'authority', path);
  if (typeof authority !== 'string' || authority.length === 0) {
    throw new ReleasePolicyParseError('"authority" must be the attestation service URL', `${path}.authority`);
  }
  let url: URL;
  try {
    url = new URL(authority);
  } catch (cause) {
    throw new ReleasePolicyParseError('"authority" is not a URL', `${path}.authority`, { cause });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ReleasePolicyParseError('"authority" must be an https URL', `${path}.authority`);
  }
  const group = groupOf(node, path);
  if (!group) throw new ReleasePolicyParseError('an authority needs "anyOf" or "allOf" conditions', path);
  checkKeys(node, ['authority', group.kind], path);
  return {
    authority,
    kind: group.kind,
    conditions: group.items.map((c, i) => parseCondition(c, `${path}.${group.kind}[${i}]`, 1)),
  };
}

/**
 * Parses a release policy from its JSON text, bytes, or an already parsed value. Throws
 * `ReleasePolicyParseError` (with the offending path) on anything outside the grammar.
 */
export function parseReleasePolicy(input: string | Uint8Array | unknown): ReleasePolicy {
  let doc: unknown = input;
  if (typeof input === 'string' || input instanceof Uint8Array) {
    const text = typeof input === 'string' ? input : Buffer.from(input).toString('utf8');
    if (Buffer.byteLength(text, 'utf8') > MAX_RELEASE_POLICY_BYTES) {
      throw new ReleasePolicyParseError(`policy is larger than ${MAX_RELEASE_POLICY_BYTES} bytes`, '$');
    }
    try {
      doc = JSON.parse(text);
    } catch (cause) {
      throw new ReleasePolicyParseError('policy is not valid JSON', '$', { cause });
    }
  }
  if (!isObject(doc)) throw new ReleasePolicyParseError('policy must be a JSON object', '$');
  const version = pick(doc, 'version', '$');
  if (typeof version !== 'string' || !ACCEPTED_VERSIONS.includes(version)) {
    throw new ReleasePolicyParseError(`"version" must be "${RELEASE_POLICY_VERSION}"`, '$.version');
  }
  const group = groupOf(doc, '$');
  if (!group) throw new ReleasePolicyParseError('policy needs "anyOf" with at least one authority', '$');
  checkKeys(doc, ['version', group.kind], '$');
  return {
    version: RELEASE_POLICY_VERSION,
    kind: group.kind,
    authorities: group.items.map((a, i) => parseAuthority(a, `$.${group.kind}[${i}]`)),
  };
}

/**
 * A parsed policy as the service writes it back: current spellings only, and the property order of the
 * service's answers. A regular vault writes `version` first, then each object's own name before its
 * conditions (`{"version":"1.0.0","anyOf":[{"authority":...,"allOf":[{"claim":...,"equals":...}]}]}` in
 * test/fixtures/real-release/kv2022-create-release.jws and kv-create-release.jws); a Managed HSM sorts the
 * properties (`{"anyOf":[{"allOf":[...],"authority":...}],"version":"1.0.0"}` in mhsm-create-release.jws and in
 * the answer quoted at the top of this module).
 */
export function releasePolicyJson(policy: ReleasePolicy, order: 'service' | 'sorted' = 'service'): string {
  const condition = (c: Condition): JsonObject =>
    c.kind === 'claim' ? { claim: c.claim, [c.operator]: c.value } : { [c.kind]: c.conditions.map(condition) };
  const doc: JsonObject = {
    version: policy.version,
    [policy.kind]: policy.authorities.map((a) => ({ authority: a.authority, [a.kind]: a.conditions.map(condition) })),
  };
  if (order === 'service') return JSON.stringify(doc);
  const sorted = (v: unknown): unknown =>
    Array.isArray(v)
      ? v.map(sorted)
      : isObject(v)
        ? Object.fromEntries(
            Object.keys(v)
              .sort()
              .map((k) => [k, sorted(v[k])]),
          )
        : v;
  return JSON.stringify(sorted(doc));
}

/** Decodes the `data` field of a key's `release_policy` (base64url of the JSON) and parses it. */
export function parseReleasePolicyData(data: string): ReleasePolicy {
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(data)) {
    throw new ReleasePolicyParseError('release policy data is not base64url', '$');
  }
  return parseReleasePolicy(Buffer.from(data, 'base64url'));
}

// ---------------------------------------------------------------------------------------------------------
// evaluation
// ---------------------------------------------------------------------------------------------------------

export interface ClauseResult {
  /** JSONPath-like location of the clause in the policy, e.g. `$.anyOf[0].allOf[1]`. */
  path: string;
  kind: 'authority' | 'anyOf' | 'allOf' | 'claim';
  passed: boolean;
  /** Why the clause passed or failed, in words. */
  reason: string;
  claim?: string;
  operator?: ClaimOperator;
  expected?: ClaimValue;
  /** The claim value as compared (stringified, truncated); absent when the claim is missing. */
  actual?: string;
}

export interface ReleasePolicyEvaluation {
  allowed: boolean;
  /** Every clause visited, outer before inner; clauses under a failed authority are still evaluated. */
  clauses: ClauseResult[];
}

/** Normalises an issuer/authority URL for comparison: scheme and host case-folded, trailing slashes ignored. */
export function normalizeAuthority(value: string): string {
  try {
    const url = new URL(value);
    const path = url.pathname.replace(/\/+$/, '');
    return `${url.protocol}//${url.host}${path}${url.search}`.toLowerCase();
  } catch {
    return value.replace(/\/+$/, '').toLowerCase();
  }
}

type Lookup = { found: true; value: unknown } | { found: false; why: string };

/** Walks a dotted claim path through nested objects; arrays are not addressable. */
export function lookupClaim(claims: Readonly<Record<string, unknown>>, claim: string): Lookup {
  if (Object.hasOwn(claims, claim)) return { found: true, value: claims[claim] };
  let current: unknown = claims;
  const parts = claim.split('.');
  for (const [i, part] of parts.entries()) {
    if (!isObject(current)) {
      const at = parts.slice(0, i).join('.');
      return { found: false, why: `"${at}" is ${Array.isArray(current) ? 'an array' : 'not an object'}` };
    }
    if (!Object.hasOwn(current, part)) return { found: false, why: 'claim is missing' };
    current = current[part];
  }
  return { found: true, value: current };
}

function asComparable(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  return undefined;
}

const NUMERIC = /^-?\d+(\.\d+)?$/;

/** What an ordering operator sees a value as: a number (JSON number or decimal string), other text, or neither. */
function orderType(v: unknown): 'number' | 'string' | 'boolean' {
  if (typeof v === 'number' || (typeof v === 'string' && NUMERIC.test(v))) return 'number';
  return typeof v === 'string' ? 'string' : 'boolean';
}

/** Orders two values of one order type: numerically for numbers, else by ordinal string order. */
function compare(a: string, b: string, type: 'number' | 'string'): number {
  if (type === 'number') return Number(a) - Number(b);
  return a < b ? -1 : a > b ? 1 : 0;
}

function truncate(s: string): string {
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

function evalClaim(
  c: ClaimCondition,
  claims: Readonly<Record<string, unknown>>,
  path: string,
  out: ClauseResult[],
) {
  const base = { path, kind: 'claim' as const, claim: c.claim, operator: c.operator, expected: c.value };
  const found = lookupClaim(claims, c.claim);
  if (c.operator === 'exists') {
    const passed = found.found === c.value;
    out.push({
      ...base,
      passed,
      reason: found.found ? 'claim is present' : found.why,
      ...(found.found ? { actual: truncate(asComparable(found.value) ?? JSON.stringify(found.value)) } : {}),
    });
    return passed;
  }
  if (!found.found) {
    out.push({ ...base, passed: false, reason: found.why });
    return false;
  }
  const actual = asComparable(found.value);
  if (actual === undefined) {
    out.push({ ...base, passed: false, reason: 'claim is an object, array or null and cannot be compared' });
    return false;
  }
  const expected = asComparable(c.value)!;
  let passed: boolean;
  if (c.operator === 'equals' || c.operator === 'notEquals') {
    passed = (actual === expected) === (c.operator === 'equals');
  } else {
    // Ordering needs two numbers or two texts; anything else (text against a number, a boolean) is denied
    // rather than ordered as strings, where "zzz" would be greater than 5.
    const left = orderType(found.value);
    const right = orderType(c.value);
    if (left !== right || left === 'boolean') {
      const reason =
        left === right
          ? `booleans have no order; ${c.operator} cannot hold`
          : `types differ: the claim is a ${left} and the policy value a ${right}; ${c.operator} needs two numbers or two texts`;
      out.push({ ...base, passed: false, actual: truncate(actual), reason });
      return false;
    }
    const order = compare(actual, expected, left);
    passed =
      c.operator === 'less'
        ? order < 0
        : c.operator === 'lessOrEquals'
          ? order <= 0
          : c.operator === 'greater'
            ? order > 0
            : order >= 0;
  }
  out.push({
    ...base,
    passed,
    actual: truncate(actual),
    reason: `"${truncate(actual)}" ${passed ? 'satisfies' : 'does not satisfy'} ${c.operator} "${truncate(expected)}"`,
  });
  return passed;
}

function evalCondition(
  c: Condition,
  claims: Readonly<Record<string, unknown>>,
  path: string,
  out: ClauseResult[],
): boolean {
  if (c.kind === 'claim') return evalClaim(c, claims, path, out);
  const slot = out.length;
  out.push({ path, kind: c.kind, passed: false, reason: '' });
  const results = c.conditions.map((sub, i) => evalCondition(sub, claims, `${path}.${c.kind}[${i}]`, out));
  const passed = c.kind === 'anyOf' ? results.some(Boolean) : results.every(Boolean);
  const failed = results.filter((r) => !r).length;
  out[slot] = {
    path,
    kind: c.kind,
    passed,
    reason: `${results.length - failed} of ${results.length} conditions passed (${c.kind} needs ${c.kind === 'anyOf' ? 'one' : 'all'})`,
  };
  return passed;
}

/**
 * Evaluates a parsed policy against the claims of a verified attestation token. An authority applies when
 * it equals the token's `iss` (ignoring a trailing slash); its conditions are evaluated either way, so the
 * result shows everything that would fail. `equals`/`notEquals` compare as strings (a boolean `true` claim
 * equals `"true"`), case-sensitively. Ordering operators compare two numbers (JSON numbers or decimal strings)
 * numerically and two texts in ordinal order; a number against text, or a boolean, fails with a reason
 * saying the types differ.
 */
export function evaluateReleasePolicy(
  policy: ReleasePolicy,
  claims: Readonly<Record<string, unknown>>,
): ReleasePolicyEvaluation {
  const clauses: ClauseResult[] = [];
  const iss = typeof claims.iss === 'string' ? claims.iss : undefined;
  const results = policy.authorities.map((a, i) => {
    const path = `$.${policy.kind}[${i}]`;
    const slot = clauses.length;
    clauses.push({ path, kind: 'authority', passed: false, reason: '' });
    const issuerMatches = iss !== undefined && normalizeAuthority(iss) === normalizeAuthority(a.authority);
    const subResults = a.conditions.map((sub, j) =>
      evalCondition(sub, claims, `${path}.${a.kind}[${j}]`, clauses),
    );
    const conditionsPass = a.kind === 'anyOf' ? subResults.some(Boolean) : subResults.every(Boolean);
    const passed = issuerMatches && conditionsPass;
    clauses[slot] = {
      path,
      kind: 'authority',
      passed,
      reason: issuerMatches
        ? conditionsPass
          ? `token issuer matches ${a.authority} and its conditions hold`
          : `token issuer matches ${a.authority} but its conditions fail`
        : `token issuer ${iss === undefined ? '(none)' : `"${truncate(iss)}"`} is not ${a.authority}`,
    };
    return passed;
  });
  const allowed = policy.kind === 'anyOf' ? results.some(Boolean) : results.every(Boolean);
  return { allowed, clauses };
}
