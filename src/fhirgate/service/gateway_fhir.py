"""The Gateway's FHIR REST use cases (a mixin): the governed read, search and $everything bodies returning FHIR
JSON, plus vread, history and write transactions, for the standard FHIR R4 API (fhirgate.fhirapi).

Nothing here decides policy: each use case runs the same governed body as the MCP tool of the same kind
(resources.read_resource, resources.search_resources, records.patient_everything) under the tool's name,
so the role's tool list, de-identification, rate limit and one audit record apply unchanged. Only the
presentation differs (`FhirGuard.present`): plain FHIR JSON, projected for the role and marked SUBSETTED
(FHIR R4 §3.1.1.5.8), without the untrusted-text fences the AI-facing tools add (they would corrupt the
record for FHIR clients and for an update made from what was read).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from fhirgate.core.fhir.compact import SUBSETTED_SYSTEM
from fhirgate.errors import AccessDenied, InvalidInput, NotFound
from fhirgate.service import records, resources, write_drafts
from fhirgate.service.auditing import AuditWriter, Trail, run_audited
from fhirgate.service.context import RequestContext
from fhirgate.service.guard import Guard
from fhirgate.service.shaping import shape
from fhirgate.service.writes import Draft, WriteDesk
from fhirgate.store.contract import StoredResource

if TYPE_CHECKING:
    from fhirgate.service.governance import Governance, Standing
    from fhirgate.service.resources import Services

T = TypeVar("T")
SUBSETTED = {"system": SUBSETTED_SYSTEM, "code": "SUBSETTED", "display": "subsetted"}
HISTORY_MAX_COUNT = 100
TRANSACTION_MAX_ENTRIES = 50


class Gone(NotFound):
    """The resource existed and the caller may see it, but its current version is a deletion (HTTP 410)."""

    code = "gone"


@dataclass(frozen=True, slots=True)
class FhirPage:
    """One page of FHIR resources: matches, `_include`/`_revinclude` results, the total when counted, next cursor."""

    matches: list[dict[str, Any]]
    included: list[dict[str, Any]]
    total: int | None
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One version in a history Bundle: the resource, or None for a deletion (FHIR R4 §3.1.0.4)."""

    resource_type: str
    id: str
    version: int
    last_updated: str
    resource: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class WriteEntry:
    """One write of a transaction: `create` (POST) or `update` (PUT), with the resource sent."""

    kind: str
    resource: object


class FhirGuard(Guard):
    """A Guard whose resources leave as FHIR R4 JSON: projected for the role, SUBSETTED when anything was removed."""

    def present(
        self, stored: StoredResource, fmt: str, elements: tuple[str, ...] = (), summary: str | None = None
    ) -> dict[str, Any]:
        """The resource projected (minimum necessary) and narrowed by `_elements`/`_summary`, never fenced."""
        return subsetted(shape(self.project(stored), "fhir", elements, summary))


def subsetted(body: dict[str, Any]) -> dict[str, Any]:
    """Mirror a SUBSETTED meta.tag into meta.security (the v3-ObservationValue security label, FHIR R4 §3.1.1.5.8)."""
    meta = body.get("meta")
    if not isinstance(meta, Mapping):
        return body
    tags = meta.get("tag") or ()
    if not any(isinstance(t, Mapping) and t.get("code") == "SUBSETTED" for t in tags):
        return body
    security = [s for s in meta.get("security") or () if isinstance(s, Mapping)]
    if not any(s.get("system") == SUBSETTED_SYSTEM and s.get("code") == "SUBSETTED" for s in security):
        security.append(dict(SUBSETTED))
    return {**body, "meta": {**meta, "security": security}}


def _version(value: str) -> int:
    """A version id of this server (a positive integer), or InvalidInput naming `vid`."""
    if not isinstance(value, str) or not value.isdigit() or len(value) > 9 or int(value) < 1:
        raise InvalidInput("vid", "not a version id of this server", "a positive integer")
    return int(value)


class FhirApiUseCases:
    """FHIR REST use cases mixed into Gateway, which provides `_standing`, `audit`, `_env`, `governance`, `writes`."""

    audit: AuditWriter
    _env: Services
    governance: Governance
    writes: WriteDesk

    def _standing(self, ctx: RequestContext, tool: str) -> Standing:
        raise NotImplementedError  # provided by Gateway

    def _fhir_run(self, ctx: RequestContext, trail: Trail, body: Callable[[FhirGuard], T], tool: str) -> T:
        """Gateway._run with a FhirGuard: standing under `tool` (role, tools, rate limit), one audit record."""

        def governed() -> T:
            return body(FhirGuard(ctx.principal, self._standing(ctx, tool)))

        return run_audited(self.audit, ctx, trail, governed)

    # -- reads ------------------------------------------------------------------------------------

    def fhir_read(self, ctx: RequestContext, resource_type: str, id: str) -> dict[str, Any]:
        """FHIR read (R4 §3.1.0.2): the governed read_resource body; a visible deleted resource is Gone."""
        trail = Trail("read", balp_kind="read", arguments={"resource_type": resource_type, "id": id, "format": "fhir"})

        def body(guard: FhirGuard) -> dict[str, Any]:
            try:
                out = resources.read_resource(self._env, guard, trail, resource_type=resource_type, id=id, fmt="fhir")
            except NotFound:
                if trail.masked_denial is None:
                    self._raise_if_deleted(guard, resource_type, id)
                raise
            resource: dict[str, Any] = out["resource"]
            return resource

        return self._fhir_run(ctx, trail, body, "read_resource")

    def _raise_if_deleted(self, guard: Guard, resource_type: str, id: str) -> None:
        """Gone when the current version is a deletion of a resource whose last content the caller may see."""
        versions = self._env.store.history(resource_type, id)
        if not versions or not versions[0].deleted:
            return
        last = next((v for v in versions if not v.deleted), None)
        if last is not None and guard.check(last, "r")[0].allowed:
            raise Gone(f"{resource_type}/{id} was deleted")

    def _versions(self, guard: Guard, trail: Trail, resource_type: str, id: str) -> list[StoredResource]:
        """Every version, newest first, when the caller may see the latest content; else the masked NotFound.

        An old version is shown only while the resource as it stands now is visible: a label, Consent or
        compartment change made later must not be bypassed by asking for an older version.
        """
        resources.check_type(resource_type)
        resources.check_id(id)
        trail.resource_type = resource_type
        guard.plan(resource_type, "r")
        versions = self._env.store.history(resource_type, id)
        latest = next((v for v in versions if not v.deleted), None)
        if latest is None:
            raise resources.not_found(resource_type, id)
        decision, _ = guard.check(latest, "r")
        if not decision.allowed:
            trail.masked_denial = decision.reason
            raise resources.not_found(resource_type, id)
        return versions

    def fhir_vread(self, ctx: RequestContext, resource_type: str, id: str, vid: str) -> dict[str, Any]:
        """FHIR vread (R4 §3.1.0.3): one version, authorized itself and through the resource's latest content."""
        args = {"resource_type": resource_type, "id": id, "vid": vid}
        trail = Trail("vread", balp_kind="vread", arguments=args)

        def body(guard: FhirGuard) -> dict[str, Any]:
            version = _version(vid)
            versions = self._versions(guard, trail, resource_type, id)
            stored = next((v for v in versions if v.version == version), None)
            if stored is None:
                raise NotFound(f"{resource_type}/{id} has no version {version}")
            if stored.deleted:
                raise Gone(f"{resource_type}/{id} version {version} is a deletion")
            decision, patients = guard.check(stored, "r")
            if not decision.allowed:
                trail.masked_denial = decision.reason
                raise NotFound(f"{resource_type}/{id} has no version {version}")
            trail.touch(stored.ref, patients)
            return guard.present(stored, "fhir")

        return self._fhir_run(ctx, trail, body, "read_resource")

    def fhir_history(
        self, ctx: RequestContext, resource_type: str, id: str, *, count: int = 50, cursor: str | None = None
    ) -> tuple[list[HistoryEntry], str | None]:
        """FHIR history-instance (R4 §3.1.0.4): one page of versions, newest first, each authorized; next cursor."""
        args = {"resource_type": resource_type, "id": id, "count": count}
        trail = Trail("history", balp_kind="history", arguments={**args, "cursor": cursor})

        def body(guard: FhirGuard) -> tuple[list[HistoryEntry], str | None]:
            size = resources.check_count(count, HISTORY_MAX_COUNT, "_count")
            versions = self._versions(guard, trail, resource_type, id)
            offset = self._env.pager.offset(guard.principal, "fhir_history", args, cursor)
            out: list[HistoryEntry] = []
            for stored in versions[offset : offset + size]:
                if stored.deleted:
                    out.append(HistoryEntry(resource_type, id, stored.version, stored.last_updated, None))
                    continue
                admitted = guard.admit(stored, "r")
                if admitted is None:  # this version is withheld (a label it carried, say): left out, counted
                    continue
                trail.touch(admitted.ref, admitted.patients)
                entry = guard.present(stored, "fhir")
                out.append(HistoryEntry(resource_type, id, stored.version, stored.last_updated, entry))
            more = offset + size if offset + size < len(versions) else None
            return out, self._env.pager.next_cursor(guard.principal, "fhir_history", args, more)

        return self._fhir_run(ctx, trail, body, "read_resource")

    def fhir_search(
        self,
        ctx: RequestContext,
        resource_type: str,
        params: Mapping[str, list[str]],
        *,
        count: int = 20,
        cursor: str | None = None,
        elements: Sequence[str] | None = None,
        summary: str | None = None,
    ) -> FhirPage:
        """FHIR search-type (R4 §3.1.1): the governed search_resources body, resources as FHIR JSON."""
        args = {
            "resource_type": resource_type,
            "params": dict(params),
            "count": count,
            "cursor": cursor,
            "format": "fhir",
            "elements": elements,
            "summary": summary,
        }
        trail = Trail("search", arguments=args)

        def body(guard: FhirGuard) -> FhirPage:
            out = resources.search_resources(
                self._env,
                guard,
                trail,
                resource_type=resource_type,
                params=dict(params),
                count=count,
                cursor=cursor,
                fmt="fhir",
                elements=elements,
                summary=summary,
            )
            page = out["page"]
            return FhirPage(out["entries"], out["included"], page["total"], page["next_cursor"])

        return self._fhir_run(ctx, trail, body, "search_resources")

    def fhir_everything(
        self,
        ctx: RequestContext,
        patient_id: str,
        *,
        types: Sequence[str] | None = None,
        since: str | None = None,
        count: int = 50,
        cursor: str | None = None,
    ) -> FhirPage:
        """Patient $everything (R4 §patient-operation-everything): the governed patient_everything body."""
        args = {"patient_id": patient_id, "types": types, "since": since, "count": count, "cursor": cursor}
        trail = Trail("everything", arguments={**args, "format": "fhir"})

        def body(guard: FhirGuard) -> FhirPage:
            out = records.patient_everything(
                self._env,
                guard,
                trail,
                patient_id=patient_id,
                types=types,
                since=since,
                count=count,
                cursor=cursor,
                fmt="fhir",
            )
            page = out["page"]
            return FhirPage(out["entries"], [], page["total"], page["next_cursor"])

        return self._fhir_run(ctx, trail, body, "patient_everything")

    # -- writes: proposals only (docs/writes.md) ----------------------------------------------------

    def fhir_transaction(self, ctx: RequestContext, entries: Sequence[WriteEntry]) -> list[dict[str, Any]]:
        """A transaction's writes as proposals, all or none: every entry is drafted and checked before any is
        proposed (FHIR R4 §3.1.0.11.2 atomicity, applied to validation); one audit record names them all."""
        kinds = [e.kind for e in entries]
        trail = Trail("write.propose", balp_kind="operation", arguments={"transaction": kinds})
        tool = "create_resource" if "create" in kinds else "update_resource"

        def body(guard: FhirGuard) -> list[dict[str, Any]]:
            if not entries or len(entries) > TRANSACTION_MAX_ENTRIES:
                raise InvalidInput("entry", f"a transaction needs 1 to {TRANSACTION_MAX_ENTRIES} write entries")
            for other in {"create_resource", "update_resource"} - {tool}:
                if other.split("_")[0] in kinds and guard.standing is not None:
                    decision = self.governance.tool_decision(guard.standing.role, other)
                    if not decision.allowed:
                        raise AccessDenied(decision.detail, reason=decision.reason)
            drafts = [self._checked_draft(guard, i, e) for i, e in enumerate(entries)]
            ttl = self.governance.policy.writes.proposal_ttl_hours
            results: list[dict[str, Any]] = []
            for draft in drafts:
                sub = Trail("write.propose", balp_kind="operation")
                result, _ = self.writes.propose(guard, sub, draft, None, ttl_hours=ttl)
                trail.references += sub.references
                trail.patients += sub.patients
                if sub.proposal is not None:
                    trail.proposal = f"{trail.proposal} {sub.proposal}" if trail.proposal else sub.proposal
                results.append(result)
            return results

        return self._fhir_run(ctx, trail, body, tool)

    def _checked_draft(self, guard: Guard, index: int, entry: WriteEntry) -> Draft:
        """The entry's draft after every check WriteDesk.propose makes; InvalidInput names the entry."""
        store, now = self.writes.store, self.writes.now()
        try:
            if entry.kind == "create":
                draft = write_drafts.create(store, guard, now, resource=entry.resource)
            else:
                draft = write_drafts.update(store, guard, now, resource=entry.resource)
            WriteDesk._authorize_type(guard, draft)
            self.writes._validate(draft.resource)
            self.writes._check_references(draft.resource)
            WriteDesk._screen(guard, draft)
        except InvalidInput as exc:
            raise InvalidInput(f"entry[{index}].{exc.param}", exc.problem, exc.allowed) from None
        return draft
