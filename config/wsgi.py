from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

from config.loopback import LoopbackOnlyWSGI  # noqa: E402

application = LoopbackOnlyWSGI(get_wsgi_application())
