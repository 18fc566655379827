// A third-party OAuth client nobody here wrote (oauth4webapi, npm), through
// keygate's device authorization grant (RFC 8628), unmodified.
//
//     NODE_EXTRA_CA_CERTS=CA_FILE node oauth4webapi_device.mjs BASE CLIENT_ID CLIENT_SECRET
//
// BASE is keygate's public URL (the issuer), https. oauth4webapi plays the
// app on a host without a browser: RFC 8414 discovery (the metadata must
// name the device authorization endpoint), deviceAuthorizationRequest and
// its processing, then deviceCodeGrantRequest in a loop that waits the
// server's interval and 5 s more after each slow_down (RFC 8628 §3.5). It
// polls twice at once first, as a careless client would, and must hear
// authorization_pending and then slow_down. It prints the user code as a
// step line; the test (tests/api/interop.rs) plays the seller and types it
// on /device. Then an API call with the access token and a refresh. Prints
// one JSON line per step; exits non-zero on the first failure.

import { readFileSync } from 'node:fs';
import * as oauth from 'oauth4webapi';

const [BASE, CLIENT_ID, CLIENT_SECRET] = process.argv.slice(2);

function step(name, facts = {}) {
  console.log(JSON.stringify({ step: name, ...facts }));
}

function fail(why) {
  console.log(JSON.stringify({ failed: why }));
  process.exit(1);
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));

const installed = JSON.parse(readFileSync(new URL('./node_modules/oauth4webapi/package.json', import.meta.url)));
step('client', { oauth4webapi: installed.version, node: process.version });

try {
  const issuer = new URL(BASE);
  const as = await oauth.processDiscoveryResponse(
    issuer,
    await oauth.discoveryRequest(issuer, { algorithm: 'oauth2' }),
  );
  if (!as.device_authorization_endpoint) fail('the metadata names no device_authorization_endpoint');
  step('metadata', { device_authorization_endpoint: as.device_authorization_endpoint });

  const client = { client_id: CLIENT_ID };
  const basic = oauth.ClientSecretBasic(CLIENT_SECRET);

  const device = await oauth.processDeviceAuthorizationResponse(
    as,
    client,
    await oauth.deviceAuthorizationRequest(as, client, basic, { scope: 'orders:read' }),
  );
  if (!/^[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}$/.test(device.user_code)) {
    fail(`user_code ${device.user_code} is not XXXX-XXXX`);
  }
  let interval = device.interval ?? 5;

  // One poll of the device code; the OAuth error's code, or the tokens.
  async function poll() {
    try {
      return await oauth.processDeviceCodeResponse(
        as,
        client,
        await oauth.deviceCodeGrantRequest(as, client, basic, device.device_code),
      );
    } catch (e) {
      if (e instanceof oauth.ResponseBodyError) return e.error;
      throw e;
    }
  }

  // Twice at once, before anyone could have answered.
  const first = await poll();
  if (first !== 'authorization_pending') fail(`the first poll answered ${JSON.stringify(first)}`);
  const second = await poll();
  if (second !== 'slow_down') fail(`polling at once again answered ${JSON.stringify(second)}, not slow_down`);
  interval += 5;
  step('slow_down', { interval });

  step('device_authorization', {
    user_code: device.user_code,
    verification_uri: device.verification_uri,
    verification_uri_complete: device.verification_uri_complete,
    expires_in: device.expires_in,
  });

  const deadline = Date.now() + device.expires_in * 1000;
  let token;
  let pending = 0;
  while (!token) {
    if (Date.now() > deadline) fail('the device code expired before the seller answered');
    await sleep(interval);
    const answer = await poll();
    if (answer === 'authorization_pending') pending += 1;
    else if (answer === 'slow_down') interval += 5;
    else if (typeof answer === 'string') fail(`polling answered ${answer}`);
    else token = answer;
  }
  if (token.token_type !== 'bearer' || !token.access_token.startsWith('kgo_') || !token.refresh_token) {
    fail(`unexpected token answer ${Object.keys(token).sort()}`);
  }
  step('device_code_grant', { scope: token.scope, expires_in: token.expires_in, pending_polls: pending });

  const me = await oauth.protectedResourceRequest(token.access_token, 'GET', new URL(`${BASE}/api/v1/token`));
  const meBody = await me.json();
  if (me.status !== 200 || meBody.kind !== 'oauth' || meBody.client_id !== CLIENT_ID) {
    fail(`/api/v1/token answered ${me.status}`);
  }
  step('api_call', { kind: meBody.kind, client_id: meBody.client_id });

  const renewed = await oauth.processRefreshTokenResponse(
    as,
    client,
    await oauth.refreshTokenGrantRequest(as, client, basic, token.refresh_token),
  );
  if (renewed.refresh_token === token.refresh_token) fail('the refresh did not rotate the refresh token');
  step('refresh', { rotated: true });

  // The device code is single use.
  const again = await poll();
  if (again !== 'invalid_grant') fail(`a spent device code answered ${JSON.stringify(again)}`);
  step('single_use', { error: again });
  console.log(JSON.stringify({ passed: 'oauth4webapi-device' }));
} catch (e) {
  const cause = e.cause instanceof URLSearchParams ? e.cause.toString() : JSON.stringify(e.cause);
  fail(`${e.name}: ${e.message}${e.code ? ` (${e.code})` : ''}${cause ? ` ${cause}` : ''}`);
}
