// A real OpenID Provider for keygate's sign-in tests (tests/api/oidc.rs):
// panva's oidc-provider, pinned in package.json, with its development
// interactions (any login, any password; then a Continue button for
// consent). Started by the test as a child process:
//
//   node oidc_provider.mjs   (env: OIDC_HOST, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI)
//
// It listens on OIDC_HOST, port chosen by the system, and prints one line,
// {"issuer": "http://HOST:PORT"}, once it is ready. The test drives it
// through /__test/... (never part of a real provider):
//   PUT  /__test/users/SUB   JSON claims: the account SUB signs in with
//   PUT  /__test/tamper      JSON {"mode": "none" | "wrong-aud" | "bad-signature" | "no-nonce"}:
//        how the next ID tokens from /token are altered (re-signed with the
//        provider's own key, or for bad-signature with another key of the same kid).
import http from 'node:http';
import * as jose from 'jose';
import Provider from 'oidc-provider';

const host = process.env.OIDC_HOST || '127.0.0.1';
const clientId = process.env.OIDC_CLIENT_ID || 'keygate';
const clientSecret = process.env.OIDC_CLIENT_SECRET || 'keygate-test-secret';
// A loopback redirect URI: as a native client's (RFC 8252 §7.3), any port
// matches, so each test's keygate (on a port of its own) is accepted.
const redirectUri = process.env.OIDC_REDIRECT_URI || 'http://127.0.0.1/login/oidc/callback';

const users = new Map();
let tamper = 'none';

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
const signingJwk = { ...(await jose.exportJWK(privateKey)), kid: 'test-key-1', alg: 'RS256', use: 'sig' };
const { privateKey: otherKey } = await jose.generateKeyPair('RS256', { extractable: true });

async function resign(idToken, change, key) {
  const payload = jose.decodeJwt(idToken);
  change(payload);
  return new jose.SignJWT(payload).setProtectedHeader({ alg: 'RS256', kid: signingJwk.kid }).sign(key);
}

const server = http.createServer();
await new Promise((resolve) => server.listen(0, host, resolve));
const issuer = `http://${host}:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    application_type: 'native',
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [redirectUri.replace('/login/oidc/callback', '/login')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signingJwk] },
  // The claims in the ID token itself, where keygate reads them.
  conformIdTokenClaims: false,
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'groups'],
  },
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, sub) {
    return {
      accountId: sub,
      async claims() {
        return { ...(users.get(sub) || {}), sub };
      },
    };
  },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || ctx.status !== 200 || !ctx.body || !ctx.body.id_token || tamper === 'none') return;
  const token = ctx.body.id_token;
  if (tamper === 'wrong-aud') {
    ctx.body.id_token = await resign(token, (p) => { p.aud = 'someone-else'; }, privateKey);
  } else if (tamper === 'no-nonce') {
    ctx.body.id_token = await resign(token, (p) => { delete p.nonce; }, privateKey);
  } else if (tamper === 'bad-signature') {
    ctx.body.id_token = await resign(token, () => {}, otherKey);
  }
});

const callback = provider.callback();
server.on('request', (req, res) => {
  if (!req.url.startsWith('/__test/')) return callback(req, res);
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    try {
      const parsed = body ? JSON.parse(body) : {};
      if (req.method === 'PUT' && req.url.startsWith('/__test/users/')) {
        users.set(decodeURIComponent(req.url.slice('/__test/users/'.length)), parsed);
      } else if (req.method === 'PUT' && req.url === '/__test/tamper') {
        tamper = parsed.mode;
      } else {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(204).end();
    } catch (e) {
      res.writeHead(400).end(String(e));
    }
  });
});

process.stdout.write(`${JSON.stringify({ issuer })}\n`);
