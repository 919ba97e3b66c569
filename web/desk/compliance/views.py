"""The compliance section's pages. Every figure and file comes from the existing services:
the trail from ``audit.events_for``, the export and its manifest from ``audit.start_firm_export``
/ ``export_lines`` / ``export_manifest_text`` (the bytes the API and ``export_audit_trail``
produce), the verification from ``audit.verify_firm_chain`` (``verify_audit_chain``'s check,
recorded), the daily margin-call record and report from ``margin.calls.record`` (what
``export_margin_record`` / ``export_margin_report`` and /api/v1/margin-report/ write).
"""

from __future__ import annotations

from datetime import date, datetime

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from brokerage import audit
from brokerage.api_views import TRAIL_READERS
from brokerage.audit_anchors import latest_checkpoint
from brokerage.audit_keys import public_key_hex
from brokerage.errors import DomainError, InvalidInput
from brokerage.models import AuditEvent
from brokerage.roles import Role
from brokerage.scope import current_firm
from margin.calls.record import account_csv, csv_for

from ..access import desk_object, desk_view
from ..audit_words import present, value_words
from .trail import TrailSearch, event_type_choices

#: who opens the section: the trail's readers (the roles the audit export allows, as the API
#: does: brokerage.api_views.TRAIL_READERS) and the risk officer, for the daily margin record
#: and report; the margin desk works calls, it does not report on them.
SECTION_ROLES = TRAIL_READERS | {Role.RISK_OFFICER}
PAGE_SIZE = 50


def _last_verification() -> AuditEvent | None:
    """The firm's latest verification of its chain: a desk run or an export (both verify)."""
    return (audit.events_for(current_firm()).filter(event_type__in=audit.VERIFYING_EVENTS)
            .select_related("actor").order_by("-seq").first())


def chain_status() -> dict:
    """What the pages show of the firm's chain: its head, the latest signed checkpoint of it
    (time, sequence, the key its row was hashed with) and the latest verification in words."""
    firm = current_firm()
    chain = audit.chain_key(firm)
    events = audit.events_for(firm)
    head = events.order_by("-seq").values_list("seq", flat=True).first() or 0
    checkpoint = latest_checkpoint(chain)
    checkpoint_key = (events.filter(seq=checkpoint.seq).values_list("key_id", flat=True).first()
                      if checkpoint else None)
    last = _last_verification()
    return {"head": head, "checkpoint": checkpoint, "checkpoint_key": checkpoint_key,
            "checkpoint_at": _instant(checkpoint.taken_at) if checkpoint else None,
            "last": last, "outcome": verification_words(last) if last else None,
            "since_last": events.filter(seq__gt=last.seq).count() if last else head}


def _instant(iso: str) -> datetime:
    return timezone.localtime(datetime.fromisoformat(iso))


def verification_words(event: AuditEvent) -> dict:
    """A verification (or an export's) in words: 'Verified 254 events, #1 to #254' or where
    the chain breaks."""
    spec = event.after or {}
    chain = event.chain
    through = int((spec.get("through") or {}).get(chain, 0))
    broken = (spec.get("broken") or {}).get(chain)
    problems = list(spec.get("anchor_problems") or [])
    if broken:
        # "#12: content does not match its hash (altered)": the events before #12 hold.
        where, _, reason = broken.partition(": ")
        first_bad = int(where.lstrip("#")) if where.lstrip("#").isdigit() else 0
        text = f"The chain breaks at event {where}: {reason}" if reason else (
            f"The chain breaks: {broken}")
        if first_bad > 1:
            text += f" (events #1 to #{first_bad - 1} hold)"
    elif not spec.get("verified", False):
        text = ("The chain's events hold, but a checkpoint file does not verify: "
                + ("; ".join(problems) if problems else "run verify_audit_chain to see which"))
    else:
        text = f"Verified {through:,} event{'s' if through != 1 else ''}, #1 to #{through:,}"
        text += ": every row against its key, every link, and the latest signed checkpoint."
    return {"ok": bool(spec.get("verified")) and not broken, "text": text,
            "problems": problems, "through": through,
            "by_export": event.event_type != audit.VERIFIED}


@desk_view(roles=SECTION_ROLES)
def compliance_home(request: HttpRequest) -> HttpResponse:
    reads_trail = request.desk_role in TRAIL_READERS
    return render(request, "desk/compliance/home.html", {
        "section": "desk-compliance", "reads_trail": reads_trail,
        "status": chain_status() if reads_trail else None,
        "day_error": None, "day": timezone.localdate()})


@desk_view(roles=TRAIL_READERS)
def trail(request: HttpRequest) -> HttpResponse:
    """The firm's trail, filtered, newest first, a page at a time."""
    search = TrailSearch(request.GET or None, firm=current_firm())
    page = rows = None
    if search.is_bound and not search.is_valid():
        status = 400
    else:
        status = 200
        if not search.is_bound:
            search = TrailSearch({}, firm=current_firm())
            search.is_valid()
        paginator = Paginator(search.events(), PAGE_SIZE)
        page = paginator.get_page(request.GET.get("page"))
        rows = present(list(page.object_list), firm=current_firm())
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "desk/compliance/trail.html", {
        "section": "desk-compliance", "search": search, "page": page, "rows": rows,
        "query": query.urlencode(), "today": timezone.localdate().isoformat()}, status=status)


@desk_view(roles=TRAIL_READERS)
@require_http_methods(["GET", "POST"])
def export(request: HttpRequest) -> HttpResponse:
    """The export form (date range, event type, format) and the firm's earlier exports. A POST
    starts one through the export service (checkpoint, verification, the audited event) and
    leads to its page, where the file and its manifest are downloaded."""
    firm = current_firm()
    values = {"since": "", "until": "", "file_format": "csv", "event_type": ""}
    status = 200
    if request.method == "POST":
        values = {k: request.POST.get(k, "").strip() for k in values}
        try:
            spec = audit.ExportRequest(
                file_format=values["file_format"], since=_form_day(values["since"], "From"),
                until=_form_day(values["until"], "To"),
                event_types=(values["event_type"],) if values["event_type"] else (),
                time_zone=firm.time_zone)
            made = audit.start_firm_export(firm=firm, actor=request.user, request=spec)
        except DomainError as exc:
            messages.error(request, f"Nothing was exported: {exc.message}")
            status = 400
        else:
            return redirect("desk-compliance-export-detail", seq=made.seq)
    earlier = (audit.events_for(firm).filter(event_type=audit.EXPORTED)
               .select_related("actor").order_by("-seq")[:20])
    return render(request, "desk/compliance/export.html", {
        "section": "desk-compliance", "values": values, "formats": audit.FILE_FORMATS,
        "event_types": event_type_choices(firm), "earlier": earlier,
        "today": timezone.localdate().isoformat()}, status=status)


def _form_day(value: str, label: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"{label}: {value!r} is not a date (YYYY-MM-DD)",
                                 field=label.lower()) from None


def _export_of(seq: str) -> AuditEvent:
    # The firm's own chain only: another firm's export number is a 404 (desk_object).
    return desk_object(audit.events_for(current_firm()).filter(event_type=audit.EXPORTED),
                       seq=int(seq))


@desk_view(roles=TRAIL_READERS)
def export_detail(request: HttpRequest, seq: str) -> HttpResponse:
    # The page names what the export covers from its event alone: the rows are read (and
    # hashed) only by the downloads, so a large export costs one walk per file, not a third.
    made = _export_of(seq)
    spec = made.after
    return render(request, "desk/compliance/export_detail.html", {
        "section": "desk-compliance", "export": made, "spec": spec,
        "public_key": public_key_hex(),
        "file_name": audit.export_file_name(made),
        "event_types": ", ".join(value_words("event_type", t) for t in spec["event_types"]),
        "outcome": verification_words(made)})


@desk_view(roles=TRAIL_READERS)
def export_file(request: HttpRequest, seq: str) -> StreamingHttpResponse:
    """The export's file: ``audit.export_lines``, the API's bytes (rows never change)."""
    made = _export_of(seq)
    content_type = ("text/csv; charset=utf-8" if made.after["file_format"] == "csv"
                    else "application/x-ndjson")
    response = StreamingHttpResponse(audit.export_lines(made), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{audit.export_file_name(made)}"'
    response["X-Audit-Export"] = str(made.seq)
    return response


@desk_view(roles=TRAIL_READERS)
def export_manifest(request: HttpRequest, seq: str) -> HttpResponse:
    """The export's signed manifest, as ``export_audit_trail`` writes it beside the file."""
    made = _export_of(seq)
    response = HttpResponse(audit.export_manifest_text(made),
                            content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="{audit.export_file_name(made)}.manifest.json"')
    return response


@desk_view(roles=TRAIL_READERS)
@require_http_methods(["GET", "POST"])
def chain(request: HttpRequest) -> HttpResponse:
    """The firm's chain: the latest checkpoint and verification; a POST runs the verification
    (the service records it on the chain) and shows its result."""
    if request.method == "POST":
        made = audit.verify_firm_chain(firm=current_firm(), actor=request.user)
        outcome = verification_words(made)
        (messages.success if outcome["ok"] else messages.error)(request, outcome["text"])
        return redirect("desk-compliance-chain")
    history = (audit.events_for(current_firm()).filter(event_type__in=audit.VERIFYING_EVENTS)
               .select_related("actor").order_by("-seq")[:10])
    return render(request, "desk/compliance/chain.html", {
        "section": "desk-compliance", "status": chain_status(),
        "history": [(e, verification_words(e)) for e in history]})


def _daily_csv(request: HttpRequest, render_csv, name: str) -> HttpResponse:
    """One day's CSV of the firm (the day in the firm's zone; today when none is named); a
    date that is not one re-shows the section's page with the problem named."""
    raw = request.GET.get("date", "").strip()
    try:
        day = date.fromisoformat(raw) if raw else timezone.localdate()
    except ValueError:
        reads_trail = request.desk_role in TRAIL_READERS
        return render(request, "desk/compliance/home.html", {
            "section": "desk-compliance", "reads_trail": reads_trail,
            "status": chain_status() if reads_trail else None, "day": raw,
            "day_error": f"{raw!r} is not a date (YYYY-MM-DD): no file was made"}, status=400)
    response = HttpResponse(render_csv(day), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = (
        f'attachment; filename="{name}-{current_firm().slug}-{day}.csv"')
    return response


@desk_view(roles=SECTION_ROLES)
def margin_record(request: HttpRequest) -> HttpResponse:
    """The FINRA 4220 daily record of margin calls (``export_margin_record``'s CSV)."""
    return _daily_csv(request, csv_for, "margin-record")


@desk_view(roles=SECTION_ROLES)
def margin_report(request: HttpRequest) -> HttpResponse:
    """The daily margin report (``export_margin_report``'s and /api/v1/margin-report/'s CSV)."""
    return _daily_csv(request, account_csv, "margin-report")
