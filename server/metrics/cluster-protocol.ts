// The messages between cluster workers and the primary for one merged scrape (see primary.ts, scrape.ts).
import type { MetricObjectWithValues, MetricValue } from 'prom-client';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

/** Primary -> worker: send your metrics as JSON. */
export interface CollectRequest {
  type: 'dify-registry:metrics-collect';
  id: number;
}

/** Worker -> primary: the answer to a CollectRequest. */
export interface CollectResponse {
  type: 'dify-registry:metrics-collected';
  id: number;
  metrics?: MetricsJson;
  error?: string;
}

/** Worker -> primary: a client scraped me; send the merged text of every process. */
export interface ScrapeRequest {
  type: 'dify-registry:metrics-scrape';
  id: number;
}

/** Primary -> worker: the answer to a ScrapeRequest. */
export interface ScrapeResponse {
  type: 'dify-registry:metrics-scraped';
  id: number;
  text?: string;
  error?: string;
}

export const COLLECT = 'dify-registry:metrics-collect';
export const COLLECTED = 'dify-registry:metrics-collected';
export const SCRAPE = 'dify-registry:metrics-scrape';
export const SCRAPED = 'dify-registry:metrics-scraped';

export function isMessage<T extends { type: string }>(message: unknown, type: T['type']): message is T {
  return typeof message === 'object' && message !== null && (message as { type?: unknown }).type === type;
}
