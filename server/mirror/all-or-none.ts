// Concurrent work that stands or falls together: a mirrored tag's blob copies.

/**
 * Runs `run` for every item at once; the first failure stops the others (their signal aborts) and is
 * thrown once all have ended, so no copy goes on downloading after its tag failed or its job ended.
 */
export async function allOrNone<T>(items: T[], parent: AbortSignal, run: (item: T, signal: AbortSignal) => Promise<void>): Promise<void> {
  const controller = new AbortController();
  const stop = () => controller.abort(parent.reason);
  parent.addEventListener('abort', stop, { once: true });
  let failure: { error: unknown } | undefined;
  try {
    await Promise.all(
      items.map((item) =>
        run(item, controller.signal).catch((error: unknown) => {
          if (!failure) {
            failure = { error };
            controller.abort(error);
          }
        }),
      ),
    );
  } finally {
    parent.removeEventListener('abort', stop);
  }
  if (failure) throw failure.error;
}
