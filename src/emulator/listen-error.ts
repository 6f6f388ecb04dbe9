import { EmulatorError } from './errors.js';

/**
 * An emulated service that could not listen: names the address and port, and says so when the port is taken
 * (the one cause an operator meets in practice, with `--port`, `--attestation-port` or `--imds-port`).
 */
export function listenError(service: string, host: string, cause: unknown): EmulatorError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  const port = (cause as { port?: unknown } | undefined)?.port;
  const where = `${host}${typeof port === 'number' ? ` port ${port}` : ''}`;
  const why = code === 'EADDRINUSE' ? ': the port is in use' : code ? ` (${code})` : '';
  return new EmulatorError(`the ${service} emulator cannot listen on ${where}${why}`, { cause });
}
