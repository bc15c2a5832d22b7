// The OCI error vocabulary: every failure a client can see is one of these, with its HTTP status.
export type OciErrorCode =
  | 'BLOB_UNKNOWN'
  | 'BLOB_UPLOAD_INVALID'
  | 'BLOB_UPLOAD_UNKNOWN'
  | 'DIGEST_INVALID'
  | 'MANIFEST_BLOB_UNKNOWN'
  | 'MANIFEST_INVALID'
  | 'MANIFEST_UNKNOWN'
  | 'NAME_INVALID'
  | 'NAME_UNKNOWN'
  | 'SIZE_INVALID'
  | 'TAG_INVALID'
  | 'UNAUTHORIZED'
  | 'DENIED'
  | 'UNSUPPORTED'
  | 'TOOMANYREQUESTS'
  | 'RANGE_INVALID'
  | 'UNAVAILABLE'
  | 'PAGINATION_NUMBER_INVALID'
  /** Ours, for the admin API: a request body that does not say what to do. */
  | 'INVALID_REQUEST'
  /** A server error, as Distribution names it (errcode.ErrorCodeUnknown). */
  | 'UNKNOWN';

export class OciError extends Error {
  constructor(
    readonly status: number,
    readonly code: OciErrorCode,
    message: string,
    readonly detail?: unknown,
    /** Extra response headers, e.g. `Range` on a 416 so the client can resume. */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }

  toBody(): { errors: Array<{ code: string; message: string; detail?: unknown }> } {
    const entry: { code: string; message: string; detail?: unknown } = { code: this.code, message: this.message };
    if (this.detail !== undefined) entry.detail = this.detail;
    return { errors: [entry] };
  }
}

export const blobUnknown = (digest: string) => new OciError(404, 'BLOB_UNKNOWN', 'blob unknown to registry', { digest });
export const manifestUnknown = (reference: string) =>
  new OciError(404, 'MANIFEST_UNKNOWN', 'manifest unknown', { reference });
export const nameUnknown = (name: string) => new OciError(404, 'NAME_UNKNOWN', 'repository name not known to registry', { name });
/** A path no route serves (the router's 404, and the guard's answer to a path it cannot read). */
export const noSuchEndpoint = (method: string, path: string) =>
  new OciError(404, 'NAME_UNKNOWN', 'no such endpoint', { method, path: path.slice(0, 300) });
export const uploadUnknown = (id: string) => new OciError(404, 'BLOB_UPLOAD_UNKNOWN', 'blob upload unknown to registry', { id });
/** The spec's `Range: 0-<last byte>` of an upload ("0-0" when empty, as Distribution answers). */
export function rangeHeader(upload: { offset: number }): Record<string, string> {
  return { Range: `0-${Math.max(0, upload.offset - 1)}` };
}
/** 416 with the upload's Range, so the client can resume once the other request is done. */
export const uploadBusy = (upload: { id: string; offset: number }) =>
  new OciError(416, 'BLOB_UPLOAD_INVALID', 'another request is writing to this upload', { id: upload.id }, rangeHeader(upload));
export const digestInvalid = (message: string, detail?: unknown) => new OciError(400, 'DIGEST_INVALID', message, detail);
export const manifestInvalid = (message: string, detail?: unknown) => new OciError(400, 'MANIFEST_INVALID', message, detail);
/** `allow`: the methods the path still has (a 405 names them). */
export const deleteDisabled = (allow: string) =>
  new OciError(405, 'UNSUPPORTED', 'deletes are disabled on this registry (storage.delete.enabled)', undefined, { Allow: allow });
