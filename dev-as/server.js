// Development authorization servers for mcp-auth-filter, on oidc-provider (a certified OpenID
// Provider implementation). Two issuers, like the two Okta authorization servers of the seed
// scenario:
//
//   MCP AS      issues the tokens MCP clients send: authorization code + PKCE (S256), dynamic
//               client registration (RFC 7591) or the pre-registered public client "mcp-client",
//               resource indicators (RFC 8707: aud = the MCP resource, JWT access tokens with
//               the scopes asked for among mcp:tools:call mcp:tools:list bigquery:read
//               bigquery:write, and the user's `groups`), refresh tokens, RFC 8414 and OIDC
//               discovery, JWKS, and CORS on discovery, registration and token (browser-based
//               clients).
//               Login and consent are automatic for one demo user (DEMO_USER, default alice):
//               the authorization endpoint redirects straight back to the client with a code,
//               so a client without a browser can follow it with an HTTP client.
//   backend AS  issues the tokens the backend API accepts (aud = backend, backend-api:read) by
//               OAuth 2.0 Token Exchange (RFC 8693) only, to one confidential client (the
//               filter, STS_CLIENT_ID / STS_CLIENT_SECRET), and it trusts the MCP AS: a subject
//               token must be an unexpired access token signed by the MCP AS for one of the MCP
//               resources. It is what the filter's token_exchange.token_endpoint points at.
//
// Keys are generated at start (a restart invalidates every token). Configuration, from the
// environment (defaults in brackets):
//   DEV_AS_HOST         address to listen on [127.0.0.1]; 0.0.0.0 in a container
//   MCP_AS_PORT         [9000]         BACKEND_AS_PORT   [9100] (may be the same port: the
//                                      issuers' paths must then differ)
//   MCP_AS_ISSUER       [http://127.0.0.1:$MCP_AS_PORT]
//   BACKEND_AS_ISSUER   [http://127.0.0.1:$BACKEND_AS_PORT]
//                       An issuer with a path (https://example.okta.com/oauth2/aus123) is
//                       served under that path.
//   DEV_AS_ROUTES       "plain" [default]: /authorize /token /jwks /register
//                       "okta": /v1/authorize /v1/token /v1/keys /v1/clients (Okta's shapes)
//   MCP_RESOURCES       comma-separated MCP resource URLs tokens may be issued for
//                       [http://127.0.0.1:10000/mcp]; the first is used when a client names none
//   MCP_AS_AUDIENCE     a fixed `aud` for the MCP AS's tokens, as an Okta authorization server
//                       has (e.g. mcpserver) [none: aud = the resource the client asked for]
//   DEMO_USER           the user every login signs in as [alice]; one of alice, bob
//   STS_CLIENT_ID       [mcp-filter]   STS_CLIENT_SECRET  (required)
//   BACKEND_AUDIENCE    [backend]      BACKEND_SCOPES [backend-api:read backend-api:write]
//   STS_ALLOWED_SCOPES  scopes the filter's client may obtain [backend-api:read]
//   ACCESS_TOKEN_TTL    seconds [3600]
//   VSCODE_REDIRECT_URIS  redirect URIs of the pre-registered "mcp-client"
//                       [http://127.0.0.1:33418,https://vscode.dev/redirect]
//
// Run: STS_CLIENT_SECRET=... node server.js   (prints one JSON line per issuer when ready)

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import * as jose from 'jose';
import Provider, { errors } from 'oidc-provider';

const env = process.env;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:jwt';

// `groups` goes into the MCP AS's access tokens (the filter's per-tool claim conditions read it):
// alice is an analyst, bob a database administrator too.
const ACCOUNTS = {
  alice: { sub: 'alice', email: 'alice@example.com', name: 'Alice Example', groups: ['analysts'] },
  bob: { sub: 'bob', email: 'bob@example.com', name: 'Bob Example', groups: ['analysts', 'dba'] },
};

function fail(message) {
  console.error(`dev-as: ${message}`);
  process.exit(2);
}

function list(value, fallback, separator = ',') {
  return (value ?? fallback).split(separator).map((s) => s.trim()).filter(Boolean);
}

const host = env.DEV_AS_HOST || '127.0.0.1';
const mcpPort = Number(env.MCP_AS_PORT || 9000);
const backendPort = Number(env.BACKEND_AS_PORT || 9100);
const mcpIssuer = env.MCP_AS_ISSUER || `http://127.0.0.1:${mcpPort}`;
const backendIssuer = env.BACKEND_AS_ISSUER || `http://127.0.0.1:${backendPort}`;
const mcpResources = list(env.MCP_RESOURCES, 'http://127.0.0.1:10000/mcp');
const mcpAudience = env.MCP_AS_AUDIENCE || '';
const demoUser = env.DEMO_USER || 'alice';
const stsClientId = env.STS_CLIENT_ID || 'mcp-filter';
const stsClientSecret = env.STS_CLIENT_SECRET;
const backendAudience = env.BACKEND_AUDIENCE || 'backend';
const backendScopes = list(env.BACKEND_SCOPES, 'backend-api:read backend-api:write', ' ');
const stsAllowedScopes = list(env.STS_ALLOWED_SCOPES, 'backend-api:read', ' ');
const accessTokenTtl = Number(env.ACCESS_TOKEN_TTL || 3600);
const vscodeRedirects = list(env.VSCODE_REDIRECT_URIS, 'http://127.0.0.1:33418,https://vscode.dev/redirect');
const routeStyle = env.DEV_AS_ROUTES || 'plain';

if (!stsClientSecret) fail('STS_CLIENT_SECRET is not set (the secret of the filter\'s client at the backend AS)');
if (!ACCOUNTS[demoUser]) fail(`DEMO_USER must be one of ${Object.keys(ACCOUNTS).join(', ')}`);
if (!['plain', 'okta'].includes(routeStyle)) fail('DEV_AS_ROUTES must be "plain" or "okta"');
for (const r of mcpResources) {
  if (!URL.canParse(r)) fail(`MCP_RESOURCES: not a URL: ${r}`);
}

const ROUTES = {
  plain: { authorization: '/authorize', token: '/token', jwks: '/jwks', registration: '/register',
    userinfo: '/userinfo', revocation: '/revoke', introspection: '/introspect', end_session: '/logout' },
  okta: { authorization: '/v1/authorize', token: '/v1/token', jwks: '/v1/keys', registration: '/v1/clients',
    userinfo: '/v1/userinfo', revocation: '/v1/revoke', introspection: '/v1/introspect', end_session: '/v1/logout' },
}[routeStyle];

async function signingKey(kid) {
  const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true });
  return { ...(await jose.exportJWK(privateKey)), kid, alg: 'RS256', use: 'sig' };
}

function publicJwks(jwk) {
  const { d, p, q, dp, dq, qi, ...pub } = jwk;
  return { keys: [pub] };
}

function findAccount(_ctx, id) {
  const account = ACCOUNTS[id];
  if (!account) return undefined;
  const { groups: _groups, ...profile } = account;
  return { accountId: id, claims: async () => ({ ...profile, email_verified: true }) };
}

function commonConfiguration(jwk) {
  return {
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    routes: ROUTES,
    findAccount,
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    responseTypes: ['code'],
    // Bearer tokens only: the filter (like most resource servers) does not verify DPoP proofs.
    features: { devInteractions: { enabled: false }, dPoP: { enabled: false } },
    // Browser-based clients (MCP Inspector) call the token and registration endpoints directly.
    clientBasedCORS: () => true,
    ttl: {
      AccessToken: accessTokenTtl,
      AuthorizationCode: 60,
      Grant: 14 * 24 * 3600,
      IdToken: 3600,
      Interaction: 600,
      RefreshToken: 14 * 24 * 3600,
      Session: 14 * 24 * 3600,
    },
  };
}

// ---- MCP AS --------------------------------------------------------------------------------

// The scopes a client may get for an MCP resource (it gets those it asks for): the MCP ones, and
// the BigQuery scenario's per-tool ones, which clients obtain by step-up (403 insufficient_scope).
const MCP_SCOPES = 'mcp:tools:call mcp:tools:list bigquery:read bigquery:write';

function mcpResourceServer(indicator) {
  if (!mcpResources.includes(indicator)) {
    throw new errors.InvalidTarget(`unknown resource ${indicator}; this server issues tokens for ${mcpResources.join(', ')}`);
  }
  return {
    scope: MCP_SCOPES,
    audience: mcpAudience || indicator,
    accessTokenTTL: accessTokenTtl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  };
}

async function buildMcpProvider(jwk) {
  const base = commonConfiguration(jwk);
  const provider = new Provider(mcpIssuer, {
    ...base,
    scopes: [...base.scopes, ...MCP_SCOPES.split(' ')],
    clients: [{
      // Pre-registered public client for clients that do not register dynamically
      // (VS Code asks for a client id when the server offers no registration).
      client_id: 'mcp-client',
      client_name: 'MCP client (pre-registered)',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: vscodeRedirects,
    }],
    features: {
      ...base.features,
      registration: { enabled: true }, // open RFC 7591 registration, as MCP clients expect
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: (_ctx, _client, oneOf) => oneOf || mcpResources[0],
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, indicator) => mcpResourceServer(indicator),
      },
    },
    // A client registers with the scope of the first challenge, and steps up later (403
    // insufficient_scope) to scopes it did not register: its registered scope is no limit.
    extraClientMetadata: {
      properties: ['scope'],
      validator(_ctx, key, _value, metadata) {
        if (key === 'scope') metadata.scope = undefined;
      },
    },
    pkce: { required: () => true },
    // A refresh token for every client allowed the refresh_token grant (not only with offline_access).
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
    extraTokenClaims: async (_ctx, token) => {
      const account = token.kind === 'AccessToken' ? ACCOUNTS[token.accountId] : undefined;
      return account ? { email: account.email, groups: account.groups } : undefined;
    },
    interactions: { url: (_ctx, interaction) => `${issuerPath(mcpIssuer)}/interaction/${interaction.uid}` },
  });
  return provider;
}

// Automatic login and consent for DEMO_USER: every interaction is finished at once.
async function finishInteraction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: demoUser } };
  } else if (prompt.name === 'consent') {
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
    result = { consent: { grantId: await grant.save() } };
  } else {
    result = { error: 'access_denied', error_description: `unsupported prompt ${prompt.name}` };
  }
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}

// ---- backend AS: token exchange ------------------------------------------------------------

async function buildBackendProvider(mcpJwk) {
  const base = commonConfiguration(await signingKey('backend-as-1'));
  const provider = new Provider(backendIssuer, {
    ...base,
    scopes: [...base.scopes, ...backendScopes],
    clients: [{
      client_id: stsClientId,
      client_secret: stsClientSecret,
      client_name: 'mcp-auth-filter (token exchange)',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: [TOKEN_EXCHANGE],
      response_types: [],
      redirect_uris: [],
      scope: stsAllowedScopes.join(' '),
    }],
    clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
    features: { ...base.features, resourceIndicators: { enabled: false } },
  });

  const trusted = jose.createLocalJWKSet(publicJwks(mcpJwk));
  const audience = new provider.ResourceServer(backendAudience, {
    audience: backendAudience,
    scope: backendScopes.join(' '),
    accessTokenTTL: accessTokenTtl,
    accessTokenFormat: 'jwt',
    jwt: { sign: { alg: 'RS256' } },
  });

  async function tokenExchange(ctx) {
    const { client, params } = ctx.oidc;
    if (![ACCESS_TOKEN_TYPE, JWT_TOKEN_TYPE].includes(params.subject_token_type)) {
      throw new errors.InvalidRequest('subject_token_type must be an access token or a JWT');
    }
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('only access tokens can be requested');
    }
    if (params.actor_token) throw new errors.InvalidRequest('actor tokens are not supported');
    const requestedAudience = params.audience || backendAudience;
    if (requestedAudience !== backendAudience) {
      throw new errors.InvalidTarget(`this server issues tokens for audience ${backendAudience} only`);
    }
    const scopes = list(params.scope, stsAllowedScopes.join(' '), ' ');
    const refused = scopes.filter((s) => !stsAllowedScopes.includes(s) || !backendScopes.includes(s));
    if (refused.length) throw new errors.InvalidScope('requested scope is not allowed', refused.join(' '));

    // Trust: the subject token must come from the MCP AS, for one of the MCP resources.
    let subject;
    try {
      ({ payload: subject } = await jose.jwtVerify(params.subject_token, trusted, {
        issuer: mcpIssuer,
        audience: mcpAudience ? [...mcpResources, mcpAudience] : mcpResources,
        algorithms: ['RS256'],
        requiredClaims: ['sub', 'exp'],
      }));
    } catch (e) {
      throw new errors.InvalidGrant(`subject token rejected (${e.code || e.name})`);
    }

    const token = new provider.AccessToken({
      accountId: subject.sub,
      client,
      scope: scopes.join(' '),
      gty: 'token_exchange',
      resourceServer: audience,
      extra: { email: subject.email, subject_issuer: subject.iss, subject_client_id: subject.client_id },
    });
    ctx.oidc.entity('AccessToken', token);
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope,
    };
  }

  provider.registerGrantType(TOKEN_EXCHANGE, tokenExchange,
    ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'resource', 'scope',
      'actor_token', 'actor_token_type'],
    ['audience', 'resource']);
  return provider;
}

// ---- HTTP ----------------------------------------------------------------------------------

function issuerPath(issuer) {
  return new URL(issuer).pathname.replace(/\/$/, '');
}

// One request handler per issuer: strips the issuer's path, serves RFC 8414 metadata (the same
// document as OIDC discovery) at both well-known locations, and the automatic interactions.
function mount(provider, issuer, { interactions }) {
  const prefix = issuerPath(issuer);
  const callback = provider.callback();
  const rfc8414Inserted = `/.well-known/oauth-authorization-server${prefix}`;
  const oidcInserted = `/.well-known/openid-configuration${prefix}`;
  return {
    prefix,
    matches(path) {
      return path === rfc8414Inserted || path === oidcInserted || prefix === ''
        || path === prefix || path.startsWith(`${prefix}/`);
    },
    async handle(req, res) {
      const url = new URL(req.url, 'http://dev-as');
      let path = url.pathname;
      if (path === rfc8414Inserted || path === oidcInserted) {
        path = '/.well-known/openid-configuration';
      } else {
        path = path.slice(prefix.length) || '/';
        if (path === '/.well-known/oauth-authorization-server') path = '/.well-known/openid-configuration';
      }
      if (path === '/healthz') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
        return;
      }
      const interaction = interactions && path.match(/^\/interaction\/([\w-]+)$/);
      if (interaction && req.method === 'GET') {
        try {
          await finishInteraction(provider, req, res);
        } catch (e) {
          res.writeHead(400, { 'content-type': 'application/json' })
            .end(JSON.stringify({ error: 'invalid_request', error_description: e.message }));
        }
        return;
      }
      // Browser-based clients (MCP Inspector) register from the page: oidc-provider has no CORS
      // on its registration endpoint, so it is added here (registration is open anyway).
      if (interactions && path === ROUTES.registration) {
        res.setHeader('access-control-allow-origin', '*');
        if (req.method === 'OPTIONS') {
          res.writeHead(204, {
            'access-control-allow-methods': 'POST',
            'access-control-allow-headers': 'content-type, authorization',
            'access-control-max-age': '3600',
          }).end();
          return;
        }
      }
      // oidc-provider resolves its routes relative to where it is mounted.
      req.url = prefix ? `${path}${url.search}` : req.url.replace(url.pathname, path);
      if (prefix) req.originalUrl = `${prefix}${req.url}`;
      callback(req, res);
    },
  };
}

function listen(port, mounts) {
  const server = http.createServer((req, res) => {
    const path = new URL(req.url, 'http://dev-as').pathname;
    // Longest prefix first, so /oauth2/a never shadows /oauth2/ab.
    const target = mounts.filter((m) => m.matches(path)).sort((a, b) => b.prefix.length - a.prefix.length)[0];
    if (!target) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
      return;
    }
    target.handle(req, res).catch((e) => {
      console.error(e);
      if (!res.headersSent) res.writeHead(500).end();
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

async function main() {
  const mcpJwk = await signingKey('mcp-as-1');
  const mcpProvider = await buildMcpProvider(mcpJwk);
  const backendProvider = await buildBackendProvider(mcpJwk);
  // Both are behind plain HTTP here; behind a TLS-terminating proxy set X-Forwarded-Proto.
  mcpProvider.proxy = true;
  backendProvider.proxy = true;
  for (const p of [mcpProvider, backendProvider]) {
    p.on('server_error', (_ctx, e) => console.error('dev-as: server_error', e));
  }

  const mcpMount = mount(mcpProvider, mcpIssuer, { interactions: true });
  const backendMount = mount(backendProvider, backendIssuer, { interactions: false });
  if (mcpPort === backendPort) {
    if (mcpMount.prefix === backendMount.prefix) fail('on one port, the two issuers need different paths');
    await listen(mcpPort, [mcpMount, backendMount]);
  } else {
    await listen(mcpPort, [mcpMount]);
    await listen(backendPort, [backendMount]);
  }
  console.log(JSON.stringify({ ready: 'mcp-as', issuer: mcpIssuer, port: mcpPort, resources: mcpResources, demo_user: demoUser }));
  console.log(JSON.stringify({ ready: 'backend-as', issuer: backendIssuer, port: backendPort, audience: backendAudience, sts_client_id: stsClientId }));
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
main().catch((e) => fail(e.stack || String(e)));
