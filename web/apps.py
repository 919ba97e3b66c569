from django.apps import AppConfig


class WebConfig(AppConfig):
    """The pages people read: the client portal (and, later, the staff desk).

    Top of the one-way dependency rule (DESIGN.md): it may import every app, since a page shows
    applications and calls together; no app imports it, and it never imports `demo`.
    """

    name = "web"
    verbose_name = "Web: client portal"
