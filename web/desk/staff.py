"""The desk's firm admin section (issue 19): the firm's users and its API tokens.

Every change is a call to the one service that owns it, which audits it in its transaction:
users through `brokerage.tenancy` (invite, role, deactivate and reactivate, reset the second
factor) and `brokerage.logins.unlock_login`; tokens through `brokerage.tokens`, the services
the API's `ApiTokenViewSet` calls. A refusal (`DomainError`) is shown in words and changes
nothing. Users are read through `tenancy.firm_users` (the request's firm only) and tokens
through the tenant manager, so another firm's user or token is a 404 (`desk_object`).
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.views.decorators.http import require_POST
from django_otp.plugins.otp_totp.models import TOTPDevice

from brokerage import audit, logins, tenancy, tokens
from brokerage.errors import DomainError
from brokerage.models import ApiToken
from brokerage.roles import Role
from brokerage.scope import current_firm

from .access import desk_object, desk_view
from .attention import AttentionItem, Urgency, counted, provider
from .audit_words import present

#: administering users and tokens is the firm admin's alone (brokerage.roles: auth.user)
ADMINS = frozenset({Role.FIRM_ADMIN})
_ISSUED = "desk-staff-issued-token"  # the session key holding a new secret until it is shown


def _firm_users() -> QuerySet:
    """The request's firm's users with what the list shows: role, lockout, second factor."""
    enrolled = TOTPDevice.objects.filter(user_id=OuterRef("pk"), confirmed=True)
    return logins.with_recent_failed_logins(
        tenancy.firm_users(current_firm()).select_related("membership")
    ).annotate(has_authenticator=Exists(enrolled))


def _row(user) -> dict:
    return {"member": user, "role": user.membership.get_role_display(),
            "locked_out": logins.is_locked_out(user.recent_failed_logins)}


def _refused(request: HttpRequest, exc: DomainError) -> None:
    messages.error(request, f"Nothing changed: {exc.message.rstrip('.')}.")


class InviteForm(forms.Form):
    first_name = forms.CharField(max_length=150, required=False)
    last_name = forms.CharField(max_length=150, required=False)
    username = forms.CharField(max_length=150, help_text="letters, digits and @ . + - _")
    email = forms.EmailField(label="E-mail", help_text="the invitation's link goes here")
    role = forms.ChoiceField(choices=Role.choices, error_messages={
        "invalid_choice": "%(value)s is not a firm role"})


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices, error_messages={
        "invalid_choice": "%(value)s is not a firm role"})


class IssueTokenForm(forms.Form):
    name = forms.CharField(max_length=tokens.NAME_LENGTH, label="Name",
                           help_text="what it is for, e.g. nightly risk export")
    user = forms.ChoiceField(label="Acts as", help_text="the token has this user's role, "
                                                        "nothing more")
    read_only = forms.BooleanField(required=False, label="Read-only",
                                   help_text="it may only read")
    expires_days = forms.IntegerField(required=False, min_value=1,
                                      max_value=tokens.MAX_EXPIRES_DAYS,
                                      label="Expires after (days)",
                                      help_text="empty: it never expires")

    def __init__(self, *args, holders: list[tuple[str, str]], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["user"].choices = holders


# -- users -------------------------------------------------------------------------------------

@desk_view(roles=ADMINS)
def staff_users(request: HttpRequest) -> HttpResponse:
    users = _firm_users().order_by("-is_active", "-is_staff", "membership__role", "username")
    rows = [_row(u) for u in users]
    return render(request, "desk/staff/users.html", {
        "section": "desk-staff", "rows": rows,
        "locked": sum(r["locked_out"] for r in rows),
        "inactive": sum(not r["member"].is_active for r in rows)})


@desk_view(roles=ADMINS)
def staff_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = tenancy.invite_firm_user(
                firm=current_firm(), actor=request.user, username=data["username"],
                role=data["role"], email=data["email"], first_name=data["first_name"],
                last_name=data["last_name"], site_url=request.build_absolute_uri("/"))
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Invited {user.username} as {Role(data['role']).label}: "
                                      f"the link to set a password is mailed to {user.email}.")
            return redirect("desk-staff-user", pk=user.pk)
    status = 400 if form.is_bound else 200
    return render(request, "desk/staff/invite.html", {"section": "desk-staff", "form": form},
                  status=status)


@desk_view(roles=ADMINS)
def staff_user(request: HttpRequest, pk: int) -> HttpResponse:
    user = desk_object(_firm_users(), pk=pk)
    events = (audit.events_for(current_firm()).filter(object_type="auth.user",
                                                      object_id=str(pk))
              .select_related("actor").order_by("-seq")[:20])
    trail = present(list(events), firm=current_firm())  # the desk's one audit presenter
    user_tokens = ApiToken.objects.filter(user=user).select_related("created_by")
    return render(request, "desk/staff/user.html", {
        "section": "desk-staff", **_row(user), "trail": trail, "tokens": user_tokens,
        "role_form": RoleForm(initial={"role": user.membership.role}),
        "is_me": user.pk == request.user.pk})


def _user_action(change: Callable[[HttpRequest, object], str]) -> Callable:
    """A POST on one of the firm's users: the service's refusal shown in words, then back to
    the user's page (POST/redirect/GET)."""

    @require_POST
    def view(request: HttpRequest, pk: int) -> HttpResponse:
        user = desk_object(tenancy.firm_users(current_firm()), pk=pk)
        try:
            done = change(request, user)
        except DomainError as exc:
            _refused(request, exc)
        else:
            messages.success(request, done)
        return redirect("desk-staff-user", pk=user.pk)

    view.__name__ = change.__name__
    return desk_view(roles=ADMINS)(view)


def _change_role(request: HttpRequest, user) -> str:
    form = RoleForm(request.POST)
    if not form.is_valid():
        raise _form_refusal(form)
    role = form.cleaned_data["role"]
    tenancy.update_firm_user(firm=current_firm(), user=user, actor=request.user, role=role)
    return f"{user.username} is now {Role(role).label.lower()}."


def _deactivate(request: HttpRequest, user) -> str:
    tenancy.update_firm_user(firm=current_firm(), user=user, actor=request.user,
                             is_active=False)
    return f"{user.username} is deactivated: no login, and their API tokens stop working."


def _reactivate(request: HttpRequest, user) -> str:
    tenancy.update_firm_user(firm=current_firm(), user=user, actor=request.user,
                             is_active=True)
    return f"{user.username} is active again."


def _unlock(request: HttpRequest, user) -> str:
    cleared = logins.unlock_login(firm=current_firm(), user=user, actor=request.user)
    return f"{user.username} may log in again ({cleared} failed-login record(s) cleared)."


def _reset_second_factor(request: HttpRequest, user) -> str:
    tenancy.reset_second_factor(firm=current_firm(), user=user, actor=request.user)
    return f"{user.username}'s second factor is reset: they set up a new authenticator at " \
           f"their next login."


def _resend_invitation(request: HttpRequest, user) -> str:
    tenancy.resend_invitation(firm=current_firm(), user=user, actor=request.user,
                              site_url=request.build_absolute_uri("/"))
    return f"A new invitation link is mailed to {user.email}."


def _form_refusal(form: forms.Form) -> DomainError:
    field, errors = next(iter(form.errors.items()))
    return DomainError(str(errors[0]), field=field)


# -- API tokens ---------------------------------------------------------------------------------

def _token_holders() -> list[tuple[str, str]]:
    # The users a token may act as: the firm's active users (tokens.create_api_token refuses
    # the others anyway).
    return [(u.username, f"{u.get_full_name() or u.username} ({u.username}, "
                         f"{u.membership.get_role_display().lower()})")
            for u in tenancy.firm_users(current_firm()).filter(is_active=True)
            .select_related("membership").order_by("username")]


@desk_view(roles=ADMINS)
def staff_tokens(request: HttpRequest) -> HttpResponse:
    """The firm's tokens (never their secrets) and the form issuing one."""
    form = IssueTokenForm(request.POST or None, holders=_token_holders(),
                          initial={"user": request.user.username})
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        holder = tenancy.firm_users(current_firm()).get(username=data["user"])
        try:
            # The service the API's ApiTokenViewSet.create calls: one way to issue a token.
            issued = tokens.create_api_token(user=holder, actor=request.user,
                                             read_only=data["read_only"],
                                             expires_days=data["expires_days"],
                                             name=data["name"])
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            # Kept in the session only until the next page shows it (then popped): only the
            # sha256 is stored with the token (brokerage/tokens.py).
            request.session[_ISSUED] = {"pk": issued.token.pk, "secret": issued.secret}
            return redirect("desk-staff-token-issued", pk=issued.token.pk)
    rows = ApiToken.objects.select_related("user", "created_by", "revoked_by")
    status = 400 if form.is_bound else 200
    return render(request, "desk/staff/tokens.html", {"section": "desk-staff", "form": form,
                                                      "tokens": rows}, status=status)


@desk_view(roles=ADMINS)
def staff_token_issued(request: HttpRequest, pk: int) -> HttpResponse:
    """The new token's secret, this once: a reload shows that it is gone."""
    token = desk_object(ApiToken.objects.select_related("user"), pk=pk)
    held = request.session.get(_ISSUED) or {}
    secret = None
    if held.get("pk") == token.pk:
        secret = request.session.pop(_ISSUED)["secret"]
    response = render(request, "desk/staff/token_issued.html", {
        "section": "desk-staff", "token": token, "secret": secret,
        "api_root": request.build_absolute_uri(reverse("api-root"))})
    response["Cache-Control"] = "no-store"  # the secret must not outlive the page
    return response


@desk_view(roles=ADMINS)
@require_POST
def staff_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = desk_object(ApiToken.objects.select_related("user"), pk=pk)
    try:
        tokens.revoke_api_token(token=token, actor=request.user)  # the API's revoke action's
    except DomainError as exc:
        _refused(request, exc)
    else:
        messages.success(request, f"Token {token.prefix}… ({token.name or 'unnamed'}) of "
                                  f"{token.user.username} is revoked: "
                                  f"it authenticates no one from now on.")
    return redirect("desk-staff-tokens")


# -- what needs the firm admin ------------------------------------------------------------------

@provider
def locked_out_users(request: HttpRequest, role: str) -> list[AttentionItem]:
    if role not in ADMINS:
        return []
    locked = [u.username for u in _firm_users().filter(is_active=True)
              if logins.is_locked_out(u.recent_failed_logins)]
    if not locked:
        return []
    return [AttentionItem(title=counted(len(locked), "user locked out after failed logins",
                                        "users locked out after failed logins"),
                          url=reverse("desk-staff"), urgency=Urgency.TODAY, count=len(locked),
                          detail=", ".join(locked[:5]))]


urlpatterns = [
    path("", staff_users, name="desk-staff"),
    path("invite/", staff_invite, name="desk-staff-invite"),
    path("users/<int:pk>/", staff_user, name="desk-staff-user"),
    path("users/<int:pk>/role/", _user_action(_change_role), name="desk-staff-user-role"),
    path("users/<int:pk>/deactivate/", _user_action(_deactivate),
         name="desk-staff-user-deactivate"),
    path("users/<int:pk>/reactivate/", _user_action(_reactivate),
         name="desk-staff-user-reactivate"),
    path("users/<int:pk>/unlock/", _user_action(_unlock), name="desk-staff-user-unlock"),
    path("users/<int:pk>/second-factor/reset/", _user_action(_reset_second_factor),
         name="desk-staff-user-reset-second-factor"),
    path("users/<int:pk>/invitation/", _user_action(_resend_invitation),
         name="desk-staff-user-resend-invitation"),
    path("tokens/", staff_tokens, name="desk-staff-tokens"),
    path("tokens/<int:pk>/issued/", staff_token_issued, name="desk-staff-token-issued"),
    path("tokens/<int:pk>/revoke/", staff_token_revoke, name="desk-staff-token-revoke"),
]
