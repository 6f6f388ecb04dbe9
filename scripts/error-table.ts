/**
 * Prints the README's error tables, one per entry point: `cvm-skr` from src/errors.ts and `cvm-skr/emulator`
 * from src/emulator/errors.ts. A row per class (its static code) and per code of a `...FailureCodes` interface
 * (the codes one class carries, e.g. every rule an `EvidenceVerificationError` names), with the first sentence
 * of its doc comment.
 */
import { existsSync, readFileSync } from 'node:fs';

export interface ErrorRow {
  name: string;
  code: string;
  doc: string;
  section: string;
}

/** The class whose instances carry the codes of each `...FailureCodes` interface. */
const FAILURE_CODES_OF: Record<string, string> = {
  EvidenceFailureCodes: 'EvidenceVerificationError',
  AttestationTokenFailureCodes: 'AttestationTokenError',
  MalformedDataFailureCodes: 'MalformedDataError',
};

/** The first sentence of the doc comment that ends just above line `i`, or ''. */
function docAbove(lines: string[], i: number): string {
  for (let j = i - 1; j >= 0 && j >= i - 12; j--) {
    const l = lines[j]!.trim();
    if (l.startsWith('/**')) {
      return lines
        .slice(j, i)
        .map((x) => x.trim().replace(/^\/\*\*\s?|^\*\/|^\*\s?|\s?\*\/$/g, ''))
        .join(' ')
        .trim()
        .split(/(?<=\.)\s/)[0]!;
    }
    if (l === '' || l.startsWith('}') || (!l.startsWith('*') && l.endsWith(';'))) return '';
  }
  return '';
}

export function errorRows(source: string): ErrorRow[] {
  const rows: ErrorRow[] = [];
  let section = 'general';
  let failureClass: string | undefined;
  const lines = source.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    // A section is the comment line under a line of dashes: `// hal: native addon, devices, transports`.
    const sectionMatch = lines[i - 1]?.startsWith('// ---') ? /^\/\/ ([a-z][^:]*)/.exec(line) : null;
    if (sectionMatch) section = sectionMatch[1]!;
    const failureMatch = /^\s*(?:export )?interface (\w+FailureCodes) \{/.exec(line);
    if (failureMatch) {
      failureClass = FAILURE_CODES_OF[failureMatch[1]!];
      continue;
    }
    if (failureClass !== undefined) {
      if (/^\s*\}/.test(line)) failureClass = undefined;
      const member = /^\s*([A-Z][A-Z0-9_]+): true;/.exec(line);
      if (member) rows.push({ name: failureClass ?? '', code: member[1]!, doc: docAbove(lines, i), section });
      continue;
    }
    const classMatch = /^export class (\w+) extends \w+/.exec(line);
    if (!classMatch) continue;
    const code = /static override readonly code: CvmSkrErrorCode = '([A-Z0-9_]+)'/.exec(
      lines.slice(i, i + 4).join('\n'),
    )?.[1];
    if (!code) continue;
    rows.push({ name: classMatch[1]!, code, doc: docAbove(lines, i), section });
  }
  return rows.map((r) => ({ ...r, doc: r.doc.replace(/\|/g, '\\|') }));
}

/** The tables: one per entry point whose errors file exists. */
export function errorTables(root: URL = new URL('..', import.meta.url)): string {
  const entries: [string, string][] = [
    ['cvm-skr', 'src/errors.ts'],
    ['cvm-skr/emulator', 'src/emulator/errors.ts'],
  ];
  const out: string[] = [];
  for (const [entry, file] of entries) {
    const path = new URL(file, root);
    if (!existsSync(path)) continue;
    out.push(`### \`${entry}\``, '', '| code | class | when |', '| --- | --- | --- |');
    for (const r of errorRows(readFileSync(path, 'utf8'))) out.push(`| \`${r.code}\` | \`${r.name}\` | ${r.doc} |`);
    out.push('');
  }
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(errorTables());
