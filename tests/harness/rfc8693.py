"""The identifiers of OAuth 2.0 Token Exchange (RFC 8693) that the test STS and the suites use."""

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_PREFIX = "urn:ietf:params:oauth:token-type:"
ACCESS_TOKEN_TYPE = TOKEN_TYPE_PREFIX + "access_token"
ID_TOKEN_TYPE = TOKEN_TYPE_PREFIX + "id_token"
JWT_TOKEN_TYPE = TOKEN_TYPE_PREFIX + "jwt"
