// `npm run test:hardware`: the end-to-end suite for a real Azure confidential VM (see test/hardware/).
export default {
  extensions: { ts: 'module' },
  nodeArguments: ['--import=tsx'],
  files: ['test/hardware/**/*.test.ts'],
  timeout: '300s',
  concurrency: 1,
  workerThreads: false,
};
