// Worker thread: samples the summed VmRSS of a process tree every `intervalMs` until told to stop.
import { parentPort, workerData } from 'node:worker_threads';
import { RssPeakTracker } from './procfs.js';

const { root, intervalMs } = workerData as { root: number; intervalMs: number };
const tracker = new RssPeakTracker(root);
tracker.sample();
const timer = setInterval(() => tracker.sample(), intervalMs);
parentPort!.on('message', (message: unknown) => {
  if (message !== 'stop') return;
  clearInterval(timer);
  tracker.sample();
  parentPort!.postMessage(tracker.result());
});
parentPort!.postMessage('started');
