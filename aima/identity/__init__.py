"""The kernel's identity layer: users and tenants, Argon2id passwords, signed access tokens with
rotating keys and a JWKS, rotating refresh tokens with family revocation, and an optional external
OIDC issuer."""
