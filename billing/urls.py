from __future__ import annotations

from django.urls import path

from accounts.access import placeholder_page
from accounts.permissions import Perm

urlpatterns = [
    path(
        "billing/",
        placeholder_page(
            "Billing",
            "billing",
            Perm.MANAGE_BILLING,
            "Prepaid credits, auto-recharge, spend limits and invoices.",
        ),
        name="org_billing",
    ),
]
