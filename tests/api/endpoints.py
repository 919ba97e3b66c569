"""Every routed ``/api/v1/`` endpoint, one entry each: what `test_matrix` runs it through.

A new endpoint is covered by adding one `Endpoint` to `ENDPOINTS`: its URL (``{obj}`` stands
for the object an entry's `make` builds in a firm), its method, the roles that may use it (a
2xx), the roles that see the firm's objects narrowed to their own (a client's 404, not a 403),
how to build one object in a firm, and a valid body for a write. Every other role of the firm
gets a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from brokerage.roles import Role
from tests.factories import FirmWorld

ADMIN, RISK, DESK, COMPLIANCE, CLIENT = (Role.FIRM_ADMIN, Role.RISK_OFFICER, Role.MARGIN_DESK,
                                         Role.COMPLIANCE, Role.CLIENT)
EVERYONE = frozenset(Role)
STAFF = frozenset({ADMIN, RISK, DESK, COMPLIANCE})
AS_OF = date(2026, 11, 24)


@dataclass(frozen=True)
class Endpoint:
    url: str
    method: str = "GET"
    roles: frozenset[Role] = STAFF
    #: roles whose queryset leaves the object out: a 404 on detail, never a 403
    narrowed: frozenset[Role] = frozenset()
    #: builds one object in the firm (inside its scope) and returns its id in the URL
    make: Callable[[FirmWorld], Any] | None = None
    #: a valid body of a write, for the firm the request is made in
    body: Callable[[FirmWorld], dict[str, Any]] | None = None
    ok: int = 200
    #: a write that succeeds leaves a row (its audit event at least): the positive control of
    #: the matrix's "nothing written"; the calculator alone writes nothing
    records: bool = True
    #: a decision: it sends If-Match, the ETag its object's GET (the URL one level up) answers
    if_match: bool = False
    #: the platform's market-data operator may use it (no firm role does)
    platform: bool = False

    @property
    def writes(self) -> bool:
        return self.method != "GET"

    @property
    def refused(self) -> list[Role]:
        return [role for role in Role if role not in self.roles | self.narrowed]

    @property
    def etag_url(self) -> str:
        """Where the object a decision is about is read (its ETag): the URL one level up."""
        return self.url.rstrip("/").rsplit("/", 1)[0] + "/"

    @property
    def id(self) -> str:
        return f"{self.method} {self.url.removeprefix('/api/v1/') or '/'}"


# Builders: one object of a firm, written through its service --------------------------------

def _audit_export(fw: FirmWorld) -> int:
    """One export of the firm's trail (its audit event's number names its manifest)."""
    from brokerage import audit

    return audit.start_firm_export(firm=fw.firm, actor=fw.users[COMPLIANCE.value],
                                   request=audit.ExportRequest()).seq


def _call(fw: FirmWorld) -> int:
    from margin.calls.policy import active_policy
    from margin.calls.services import issue_call

    return issue_call(account=fw.account, kind="maintenance", amount=Decimal("100"), as_of=AS_OF,
                      equity=Decimal("0"), requirement=Decimal("100"),
                      policy=active_policy(fw.firm)).pk


def _extension_proposed(fw: FirmWorld) -> int:
    """A maintenance call whose extension the desk proposed (a second person decides)."""
    from margin.calls.extensions import request_extension
    from margin.calls.models import MarginCall

    pk = _call(fw)
    request_extension(call=MarginCall.objects.get(pk=pk), actor=fw.users[DESK.value], days=5,
                      reason_code="travel")
    return pk


def _extension_requested(fw: FirmWorld) -> int:
    """... and the risk officer agreed: asked of FINRA, whose answer someone records."""
    from margin.calls.extensions import decide_extension
    from margin.calls.models import CallExtension

    pk = _extension_proposed(fw)
    decide_extension(extension=CallExtension.objects.get(call_id=pk),
                     actor=fw.users[RISK.value], approve=True)
    return pk


def _overdue(fw: FirmWorld) -> int:
    """A maintenance call of an account in deficit (10 ACME at 100, $900 owed), gone
    overdue unmet."""
    from django.utils import timezone

    from accounts import services as book
    from margin.calls.models import MarginCall
    from margin.calls.services import mark_overdue
    from margin.market_data import load_prices
    from margin.tasks import recompute_accounts
    from tests.factories import shared_instrument

    stock = shared_instrument("ACME")
    load_prices(observations=[{"symbol": "ACME", "price": "100",
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)
    book.set_position(account=fw.account, instrument=stock, quantity=Decimal(10),
                      actor=fw.users[ADMIN.value])
    # $900 borrowed against $1,000 of stock: short of the maintenance requirement
    book.post_ledger_entry(account=fw.account, kind="withdrawal", amount=Decimal("-900"),
                           actor=None, effective_at=timezone.now() - timedelta(minutes=1))
    recompute_accounts(fw.firm.pk, [fw.account.pk])
    call = MarginCall.objects.get(pk=_call(fw))
    mark_overdue(call=call, day=call.due_date)
    return call.pk


def _planned(fw: FirmWorld) -> int:
    """... with a liquidation plan the desk proposed (a firm admin or risk officer decides)."""
    from margin.calls.models import MarginCall
    from margin.liquidation.services import propose_plan

    pk = _overdue(fw)
    propose_plan(actor=fw.users[DESK.value], call=MarginCall.objects.get(pk=pk))
    return pk


def _restriction(fw: FirmWorld) -> int:
    from margin.calls.policy import active_policy
    from margin.calls.restrictions import impose

    return impose(account=fw.account, kind="funds_on_hand_90d", starts_on=AS_OF,
                  cause="a practice", policy=active_policy(fw.firm)).pk


def _policy(fw: FirmWorld) -> int:
    from margin.calls.policy import active_policy

    return active_policy(fw.firm).pk


def _parameters(fw: FirmWorld) -> int:
    from margin.services import propose_parameters

    return propose_parameters(firm=fw.firm, actor=fw.users[RISK.value], overrides={},
                              reason="baseline").pk


def _rule_set(fw: FirmWorld) -> int:
    from eligibility.services import active_rule_set

    return active_rule_set(firm=fw.firm).pk


def _application(fw: FirmWorld) -> int:
    from eligibility.services import create_application

    return create_application(account=fw.account, actor=fw.users[ADMIN.value]).pk


def _token(fw: FirmWorld) -> int:
    from brokerage.tokens import create_api_token

    return create_api_token(user=fw.users[DESK.value], actor=None).token.pk


def _policy_proposal(fw: FirmWorld) -> int:
    from margin.calls.policy import propose_policy

    return propose_policy(firm=fw.firm, actor=fw.users[RISK.value], reason="house: T+2",
                          values={"reg_t_due_days": 2}).pk


def _waiver(fw: FirmWorld) -> int:
    from margin.calls.restrictions import request_waiver

    restriction = _restriction(fw)
    from margin.calls.models import Restriction

    request_waiver(restriction=Restriction.objects.get(pk=restriction),
                   actor=fw.users[COMPLIANCE.value], reason="a clerical error")
    return restriction


def _rule_set_proposal(fw: FirmWorld) -> int:
    from eligibility.services import propose_rule_set

    return propose_rule_set(firm=fw.firm, proposer=fw.users[RISK.value], reason="stricter",
                            min_net_worth=Decimal("3000000")).pk


def _submitted(fw: FirmWorld) -> int:
    """An application the desk opened and submitted (so the desk is its maker)."""
    from eligibility.services import create_application

    return create_application(account=fw.account, actor=fw.users[DESK.value], submit=True).pk


def _under_review(fw: FirmWorld) -> int:
    """Submitted by the desk, recommended by the risk officer: the firm admin decides."""
    from eligibility.models import Application
    from eligibility.services import review_application

    pk = _submitted(fw)
    review_application(application=Application.objects.get(pk=pk), reviewer=fw.users[RISK.value],
                       recommendation="reject", notes="too little equity")
    return pk


def _eligible_under_review(fw: FirmWorld) -> int:
    """As `_under_review`, for an account that passes every rule (the eligibility tests' desk:
    a portal user, the PM disclosure signed, $200,000 of cash), so it may be approved."""
    from accounts import services as book
    from tests.eligibility.conftest import deposit, sign_pm_disclosure

    admin = fw.users[ADMIN.value]
    client = book.update_client(client=fw.client, actor=admin,
                                portal_user=fw.users[CLIENT.value])
    sign_pm_disclosure(client, admin)
    deposit(fw.account, "200000", fw.users[DESK.value])
    return _under_review(fw)


#: the stock the trading endpoints book (``listed_for_trading``, priced at $10)
TRADED = "MTX"


def listed_for_trading() -> None:
    from django.utils import timezone

    from margin.market_data import load_prices
    from tests.factories import shared_instrument

    shared_instrument(TRADED)
    load_prices(observations=[{"symbol": TRADED, "price": "10",
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)


def _execution_body(fw: FirmWorld) -> dict[str, Any]:
    # Received free of charge (price 0): an unfunded account's check accepts it.
    return {"client_execution_id": f"{fw.firm.slug}-x1", "account": fw.account.number,
            "instrument": TRADED, "side": "buy", "quantity": "1", "price": "0"}


def _execution(fw: FirmWorld) -> int:
    from margin.executions.services import book_execution, parse_ticket

    execution, _ = book_execution(firm=fw.firm, actor=fw.users[DESK.value],
                                  ticket=parse_ticket({**_execution_body(fw),
                                                       "client_execution_id": "booked-1"}))
    return execution.pk


def _account(fw: FirmWorld) -> str:
    return fw.account.number


def _client(fw: FirmWorld) -> int:
    return fw.client.pk


def _position(fw: FirmWorld) -> int:
    from accounts import services as book
    from tests.factories import shared_instrument

    return book.set_position(account=fw.account, instrument=shared_instrument("ACME"),
                             quantity=Decimal(10), actor=fw.users[ADMIN.value]).pk


def _ledger_entry(fw: FirmWorld) -> int:
    from accounts import services as book

    return book.post_ledger_entry(account=fw.account, kind="deposit", amount=Decimal("500"),
                                  actor=fw.users[DESK.value]).pk


def _funded(fw: FirmWorld) -> str:
    """An account with $500 of cash (a withdrawal takes some of it)."""
    _ledger_entry(fw)
    return fw.account.number


def _own_instrument(fw: FirmWorld) -> int:
    """An instrument of the firm's own (not shared reference data): another firm's 404."""
    from accounts import services as book

    return book.create_instrument(symbol=f"OWN-{fw.firm.slug}", kind="stock", firm=fw.firm,
                                  actor=fw.users[ADMIN.value], product_class="equity",
                                  class_group="OWN", product_group="OWN").pk


def _priced(fw: FirmWorld) -> str:
    """The account with 10 ACME, ACME priced at 100 and $5,000 of cash: a book that values."""
    from django.utils import timezone

    from margin.market_data import load_prices

    load_prices(observations=[{"symbol": "ACME", "price": "100",
                               "observed_at": timezone.now().isoformat()}],
                source="vendor", actor=None)
    _position(fw)
    from accounts import services as book

    book.post_ledger_entry(account=fw.account, kind="deposit", amount=Decimal("5000"),
                           actor=fw.users[DESK.value])
    return fw.account.number


def _observations(value_field: str, value: str) -> Callable[[FirmWorld], dict[str, Any]]:
    def body(fw: FirmWorld) -> dict[str, Any]:
        from django.utils import timezone

        return {"source": "vendor", "observations": [
            {"symbol": "ACME", value_field: value, "observed_at": timezone.now().isoformat()}]}
    return body


def _calculation(fw: FirmWorld) -> dict[str, Any]:
    from tests.calculator.requests import base

    return base()


V = "/api/v1/"
ENDPOINTS: list[Endpoint] = [
    Endpoint(V, roles=EVERYONE),
    # accounts: staff see the firm's, a client those granted to them
    Endpoint(f"{V}accounts/", roles=EVERYONE),
    Endpoint(f"{V}accounts/{{obj}}/", roles=STAFF, narrowed={CLIENT}, make=_account),
    Endpoint(f"{V}accounts/{{obj}}/margin", roles=STAFF, narrowed={CLIENT}, make=_account),
    Endpoint(f"{V}accounts/{{obj}}/restrictions/", roles=STAFF, narrowed={CLIENT},
             make=_account),
    Endpoint(f"{V}accounts/?regime=legacy_pdt", roles=EVERYONE),
    Endpoint(f"{V}accounts/{{obj}}/regime/", "POST", roles=frozenset({ADMIN, RISK}),
             make=_account, body=lambda fw: {"regime": "intraday", "reason": "phase-in"}),
    Endpoint(f"{V}accounts/{{obj}}/margin/history", roles=STAFF, narrowed={CLIENT},
             make=_account),
    Endpoint(f"{V}accounts/{{obj}}/positions/", roles=STAFF, narrowed={CLIENT}, make=_account),
    # what-if: the engine on the book plus a position, nothing written
    Endpoint(f"{V}accounts/{{obj}}/what-if", "POST", roles=STAFF, narrowed={CLIENT},
             make=_priced, records=False,
             body=lambda fw: {"positions": [{"symbol": "ACME", "quantity": "5"}]}),
    # cash: deposits and withdrawals by the roles that post to the ledger
    Endpoint(f"{V}accounts/{{obj}}/deposits/", "POST", roles=frozenset({ADMIN, DESK}), ok=201,
             make=_account, body=lambda fw: {"amount": "250.00", "memo": "wire"}),
    Endpoint(f"{V}accounts/{{obj}}/withdrawals/", "POST", roles=frozenset({ADMIN, DESK}),
             ok=201, make=_funded, body=lambda fw: {"amount": "100.00"}),
    # the firm and its book
    Endpoint(f"{V}firm", roles=EVERYONE),
    Endpoint(f"{V}clients/", roles=EVERYONE),
    Endpoint(f"{V}clients/{{obj}}/", roles=STAFF, narrowed={CLIENT}, make=_client),
    Endpoint(f"{V}positions/", roles=EVERYONE),
    Endpoint(f"{V}positions/{{obj}}/", roles=STAFF, narrowed={CLIENT}, make=_position),
    Endpoint(f"{V}ledger-entries/", roles=EVERYONE),
    Endpoint(f"{V}ledger-entries/{{obj}}/", roles=STAFF, narrowed={CLIENT}, make=_ledger_entry),
    # market data: everyone reads; only the platform's market-data operator loads
    Endpoint(f"{V}instruments/", roles=EVERYONE),
    Endpoint(f"{V}instruments/{{obj}}/", roles=EVERYONE, make=_own_instrument),
    Endpoint(f"{V}prices/", roles=EVERYONE),
    Endpoint(f"{V}vols/", roles=EVERYONE),
    Endpoint(f"{V}prices/", "POST", roles=frozenset(), platform=True, ok=201,
             body=_observations("price", "101.5")),
    Endpoint(f"{V}vols/", "POST", roles=frozenset(), platform=True, ok=201,
             body=_observations("volatility", "0.25")),
    # margin calls: staff work them, a client reads their own
    Endpoint(f"{V}accounts/{{obj}}/pre-trade", "POST", make=_account, records=False,
             body=lambda fw: {"orders": [{"instrument": TRADED, "side": "buy",
                                          "quantity": "1"}]}),
    Endpoint(f"{V}executions/"),
    Endpoint(f"{V}executions/", "POST", roles=frozenset({ADMIN, RISK, DESK}), ok=201,
             body=_execution_body),
    Endpoint(f"{V}executions/{{obj}}/", make=_execution),
    Endpoint(f"{V}executions/{{obj}}/bust/", "POST", roles=frozenset({ADMIN, RISK, DESK}),
             ok=201, make=_execution, body=lambda fw: {"reason": "booked in error"}),
    Endpoint(f"{V}margin-calls/", roles=EVERYONE),
    Endpoint(f"{V}margin-calls/{{obj}}/", roles=STAFF, narrowed={CLIENT}, make=_call),
    Endpoint(f"{V}margin-calls/{{obj}}/cancel/", "POST", roles=STAFF, make=_call,
             body=lambda fw: {"reason": "market_recovery", "note": "recovered"}),
    Endpoint(f"{V}margin-calls/{{obj}}/extensions/", "POST", roles=STAFF, make=_call,
             body=lambda fw: {"days": 5, "reason_code": "travel"}),
    Endpoint(f"{V}margin-calls/{{obj}}/satisfactions/", "POST", roles=STAFF, make=_call,
             body=lambda fw: {"manner": "securities", "amount": "100.00"}),
    Endpoint(f"{V}margin-calls/{{obj}}/extension-decision/", "POST", if_match=True,
             roles=frozenset({ADMIN, RISK, COMPLIANCE}), make=_extension_proposed,
             body=lambda fw: {"approve": True, "reason": "a fair ask"}),
    Endpoint(f"{V}margin-calls/{{obj}}/extension-outcome/", "POST", roles=STAFF,
             make=_extension_requested,
             body=lambda fw: {"granted": True, "filing_id": "REX-0001"}),
    Endpoint(f"{V}margin-calls/{{obj}}/liquidation-plan/", make=_planned),
    Endpoint(f"{V}margin-calls/{{obj}}/liquidation-plan/", "POST", make=_overdue, ok=201,
             body=lambda fw: {}),
    Endpoint(f"{V}margin-calls/{{obj}}/liquidation-plan/approve/", "POST", if_match=True,
             roles=frozenset({ADMIN, RISK}), make=_planned, body=lambda fw: {"reason": "cures it"}),
    # (the desk proposed it: its no is a withdrawal)
    Endpoint(f"{V}margin-calls/{{obj}}/liquidation-plan/reject/", "POST", if_match=True,
             roles=frozenset({ADMIN, RISK, DESK}), make=_planned,
             body=lambda fw: {"reason": "too dear"}),
    Endpoint(f"{V}margin-record/?date=2026-11-24"),
    Endpoint(f"{V}margin-report/?date=2026-11-24"),
    # two-person changes: call policies, restrictions' waivers, risk parameters, rule sets
    Endpoint(f"{V}call-policies/{{obj}}/approve/", "POST", if_match=True, roles=frozenset({ADMIN, COMPLIANCE}),
             make=_policy_proposal, body=lambda fw: {"reason": "agreed"}),
    # whoever proposed may say no too: a withdrawal (brokerage.approvals.reject)
    Endpoint(f"{V}call-policies/{{obj}}/reject/", "POST", if_match=True,
             roles=frozenset({ADMIN, RISK, COMPLIANCE}),
             make=_policy_proposal, body=lambda fw: {"reason": "too strict"}),
    Endpoint(f"{V}call-policies/"),
    Endpoint(f"{V}call-policies/{{obj}}/", make=_policy),
    Endpoint(f"{V}call-policies/", "POST", roles=frozenset({ADMIN, RISK, COMPLIANCE}), ok=201,
             body=lambda fw: {"values": {"reg_t_due_days": 2}, "reason": "house: T+2"}),
    Endpoint(f"{V}restrictions/"),
    Endpoint(f"{V}restrictions/{{obj}}/", make=_restriction),
    Endpoint(f"{V}restrictions/{{obj}}/waiver/", "POST", roles=frozenset({ADMIN, COMPLIANCE}),
             make=_restriction, body=lambda fw: {"reason": "a clerical error"}),
    Endpoint(f"{V}restrictions/{{obj}}/approve/", "POST", if_match=True, roles=frozenset({ADMIN}),
             make=_waiver, body=lambda fw: {"reason": "agreed"}),
    # (unlike the other proposals, the officer who asked may not withdraw it by saying no)
    Endpoint(f"{V}restrictions/{{obj}}/reject/", "POST", if_match=True, roles=frozenset({ADMIN}),
             make=_waiver, body=lambda fw: {"reason": "not a clerical error"}),
    Endpoint(f"{V}risk-parameters/{{obj}}/approve/", "POST", if_match=True, roles=frozenset({ADMIN}),
             make=_parameters, body=lambda fw: {"reason": "agreed"}),
    Endpoint(f"{V}risk-parameters/{{obj}}/reject/", "POST", if_match=True, roles=frozenset({ADMIN, RISK}),
             make=_parameters, body=lambda fw: {"reason": "not now"}),
    Endpoint(f"{V}risk-parameters/"),
    Endpoint(f"{V}risk-parameters/{{obj}}/", make=_parameters),
    Endpoint(f"{V}risk-parameters/", "POST", roles=frozenset({ADMIN, RISK}), ok=201,
             body=lambda fw: {"overrides": {}, "reason": "baseline"}),
    Endpoint(f"{V}rule-sets/"),
    Endpoint(f"{V}rule-sets/active/"),
    Endpoint(f"{V}rule-sets/{{obj}}/", make=_rule_set),
    Endpoint(f"{V}rule-sets/propose/", "POST", roles=frozenset({ADMIN, RISK}), ok=201,
             body=lambda fw: {"reason": "stricter", "min_net_worth": "3000000.00"}),
    Endpoint(f"{V}rule-sets/{{obj}}/approve/", "POST", if_match=True, roles=frozenset({ADMIN}),
             make=_rule_set_proposal, body=lambda fw: {"reason": "agreed"}),
    Endpoint(f"{V}rule-sets/{{obj}}/reject/", "POST", if_match=True, roles=frozenset({ADMIN, RISK}),
             make=_rule_set_proposal, body=lambda fw: {"reason": "not now"}),
    # applications: staff see the firm's, a client their own
    Endpoint(f"{V}applications/", roles=EVERYONE),
    Endpoint(f"{V}applications/{{obj}}/", narrowed={CLIENT}, make=_application),
    Endpoint(f"{V}applications/{{obj}}/eligibility/", narrowed={CLIENT}, make=_application),
    Endpoint(f"{V}applications/", "POST", roles=frozenset({ADMIN, RISK, DESK}), ok=201,
             narrowed={CLIENT}, body=lambda fw: {"account": fw.account.pk}),
    Endpoint(f"{V}applications/{{obj}}/submit/", "POST", roles=frozenset({ADMIN, RISK, DESK}),
             narrowed={CLIENT}, make=_application, body=lambda fw: {}),
    Endpoint(f"{V}applications/{{obj}}/withdraw/", "POST",
             roles=frozenset({ADMIN, RISK, DESK}), narrowed={CLIENT}, make=_application,
             body=lambda fw: {"reason": "changed my mind"}),
    Endpoint(f"{V}applications/{{obj}}/review/", "POST", roles=frozenset({RISK}),
             narrowed={CLIENT}, make=_submitted,
             body=lambda fw: {"recommendation": "approve", "notes": "meets the rules"}),
    Endpoint(f"{V}applications/{{obj}}/designate-approver/", "POST",
             roles=frozenset({ADMIN, RISK}), narrowed={CLIENT}, make=_submitted,
             body=lambda fw: {"approver": fw.users[ADMIN.value].pk}),
    # (the client is the account's portal user here: it sees the application, may not decide)
    Endpoint(f"{V}applications/{{obj}}/approve/", "POST", if_match=True, roles=frozenset({ADMIN}),
             make=_eligible_under_review,
             body=lambda fw: {"reasons": "meets every rule"}),
    Endpoint(f"{V}applications/{{obj}}/reject/", "POST", if_match=True, roles=frozenset({ADMIN}),
             narrowed={CLIENT}, make=_under_review,
             body=lambda fw: {"reasons": "too little equity"}),
    # tokens and the audit trail: the firm's admins (and compliance, for the trail)
    Endpoint(f"{V}tokens/", roles=frozenset({ADMIN})),
    Endpoint(f"{V}tokens/{{obj}}/", roles=frozenset({ADMIN}), make=_token),
    Endpoint(f"{V}tokens/", "POST", roles=frozenset({ADMIN}), ok=201,
             body=lambda fw: {"read_only": True, "expires_days": 30}),
    Endpoint(f"{V}tokens/{{obj}}/revoke/", "POST", roles=frozenset({ADMIN}), make=_token,
             body=lambda fw: {}),
    Endpoint(f"{V}audit/export", roles=frozenset({ADMIN, COMPLIANCE})),
    Endpoint(f"{V}audit/export/{{obj}}/manifest", roles=frozenset({ADMIN, COMPLIANCE}),
             make=_audit_export),
    Endpoint(f"{V}audit/events", roles=frozenset({ADMIN, COMPLIANCE})),
    # the calculator: anyone signed in, nothing written
    Endpoint(f"{V}margin/calculate", "POST", roles=EVERYONE, body=_calculation,
             records=False),
]
