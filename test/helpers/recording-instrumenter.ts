/**
 * An `@azure/core-tracing` instrumenter that records spans in memory: what an OpenTelemetry exporter would
 * receive through @azure/opentelemetry-instrumentation-azure-sdk, without OpenTelemetry.
 */
import type { Instrumenter, TracingContext, TracingSpan } from '@azure/core-tracing';

export interface RecordedSpan {
  name: string;
  kind: string | undefined;
  attributes: Record<string, unknown>;
  parent: RecordedSpan | undefined;
  status: string | undefined;
  ended: boolean;
}

const SPAN = Symbol('recorded span');

export function recordingInstrumenter(): { instrumenter: Instrumenter; spans: RecordedSpan[] } {
  const spans: RecordedSpan[] = [];
  const context = (values: Map<symbol, unknown>): TracingContext => ({
    getValue: (key) => values.get(key as symbol),
    setValue: (key, value) => context(new Map(values).set(key as symbol, value)),
    deleteValue: (key) => {
      const next = new Map(values);
      next.delete(key as symbol);
      return context(next);
    },
  });
  const instrumenter: Instrumenter = {
    startSpan(name, options) {
      const recorded: RecordedSpan = {
        name,
        kind: options.spanKind,
        attributes: { ...options.spanAttributes },
        parent: options.tracingContext?.getValue(SPAN) as RecordedSpan | undefined,
        status: undefined,
        ended: false,
      };
      spans.push(recorded);
      const span: TracingSpan = {
        setStatus: (status) => {
          recorded.status = status.status;
        },
        setAttribute: (key, value) => {
          recorded.attributes[key] = value;
        },
        end: () => {
          recorded.ended = true;
        },
        recordException: () => {},
        isRecording: () => true,
      };
      const base = options.tracingContext ?? context(new Map());
      return { span, tracingContext: base.setValue(SPAN, recorded) };
    },
    withContext: (_context, callback, ...args) => callback(...args),
    parseTraceparentHeader: () => undefined,
    createRequestHeaders: () => ({}),
  };
  return { instrumenter, spans };
}
