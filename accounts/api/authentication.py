"""DRF authentication by gateway key: `Authorization: Bearer llmapi_...`."""

from __future__ import annotations

from rest_framework import authentication, exceptions

from accounts.selectors import KeyRejected, api_key_authenticate


class APIKeyAuthentication(authentication.BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != self.keyword or not token.strip():
            raise exceptions.NotAuthenticated(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'."
            )
        try:
            key = api_key_authenticate(raw_key=token.strip())
        except KeyRejected as rejected:
            exc = exceptions.AuthenticationFailed(rejected.reason, code=rejected.code)
            raise exc from None
        return (None, key)

    def authenticate_header(self, request):
        return 'Bearer realm="api"'
