from __future__ import annotations

from django.contrib import admin
from django.http import HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularJSONAPIView, SpectacularSwaggerSplitView

from accounts import urls as accounts_urls
from accounts import views as accounts_views
from billing import urls as billing_urls
from billing import views as billing_views
from observability import public as public_pages
from observability import urls as observability_urls
from observability.api import GenerationApi
from observability.metrics import metrics_view
from routing import urls as routing_urls


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


def favicon(request):
    # Resolved per request: the hashed name only exists once collectstatic has run.
    return HttpResponsePermanentRedirect(static("favicon.svg"))


# Everything a tenant owns lives under /o/<org_id>/, behind accounts.access.org_view.
org_patterns = [
    *observability_urls.urlpatterns,
    *routing_urls.urlpatterns,
    *billing_urls.urlpatterns,
    *accounts_urls.urlpatterns,
]

urlpatterns = [
    path("", accounts_views.landing, name="landing"),
    path("dashboard/", accounts_views.dashboard, name="dashboard"),
    path("orgs/new/", accounts_views.organization_create, name="org_create"),
    path("invitations/<str:token>/", accounts_views.invitation_respond, name="invitation_respond"),
    path("o/<uuid:org_id>/", include(org_patterns)),
    path("accounts/", include("allauth.urls")),
    path("billing/stripe/webhook/", billing_views.stripe_webhook, name="stripe_webhook"),
    path("v1/openapi.json", SpectacularJSONAPIView.as_view(), name="openapi"),
    path("v1/generation", GenerationApi.as_view(), name="v1_generation"),
    path("v1/", include("routing.api.urls")),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="openapi"), name="api_docs"),
    path("admin/", admin.site.urls),
    path("models/", public_pages.model_list, name="public_models"),
    path("models/<path:model_id>/", public_pages.model_detail, name="public_model"),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("favicon.ico", favicon),
]

handler404 = "accounts.api.errors.handler404"
handler500 = "accounts.api.errors.handler500"
