from __future__ import annotations

from django.urls import path

from billing import views

urlpatterns = [
    path("billing/", views.billing_page, name="org_billing"),
    path("billing/buy", views.buy_credits, name="billing_buy"),
    path("billing/portal", views.portal, name="billing_portal"),
    path("billing/limit", views.monthly_limit, name="billing_limit"),
    path("billing/grant", views.grant, name="billing_grant"),
    path("billing/auto-recharge", views.auto_recharge, name="billing_auto_recharge"),
]
