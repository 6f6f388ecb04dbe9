/**
 * Start-up cost: `import('cvm-skr')` and `cvm-skr --help`, each in a fresh child process, side by side with a
 * bare `node` started the same way in the same run (alternating, so both see the same machine state). Wall time
 * is spawn to exit; memory is the child's RSS when it is done. Runs the compiled package (dist/), built first.
 */
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median } from './stats.js';

export interface StartupSample {
  wallMs: number;
  rssMb: number;
}

export interface StartupBench {
  trials: number;
  bare: StartupSample[];
  importPackage: StartupSample[];
  help: StartupSample[];
  /** Medians. */
  bareWallMs: number;
  bareRssMb: number;
  importWallMs: number;
  importRssMb: number;
  helpWallMs: number;
  helpRssMb: number;
  /** Median of the per-trial differences import - bare (each pair ran back to back). */
  importAboveBareMs: number;
  importAboveBareMb: number;
  helpAboveBareMs: number;
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));
// Each child prints its RSS last thing before exiting.
const RSS = 'process.stdout.write("\\nRSS " + process.memoryUsage().rss)';

function run(args: string[]): Promise<StartupSample> {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    const child = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.once('error', reject);
    child.once('close', (code) => {
      const wallMs = Number(process.hrtime.bigint() - start) / 1e6;
      const rss = /RSS (\d+)\s*$/.exec(out);
      if (code !== 0 || !rss) return reject(new Error(`${args.join(' ')} exited ${code}: ${out.slice(-300)}`));
      resolve({ wallMs, rssMb: Number(rss[1]) / 1e6 });
    });
  });
}

const bare = () => run(['--input-type=module', '-e', RSS]);
const importPackage = () => run(['--input-type=module', '-e', `await import('cvm-skr'); ${RSS}`]);
// --help prints and exits through commander; the RSS is printed from the exit hook.
const help = () =>
  run(['--import', `data:text/javascript,process.on('exit', () => { ${RSS} })`, 'dist/cli/main.js', '--help']);

export async function benchStartup(trials = 15): Promise<StartupBench> {
  const built = spawnSync(process.execPath, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json'], {
    cwd: ROOT,
    encoding: 'utf8',
  });
  if (built.status !== 0) throw new Error(`tsc -p tsconfig.build.json failed: ${built.stdout}${built.stderr}`);
  for (const warm of [bare, importPackage, help]) await warm(); // file system cache
  const out = { bare: [] as StartupSample[], importPackage: [] as StartupSample[], help: [] as StartupSample[] };
  for (let t = 0; t < trials; t++) {
    const order = t % 2 === 0 ? (['bare', 'importPackage', 'help'] as const) : (['help', 'importPackage', 'bare'] as const);
    for (const which of order) out[which].push(await { bare, importPackage, help }[which]());
  }
  const diff = (a: StartupSample[], key: keyof StartupSample) =>
    median(a.map((s, i) => s[key] - out.bare[i]![key]));
  return {
    trials,
    ...out,
    bareWallMs: median(out.bare.map((s) => s.wallMs)),
    bareRssMb: median(out.bare.map((s) => s.rssMb)),
    importWallMs: median(out.importPackage.map((s) => s.wallMs)),
    importRssMb: median(out.importPackage.map((s) => s.rssMb)),
    helpWallMs: median(out.help.map((s) => s.wallMs)),
    helpRssMb: median(out.help.map((s) => s.rssMb)),
    importAboveBareMs: diff(out.importPackage, 'wallMs'),
    importAboveBareMb: diff(out.importPackage, 'rssMb'),
    helpAboveBareMs: diff(out.help, 'wallMs'),
  };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchStartup(Number(process.env.TRIALS ?? 9));
  const { bare: _b, importPackage: _i, help: _h, ...summary } = r;
  console.log(summary);
}
