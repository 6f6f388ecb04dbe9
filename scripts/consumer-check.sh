#!/usr/bin/env bash
# Tries the package as a new user would: packs it, installs the tarball into an empty ESM project with
# --install-strategy=nested (so every type the public .d.ts names must come from a declared dependency),
# compiles every README TypeScript example with tsc --strict and no skipLibCheck against @types/node 20 and
# the latest, and runs the emulator example and `cvm-skr --version` from the installed package. Needs the npm
# registry, so it is not part of `npm test`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
npm pack --silent --pack-destination "$dir" --prefix "$root" >/dev/null
cd "$dir"
npm init -y >/dev/null
npm pkg set type=module
npm install --silent --no-audit --no-fund --install-strategy=nested ./cvm-skr-*.tgz typescript@5.9.3
example() { awk -v h="$1" '$0 ~ h {f=1} f && /^```ts/ {c=1; next} f && c && /^```/ {exit} f && c' "$root/README.md"; }
# Every ```ts block of the README as its own module (test/readme.test.ts checks them against the sources;
# here they meet the published .d.ts files, skipLibCheck off).
awk '/^```ts/ {c=1; n++; f=sprintf("example-%02d.ts", n); next} c && /^```/ {c=0; print "export {};" > f; next} c {print > f}' "$root/README.md"
example '^### The whole emulator in code' > emulator.ts
cat > tsconfig.json <<'JSON'
{ "compilerOptions": { "strict": true, "module": "NodeNext", "moduleResolution": "NodeNext", "target": "ES2022",
  "outDir": "out", "types": ["node"], "skipLibCheck": false } }
JSON
# The oldest Node.js types the package supports (engines: node >= 20.19) and the newest.
for types in 20 latest; do
  npm install --silent --no-audit --no-fund --install-strategy=nested "@types/node@$types"
  echo "consumer check: README examples with @types/node $(node -p "require('./node_modules/@types/node/package.json').version")"
  npx tsc -p .
done
node out/emulator.js
npx cvm-skr --version
node -e "import('cvm-skr').then(() => { if (typeof Reflect.getMetadata !== 'undefined') process.exit(1) })"
echo "consumer check passed: the tarball installs nested, every README example compiles strictly with @types/node 20 and latest, the emulator example runs, import patches no global"
