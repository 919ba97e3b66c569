"""The login's second step: the code (or a recovery code), and enrolment of an authenticator;
and the page where an invited user sets their first password.

The first step stays Django's LoginView at /accounts/login/ (`username`, `password`);
`SecondFactorMiddleware` brings a session that owes its code here, keeping where it was going
in `next`. Each write is a service of `brokerage.second_factor`.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import SetPasswordForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp import login as otp_login

from . import second_factor, tenancy
from .errors import DomainError


class CodeForm(forms.Form):
    otp_token = forms.CharField(label="Code", max_length=32, strip=True,
                                widget=forms.TextInput(attrs={"autocomplete": "one-time-code",
                                                              "inputmode": "text",
                                                              "autofocus": True}))


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or "/"
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        return "/"
    return target


@login_required
def otp_verify(request: HttpRequest) -> HttpResponse:
    """The code from the authenticator, or one of the recovery codes (spent by its use)."""
    if not second_factor.has_authenticator(request.user):
        return redirect(f"{reverse('otp-enrol')}?{urlencode({'next': _next(request)})}")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = second_factor.verify_code(user=request.user, token=form.cleaned_data["otp_token"])
        if device is not None:
            otp_login(request, device)
            return redirect(_next(request))
        form.add_error("otp_token", "that code does not match (or too many wrong codes: wait "
                                    "a little and try the next one)")
    return render(request, "registration/otp_verify.html", {"form": form, "next": _next(request)})


@login_required
def otp_enrol(request: HttpRequest) -> HttpResponse:
    """A new authenticator: its secret (and otpauth URI) shown until a code from it confirms
    it; then the recovery codes, once."""
    if second_factor.has_authenticator(request.user):
        if request.user.is_verified():
            return redirect(_next(request))  # set up already, and verified in this session
        return redirect(f"{reverse('otp-verify')}?{urlencode({'next': _next(request)})}")
    device = second_factor.start_enrolment(user=request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            codes = second_factor.confirm_enrolment(user=request.user, device=device,
                                                    token=form.cleaned_data["otp_token"])
        except DomainError as exc:
            form.add_error("otp_token", exc.message)
        else:
            device.refresh_from_db()
            otp_login(request, device)
            return render(request, "registration/recovery_codes.html",
                          {"codes": codes, "next": _next(request)})
    secret = second_factor.base32_secret(device)
    return render(request, "registration/otp_enrol.html",
                  {"form": form, "next": _next(request), "secret": secret,
                   "config_url": device.config_url,
                   "required": second_factor.requires_second_factor(request.user)})


def invitation_accept(request: HttpRequest, uidb64: str, token: str) -> HttpResponse:
    """The link of a firm admin's invitation (`tenancy.invite_firm_user`): the invitee chooses
    a password, then logs in (staff then enrol their authenticator at the first login)."""
    user = tenancy.invited_user(uidb64, token)
    if user is None:
        return render(request, "registration/invitation.html", {"expired": True}, status=404)
    form = SetPasswordForm(user, request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tenancy.accept_invitation(user=user, token=token,
                                      password=form.cleaned_data["new_password1"])
        except DomainError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            return render(request, "registration/invitation_done.html", {"invitee": user})
    return render(request, "registration/invitation.html", {"form": form, "invitee": user})
