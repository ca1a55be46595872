"""The /v1 API. This is the gateway's front door; chat completions arrive in a later step."""

from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.api.authentication import APIKeyAuthentication


class KeyInfoApi(APIView):
    """GET /v1/key: what the calling key is and may do (OpenRouter has the same call)."""

    authentication_classes = [APIKeyAuthentication]

    def get(self, request):
        key = request.auth
        return Response(
            {
                "data": {
                    "id": str(key.key_id),
                    "name": key.name,
                    "organization_id": str(key.organization_id),
                    "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                    "limits": {
                        "spend_limit_usd_nano": key.spend_limit_nanousd,
                        "spend_limit_period": key.spend_limit_period,
                        "rpm": key.rpm_limit,
                        "tpm": key.tpm_limit,
                    },
                    "allowed_models": list(key.allowed_models),
                }
            }
        )
