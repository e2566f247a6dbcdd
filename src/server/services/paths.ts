/**
 * URLs of the server's own pages, built from the public URL: where Dropbox sends logins back, connect links,
 * the reconnect page named in 409 answers, the first-run setup page.
 */
/** URLs of the server's own pages, built from the public URL. */
export class ServerPaths {
  static readonly OAUTH_CALLBACK = '/oauth/callback';
  constructor(readonly publicUrl: string) {}
  get redirectUri(): string {
    return `${this.publicUrl}${ServerPaths.OAUTH_CALLBACK}`;
  }
  connectLink(token: string): string {
    return `${this.publicUrl}/connect/${token}`;
  }
  /** The UI page where a signed-in admin reconnects a connection (served by the UI module). */
  reconnect(name: string): string {
    return `${this.publicUrl}/connections/${encodeURIComponent(name)}/reconnect`;
  }
  setup(token: string): string {
    return `${this.publicUrl}/setup?token=${token}`;
  }
}
