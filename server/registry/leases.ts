// Leases: content a running job (mirror, build) has stored but not yet tagged. Garbage collection keeps
// every digest under an unexpired lease, however old the content is. A lease expires by itself, so a job
// that died does not pin its content for ever; running jobs renew theirs as they go.
import { isNotFound, type StorageDriver } from '../../storage-drivers/driver.js';

export interface Lease {
  owner: string;
  digests: string[];
  expiresAt: string;
}

const LEASES = '/_leases';
const DEFAULT_TTL_MS = 24 * 3_600_000;

export class LeaseStore {
  constructor(
    private readonly driver: StorageDriver,
    private readonly ttlMs = DEFAULT_TTL_MS,
  ) {}

  /** Adds digests to `owner`'s lease and extends it. */
  async hold(owner: string, digests: Iterable<string>): Promise<void> {
    const current = await this.get(owner);
    const all = new Set([...(current?.digests ?? []), ...digests]);
    const lease: Lease = { owner, digests: [...all].sort(), expiresAt: new Date(Date.now() + this.ttlMs).toISOString() };
    await this.driver.putContent(this.path(owner), JSON.stringify(lease));
  }

  async release(owner: string): Promise<void> {
    await this.driver.deleteFile(this.path(owner)).catch((error: unknown) => {
      if (!isNotFound(error)) throw error;
    });
  }

  /** Every digest under an unexpired lease (for garbage collection). */
  async leasedDigests(now = Date.now()): Promise<Set<string>> {
    const digests = new Set<string>();
    let entries: string[];
    try {
      entries = await this.driver.list(LEASES);
    } catch (error) {
      if (isNotFound(error)) return digests;
      throw error;
    }
    for (const entry of entries) {
      const lease = await this.read(entry);
      if (lease && Date.parse(lease.expiresAt) > now) for (const digest of lease.digests) digests.add(digest);
    }
    return digests;
  }

  private get(owner: string): Promise<Lease | undefined> {
    return this.read(this.path(owner));
  }

  private async read(path: string): Promise<Lease | undefined> {
    try {
      return JSON.parse((await this.driver.getContent(path)).toString()) as Lease;
    } catch (error) {
      if (isNotFound(error) || error instanceof SyntaxError) return undefined;
      throw error;
    }
  }

  private path(owner: string): string {
    if (!/^[A-Za-z0-9._-]+$/.test(owner)) throw new Error(`invalid lease owner ${owner}`);
    return `${LEASES}/${owner}.json`;
  }
}
