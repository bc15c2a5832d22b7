// Storage driver metrics as a decorator around any driver: latency of every operation and errors by
// operation. "Not found" is an answer, not an error (links and sessions are looked up that way).
import type { Readable, Writable } from 'node:stream';
import { isNotFound, type FileWriter, type StorageDriver, type WriterOptions } from '../../storage-drivers/driver.js';
import { FastCounter, FastHistogram, type CounterChild, type HistogramChild } from './fast-metrics.js';
import { metricsRegistry } from './registry.js';

const duration = new FastHistogram({
  name: 'registry_storage_operation_duration_seconds',
  help: 'Storage driver operations by driver and operation (reader and writer: until the stream is open).',
  labelNames: ['driver', 'operation'] as const,
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [metricsRegistry],
});

const errors = new FastCounter({
  name: 'registry_storage_operation_errors_total',
  help: 'Storage driver operations that failed (not counting "not found"), by driver and operation.',
  labelNames: ['driver', 'operation'] as const,
  registers: [metricsRegistry],
});

interface Operation {
  duration: HistogramChild;
  errors: CounterChild;
}

function operation(driver: string, name: string): Operation {
  return { duration: duration.child(driver, name), errors: errors.child(driver, name) };
}

/** Times `promise` into `op`; no async wrapper, so the common path adds two closures and a then. */
function timed<T>(op: Operation, promise: Promise<T>, started: number): Promise<T> {
  return promise.then(
    (value) => {
      op.duration.observe((performance.now() - started) / 1000);
      return value;
    },
    (error: unknown) => {
      op.duration.observe((performance.now() - started) / 1000);
      if (!isNotFound(error)) op.errors.value++;
      throw error;
    },
  );
}

/** Runs `run` (which may throw before returning a promise) timed into `op`. */
function measure<T>(op: Operation, run: () => Promise<T>): Promise<T> {
  const started = performance.now();
  let promise: Promise<T>;
  try {
    promise = run();
  } catch (error) {
    promise = Promise.reject(error);
  }
  return timed(op, promise, started);
}

/** The same driver, measured. */
export function instrumentDriver(inner: StorageDriver): StorageDriver {
  const name = inner.name;
  const ops = {
    getContent: operation(name, 'get_content'),
    putContent: operation(name, 'put_content'),
    putContentIfAbsent: operation(name, 'put_content_if_absent'),
    reader: operation(name, 'reader'),
    copyTo: operation(name, 'copy_to'),
    writer: operation(name, 'writer'),
    stat: operation(name, 'stat'),
    list: operation(name, 'list'),
    move: operation(name, 'move'),
    copy: operation(name, 'copy'),
    delete: operation(name, 'delete'),
    deleteFile: operation(name, 'delete_file'),
    deleteFiles: operation(name, 'delete_files'),
    redirectURL: operation(name, 'redirect_url'),
    healthCheck: operation(name, 'health_check'),
    checkpoint: operation(name, 'writer_checkpoint'),
    commit: operation(name, 'writer_commit'),
    cancel: operation(name, 'writer_cancel'),
    abortStaleWriters: operation(name, 'abort_stale_writers'),
  };
  const driver: StorageDriver = {
    name,
    directoriesArePrefixes: inner.directoriesArePrefixes,
    writersCommitAtomically: inner.writersCommitAtomically,
    getContent: (path) => measure(ops.getContent, () => inner.getContent(path)),
    putContent: (path, content) => measure(ops.putContent, () => inner.putContent(path, content)),
    putContentIfAbsent: (path, content, options) => measure(ops.putContentIfAbsent, () => inner.putContentIfAbsent(path, content, options)),
    reader: (path, offset, length): Promise<Readable> => measure(ops.reader, () => inner.reader(path, offset, length)),
    writer: (path, options?: WriterOptions) =>
      measure(ops.writer, () => inner.writer(path, options)).then((writer) => instrumentWriter(ops, writer)),
    stat: (path, options) => measure(ops.stat, () => inner.stat(path, options)),
    list: (path) => measure(ops.list, () => inner.list(path)),
    move: (source, destination) => measure(ops.move, () => inner.move(source, destination)),
    delete: (path, options) => measure(ops.delete, () => inner.delete(path, options)),
    deleteFile: (path) => measure(ops.deleteFile, () => inner.deleteFile(path)),
    redirectURL: (path, method) => measure(ops.redirectURL, () => inner.redirectURL(path, method)),
    healthCheck: () => measure(ops.healthCheck, () => inner.healthCheck()),
  };
  if (inner.copyTo) {
    const copyTo = inner.copyTo.bind(inner);
    driver.copyTo = (path: string, offset: number, length: number, out: Writable) => measure(ops.copyTo, () => copyTo(path, offset, length, out));
  }
  if (inner.copy) {
    const copy = inner.copy.bind(inner);
    driver.copy = (source: string, destination: string) => measure(ops.copy, () => copy(source, destination));
  }
  if (inner.deleteFiles) {
    const deleteFiles = inner.deleteFiles.bind(inner);
    driver.deleteFiles = (paths: string[]) => measure(ops.deleteFiles, () => deleteFiles(paths));
  }
  if (inner.abortStaleWriters) {
    const abortStaleWriters = inner.abortStaleWriters.bind(inner);
    driver.abortStaleWriters = (path: string, startedBefore: Date) => measure(ops.abortStaleWriters, () => abortStaleWriters(path, startedBefore));
  }
  return driver;
}

/** Commit, checkpoint and cancel are timed; single writes are too many and too small to be worth it. */
function instrumentWriter(ops: Record<'checkpoint' | 'commit' | 'cancel', Operation>, inner: FileWriter): FileWriter {
  return {
    get size() {
      return inner.size;
    },
    write: (chunk) => inner.write(chunk),
    checkpoint: () => measure(ops.checkpoint, () => inner.checkpoint()),
    commit: () => measure(ops.commit, () => inner.commit()),
    cancel: () => measure(ops.cancel, () => inner.cancel()),
  };
}
