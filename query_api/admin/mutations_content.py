"""Admin mutations on what a project defines: the capability/feature catalog and journeys (admin), saved
funnels and cohorts (analyst).  Same shape as :mod:`query_api.admin.mutations_org`."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from query_api.admin.access import writing
from query_api.admin.repo import journeys as journey_repo
from query_api.admin.repo import projects as project_repo
from query_api.admin.repo import saved as saved_repo
from query_api.admin.types import (
    Capability,
    Cohort,
    Feature,
    Journey,
    JourneyInput,
    JourneyStepInput,
    JourneyUpdateInput,
    SavedFunnel,
)
from query_api.admin.validation import (
    JourneyStepValue,
    parse_id,
    validate_definition,
    validate_journey_steps,
    validate_json,
    validate_text,
)
from query_api.context import QueryContext
from query_api.errors import InvalidInput

__all__ = ["ContentMutation"]

Ctx = Info[QueryContext, None]
MAX_DESCRIPTION = 10_000
MAX_ORDER = 1_000_000


def _set(value: Any) -> bool:
    return value is not strawberry.UNSET


def _not_null(value: Any, field: str) -> Any:
    if value is None:
        raise InvalidInput(f"{field}: must not be null")
    return value


def _order(value: int, field: str = "displayOrder") -> int:
    if not -MAX_ORDER <= value <= MAX_ORDER:
        raise InvalidInput(f"{field}: between -{MAX_ORDER} and {MAX_ORDER}")
    return value


def _timeout(value: int) -> int:
    if not 1 <= value <= 1440:
        raise InvalidInput("timeoutMinutes: between 1 and 1440")
    return value


def _documentation(value: object) -> list[dict[str, str]]:
    """The seed's ``[{label, url}]``."""
    validate_json(value, "documentation", max_bytes=16 * 1024)
    if not isinstance(value, list) or len(value) > 50:
        raise InvalidInput('documentation: a list of at most 50 {"label": ..., "url": ...} objects')
    out: list[dict[str, str]] = []
    for d in value:
        if not isinstance(d, dict) or not set(d) <= {"label", "url"} or not all(isinstance(v, str) for v in d.values()):
            raise InvalidInput('documentation: a list of at most 50 {"label": ..., "url": ...} objects')
        out.append({str(k): str(v) for k, v in d.items()})
    return out


def _steps(steps: list[JourneyStepInput]) -> list[JourneyStepValue]:
    return validate_journey_steps([(s.name, s.matcher, s.is_required) for s in steps])


def _text_changes(**fields: Any) -> dict[str, Any]:
    """Set fields among name / description → validated values (by column name)."""
    out: dict[str, Any] = {}
    for column, value in fields.items():
        if not _set(value):
            continue
        if column == "name":
            out[column] = validate_text(_not_null(value, "name"), "name")
        else:
            out[column] = validate_text(value or "", column, max_len=MAX_DESCRIPTION, required=False)
    return out


@strawberry.type
class ContentMutation:
    @strawberry.mutation(description="Add a capability to a project's catalog (admin).")
    async def create_capability(
        self, info: Ctx, project_id: strawberry.ID, name: str, description: str = "", display_order: int = 0
    ) -> Capability:
        async with writing(info.context, "admin") as w:
            values = _text_changes(name=name, description=description)
            pid = await project_repo.project_id(w.conn, str(project_id))
            cap = await journey_repo.create_capability(
                w.conn, pid, values["name"], values["description"], _order(display_order)
            )
            await w.audit("capability.create", "capability", str(cap.id), pid, name=cap.name)
        return cap

    @strawberry.mutation(description="Change a capability (admin).")
    async def update_capability(
        self,
        info: Ctx,
        id: strawberry.ID,
        name: str | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
        display_order: int | None = strawberry.UNSET,
    ) -> Capability:
        async with writing(info.context, "admin") as w:
            cap_id = parse_id(id, "capability")
            changes = _text_changes(name=name, description=description)
            if _set(display_order):
                changes["display_order"] = _order(_not_null(display_order, "displayOrder"))
            cap = await journey_repo.update_capability(w.conn, cap_id, changes)
            await w.audit("capability.update", "capability", str(cap.id), str(cap.project_id), changes=changes)
        return cap

    @strawberry.mutation(description="Add a feature to a capability (admin).")
    async def create_feature(
        self,
        info: Ctx,
        capability_id: strawberry.ID,
        name: str,
        description: str = "",
        admin_path: str = "",
        documentation: JSON | None = None,
        display_order: int = 0,
    ) -> Feature:
        async with writing(info.context, "admin") as w:
            cap_id = parse_id(capability_id, "capability")
            values = _text_changes(name=name, description=description)
            path = validate_text(admin_path, "adminPath", max_len=500, required=False)
            docs = _documentation(documentation if documentation is not None else [])
            cap = await journey_repo.get_capability(w.conn, cap_id)
            feature = await journey_repo.create_feature(
                w.conn, cap, values["name"], values["description"], path, docs, _order(display_order)
            )
            await w.audit("feature.create", "feature", str(feature.id), str(cap.project_id), name=feature.name)
        return feature

    @strawberry.mutation(description="Change a feature (admin).")
    async def update_feature(
        self,
        info: Ctx,
        id: strawberry.ID,
        name: str | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
        admin_path: str | None = strawberry.UNSET,
        documentation: JSON | None = strawberry.UNSET,
        display_order: int | None = strawberry.UNSET,
    ) -> Feature:
        async with writing(info.context, "admin") as w:
            feature_id = parse_id(id, "feature")
            changes = _text_changes(name=name, description=description)
            if _set(admin_path):
                changes["admin_path"] = validate_text(admin_path or "", "adminPath", max_len=500, required=False)
            if _set(documentation):
                changes["documentation"] = _documentation(documentation if documentation is not None else [])
            if _set(display_order):
                changes["display_order"] = _order(_not_null(display_order, "displayOrder"))
            feature = await journey_repo.update_feature(w.conn, feature_id, changes)
            await w.audit(
                "feature.update", "feature", str(feature.id), str(feature.project_id), changes=sorted(changes)
            )
        return feature

    @strawberry.mutation(description="Define a journey with its ordered steps (admin).")
    async def define_journey(self, info: Ctx, project_id: strawberry.ID, journey: JourneyInput) -> Journey:
        async with writing(info.context, "admin") as w:
            values = _text_changes(name=journey.name, description=journey.description)
            steps, timeout = _steps(journey.steps), _timeout(journey.timeout_minutes)
            feature_id = parse_id(journey.feature_id, "feature") if journey.feature_id is not None else None
            pid = await project_repo.project_id(w.conn, str(project_id))
            if feature_id is not None:
                await journey_repo.get_feature(w.conn, feature_id, pid)
            created = await journey_repo.create_journey(
                w.conn,
                pid,
                values["name"],
                values["description"],
                timeout,
                str(feature_id) if feature_id else None,
                steps,
            )
            await w.audit("journey.create", "journey", str(created.id), pid, name=created.name, steps=len(steps))
        return created

    @strawberry.mutation(description="Change a journey (admin); steps, when given, replace all steps.")
    async def update_journey(self, info: Ctx, id: strawberry.ID, journey: JourneyUpdateInput) -> Journey:
        async with writing(info.context, "admin") as w:
            journey_id = parse_id(id, "journey")
            changes = _text_changes(name=journey.name, description=journey.description)
            if _set(journey.timeout_minutes):
                changes["timeout_minutes"] = _timeout(_not_null(journey.timeout_minutes, "timeoutMinutes"))
            if _set(journey.is_active):
                changes["is_active"] = _not_null(journey.is_active, "isActive")
            feature_id = None
            if _set(journey.feature_id) and journey.feature_id is not None:
                feature_id = parse_id(journey.feature_id, "feature")
            steps = _steps(_not_null(journey.steps, "steps")) if _set(journey.steps) else None
            current = await journey_repo.get_journey(w.conn, journey_id, lock=True)
            if _set(journey.feature_id):
                if feature_id is not None:
                    await journey_repo.get_feature(w.conn, feature_id, str(current.project_id))
                changes["feature_id"] = str(feature_id) if feature_id else None
            updated = await journey_repo.update_journey(w.conn, journey_id, changes, steps)
            await w.audit(
                "journey.update",
                "journey",
                str(updated.id),
                str(updated.project_id),
                changes=sorted(changes) + (["steps"] if steps is not None else []),
                version=updated.version,
            )
        info.context.journeys.forget_org(info.context.token.org_id)
        return updated

    @strawberry.mutation(description="Stop matching a journey (admin); its definition and history stay.")
    async def deactivate_journey(self, info: Ctx, id: strawberry.ID) -> Journey:
        async with writing(info.context, "admin") as w:
            journey_id = parse_id(id, "journey")
            await journey_repo.get_journey(w.conn, journey_id, lock=True)
            updated = await journey_repo.update_journey(w.conn, journey_id, {"is_active": False}, None)
            await w.audit("journey.deactivate", "journey", str(updated.id), str(updated.project_id))
        info.context.journeys.forget_org(info.context.token.org_id)
        return updated

    @strawberry.mutation(
        description="Delete a journey and its steps (admin); returns what was deleted.  Events keep the journey "
        "ids they were matched with; deactivateJourney keeps the definition instead."
    )
    async def delete_journey(self, info: Ctx, id: strawberry.ID) -> Journey:
        async with writing(info.context, "admin") as w:
            journey_id = parse_id(id, "journey")
            deleted = await journey_repo.delete_journey(w.conn, journey_id)
            await w.audit(
                "journey.delete",
                "journey",
                str(deleted.id),
                str(deleted.project_id),
                name=deleted.name,
                version=deleted.version,
            )
        info.context.journeys.forget_org(info.context.token.org_id)
        return deleted

    @strawberry.mutation(description="Save a funnel definition under a name (analyst).")
    async def save_funnel(
        self, info: Ctx, project_id: strawberry.ID, name: str, definition: JSON, description: str = ""
    ) -> SavedFunnel:
        return await _save(info, "funnel", SavedFunnel, project_id, name, definition, description)

    @strawberry.mutation(description="Change a saved funnel (analyst).")
    async def update_saved_funnel(
        self,
        info: Ctx,
        id: strawberry.ID,
        name: str | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
        definition: JSON | None = strawberry.UNSET,
    ) -> SavedFunnel:
        return await _update(info, "funnel", SavedFunnel, id, name, description, definition)

    @strawberry.mutation(description="Delete a saved funnel (analyst); returns what was deleted.")
    async def delete_saved_funnel(self, info: Ctx, id: strawberry.ID) -> SavedFunnel:
        return await _delete(info, "funnel", SavedFunnel, id)

    @strawberry.mutation(description="Save a cohort definition under a name (analyst).")
    async def save_cohort(
        self, info: Ctx, project_id: strawberry.ID, name: str, definition: JSON, description: str = ""
    ) -> Cohort:
        return await _save(info, "cohort", Cohort, project_id, name, definition, description)

    @strawberry.mutation(description="Change a saved cohort (analyst).")
    async def update_cohort(
        self,
        info: Ctx,
        id: strawberry.ID,
        name: str | None = strawberry.UNSET,
        description: str | None = strawberry.UNSET,
        definition: JSON | None = strawberry.UNSET,
    ) -> Cohort:
        return await _update(info, "cohort", Cohort, id, name, description, definition)

    @strawberry.mutation(description="Delete a saved cohort (analyst); returns what was deleted.")
    async def delete_cohort(self, info: Ctx, id: strawberry.ID) -> Cohort:
        return await _delete(info, "cohort", Cohort, id)


async def _save(
    info: Ctx,
    kind: saved_repo.Kind,
    cls: type[saved_repo.T],
    project_id: strawberry.ID,
    name: str,
    definition: object,
    description: str,
) -> saved_repo.T:
    async with writing(info.context, "analyst") as w:
        values = _text_changes(name=name, description=description)
        checked = validate_definition(kind, definition)
        pid = await project_repo.project_id(w.conn, str(project_id))
        item = await saved_repo.create_saved(
            w.conn, kind, cls, pid, values["name"], values["description"], checked, w.actor.user_id
        )
        await w.audit(f"{kind}.create", kind, str(item.id), pid, name=item.name)
    return item


async def _update(
    info: Ctx,
    kind: saved_repo.Kind,
    cls: type[saved_repo.T],
    id: strawberry.ID,
    name: str | None,
    description: str | None,
    definition: object,
) -> saved_repo.T:
    async with writing(info.context, "analyst") as w:
        item_id = parse_id(id, "saved funnel" if kind == "funnel" else "cohort")
        changes = _text_changes(name=name, description=description)
        if _set(definition):
            changes["definition"] = validate_definition(kind, definition)
        item = await saved_repo.update_saved(w.conn, kind, cls, item_id, changes)
        await w.audit(f"{kind}.update", kind, str(item.id), str(item.project_id), changes=sorted(changes))
    return item


async def _delete(info: Ctx, kind: saved_repo.Kind, cls: type[saved_repo.T], id: strawberry.ID) -> saved_repo.T:
    async with writing(info.context, "analyst") as w:
        item_id = parse_id(id, "saved funnel" if kind == "funnel" else "cohort")
        item = await saved_repo.delete_saved(w.conn, kind, cls, item_id)
        await w.audit(f"{kind}.delete", kind, str(item.id), str(item.project_id), name=item.name)
    return item
