/** Prints the README's error table from src/errors.ts: every class with its code and the first line of its doc. */
import { readFileSync } from 'node:fs';

export function errorRows(source: string): { name: string; code: string; doc: string; section: string }[] {
  const rows: { name: string; code: string; doc: string; section: string }[] = [];
  let section = 'general';
  const lines = source.split('\n');
  for (let i = 0; i < lines.length; i++) {
    // A section is the comment line under a line of dashes: `// hal: native addon, devices, transports`.
    const sectionMatch = lines[i - 1]?.startsWith('// ---') ? /^\/\/ ([a-z][^:]*)/.exec(lines[i]!) : null;
    if (sectionMatch) section = sectionMatch[1]!;
    const classMatch = /^export class (\w+) extends \w+/.exec(lines[i]!);
    if (!classMatch) continue;
    const code = /static override readonly code: CvmSkrErrorCode = '([A-Z0-9_]+)'/.exec(lines.slice(i, i + 4).join('\n'))?.[1];
    if (!code) continue;
    let doc = '';
    for (let j = i - 1; j >= 0 && j >= i - 12; j--) {
      const l = lines[j]!.trim();
      if (l.startsWith('/**')) {
        doc = lines
          .slice(j, i)
          .map((x) => x.trim().replace(/^\/\*\*\s?|^\*\/|^\*\s?|\s?\*\/$/g, ''))
          .join(' ')
          .trim()
          .split(/(?<=\.)\s/)[0]!;
        break;
      }
      if (l === '' || l.startsWith('}')) break;
    }
    rows.push({ name: classMatch[1]!, code, doc: doc.replace(/\|/g, '\\|'), section });
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = errorRows(readFileSync(new URL('../src/errors.ts', import.meta.url), 'utf8'));
  console.log('| code | class | when |\n| --- | --- | --- |');
  for (const r of rows) console.log(`| \`${r.code}\` | \`${r.name}\` | ${r.doc} |`);
}
