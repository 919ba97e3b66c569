"""The desk's tenancy pages: memberships and the audit trail (read-only), and the firm's own
users, which its firm admin administers through the audited services in `tenancy`.

Django's own User and Group admins are replaced: they show every firm's users to whoever holds
the global permission (a superuser, before there were none), and their saves and password
resets bypass the audit trail.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.exceptions import NotRegistered
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from . import audit, logins, tenancy, tokens
from .admin_base import ReadOnlyTenantAdmin, TenantAdmin
from .errors import DomainError
from .models import ApiToken, AuditEvent, Firm, Membership, iana_zone_names
from .roles import Role
from .scope import current_firm, current_firm_or_none
from .tenancy import role_of

User = get_user_model()


@admin.register(Membership)
class MembershipAdmin(ReadOnlyTenantAdmin):
    list_display = ("user", "role", "created_at")
    list_filter = ("role",)


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyTenantAdmin):
    list_display = ("seq", "created_at", "event_type", "actor", "actor_role", "object_type",
                    "object_id", "request_id")
    list_filter = ("event_type",)
    list_select_related = ("actor",)  # nullable: Django's changelist would not join it
    search_fields = ("object_id", "request_id")
    exclude = ()

    def get_queryset(self, request):
        return audit.events_for(current_firm())


class FirmForm(forms.ModelForm):
    time_zone = forms.ChoiceField(choices=lambda: [(z, z) for z in sorted(iana_zone_names())])

    class Meta:
        model = Firm
        fields = ("time_zone",)


@admin.register(Firm)
class FirmAdmin(TenantAdmin):
    """The firm's own row: every staff member reads it; its firm admin sets the time zone."""

    form = FirmForm
    exclude = ()
    fields = ("name", "slug", "exchange_calendar", "time_zone")
    readonly_fields = ("name", "slug", "exchange_calendar")
    list_display = ("name", "slug", "exchange_calendar", "time_zone")

    def has_add_permission(self, request) -> bool:
        return False  # firms are created by the platform, not from a firm's desk

    def get_queryset(self, request):
        firm = current_firm_or_none()
        return Firm.objects.filter(pk=firm.pk) if firm is not None else Firm.objects.none()

    def save_model(self, request, obj, form, change) -> None:
        if "time_zone" in form.changed_data:
            tenancy.set_firm_time_zone(firm=current_firm(), actor=request.user,
                                       time_zone=form.cleaned_data["time_zone"])


for _model in (User, Group):
    try:
        admin.site.unregister(_model)
    except NotRegistered:
        pass


class FirmUserAddForm(forms.ModelForm):
    role = forms.ChoiceField(choices=Role.choices)
    password1 = forms.CharField(label="Password", required=False, strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
                                help_text="Leave empty to set one later (the user cannot log in "
                                          "until then).")
    password2 = forms.CharField(label="Password again", required=False, strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    class Meta:
        model = User
        fields = ("username", "first_name", "last_name", "email")

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1", "") != cleaned.get("password2", ""):
            raise ValidationError({"password2": "the two passwords differ"})
        return cleaned


class FirmUserChangeForm(forms.ModelForm):
    role = forms.ChoiceField(choices=Role.choices)

    class Meta:
        model = User
        fields = ("first_name", "last_name", "email", "is_active")
        labels = {"is_active": "Active (untick to deactivate the user)"}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        membership = tenancy.membership_of(self.instance)
        if membership is not None:
            self.fields["role"].initial = membership.role

    def clean(self):
        cleaned = super().clean()
        if "role" in cleaned and "is_active" in cleaned:
            try:
                tenancy.check_firm_user_change(firm=current_firm(), user=self.instance,
                                               role=cleaned["role"],
                                               is_active=cleaned["is_active"])
            except DomainError as exc:
                raise ValidationError({exc.field or None: exc.message}) from None
        return cleaned


@admin.register(User)
class FirmUserAdmin(TenantAdmin):
    """The firm's own users, for its firm admin only: create (staff or client, with a role),
    change name, email and role, deactivate, set a password. Every write is a service call,
    audited on the firm's chain; another firm's user is a 404."""

    exclude = ()
    list_display = ("username", "first_name", "last_name", "email", "firm_role", "is_active",
                    "locked_out", "last_login")
    actions = ["unlock_logins"]
    list_filter = ("is_active",)
    search_fields = ("username", "first_name", "last_name", "email")
    ordering = ("username",)
    readonly_fields = ("username", "last_login", "date_joined", "password_link")

    def _allowed(self, request, action: str) -> bool:
        # Seeing the firm's users is part of administering them: the firm admin's alone.
        return super()._allowed(request, "change" if action == "view" else action)

    def get_queryset(self, request):
        firm = current_firm_or_none()
        if firm is None:
            return User.objects.none()
        return logins.with_recent_failed_logins(
            tenancy.firm_users(firm).select_related("membership"))

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = FirmUserChangeForm if obj is not None else FirmUserAddForm
        kwargs["fields"] = None  # the form's own fields, not the model's
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["username", "first_name", "last_name", "email", "role", "password1",
                    "password2"]
        return ["username", "first_name", "last_name", "email", "role", "is_active",
                "password_link", "last_login", "date_joined"]

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()

    @admin.display(description="role")
    def firm_role(self, obj) -> str:
        return obj.membership.get_role_display()

    @admin.display(description="locked out", boolean=True)
    def locked_out(self, obj) -> bool:
        return logins.is_locked_out(getattr(obj, "recent_failed_logins", 0))

    @admin.action(description="Unlock the selected users' logins (clear their failed logins)")
    def unlock_logins(self, request, queryset) -> None:
        for user in queryset.order_by("pk"):
            logins.unlock_login(firm=current_firm(), user=user, actor=request.user)
        self.message_user(request, f"{queryset.count()} user(s) unlocked.", messages.SUCCESS)

    @admin.display(description="password")
    def password_link(self, obj) -> str:
        url = reverse("admin:auth_user_set_password", args=[obj.pk])
        return format_html('<a href="{}">Set a new password</a>', url)

    def save_model(self, request, obj, form, change) -> None:
        data = form.cleaned_data
        if change:
            changes = {name: data[name] for name in form.changed_data
                       if name in (*tenancy.USER_FIELDS, "role")}
            tenancy.update_firm_user(firm=current_firm(), user=obj, actor=request.user,
                                     **changes)
        else:
            created = tenancy.create_firm_user(
                firm=current_firm(), actor=request.user, username=data["username"],
                role=data["role"], email=data.get("email", ""),
                first_name=data.get("first_name", ""), last_name=data.get("last_name", ""),
                password=data.get("password1") or None)
            obj.pk = created.pk

    def save_related(self, request, form, formsets, change) -> None:
        pass  # no groups or permissions here: rights come from the role

    def get_urls(self):
        return [
            path("<path:object_id>/password/",
                 self.admin_site.admin_view(self.set_password_view),
                 name="auth_user_set_password"),
            *super().get_urls(),
        ]

    def set_password_view(self, request, object_id: str):
        user = self.get_object(request, unquote(object_id))
        if user is None or not self.has_change_permission(request, user):
            raise Http404("no such user in your firm")
        form = SetPasswordForm(user, request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                tenancy.set_firm_user_password(firm=current_firm(), user=user,
                                               actor=request.user,
                                               password=form.cleaned_data["new_password1"])
            except DomainError as exc:
                form.add_error("new_password1", exc.message)
            else:
                self.message_user(request, f"Password set for {user.username}.",
                                  messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:auth_user_change", args=[user.pk]))
        context = {**self.admin_site.each_context(request), "title": f"Set a password for "
                   f"{user.username}", "opts": self.opts, "original": user, "form": form}
        return TemplateResponse(request, "admin/brokerage/set_password.html", context)


class ApiTokenAddForm(forms.Form):
    user = forms.ModelChoiceField(queryset=User.objects.none(), to_field_name="username",
                                  help_text="the token acts as this user, with their role")
    name = forms.CharField(max_length=tokens.NAME_LENGTH, required=False,
                           help_text="what it is for, e.g. nightly risk export")
    read_only = forms.BooleanField(required=False, help_text="it may only read")
    expires_days = forms.IntegerField(required=False, min_value=1,
                                      max_value=tokens.MAX_EXPIRES_DAYS,
                                      help_text="days until it expires; empty: never")

    def __init__(self, *args, firm, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].queryset = tenancy.firm_users(firm).filter(
            is_active=True).order_by("username")


@admin.register(ApiToken)
class ApiTokenAdmin(TenantAdmin):
    """The firm's API tokens, for its firm admin only: listed without secrets, created (the
    secret is shown once, on the page that answers the creation) and revoked, each through the
    audited services of `brokerage.tokens`. A token is never edited."""

    list_display = ("prefix", "name", "user", "read_only", "expires_at", "created_by", "created_at",
                    "revoked_at", "last_used_at", "last_used_from")
    list_filter = ("read_only",)
    readonly_fields = ("prefix", "name", "user", "read_only", "expires_at", "created_by", "created_at",
                       "revoked_at", "revoked_by", "last_used_at", "last_used_from")
    fields = readonly_fields
    actions = ["revoke"]

    def _allowed(self, request, action: str) -> bool:
        # Tokens are the firm admin's to see and to issue; nobody edits one.
        return (action != "change" and current_firm_or_none() is not None
                and role_of(request.user) == Role.FIRM_ADMIN)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "created_by", "revoked_by")

    def add_view(self, request, form_url="", extra_context=None):
        if not self.has_add_permission(request):
            raise PermissionDenied("only the firm's admins issue API tokens")
        form = ApiTokenAddForm(request.POST or None, firm=current_firm())
        issued = None
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = tokens.create_api_token(user=data["user"], actor=request.user,
                                                 read_only=data["read_only"],
                                                 expires_days=data["expires_days"],
                                                 name=data["name"])
            except DomainError as exc:
                form.add_error(None, exc.message)
        context = {**self.admin_site.each_context(request), "title": "Issue an API token",
                   "opts": self.opts, "form": form, "issued": issued}
        return TemplateResponse(request, "admin/brokerage/apitoken_add.html", context)

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            tokens.revoke_api_token(token=token, actor=request.user)
            revoked += 1
        self.message_user(request, f"{revoked} token(s) revoked.", messages.SUCCESS)
