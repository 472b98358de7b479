// A real OpenID provider for the sign-in tests: panva's node-oidc-provider with its development
// sign-in pages (any login name, any password), one confidential client for the gateway, and
// JWT access tokens for AIMA's API as the resource (RFC 8707, RFC 9068) carrying a `roles` claim.
//
//   node provider.mjs PORT REDIRECT_URI
//
// Roles come from the login name: "admin-*" gets aima-admin, "guest-*" aima-guest, "norole-*"
// none (AIMA must refuse the sign-in), anything else aima-user. Prints "ready <issuer>" when it
// listens.
import Provider from "oidc-provider";

const [port, redirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
export const AUDIENCE = "urn:aima:api";

function rolesOf(login) {
  if (login.startsWith("admin-")) return ["aima-admin"];
  if (login.startsWith("guest-")) return ["aima-guest"];
  if (login.startsWith("norole-")) return [];
  return ["aima-user"];
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "aima-web",
      client_secret: "aima-web-test-secret",
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  pkce: { required: () => true },
  claims: { openid: ["sub"], profile: ["preferred_username", "name"] },
  async findAccount(_ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: id };
      },
    };
  },
  features: {
    devInteractions: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => AUDIENCE,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: "aima",
        audience: AUDIENCE,
        accessTokenTTL: 300,
        accessTokenFormat: "jwt",
        jwt: { sign: { alg: "RS256" } },
      }),
    },
  },
  async extraTokenClaims(_ctx, token) {
    if (token.kind !== "AccessToken") return undefined;
    return { roles: rolesOf(token.accountId), preferred_username: token.accountId };
  },
});
provider.proxy = true;
const server = provider.listen(Number(port), "127.0.0.1", () => {
  console.log(`ready ${issuer}`);
});
for (const signal of ["SIGTERM", "SIGINT"]) process.on(signal, () => server.close(() => process.exit(0)));
