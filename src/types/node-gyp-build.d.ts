declare module 'node-gyp-build' {
  interface NodeGypBuild {
    (dir: string): unknown;
    /** Path of the binary that `load(dir)` would pick; throws when there is none. */
    path(dir: string): string;
    resolve(dir: string): string;
  }
  const load: NodeGypBuild;
  export default load;
}
