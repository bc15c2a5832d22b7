// What the builder asks of an image builder (buildah today, BuildKit's buildctl later): build one
// platform's image from a context and push it to a registry reference.
import type { JobProgress } from '../server/jobs/job.js';

export interface EngineBuild {
  /** `linux/arm64`. */
  platform: string;
  contextDir: string;
  /** Absolute path; may lie outside the context (a recipe's Dockerfile). */
  dockerfile: string;
  buildArgs: Record<string, string>;
  labels: Record<string, string>;
  /** Where the image goes: `host:port/name:tag` (buildah cannot push to a digest). */
  destination: string;
  /** A repository (`host:port/name`) for the layer cache shared through the registry. */
  cacheRepository?: string;
  /** Credentials for the registry (docker config.json format). */
  authFile?: string;
  /** `host:port` registries reached over plain HTTP. */
  insecureRegistries: string[];
  signal: AbortSignal;
  timeoutMs: number;
  log(line: string): void;
  progress(update: JobProgress): void;
}

export interface EngineResult {
  /** Digest of the pushed manifest. */
  digest: string;
  buildMs: number;
  pushMs: number;
}

export interface BuildEngine {
  readonly name: string;
  build(build: EngineBuild): Promise<EngineResult>;
}
