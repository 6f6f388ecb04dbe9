/**
 * Who may have which key from the agent. A rules file (JSON) lists rules; a request is allowed when one rule
 * names the caller (its uid, or its primary gid, as the kernel reports them for the Unix socket through
 * SO_PEERCRED; or `"http": true` for a loopback HTTP request that carried the agent's token) and one of that
 * rule's `keys` patterns matches the key. Everything else is refused (default deny).
 *
 *   { "rules": [
 *       { "uid": 1001, "keys": ["https://myvault.vault.azure.net/keys/app-*"] },
 *       { "gid": 2000, "keys": ["https://myvault.vault.azure.net/keys/shared"] },
 *       { "http": true, "keys": ["*"] } ] }
 *
 * A pattern is a key id where `*` matches any run of characters (also `/`); it is compared with the key id
 * without its version and with it, case-insensitively (Key Vault names are), so `.../keys/app` allows every
 * version of `app`. `"*"` alone allows every key.
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError } from '../errors.js';
import { parseKeyRef } from '../keyvault/key-id.js';
import { whyUnreadable } from '../util/read-error.js';

export interface AgentRule {
  uid?: number;
  gid?: number;
  http?: true;
  keys: string[];
}

/** Who is asking: the Unix peer, or a request on the loopback HTTP port that carried the token. */
export type AgentCaller = { kind: 'unix'; pid: number; uid: number; gid: number } | { kind: 'http' };

export function describeCaller(caller: AgentCaller): string {
  return caller.kind === 'unix' ? `pid ${caller.pid} uid ${caller.uid} gid ${caller.gid}` : 'http token';
}

function patternRegex(pattern: string): RegExp {
  const escaped = pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*');
  return new RegExp(`^${escaped}$`, 'i');
}

export class AgentRules {
  readonly #rules: { rule: AgentRule; patterns: RegExp[] }[];

  constructor(rules: readonly AgentRule[]) {
    this.#rules = rules.map((rule) => ({ rule, patterns: rule.keys.map(patternRegex) }));
  }

  /** Parses a rules document; anything unexpected is an error, so a typo never widens access. */
  static parse(text: string, source = 'rules'): AgentRules {
    let doc: unknown;
    try {
      doc = JSON.parse(text);
    } catch (error) {
      throw new InvalidArgumentError(`${source} is not JSON`, { cause: error });
    }
    const list = (doc as { rules?: unknown } | null)?.rules;
    if (typeof doc !== 'object' || doc === null || !Array.isArray(list))
      throw new InvalidArgumentError(`${source} must be an object with a "rules" array`);
    const rules = list.map((raw: unknown, i): AgentRule => {
      const where = `${source}: rules[${i}]`;
      if (typeof raw !== 'object' || raw === null) throw new InvalidArgumentError(`${where} must be an object`);
      const r = raw as Record<string, unknown>;
      for (const field of Object.keys(r)) {
        if (!['uid', 'gid', 'http', 'keys', 'comment'].includes(field))
          throw new InvalidArgumentError(`${where} has an unknown field "${field}" (uid, gid, http, keys)`);
      }
      const id = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
      if (r.uid !== undefined && !id(r.uid)) throw new InvalidArgumentError(`${where}.uid must be a uid number`);
      if (r.gid !== undefined && !id(r.gid)) throw new InvalidArgumentError(`${where}.gid must be a gid number`);
      if (r.http !== undefined && r.http !== true) throw new InvalidArgumentError(`${where}.http must be true`);
      const who = [r.uid, r.gid, r.http].filter((v) => v !== undefined).length;
      if (who !== 1) throw new InvalidArgumentError(`${where} must name exactly one of uid, gid or http`);
      if (!Array.isArray(r.keys) || r.keys.some((k) => typeof k !== 'string' || k === ''))
        throw new InvalidArgumentError(`${where}.keys must be a list of key id patterns`);
      return {
        ...(r.uid !== undefined ? { uid: r.uid as number } : {}),
        ...(r.gid !== undefined ? { gid: r.gid as number } : {}),
        ...(r.http === true ? { http: true as const } : {}),
        keys: r.keys as string[],
      };
    });
    return new AgentRules(rules);
  }

  static async load(path: string): Promise<AgentRules> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (error) {
      const why = whyUnreadable(error);
      // A missing file is the usual first run: say where its format is described.
      const hint = why === 'no such file' ? ' (write one, see the README "Agent" section, or pass --rules)' : '';
      throw new InvalidArgumentError(`agent rules file ${path}: ${why}${hint}`, { cause: error });
    }
    return AgentRules.parse(text, path);
  }

  #rulesFor(caller: AgentCaller) {
    return this.#rules.filter(({ rule }) =>
      caller.kind === 'http'
        ? rule.http === true
        : rule.uid === caller.uid || (rule.gid !== undefined && rule.gid === caller.gid),
    );
  }

  /** Whether any rule names this caller (for calls that concern no single key: stats, prewarm). */
  knows(caller: AgentCaller): boolean {
    return this.#rulesFor(caller).length > 0;
  }

  /** Whether `caller` may have key `keyId` (with or without a version). */
  allows(caller: AgentCaller, keyId: string): boolean {
    let versionless: string;
    let versioned: string | undefined;
    try {
      const ref = parseKeyRef(keyId);
      versionless = `${ref.vaultUrl}/keys/${ref.name}`;
      if (ref.version) versioned = `${versionless}/${ref.version}`;
    } catch {
      return false;
    }
    return this.#rulesFor(caller).some(({ patterns }) =>
      patterns.some((p) => p.test(versionless) || (versioned !== undefined && p.test(versioned))),
    );
  }

  /** Whether `caller` may have every key (needed to drop the whole cache). */
  allowsAll(caller: AgentCaller): boolean {
    return this.#rulesFor(caller).some(({ rule }) => rule.keys.includes('*'));
  }
}
