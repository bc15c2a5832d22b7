// Redis as a readiness check. Whether an unreachable Redis makes this replica unready is a choice
// (health.redis.readiness), because every replica shares one Redis:
// - partition (default): unready only when other replicas still reach Redis and this one cannot, so the
//   load balancer sends traffic to those. When no replica reaches it (Redis itself is down), every
//   replica stays ready: pulls work without Redis (the descriptor cache falls back to storage), and
//   taking every replica out of the Service would turn a degraded registry (pushes answer 503 until
//   Redis is back) into a complete outage. Replicas know about each other through heartbeats in
//   storage, the one thing they share besides Redis: each writes when its Redis check succeeds. Another
//   replica reaches Redis when its heartbeat moved twice since this one's failures began: a heartbeat's
//   age would also count the beats from just before a shared outage (and depend on every replica's
//   clock), and one move can be the late write of a ping that succeeded just before it.
// - always: unready whenever this replica cannot reach Redis (strict; a Redis outage takes every
//   replica out).
// - never: reported in /readyz only.
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';
import type { CheckReport, ReadinessCheck } from '../http/health.js';
import type { SharedState } from '../state/redis.js';

export type RedisReadiness = 'partition' | 'always' | 'never';

export interface RedisCheckOptions {
  intervalMs: number;
  /** Failed checks in a row before Redis counts as unreachable. */
  threshold: number;
  readiness: RedisReadiness;
}

export const HEARTBEAT_DIR = '/_health/redis';
/** Heartbeats of replicas gone for this long are deleted by whoever reads them. */
const STALE_MS = 3_600_000;
const MAX_HEARTBEATS = 200;

export class RedisCheck implements ReadinessCheck {
  readonly name = 'redis';
  /** This process among the replicas' heartbeats. */
  private readonly instance = `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
  private failures = 0;
  private lastError: string | undefined;
  private lastOkAt: string | undefined;
  /** While unreachable here: whether another replica reached Redis since (partition mode). */
  private othersReachIt: boolean | undefined;
  /** Since this replica's failures began: each other replica's last heartbeat seen and how often it moved. */
  private heartbeatsWhenFailing: Map<string, { at: number; moves: number }> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;

  constructor(
    private readonly shared: SharedState,
    private readonly driver: StorageDriver,
    private readonly options: RedisCheckOptions,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.tick();
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    if (this.options.readiness === 'partition') void this.driver.deleteFile(this.heartbeatPath()).catch(() => undefined);
  }

  /** One check at a time: a slow storage or Redis never piles checks up. */
  private tick(): void {
    this.running ??= this.check().finally(() => (this.running = undefined));
  }

  async check(): Promise<void> {
    try {
      await this.ping();
      if (this.failures >= this.options.threshold) this.logger.info('redis reachable again (readiness)');
      this.failures = 0;
      this.lastError = undefined;
      this.othersReachIt = undefined;
      this.heartbeatsWhenFailing = undefined;
      this.lastOkAt = new Date().toISOString();
      if (this.options.readiness === 'partition') await this.beat();
    } catch (error) {
      this.failures++;
      this.lastError = (error as Error).message;
      if (this.failures === this.options.threshold) this.logger.error({ err: this.lastError }, 'redis unreachable (readiness)');
      if (this.options.readiness === 'partition') {
        const reached = await this.othersBeatSinceFailing().catch(() => false);
        if (this.failures >= this.options.threshold) this.othersReachIt = reached;
      }
    }
  }

  report(): CheckReport {
    if (this.failures < this.options.threshold) return { ok: true, ...(this.lastOkAt ? { lastOkAt: this.lastOkAt } : {}) };
    const base = { ok: false, error: this.lastError, ...(this.lastOkAt ? { lastOkAt: this.lastOkAt } : {}) };
    switch (this.options.readiness) {
      case 'always':
        return { ...base, critical: true };
      case 'never':
        return { ...base, critical: false };
      case 'partition':
        return this.othersReachIt
          ? { ...base, critical: true, scope: 'this replica: others reach Redis' }
          : { ...base, critical: false, scope: 'every replica: pulls are served without Redis, pushes wait for it' };
    }
  }

  private async ping(): Promise<void> {
    if (!this.shared.isReady()) throw new Error('not connected');
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('PING timed out')), Math.max(1_000, this.options.intervalMs));
    });
    try {
      await Promise.race([this.shared.client.ping(), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private heartbeatPath(instance = this.instance): string {
    return `${HEARTBEAT_DIR}/${instance}`;
  }

  private async beat(): Promise<void> {
    await this.driver.putContent(this.heartbeatPath(), JSON.stringify({ at: Date.now() })).catch(() => undefined);
  }

  /**
   * Whether another replica kept writing heartbeats (reaching Redis) since this one's failures began: one
   * moved twice since the first read after the first failure (a heartbeat not there then counts as one move).
   */
  private async othersBeatSinceFailing(): Promise<boolean> {
    const now = await this.otherHeartbeats();
    if (!this.heartbeatsWhenFailing) {
      this.heartbeatsWhenFailing = new Map([...now].map(([instance, at]) => [instance, { at, moves: 0 }]));
      return false;
    }
    let reached = false;
    for (const [instance, at] of now) {
      const seen = this.heartbeatsWhenFailing.get(instance);
      if (!seen) this.heartbeatsWhenFailing.set(instance, { at, moves: 1 });
      else if (seen.at !== at) {
        seen.at = at;
        seen.moves++;
      }
      if ((this.heartbeatsWhenFailing.get(instance)?.moves ?? 0) >= 2) reached = true;
    }
    return reached;
  }

  /** Every other replica's last heartbeat (its `at`); heartbeats of replicas long gone are deleted. */
  private async otherHeartbeats(): Promise<Map<string, number>> {
    const beats = new Map<string, number>();
    let paths: string[];
    try {
      paths = await this.driver.list(HEARTBEAT_DIR);
    } catch (error) {
      if (isNotFound(error)) return beats;
      throw error;
    }
    const now = Date.now();
    for (const path of paths.slice(0, MAX_HEARTBEATS)) {
      if (path === this.heartbeatPath()) continue;
      const at = await this.driver
        .getContent(path)
        .then((content) => Number((JSON.parse(content.toString('utf8')) as { at?: unknown }).at))
        .catch(() => NaN);
      if (!Number.isFinite(at)) continue;
      if (now - at > STALE_MS) await this.driver.deleteFile(path).catch(() => undefined);
      else beats.set(path, at);
    }
    return beats;
  }
}
