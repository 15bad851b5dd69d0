// A real OpenID Connect provider for the sign-in tests: panva's oidc-provider (an
// OpenID-certified implementation, npm), with its development login/consent pages
// (any known account name signs in, no password). Configured by environment:
// OIDC_PORT, OIDC_ISSUER, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI,
// OIDC_ACCOUNTS = {"id": {"email", "name", "groups": [..]}}.
import Provider from 'oidc-provider';

const env = process.env;
const accounts = JSON.parse(env.OIDC_ACCOUNTS || '{}');
const provider = new Provider(env.OIDC_ISSUER, {
  clients: [{
    client_id: env.OIDC_CLIENT_ID,
    client_secret: env.OIDC_CLIENT_SECRET,
    redirect_uris: [env.OIDC_REDIRECT_URI],
    // RP-initiated logout comes back to the console's login page.
    post_logout_redirect_uris: [new URL('/login', env.OIDC_REDIRECT_URI).href],
    response_types: ['code'],
    grant_types: ['authorization_code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true, methods: ['S256'] },
  scopes: ['openid', 'email', 'profile', 'groups'],
  claims: {
    openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'preferred_username'], groups: ['groups'],
  },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['rgpu-test-cookie-key'] },
  async findAccount(ctx, id) {
    const a = accounts[id];
    if (!a) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: a.email, email_verified: true, name: a.name, preferred_username: id, groups: a.groups || [] };
      },
    };
  },
});
provider.proxy = false;
provider.listen(Number(env.OIDC_PORT), '127.0.0.1', () => process.stdout.write('ready\n'));
