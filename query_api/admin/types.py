"""GraphQL types of the admin surface.  Plain strawberry dataclasses: the repository builds them from rows."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

__all__ = [
    "AccessToken",
    "ApiKey",
    "AuditEntry",
    "Capability",
    "Cohort",
    "Feature",
    "Journey",
    "JourneyInput",
    "JourneyStep",
    "JourneyStepInput",
    "JourneyUpdateInput",
    "Me",
    "Member",
    "MemberInvite",
    "NewAccessToken",
    "NewApiKey",
    "Organization",
    "Project",
    "ProjectSettings",
    "ProjectSettingsInput",
    "SavedFunnel",
]


@strawberry.type
class Organization:
    id: strawberry.ID
    name: str
    slug: str
    created_at: datetime


@strawberry.type(description="Effective project settings (stored overrides merged over the defaults).")
class ProjectSettings:
    session_timeout_minutes: int
    dedup_window_s: int
    rate_limit_per_s: int = strawberry.field(description="events per second accepted by the gateway; 0 = unlimited")
    retention_days: int
    cors_origins: list[str] = strawberry.field(description='browser origins allowed to send events; "*" = any')
    rate_limit_burst: int | None = strawberry.field(
        default=None, description="token-bucket size in events (null: the gateway's default)"
    )


@strawberry.input(description="Fields to change; an explicit null resets that field to its default.")
class ProjectSettingsInput:
    session_timeout_minutes: int | None = strawberry.UNSET
    dedup_window_s: int | None = strawberry.UNSET
    rate_limit_per_s: int | None = strawberry.UNSET
    rate_limit_burst: int | None = strawberry.UNSET
    retention_days: int | None = strawberry.UNSET
    cors_origins: list[str] | None = strawberry.UNSET


@strawberry.type(description="A project (the seed's 'product').")
class Project:
    id: strawberry.ID
    name: str
    slug: str
    settings: ProjectSettings
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="A project API key; the secret itself is shown only when created or rotated.")
class ApiKey:
    id: strawberry.ID
    project_id: strawberry.ID
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: strawberry.ID | None
    active: bool


@strawberry.type
class NewApiKey:
    api_key: ApiKey
    secret: str = strawberry.field(description="shown once; only its hash is stored")


@strawberry.type(description="A member of the organisation: a user and their role.")
class Member:
    id: strawberry.ID = strawberry.field(description="the membership id")
    user_id: strawberry.ID
    email: str
    name: str
    role: str
    created_at: datetime


@strawberry.type(description="A query-API access token; a member's token acts with at most the member's role.")
class AccessToken:
    id: strawberry.ID
    name: str
    prefix: str
    role: str
    user_id: strawberry.ID | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@strawberry.type
class NewAccessToken:
    access_token: AccessToken
    secret: str = strawberry.field(description="shown once; only its hash is stored")


@strawberry.type
class Me:
    organization: Organization
    token_id: strawberry.ID
    role: str
    user: Member | None


@strawberry.type
class Capability:
    id: strawberry.ID
    project_id: strawberry.ID
    name: str
    description: str
    display_order: int
    created_at: datetime


@strawberry.type
class Feature:
    id: strawberry.ID
    project_id: strawberry.ID
    capability_id: strawberry.ID
    name: str
    description: str
    admin_path: str
    documentation: JSON
    display_order: int
    created_at: datetime


@strawberry.type
class JourneyStep:
    id: strawberry.ID
    position: int = strawberry.field(description="1-based order")
    name: str
    matcher: JSON = strawberry.field(description="normalised step matcher (see the matcher language)")
    is_required: bool


@strawberry.type
class Journey:
    id: strawberry.ID
    project_id: strawberry.ID
    feature_id: strawberry.ID | None
    name: str
    description: str
    timeout_minutes: int
    is_active: bool
    version: int
    created_at: datetime
    updated_at: datetime
    steps: list[JourneyStep] = strawberry.field(default_factory=list)


@strawberry.input
class JourneyStepInput:
    name: str
    matcher: JSON = strawberry.field(
        description='e.g. {"event_type": "page.view", "page_path": "/checkout/*", "page_path_mode": "glob"}'
    )
    is_required: bool = True


@strawberry.input
class JourneyInput:
    name: str
    steps: list[JourneyStepInput]
    description: str = ""
    timeout_minutes: int = 30
    feature_id: strawberry.ID | None = None


@strawberry.input(description="Fields to change; steps, when given, replace all steps.")
class JourneyUpdateInput:
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    timeout_minutes: int | None = strawberry.UNSET
    feature_id: strawberry.ID | None = strawberry.UNSET
    is_active: bool | None = strawberry.UNSET
    steps: list[JourneyStepInput] | None = strawberry.UNSET


@strawberry.type
class SavedFunnel:
    id: strawberry.ID
    project_id: strawberry.ID
    name: str
    description: str
    definition: JSON
    created_by: strawberry.ID | None
    created_at: datetime
    updated_at: datetime


@strawberry.type
class Cohort:
    id: strawberry.ID
    project_id: strawberry.ID
    name: str
    description: str
    definition: JSON
    created_by: strawberry.ID | None
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="One admin mutation: who, what, when.")
class AuditEntry:
    id: strawberry.ID
    actor_token_id: strawberry.ID | None
    actor_user_id: strawberry.ID | None
    actor_label: str
    action: str
    target_type: str
    target_id: str | None
    project_id: strawberry.ID | None
    details: JSON
    created_at: datetime


@strawberry.type
class MemberInvite:
    member: Member
    access_token: NewAccessToken | None = strawberry.field(
        description="a token for the new member (the secret is shown once), unless createToken was false"
    )
