from django.apps import AppConfig


class DemoConfig(AppConfig):
    """The demo seed (`manage.py seed_demo`, run by `make demo`).

    Top of the one-way dependency rule (DESIGN.md): it may import every app and writes only
    through their services; no app imports it, and it never imports `web`.
    """

    name = "demo"
    verbose_name = "Demo seed"
