export {
  type ImdsEmulator,
  type ImdsEmulatorCounters,
  type ImdsEmulatorOptions,
  startImdsEmulator,
} from './server.js';
