// The storage layout, CNCF Distribution's (so a Distribution data directory can be served as it is):
//   /docker/registry/v2/blobs/<alg>/<2 hex>/<hex>/data
//   /docker/registry/v2/repositories/<name>/_layers/<alg>/<hex>/link
//   /docker/registry/v2/repositories/<name>/_manifests/revisions/<alg>/<hex>/link
//   /docker/registry/v2/repositories/<name>/_manifests/tags/<tag>/current/link
//   /docker/registry/v2/repositories/<name>/_uploads/<id>/{data,state.json,state-<n>.json,claim-<n>}
// plus ours, for the referrers API:
//   /docker/registry/v2/repositories/<name>/_referrers/<alg>/<subject hex>/<alg>-<referrer hex>.json
//   /docker/registry/v2/repositories/<name>/_manifests/tags.version
import type { ParsedDigest } from './digest.js';

export const ROOT = '/docker/registry/v2';
export const REPOSITORIES = `${ROOT}/repositories`;
export const BLOBS = `${ROOT}/blobs`;

export const paths = {
  blobData: (d: ParsedDigest) => `${BLOBS}/${d.algorithm}/${d.hex.slice(0, 2)}/${d.hex}/data`,
  repository: (name: string) => `${REPOSITORIES}/${name}`,
  layer: (name: string, d: ParsedDigest) => `${REPOSITORIES}/${name}/_layers/${d.algorithm}/${d.hex}`,
  layerLink: (name: string, d: ParsedDigest) => `${paths.layer(name, d)}/link`,
  revision: (name: string, d: ParsedDigest) => `${REPOSITORIES}/${name}/_manifests/revisions/${d.algorithm}/${d.hex}`,
  revisionLink: (name: string, d: ParsedDigest) => `${paths.revision(name, d)}/link`,
  tags: (name: string) => `${REPOSITORIES}/${name}/_manifests/tags`,
  tag: (name: string, tag: string) => `${REPOSITORIES}/${name}/_manifests/tags/${tag}`,
  /** Ours: rewritten on every tag change, so listings can be cached and validated with one read. */
  tagsVersion: (name: string) => `${REPOSITORIES}/${name}/_manifests/tags.version`,
  tagLink: (name: string, tag: string) => `${REPOSITORIES}/${name}/_manifests/tags/${tag}/current/link`,
  upload: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}`,
  uploadData: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}/data`,
  /** The session's first state (its start time: what upload purging reads). */
  uploadState: (name: string, id: string) => `${REPOSITORIES}/${name}/_uploads/${id}/state.json`,
  /** The state after the session's n-th chunk (n >= 1; step 0 is uploadState). */
  uploadStep: (name: string, id: string, step: number) =>
    step === 0 ? paths.uploadState(name, id) : `${REPOSITORIES}/${name}/_uploads/${id}/state-${step}.json`,
  /** Taken, create-only, by the one request that writes the chunk after step n. */
  uploadClaim: (name: string, id: string, step: number) => `${REPOSITORIES}/${name}/_uploads/${id}/claim-${step}`,
  referrers: (name: string, subject: ParsedDigest) => `${REPOSITORIES}/${name}/_referrers/${subject.algorithm}/${subject.hex}`,
  referrer: (name: string, subject: ParsedDigest, referrer: ParsedDigest) =>
    `${REPOSITORIES}/${name}/_referrers/${subject.algorithm}/${subject.hex}/${referrer.algorithm}-${referrer.hex}.json`,
};
