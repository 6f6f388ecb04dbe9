#!/usr/bin/env bash
# Tries the package as a new user would: packs it, installs the tarball into an empty ESM project with
# --install-strategy=nested (so every type the public .d.ts names must come from a declared dependency),
# compiles the README's TypeScript examples with tsc --strict and no skipLibCheck, runs the emulator example
# and `cvm-skr --version` from the installed package. Needs the npm registry, so it is not part of `npm test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
npm pack --silent --pack-destination "$dir" --prefix "$root" >/dev/null
cd "$dir"
npm init -y >/dev/null
npm pkg set type=module
npm install --silent --no-audit --no-fund --install-strategy=nested ./cvm-skr-*.tgz typescript@5.9.3 @types/node@20
example() { awk -v h="$1" '$0 ~ h {f=1} f && /^```ts/ {c=1; next} f && c && /^```/ {exit} f && c' "$root/README.md"; }
{ example '^### Releasing a key'; echo 'export {};'; } > main-job.ts
example '^### The whole emulator in code' > emulator.ts
{ example '^#### Logging, tracing and counters'; echo 'export {};'; } > diagnostics.ts
cat > tsconfig.json <<'JSON'
{ "compilerOptions": { "strict": true, "module": "NodeNext", "moduleResolution": "NodeNext", "target": "ES2022",
  "outDir": "out", "types": ["node"], "skipLibCheck": false } }
JSON
npx tsc -p .
node out/emulator.js
npx cvm-skr --version
node -e "import('cvm-skr').then(() => { if (typeof Reflect.getMetadata !== 'undefined') process.exit(1) })"
echo "consumer check passed: the tarball installs nested, the README examples compile strictly and run, import patches no global"
