"""Organization-scoped pages; mounted under /o/<org_id>/ by config.urls."""

from __future__ import annotations

from django.urls import path

from accounts import views

urlpatterns = [
    path("keys/", views.api_keys, name="api_keys"),
    path("keys/<uuid:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("members/", views.members, name="members"),
    path("members/<uuid:membership_id>/role/", views.membership_role, name="membership_role"),
    path("members/<uuid:membership_id>/remove/", views.membership_remove, name="membership_remove"),
    path(
        "invitations/<uuid:invitation_id>/revoke/",
        views.invitation_revoke,
        name="invitation_revoke",
    ),
    path("settings/", views.organization_settings, name="org_settings"),
    path("leave/", views.organization_leave, name="org_leave"),
    path("audit/", views.audit_log, name="audit_log"),
]
