/**
 * Security headers on every response (docs/web-ui.md ("Security")). The CSP allows no inline script or style; form submissions
 * may go to our origin and to the Dropbox consent page (Chrome applies form-action to the redirect that follows
 * a form POST, and the connect-link form redirects to Dropbox). Referrer-Policy no-referrer keeps connect-link
 * tokens in our URLs from leaking to Dropbox through the Referer header.
 */
export function securityHeaders(options: { authorizeUrl: string; https: boolean }): [string, string][] {
  const dropboxOrigin = new URL(options.authorizeUrl).origin;
  const csp = [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    `form-action 'self' ${dropboxOrigin}`,
    "frame-ancestors 'none'",
  ].join('; ');
  const headers: [string, string][] = [
    ['Content-Security-Policy', csp],
    ['X-Content-Type-Options', 'nosniff'],
    ['X-Frame-Options', 'DENY'],
    ['Referrer-Policy', 'no-referrer'],
    ['Cross-Origin-Resource-Policy', 'same-origin'],
    ['Permissions-Policy', 'camera=(), microphone=(), geolocation=(), payment=()'],
  ];
  if (options.https) headers.push(['Strict-Transport-Security', 'max-age=31536000']);
  return headers;
}
