// Server-side resource accounting from /proc: CPU time and resident memory of a whole process tree
// (our cluster primary + workers + any helper children; Distribution's single Go process).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';

let clockTicks = 100;
try {
  clockTicks = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
} catch {
  /* Linux default */
}

function readText(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined; // the process (or thread) exited between listing and reading
  }
}

/** The pid and all its live descendants (children are recorded per thread in /proc/<pid>/task/<tid>/children). */
export function processTree(root: number): number[] {
  const out: number[] = [];
  const queue = [root];
  const seen = new Set<number>();
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // gone
    }
    out.push(pid);
    for (const tid of tasks) {
      const children = readText(`/proc/${pid}/task/${tid}/children`);
      if (!children) continue;
      for (const child of children.trim().split(/\s+/)) if (child) queue.push(Number(child));
    }
  }
  return out;
}

interface StatFields {
  utime: number;
  stime: number;
  cutime: number;
  cstime: number;
}

function readStat(pid: number): StatFields | undefined {
  const text = readText(`/proc/${pid}/stat`);
  if (!text) return undefined;
  // The command name is in parentheses and may hold spaces: fields are counted after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime is field 14 -> index 11.
  return { utime: Number(fields[11]), stime: Number(fields[12]), cutime: Number(fields[13]), cstime: Number(fields[14]) };
}

export interface CpuSnapshot {
  /** CPU seconds (user + system) of live processes in the tree, plus those of children they have reaped. */
  seconds: number;
  user: number;
  system: number;
  pids: number[];
}

/** utime+stime of every live process in the tree, plus cutime+cstime (exited children that were waited for). */
export function cpuOfTree(root: number): CpuSnapshot {
  const pids = processTree(root);
  let user = 0;
  let system = 0;
  for (const pid of pids) {
    const stat = readStat(pid);
    if (!stat) continue;
    user += stat.utime + stat.cutime;
    system += stat.stime + stat.cstime;
  }
  return { seconds: (user + system) / clockTicks, user: user / clockTicks, system: system / clockTicks, pids };
}

/** CPU seconds the whole machine spent busy (all CPUs, everything but idle and iowait), from /proc/stat. */
export function machineBusySeconds(): number {
  const line = readText('/proc/stat')?.split('\n', 1)[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal (guest time is already in user)
  const busy = values.slice(0, 8).reduce((sum, value, index) => (index === 3 || index === 4 ? sum : sum + value), 0);
  return busy / clockTicks;
}

function statusField(pid: number, field: string): number | undefined {
  const text = readText(`/proc/${pid}/status`);
  if (!text) return undefined;
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return match ? Number(match[1]) * 1024 : undefined;
}

/** Summed VmRSS of the tree in bytes. */
export function rssOfTree(root: number): { bytes: number; processes: number; perProcess: Record<number, number> } {
  let bytes = 0;
  const perProcess: Record<number, number> = {};
  const pids = processTree(root);
  for (const pid of pids) {
    const rss = statusField(pid, 'VmRSS');
    if (rss === undefined) continue;
    perProcess[pid] = rss;
    bytes += rss;
  }
  return { bytes, processes: pids.length, perProcess };
}

/** Resets each process's VmHWM (peak RSS) so that a later read gives the peak of one scenario. */
export function resetPeakRss(root: number): boolean {
  let ok = true;
  for (const pid of processTree(root)) {
    try {
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
    } catch {
      ok = false;
    }
  }
  return ok;
}

/** Sum of each live process's VmHWM: an upper bound of the true peak of the sum. */
export function summedPeakRss(root: number): number {
  let bytes = 0;
  for (const pid of processTree(root)) bytes += statusField(pid, 'VmHWM') ?? 0;
  return bytes;
}

export interface RssSample {
  /** Highest sampled sum of VmRSS over the tree. */
  peakBytes: number;
  /** Per-process RSS at the moment of that peak. */
  atPeak: Record<number, number>;
  samples: number;
  /** Longest gap between two samples. */
  maxGapMs: number;
  maxProcesses: number;
}

/** The sampling loop; runs in a worker thread so a busy benchmark client cannot delay it. */
export class RssPeakTracker {
  private peak = 0;
  private atPeak: Record<number, number> = {};
  private samples = 0;
  private maxGap = 0;
  private maxProcesses = 0;
  private last = 0;

  constructor(private readonly root: number) {}

  sample(): void {
    const now = performance.now();
    if (this.samples > 0) this.maxGap = Math.max(this.maxGap, now - this.last);
    this.last = now;
    const { bytes, processes, perProcess } = rssOfTree(this.root);
    this.samples++;
    this.maxProcesses = Math.max(this.maxProcesses, processes);
    if (bytes > this.peak) {
      this.peak = bytes;
      this.atPeak = perProcess;
    }
  }

  result(): RssSample {
    return { peakBytes: this.peak, atPeak: this.atPeak, samples: this.samples, maxGapMs: this.maxGap, maxProcesses: this.maxProcesses };
  }
}

/** Samples the tree's summed VmRSS every `intervalMs` in a worker thread until stopped. */
export class RssSampler {
  private worker: Worker | undefined;

  constructor(
    private readonly root: number,
    private readonly intervalMs = 50,
  ) {}

  async start(): Promise<this> {
    // Worker threads do not inherit the tsx loader: load the TypeScript module through tsx's API.
    const tsx = import.meta.resolve('tsx/esm/api');
    const module = new URL('./rss-sampler-worker.ts', import.meta.url).href;
    const code = `import(${JSON.stringify(tsx)}).then(({ tsImport }) => tsImport(${JSON.stringify(module)}, ${JSON.stringify(import.meta.url)}))`;
    const worker = new Worker(code, { eval: true, workerData: { root: this.root, intervalMs: this.intervalMs } });
    this.worker = worker;
    await new Promise<void>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('message', (message: unknown) => (message === 'started' ? resolve() : reject(new Error(`sampler: ${String(message)}`))));
    });
    return this;
  }

  async stop(): Promise<RssSample> {
    const worker = this.worker;
    if (!worker) throw new Error('sampler not started');
    const result = new Promise<RssSample>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('message', (message: RssSample) => resolve(message));
    });
    worker.postMessage('stop');
    const sample = await result;
    await worker.terminate();
    this.worker = undefined;
    return sample;
  }
}
