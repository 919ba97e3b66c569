"""The staff desk for eligibility: every button calls the same service as the API.

Rows are read-only here (no plain saves); state moves only through the actions, which call
`eligibility.services` with `request.user`, so four eyes and the role checks hold exactly as
they do for the API. A refusal is shown as an error message and changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db.models import QuerySet
from django.template.response import TemplateResponse

from brokerage.admin_base import TenantAdmin
from brokerage.scope import current_firm
from brokerage.tenancy import role_of

from . import rules, services
from .errors import EligibilityError, InvalidRuleSet
from .models import Application, Evaluation, RuleSet


class ReasonsForm(forms.Form):
    reasons = forms.CharField(widget=forms.Textarea(attrs={"rows": 4, "cols": 80}),
                              required=True)


class ServiceActionsMixin:
    """Run a service over the selected rows, one at a time, reporting each refusal."""

    def _each(self, request, queryset: QuerySet, call: Callable[[Any], Any], done: str) -> None:
        succeeded = 0
        for obj in queryset.order_by("pk"):
            try:
                call(obj)
            except EligibilityError as exc:
                self.message_user(request, f"#{obj.pk}: {exc.message}", messages.ERROR)
            else:
                succeeded += 1
        if succeeded:
            self.message_user(request, f"{succeeded} {done}", messages.SUCCESS)

    def _with_reasons(self, request, queryset: QuerySet, *, title: str,
                      call: Callable[[Any, str], Any], done: str):
        """An action that needs written reasons: a form first, then the service per row."""
        form = ReasonsForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            reasons = form.cleaned_data["reasons"]
            self._each(request, queryset, lambda obj: call(obj, reasons), done)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "queryset": queryset,
            "form": form,
            "action": request.POST.get("action", ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "eligibility/admin/reasons_form.html", context)

    # Rows are created by a service, never by a plain save: the admin's form only collects
    # what the service needs, and its object becomes the row the service wrote.

    def create_through_service(self, request, form):
        raise ImproperlyConfigured(f"{type(self).__name__} names no service that creates its rows")

    def save_model(self, request, obj, form, change) -> None:
        created = self.create_through_service(request, form)
        obj.pk, obj.firm_id = created.pk, created.firm_id
        obj._state.adding = False

    def save_related(self, request, form, formsets, change) -> None:
        return None  # nothing besides the row itself; what goes with it comes from the service


def decision_actions(*, rows: str, reject_title: str, approve: Callable[[Any, Any], Any],
                     reject: Callable[[Any, Any, str], Any]):
    """The second person's two actions on rows awaiting a decision: approve, and reject with
    written reasons. `approve(row, user)` and `reject(row, user, reasons)` call the services."""

    @admin.action(description=f"Approve the selected {rows} (second person)")
    def approve_selected(self, request, queryset):
        self._each(request, queryset, lambda row: approve(row, request.user), "approved")

    @admin.action(description=f"Reject the selected {rows} (with reasons)")
    def reject_selected(self, request, queryset):
        return self._with_reasons(
            request, queryset, title=reject_title,
            call=lambda row, reasons: reject(row, request.user, reasons), done="rejected")

    return approve_selected, reject_selected


class EvaluationInline(admin.TabularInline):
    model = Evaluation
    fields = ("evaluated_at", "stage", "rule_set", "passed", "equity", "equity_source",
              "evaluated_by")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("-evaluated_at",)

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return Evaluation.objects.select_related("rule_set", "evaluated_by")


class ApplicationAddForm(forms.ModelForm):
    # The account field is built per request by the admin (its queryset is firm-scoped).
    class Meta:
        model = Application
        fields = ()

    def clean(self):
        cleaned = super().clean()
        account = cleaned.get("account")
        if account is not None:
            try:
                services.check_can_apply(account=account, actor=self.request_user)
            except EligibilityError as exc:
                raise ValidationError({"account": exc.message}) from None
        return cleaned


@admin.register(Application)
class ApplicationAdmin(ServiceActionsMixin, TenantAdmin):
    list_display = ("id", "account", "client", "state", "recommendation", "rule_set",
                    "submitted_by", "reviewed_by", "decided_by", "effective_on", "converted_at")
    list_filter = ("state", "recommendation")
    search_fields = ("account__number", "client__name")
    list_select_related = ("account", "client", "rule_set", "submitted_by", "reviewed_by",
                           "decided_by")
    inlines = [EvaluationInline]
    actions = ["submit_selected", "recommend_approval", "recommend_rejection", "approve_selected",
               "reject_selected", "withdraw_selected"]

    def has_add_permission(self, request) -> bool:
        # Staff who may submit draft applications here; the service checks again on save.
        return role_of(request.user) in services.SUBMITTER_STAFF_ROLES

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # read-only rows; state moves through the actions

    def get_fields(self, request, obj=None):
        return ("account",) if obj is None else super().get_fields(request, obj)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ApplicationAddForm
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request_user = request.user
        return form

    def get_queryset(self, request):
        return Application.objects.select_related("account", "client", "rule_set")

    def create_through_service(self, request, form) -> Application:
        return services.create_application(account=form.cleaned_data["account"],
                                           actor=request.user)

    @admin.action(description="Submit the selected applications")
    def submit_selected(self, request, queryset):
        self._each(request, queryset, lambda a: services.submit_application(
            application=a, actor=request.user), "submitted")

    @admin.action(description="Review: recommend approval")
    def recommend_approval(self, request, queryset):
        self._each(request, queryset, lambda a: services.review_application(
            application=a, reviewer=request.user, recommendation="approve"),
            "reviewed (recommended for approval)")

    @admin.action(description="Review: recommend rejection (with reasons)")
    def recommend_rejection(self, request, queryset):
        return self._with_reasons(
            request, queryset, title="Recommend rejection",
            call=lambda a, reasons: services.review_application(
                application=a, reviewer=request.user, recommendation="reject", notes=reasons),
            done="reviewed (recommended for rejection)")

    approve_selected, reject_selected = decision_actions(
        rows="applications", reject_title="Reject applications",
        approve=lambda a, user: services.approve_application(application=a, approver=user),
        reject=lambda a, user, reasons: services.reject_application(
            application=a, approver=user, reasons=reasons))

    @admin.action(description="Withdraw the selected applications")
    def withdraw_selected(self, request, queryset):
        self._each(request, queryset, lambda a: services.withdraw_application(
            application=a, actor=request.user, reason=f"withdrawn at the desk by {request.user}"),
            "withdrawn")


class RuleSetProposalForm(forms.ModelForm):
    change_reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=True,
                                    label="Why the rule set changes")

    class Meta:
        model = RuleSet
        fields = (*rules.THRESHOLD_FIELDS, "change_reason")

    def clean(self):
        cleaned = super().clean()
        changes = {name: cleaned[name] for name in rules.THRESHOLD_FIELDS if name in cleaned}
        try:
            services.check_proposal(firm=current_firm(), **changes)
        except InvalidRuleSet as exc:
            raise ValidationError({e["field"]: e["message"] for e in exc.errors
                                   if e["field"] in self.fields}
                                  or exc.message) from None
        except EligibilityError as exc:
            raise ValidationError(exc.message) from None
        return cleaned


@admin.register(RuleSet)
class RuleSetAdmin(ServiceActionsMixin, TenantAdmin):
    list_display = ("version", "status", "opening_equity_minimum",
                    "proposed_by", "proposed_at", "decided_by", "decided_at")
    list_filter = ("status",)
    actions = ["approve_selected", "reject_selected"]

    def has_add_permission(self, request) -> bool:
        return role_of(request.user) in services.RULE_SET_ROLES

    def has_change_permission(self, request, obj=None) -> bool:
        return False  # a version is never edited: propose a new one

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = RuleSetProposalForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_changeform_initial_data(self, request) -> dict[str, Any]:
        return services.active_rule_set(firm=current_firm()).thresholds()

    def create_through_service(self, request, form) -> RuleSet:
        changes = {name: form.cleaned_data[name] for name in rules.THRESHOLD_FIELDS}
        return services.propose_rule_set(firm=current_firm(), proposer=request.user,
                                         reason=form.cleaned_data["change_reason"], **changes)

    approve_selected, reject_selected = decision_actions(
        rows="proposals", reject_title="Reject rule-set proposals",
        approve=lambda r, user: services.approve_rule_set(rule_set=r, approver=user),
        reject=lambda r, user, reasons: services.reject_rule_set(
            rule_set=r, approver=user, reason=reasons))
