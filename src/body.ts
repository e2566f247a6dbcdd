/**
 * The one bounded body reader, shared by the server and the emulator. Request bodies (forms, JSON, proxied RPC
 * arguments, the emulator's RPC, OAuth and control bodies) are read from the stream and reading stops at the limit,
 * so a body without Content-Length (chunked) cannot make a route, even an unauthenticated one (sign-in, setup),
 * buffer without end.
 */

/** Reads a whole body if it has at most `limit` bytes; null (and the stream cancelled) when it is larger. */
export async function readBounded(stream: ReadableStream<Uint8Array>, limit: number): Promise<Buffer | null> {
  const reader = stream.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => undefined);
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks, size);
}
