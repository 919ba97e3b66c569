"""Pending rule-set proposals and applications under review become requests in
brokerage.approvals (the one maker-checker), drafted on what they were drafted on."""

from django.db import migrations


def _makers(application) -> dict[str, list[str]]:
    steps = (("drafted", application.created_by_id), ("submitted", application.submitted_by_id),
             ("reviewed", application.reviewed_by_id))
    return {str(user_id): [did for did, id_ in steps if id_ == user_id] or ["worked on"]
            for user_id in application.makers or []}


def pending_to_requests(apps, schema_editor) -> None:
    RuleSet = apps.get_model("eligibility", "RuleSet")
    Application = apps.get_model("eligibility", "Application")
    ApprovalRequest = apps.get_model("brokerage", "ApprovalRequest")
    for proposal in RuleSet.objects.filter(status="proposed", proposed_by__isnull=False,
                                           based_on__isnull=False).order_by("pk"):
        ApprovalRequest.objects.create(
            firm_id=proposal.firm_id, kind="rule_set", subject_type="eligibility.ruleset",
            subject_id=proposal.pk,
            summary=f"rule set v{proposal.version}: {proposal.change_reason}"[:300],
            drafted_on=RuleSet.objects.get(pk=proposal.based_on_id).version,
            requested_by_id=proposal.proposed_by_id, requested_at=proposal.proposed_at,
            makers={str(proposal.proposed_by_id): ["proposed"]})
    for application in Application.objects.filter(state="under_review",
                                                  reviewed_by__isnull=False).order_by("pk"):
        ApprovalRequest.objects.create(
            firm_id=application.firm_id, kind="pm_application",
            subject_type="eligibility.application", subject_id=application.pk,
            summary=f"PM application #{application.pk}: {application.recommendation} recommended",
            drafted_on=application.version, requested_by_id=application.reviewed_by_id,
            requested_at=application.reviewed_at or application.updated_at,
            makers=_makers(application))


def requests_back(apps, schema_editor) -> None:
    apps.get_model("brokerage", "ApprovalRequest").objects.filter(
        kind__in=["rule_set", "pm_application"], state="pending").delete()


class Migration(migrations.Migration):

    dependencies = [
        ("eligibility", "0001_initial"),
        ("brokerage", "0003_approvals"),
    ]

    operations = [migrations.RunPython(pending_to_requests, requests_back)]
