/**
 * The emulator's Dropbox file system as a route module (docs/emulator.md): files/* routes over namespaces
 * that are created lazily per account, contents in memory or, with `dataDir`, on disk (content-addressed blobs,
 * streamed in and out) with metadata saved as JSON so state survives a restart.
 */
import type { EmulatorModule } from '../route-module.js';
import { DiskBlobStore, MemoryBlobStore, type BlobStore } from './blobs.js';
import { FileSystem } from './fs.js';
import { filesRoutes } from './routes.js';
import { UploadSessions } from './sessions.js';

export interface FilesModuleOptions {
  /** Keep contents and metadata here (created if missing). Without it everything lives in memory. */
  dataDir?: string;
  /** The emulator clock, epoch milliseconds. */
  now(): number;
}

export type FilesModule = EmulatorModule & {
  /** Bytes of current files in a namespace (users/get_space_usage). */
  usedBytes(namespaceId: string): number;
};

/** Creates the files module; with `dataDir` it loads the saved state first (synchronously, at startup). */
export function createFilesModule(options: FilesModuleOptions): FilesModule {
  let blobs: BlobStore;
  let fs: FileSystem;
  if (options.dataDir !== undefined) {
    const disk = DiskBlobStore.open(options.dataDir);
    blobs = disk;
    fs = new FileSystem(blobs, options.now, options.dataDir);
    fs.load();
    // Blobs no saved revision references (a crash between writing a blob and saving metadata) are removed.
    disk.sweep();
  } else {
    blobs = new MemoryBlobStore();
    fs = new FileSystem(blobs, options.now);
  }
  const sessions = new UploadSessions(blobs, options.now);
  return {
    routes: filesRoutes({ fs, blobs, sessions }),
    usedBytes: (namespaceId) => fs.usedBytes(namespaceId),
    async reset() {
      await sessions.clear();
      await fs.reset();
    },
    async close() {
      fs.wake(false);
      await sessions.clear();
    },
  };
}
