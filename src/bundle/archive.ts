// Bundle archives: gzipped tar, written so the same files give the same bytes (sorted names,
// mtime 0, uid/gid 0, mode 0644, gzip without a timestamp) and read with limits, since a bundle
// may come from a server: a gzip bomb, a huge entry or thousands of entries are refused.
import { gunzipSync, gzipSync } from 'node:zlib';
import { extract, pack } from 'tar-stream';

export interface BundleFile {
  /** Bundle-relative path without a leading slash, e.g. `policy.wasm`, `portcullis/authz.rego`. */
  name: string;
  data: Buffer;
}

export interface ArchiveLimits {
  /** Largest uncompressed archive. */
  maxBytes: number;
  maxFiles: number;
}

export const DEFAULT_ARCHIVE_LIMITS: ArchiveLimits = { maxBytes: 256 * 1024 * 1024, maxFiles: 10_000 };

export class ArchiveError extends Error {
  override name = 'ArchiveError';
}

/** The whole of a tar-stream stream (its typings are streamx's, not Node's). */
function collect(source: unknown): Promise<Buffer> {
  const stream = source as NodeJS.ReadableStream;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => resolve(Buffer.concat(chunks)));
    stream.on('error', reject);
  });
}

export async function writeArchive(files: BundleFile[]): Promise<Buffer> {
  const tar = pack();
  const done = collect(tar);
  const sorted = [...files].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const file of sorted) {
    await new Promise<void>((resolve, reject) =>
      tar.entry({ name: `/${file.name}`, size: file.data.length, mode: 0o644, mtime: new Date(0), uid: 0, gid: 0, type: 'file' }, file.data, (err) => (err ? reject(err) : resolve())),
    );
  }
  tar.finalize();
  return gzipSync(await done, { level: 9 });
}

/** A safe bundle-relative name: no `..`, no absolute escape, no empty segment. */
function bundlePath(raw: string): string {
  const name = raw.replace(/^\/+/, '').replace(/^\.\//, '');
  if (name === '' || name.split('/').some((s) => s === '' || s === '.' || s === '..')) throw new ArchiveError(`unsafe path in bundle: ${JSON.stringify(raw)}`);
  return name;
}

export async function readArchive(gz: Buffer, limits: ArchiveLimits = DEFAULT_ARCHIVE_LIMITS): Promise<BundleFile[]> {
  let tarBytes: Buffer;
  try {
    tarBytes = gunzipSync(gz, { maxOutputLength: limits.maxBytes });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') throw new ArchiveError(`bundle expands past ${limits.maxBytes} bytes (refused as a possible gzip bomb)`);
    throw new ArchiveError(`bundle is not gzip: ${(err as Error).message}`);
  }
  const files: BundleFile[] = [];
  const seen = new Set<string>();
  const reader = extract();
  const finished = new Promise<void>((resolve, reject) => {
    reader.on('entry', (header, stream, next) => {
      if (header.type === 'directory') {
        stream.resume();
        stream.on('end', next);
        return;
      }
      try {
        if (header.type !== 'file') throw new ArchiveError(`bundle entry ${header.name} is a ${header.type ?? 'special file'}, not a file`);
        if (files.length >= limits.maxFiles) throw new ArchiveError(`bundle has more than ${limits.maxFiles} files`);
        const name = bundlePath(header.name);
        if (seen.has(name)) throw new ArchiveError(`bundle holds ${name} twice`);
        seen.add(name);
        void collect(stream).then((data) => {
          files.push({ name, data });
          next();
        }, reject);
      } catch (err) {
        reject(err);
        reader.destroy();
      }
    });
    reader.on('finish', resolve);
    reader.on('error', (err) => reject(err instanceof ArchiveError ? err : new ArchiveError(`bundle is not a valid tar: ${err.message}`)));
  });
  reader.end(tarBytes);
  await finished;
  return files;
}
