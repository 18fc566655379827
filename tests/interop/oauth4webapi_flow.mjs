// A third-party OAuth client nobody here wrote (oauth4webapi, npm), through
// every flow of keygate's authorization server, unmodified.
//
//     NODE_EXTRA_CA_CERTS=CA_FILE node oauth4webapi_flow.mjs BASE CLIENT_ID CLIENT_SECRET EMAIL PASSWORD
//
// BASE is keygate's public URL (the issuer), https: oauth4webapi refuses
// anything else, and nothing here allows it to. The certificate is trusted
// the way any Node program trusts one, through NODE_EXTRA_CA_CERTS; the
// library's own fetch is used as it is. The script plays the seller's browser
// with fetch (sign-in and consent, cookies kept by hand) and oauth4webapi
// plays the app: RFC 8414 discovery, PKCE S256 and state, the callback
// checked by validateAuthResponse (iss and state), the code exchange, an API
// call, a refresh, introspection, revocation, and a denied authorization
// surfaced as access_denied. Prints one JSON line per step; exits non-zero on
// the first failure.

import { readFileSync } from 'node:fs';
import * as oauth from 'oauth4webapi';

const [BASE, CLIENT_ID, CLIENT_SECRET, EMAIL, PASSWORD] = process.argv.slice(2);
const REDIRECT = 'https://erp.example/oauth/callback';

function step(name, facts = {}) {
  console.log(JSON.stringify({ step: name, ...facts }));
}

function fail(why) {
  console.log(JSON.stringify({ failed: why }));
  process.exit(1);
}

// Every entity an HTML escaper may write: the named five and any numeric
// reference, decimal or hex, in either case.
function unescape(s) {
  const named = { quot: '"', apos: "'", lt: '<', gt: '>', amp: '&' };
  return s.replace(/&(#[xX][0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (whole, entity) => {
    if (entity[0] !== '#') return named[entity] ?? whole;
    const hex = entity[1] === 'x' || entity[1] === 'X';
    return String.fromCodePoint(parseInt(entity.slice(hex ? 2 : 1), hex ? 16 : 10));
  });
}

function csrf(html) {
  const found = html.match(/name="csrf_token" value="([^"]+)"/);
  if (!found) fail('no CSRF field on the page');
  return unescape(found[1]);
}

// The seller's browser: fetch with a cookie jar kept by hand, no redirects followed.
const jar = new Map();
async function browse(url, init = {}) {
  const headers = new Headers(init.headers);
  if (jar.size) headers.set('cookie', [...jar].map(([k, v]) => `${k}=${v}`).join('; '));
  const response = await fetch(new URL(url, BASE), { ...init, headers, redirect: 'manual' });
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attributes] = line.split(';');
    const at = pair.indexOf('=');
    const [name, value] = [pair.slice(0, at).trim(), pair.slice(at + 1).trim()];
    if (!attributes.some((a) => a.trim().toLowerCase() === 'secure')) fail(`cookie ${name} is not Secure over TLS`);
    const expired = attributes.some((a) => /^\s*max-age\s*=\s*0\s*$/i.test(a));
    if (expired || value === '') jar.delete(name);
    else jar.set(name, value);
  }
  return response;
}

const post = (url, fields) => browse(url, { method: 'POST', body: new URLSearchParams(fields) });

// Sign in, open the authorization URL, answer the consent page; the callback URL.
async function authorize(url, decision) {
  const consent = await browse(url);
  if (consent.status !== 200) fail(`authorize answered ${consent.status}: ${consent.headers.get('location')}`);
  let form = await consent.text();
  form = form.slice(form.indexOf('action="/oauth/authorize"'));
  form = form.slice(0, form.indexOf('</form>'));
  const fields = new URLSearchParams();
  for (const [, name, value] of form.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)"/g)) {
    fields.append(unescape(name), unescape(value));
  }
  fields.set('decision', decision);
  const answered = await post('/oauth/authorize', fields);
  const callback = answered.headers.get('location') ?? '';
  if (answered.status !== 303 || !callback.startsWith(REDIRECT)) {
    fail(`consent (${decision}) answered ${answered.status} to ${callback}`);
  }
  return new URL(callback);
}

const installed = JSON.parse(readFileSync(new URL('./node_modules/oauth4webapi/package.json', import.meta.url)));
step('client', { oauth4webapi: installed.version, node: process.version });

try {
  // 1. Discovery (RFC 8414), checked by oauth4webapi: the issuer must be BASE.
  const issuer = new URL(BASE);
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oauth2' }),
  );
  if (as.issuer !== BASE) fail(`issuer ${as.issuer} is not ${BASE}`);
  if (!as.code_challenge_methods_supported?.includes('S256')) fail('S256 is not offered');
  step('metadata', { issuer: as.issuer, iss_parameter: as.authorization_response_iss_parameter_supported });

  const client = { client_id: CLIENT_ID };
  const basic = oauth.ClientSecretBasic(CLIENT_SECRET);
  const post_auth = oauth.ClientSecretPost(CLIENT_SECRET);

  // 2. The app's authorization URL, with PKCE and state.
  const verifier = oauth.generateRandomCodeVerifier();
  const challenge = await oauth.calculatePKCECodeChallenge(verifier);
  const state = oauth.generateRandomState();
  const url = new URL(as.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: REDIRECT,
    scope: 'orders:read products:read',
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  });
  step('authorization_url', { state });

  // 3. The seller's browser: sign in, then allow.
  const loginPage = await browse('/login');
  const signedIn = await post('/login', {
    csrf_token: csrf(await loginPage.text()),
    email: EMAIL,
    password: PASSWORD,
    next: '/settings/tokens',
  });
  if (signedIn.status !== 303) fail(`sign-in answered ${signedIn.status}`);
  const callback = await authorize(url, 'allow');
  // oauth4webapi checks iss (RFC 9207, required since the metadata says so) and state.
  const params = oauth.validateAuthResponse(as, client, callback, state);
  step('callback', { iss: callback.searchParams.get('iss'), validated: true });

  // 4. The code for tokens.
  const token = await oauth.processAuthorizationCodeResponse(
    as,
    client,
    await oauth.authorizationCodeGrantRequest(as, client, basic, params, REDIRECT, verifier),
  );
  if (token.token_type !== 'bearer' || !token.access_token.startsWith('kgo_') || !token.refresh_token) {
    fail(`unexpected token answer ${Object.keys(token).sort()}`);
  }
  step('code_exchange', { expires_in: token.expires_in, scope: token.scope });

  // 5. A protected resource with the access token.
  const me = await oauth.protectedResourceRequest(token.access_token, 'GET', new URL(`${BASE}/api/v1/token`));
  const meBody = await me.json();
  if (me.status !== 200 || meBody.kind !== 'oauth') fail(`/api/v1/token answered ${me.status}`);
  step('api_call', { kind: meBody.kind, client_id: meBody.client_id });

  // 6. Refresh: a new pair (client_secret_post, for once).
  const renewed = await oauth.processRefreshTokenResponse(
    as,
    client,
    await oauth.refreshTokenGrantRequest(as, client, post_auth, token.refresh_token),
  );
  if (renewed.refresh_token === token.refresh_token || renewed.access_token === token.access_token) {
    fail('the refresh did not rotate both tokens');
  }
  step('refresh', { rotated: true, auth: 'client_secret_post' });

  // 7. Introspection of the new access token, then revocation of the chain.
  const seen = await oauth.processIntrospectionResponse(
    as,
    client,
    await oauth.introspectionRequest(as, client, basic, renewed.access_token),
  );
  if (seen.active !== true || seen.client_id !== CLIENT_ID) fail(`introspection said ${JSON.stringify(seen)}`);
  step('introspection', { active: seen.active, token_type: seen.token_type });
  await oauth.processRevocationResponse(
    await oauth.revocationRequest(as, client, basic, renewed.refresh_token, {
      additionalParameters: { token_type_hint: 'refresh_token' },
    }),
  );
  // The API now answers 401 with a Bearer challenge, which oauth4webapi surfaces as an error.
  let after;
  try {
    after = (await oauth.protectedResourceRequest(renewed.access_token, 'GET', new URL(`${BASE}/api/v1/token`))).status;
  } catch (e) {
    if (!(e instanceof oauth.WWWAuthenticateChallengeError)) throw e;
    after = e.status;
    step('challenge', { scheme: e.cause[0]?.scheme, error: e.cause[0]?.parameters?.error });
  }
  if (after !== 401) fail(`after revocation the API answered ${after}`);
  step('revocation', { api_after: after });

  // 8. A second authorization, for a scope not granted yet, denied by the seller.
  const denyState = oauth.generateRandomState();
  const denyUrl = new URL(url);
  denyUrl.searchParams.set('scope', 'inventory:read');
  denyUrl.searchParams.set('state', denyState);
  const denied = await authorize(denyUrl, 'deny');
  try {
    oauth.validateAuthResponse(as, client, denied, denyState);
    fail('validateAuthResponse accepted a denied authorization');
  } catch (e) {
    if (!(e instanceof oauth.AuthorizationResponseError)) throw e;
    if (e.error !== 'access_denied') fail(`the error was ${e.error}, not access_denied`);
    step('access_denied', { error: e.error, error_description: e.error_description });
  }
  console.log(JSON.stringify({ passed: 'oauth4webapi' }));
} catch (e) {
  const cause = e.cause instanceof URLSearchParams ? e.cause.toString() : JSON.stringify(e.cause);
  fail(`${e.name}: ${e.message}${e.code ? ` (${e.code})` : ''}${cause ? ` ${cause}` : ''}`);
}
